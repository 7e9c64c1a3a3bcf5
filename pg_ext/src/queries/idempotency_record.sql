-- The ids the submit that claimed idempotency key $2 of colony $1 made.
UPDATE colony_assign.idempotency_keys k SET ids = $3
WHERE k.colony = $1 AND k.key = $2
