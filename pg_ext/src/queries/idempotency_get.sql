-- What the call that claimed idempotency key $2 of colony $1 recorded.
SELECT k.fingerprint, k.ids
FROM colony_assign.idempotency_keys k
WHERE k.colony = $1 AND k.key = $2
