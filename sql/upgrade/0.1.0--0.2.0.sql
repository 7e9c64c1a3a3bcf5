-- colony_assign 0.1.0 -> 0.2.0: the schema changes. `scripts/upgrade-sql` appends the drop of
-- every 0.1.0 function and the 0.2.0 definitions of every function, grant and comment (the same
-- text CREATE EXTENSION runs), producing pg_ext/sql/colony_assign--0.1.0--0.2.0.sql. CI upgrades
-- a filled 0.1.0 database with it and compares the catalog with a fresh 0.2.0 install
-- (scripts/upgrade-check).

-- Local-first placement: the end of a preferred-location wait, and the range of processes that
-- wait. The anywhere range leaves them out. (The index is rebuilt, which blocks writes to
-- processes while it builds: run the update when the queue is quiet, or build the new indexes
-- CONCURRENTLY beforehand under other names and rename them.)
ALTER TABLE colony_assign.processes ADD COLUMN locality_until timestamptz;
DROP INDEX colony_assign.processes_assign_anywhere_idx;
CREATE INDEX processes_assign_anywhere_idx ON colony_assign.processes
    (colony, executor_type, (- priority), id)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NULL AND location IS NULL
      AND locality_until IS NULL;
CREATE INDEX processes_assign_preferred_idx ON colony_assign.processes
    (colony, executor_type, preferred_location, (- priority), id)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NULL AND location IS NULL
      AND locality_until IS NOT NULL;
CREATE INDEX processes_locality_idx ON colony_assign.processes (locality_until)
    WHERE state = 0 AND locality_until IS NOT NULL;
COMMENT ON COLUMN colony_assign.processes.locality_wait IS
    'How long executors elsewhere hold off, in seconds: conditions.localitywait, or the default (5) when a preferred location is given without one.';
COMMENT ON COLUMN colony_assign.processes.locality_until IS
    'Until when only executors at preferred_location may take it (submitted_at + locality_wait); NULL = any executor of the type (released, or no preference).';

-- Claim leases (docs/RELIABILITY.md, defect 2): a process claimed through a coordinator that
-- its executor never acknowledges goes back to WAITING when its lease runs out.
ALTER TABLE colony_assign.colonies ADD COLUMN claim_lease interval NOT NULL DEFAULT interval '15 seconds';
ALTER TABLE colony_assign.colonies ADD CONSTRAINT claim_lease_positive CHECK (claim_lease > interval '0');
COMMENT ON COLUMN colony_assign.colonies.claim_lease IS
    'How long a process claimed through a coordinator (assign_batch) may go unacknowledged (close, fail, log, heartbeat) before the reaper gives it back to WAITING, no retry counted: a claim whose answer never reached its executor.';
ALTER TABLE colony_assign.processes ADD COLUMN lease_until timestamptz;
CREATE INDEX processes_leased_idx ON colony_assign.processes (lease_until)
    WHERE state = 1 AND lease_until IS NOT NULL;
COMMENT ON COLUMN colony_assign.processes.lease_until IS
    'Claim lease: a RUNNING process claimed through a coordinator (assign_batch) that its executor has not acknowledged (close, fail, log, heartbeat) by then goes back to WAITING, no retry counted. NULL = acknowledged, or claimed by SQL-direct assign().';
ALTER TYPE colony_assign.process ADD ATTRIBUTE lease_until timestamptz;
COMMENT ON TYPE colony_assign.process IS
    'A process as assign(), process() and the HTTP API return it. spec holds args, kwargs and every other submitted field. lease_until: the claim lease of a coordinator claim not yet acknowledged (processes.lease_until).';

-- Admin tokens (login, admin routes).
CREATE TABLE colony_assign.admins (
    name       text        PRIMARY KEY,
    token_hash bytea       NOT NULL UNIQUE,
    colonies   text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT admin_name_length CHECK (octet_length(name) BETWEEN 1 AND 255)
);
COMMENT ON TABLE colony_assign.admins IS
    'Admin tokens: what an operator logs in (SQL) or authenticates (HTTP admin routes) with.';
COMMENT ON COLUMN colony_assign.admins.name IS 'Unique admin name (1-255 bytes).';
COMMENT ON COLUMN colony_assign.admins.token_hash IS 'SHA-256 of the bearer token returned by add_admin().';
COMMENT ON COLUMN colony_assign.admins.colonies IS 'The colonies the token reaches; NULL = every colony.';
COMMENT ON COLUMN colony_assign.admins.created_at IS 'When add_admin() created it.';

-- Idempotent submits.
CREATE TABLE colony_assign.idempotency_keys (
    colony      text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    ids         bigint[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (colony, key),
    CONSTRAINT idempotency_key_length CHECK (octet_length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_idx ON colony_assign.idempotency_keys (created_at);
COMMENT ON TABLE colony_assign.idempotency_keys IS
    'Keys of idempotent submits (src/idempotency.rs): a retried submit with the same key returns these ids.';
COMMENT ON COLUMN colony_assign.idempotency_keys.colony IS 'Colony submitted to (keys are per colony).';
COMMENT ON COLUMN colony_assign.idempotency_keys.key IS 'The client''s key (1-255 bytes).';
COMMENT ON COLUMN colony_assign.idempotency_keys.fingerprint IS 'SHA-256 of the colony and the request''s specs: the same key with another request is refused.';
COMMENT ON COLUMN colony_assign.idempotency_keys.ids IS 'The process ids the first call made, in input order.';
COMMENT ON COLUMN colony_assign.idempotency_keys.created_at IS 'When the key was first used.';

REVOKE ALL ON ALL TABLES IN SCHEMA colony_assign FROM PUBLIC;
