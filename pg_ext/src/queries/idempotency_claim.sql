-- Claims idempotency key $2 of colony $1 for a request fingerprinted $3; a row when this call
-- claimed it, none when an earlier (committed) call holds it. A concurrent claim waits here
-- for the first to commit or roll back.
INSERT INTO colony_assign.idempotency_keys (colony, key, fingerprint)
VALUES ($1, $2, $3)
ON CONFLICT ON CONSTRAINT idempotency_keys_pkey DO NOTHING
RETURNING 1
