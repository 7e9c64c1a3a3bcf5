-- colony_assign bootstrap: roles, tables, the public composite type and the indexes.
-- Functions live in their own files; grants and function comments in finalize.sql.

--------------------------------------------------------------------------------
-- Roles
--------------------------------------------------------------------------------
-- Roles are cluster-wide, so they are created only when missing and survive DROP EXTENSION
-- (other databases may use them). Nobody gets table privileges: every access goes through
-- the SECURITY DEFINER functions, which are granted per role in finalize.sql.
-- Two databases may run CREATE EXTENSION at the same moment; the loser of that race sees a
-- unique violation instead of "already exists", so both are accepted.
DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['colony_assign_executor', 'colony_assign_submitter',
                                     'colony_assign_coordinator', 'colony_assign_admin']
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    -- The coordinator acts for executors and submitters; an admin can do everything.
    BEGIN
        GRANT colony_assign_executor, colony_assign_submitter TO colony_assign_coordinator;
        GRANT colony_assign_coordinator TO colony_assign_admin;
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
END
$roles$;

--------------------------------------------------------------------------------
-- Colonies
--------------------------------------------------------------------------------
CREATE TABLE colony_assign.colonies (
    name        text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    strict      boolean     NOT NULL DEFAULT false,
    retention   interval    NOT NULL DEFAULT interval '7 days',
    stale_after interval    NOT NULL DEFAULT interval '2 minutes',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Added in 0.2.0; last, as ALTER TABLE ADD COLUMN puts it in an upgraded database.
    claim_lease interval    NOT NULL DEFAULT interval '15 seconds',
    CONSTRAINT colony_name_length CHECK (octet_length(name) BETWEEN 1 AND 255),
    CONSTRAINT retention_positive CHECK (retention > interval '0'),
    CONSTRAINT stale_after_positive CHECK (stale_after > interval '0'),
    CONSTRAINT claim_lease_positive CHECK (claim_lease > interval '0')
);
COMMENT ON TABLE colony_assign.colonies IS
    'A colony: a namespace of executors and processes. Executors only ever see their own colony.';
COMMENT ON COLUMN colony_assign.colonies.name IS 'Unique colony name (1-255 bytes, any characters).';
COMMENT ON COLUMN colony_assign.colonies.paused IS
    'While true, assign() hands out nothing in this colony; resume() notifies every key with waiting work.';
COMMENT ON COLUMN colony_assign.colonies.strict IS
    'Strict mode: assigns per executor type are serialized inside the database so processes start in exact priority order.';
COMMENT ON COLUMN colony_assign.colonies.retention IS
    'Finished processes older than this are deleted by the reaper.';
COMMENT ON COLUMN colony_assign.colonies.stale_after IS
    'An executor silent this long is marked stale by the reaper and its RUNNING processes go back to WAITING.';
COMMENT ON COLUMN colony_assign.colonies.created_at IS 'When the colony was added.';
COMMENT ON COLUMN colony_assign.colonies.claim_lease IS
    'How long a process claimed through a coordinator (assign_batch) may go unacknowledged (close, fail, log, heartbeat) before the reaper gives it back to WAITING, no retry counted: a claim whose answer never reached its executor.';

--------------------------------------------------------------------------------
-- Executors
--------------------------------------------------------------------------------
CREATE TABLE colony_assign.executors (
    colony        text        NOT NULL,
    name          text        NOT NULL,
    executor_type text        NOT NULL,
    location      text,
    token_hash    bytea       NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    stale_since   timestamptz,
    PRIMARY KEY (colony, name),
    CONSTRAINT executor_name_length CHECK (octet_length(name) BETWEEN 1 AND 255),
    CONSTRAINT executor_type_length CHECK (octet_length(executor_type) BETWEEN 1 AND 255),
    CONSTRAINT location_length CHECK (octet_length(location) BETWEEN 1 AND 255)
);
-- The coordinator authenticates a bearer token by its hash; the token itself is never stored.
CREATE UNIQUE INDEX executors_token_idx ON colony_assign.executors (token_hash);
COMMENT ON TABLE colony_assign.executors IS
    'Registered executors: workers of one type, optionally at one location.';
COMMENT ON COLUMN colony_assign.executors.colony IS 'The colony the executor belongs to.';
COMMENT ON COLUMN colony_assign.executors.name IS 'Executor name, unique within its colony.';
COMMENT ON COLUMN colony_assign.executors.executor_type IS 'Only processes with this conditions.executortype are assigned to it.';
COMMENT ON COLUMN colony_assign.executors.location IS
    'Where the executor runs; NULL = no location (it then only gets location-less processes).';
COMMENT ON COLUMN colony_assign.executors.token_hash IS 'SHA-256 of the bearer token returned by add_executor().';
COMMENT ON COLUMN colony_assign.executors.registered_at IS 'When add_executor() registered it.';
COMMENT ON COLUMN colony_assign.executors.last_seen IS
    'Last sign of life (assign, close, fail, log, heartbeat), refreshed at most once per second.';
COMMENT ON COLUMN colony_assign.executors.stale_since IS
    'When the reaper found it silent past its colony''s stale_after (its processes were requeued); cleared by its next sign of life.';

--------------------------------------------------------------------------------
-- Admin tokens
--------------------------------------------------------------------------------
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

--------------------------------------------------------------------------------
-- Processes
--------------------------------------------------------------------------------
CREATE TABLE colony_assign.processes (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    colony             text        NOT NULL,
    state              integer     NOT NULL DEFAULT 0,
    executor_type      text        NOT NULL,
    location           text,
    executor_names     text[],
    preferred_location text,
    locality_wait      integer,
    assigned_executor  text,
    priority           integer     NOT NULL DEFAULT 0,
    funcname           text        NOT NULL,
    label              text,
    nodename           text,
    max_wait_time      integer,
    max_exec_time      integer,
    max_retries        integer     NOT NULL DEFAULT 0,
    spec               jsonb       NOT NULL,
    input              jsonb,
    output             jsonb,
    errors             text[],
    retries            integer     NOT NULL DEFAULT 0,
    submitted_at       timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    ended_at           timestamptz,
    wait_deadline      timestamptz,
    exec_deadline      timestamptz,
    workflow_id        bigint,
    pending_parents    integer     NOT NULL DEFAULT 0,
    parents            bigint[],
    children           bigint[],
    -- Added in 0.2.0; last, as ALTER TABLE ADD COLUMN puts it in an upgraded database.
    locality_until     timestamptz,
    lease_until        timestamptz,
    CONSTRAINT state_known CHECK (state BETWEEN 0 AND 4),
    CONSTRAINT priority_in_range CHECK (priority BETWEEN -50000 AND 50000),
    CONSTRAINT running_is_assigned CHECK (state <> 1 OR assigned_executor IS NOT NULL),
    CONSTRAINT pending_parents_not_negative CHECK (pending_parents >= 0)
);
-- Tuned for a queue: every process is inserted once and updated two or three times, so the
-- table churns. Vacuum early and often so the partial indexes below stay short.
ALTER TABLE colony_assign.processes SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000
);

-- The assign hot path: two partial B-trees, one per "arm" of assign(). An executor at location
-- L reads its (colony, type, L) range in the first and its (colony, type) range in the second,
-- each in queue order with LIMIT n FOR NO KEY UPDATE SKIP LOCKED, and never walks rows it
-- cannot take. Two indexes rather than one with location as a key column:
-- `location IS NULL` is not an equality to the planner, so a single index could not return
-- the location-less range in queue order and the arm would sort the whole range instead.
-- Blocked workflow children and name-targeted processes are in neither; neither are processes
-- still waiting for their preferred location (below).
-- Queue order is (-priority, id) ascending rather than (priority DESC, id): one direction for
-- both columns lets a scan start at a row position, ((-priority), id) > (p, i), as an index
-- condition (see src/cursor.rs).
CREATE INDEX processes_assign_located_idx ON colony_assign.processes
    (colony, executor_type, location, (- priority), id)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NULL AND location IS NOT NULL;
CREATE INDEX processes_assign_anywhere_idx ON colony_assign.processes
    (colony, executor_type, (- priority), id)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NULL AND location IS NULL
      AND locality_until IS NULL;

-- Local-first placement (delay scheduling): a location-less process with a preferred location
-- waits in its preferred location's range here, which only executors at that location read,
-- until locality_until; then the release pass (reap.sql, `_release_local`, run by the worker at
-- that moment) clears locality_until, which moves it into the anywhere range and wakes every
-- executor of its type. Every waiting untargeted process is in exactly one of the three ranges.
CREATE INDEX processes_assign_preferred_idx ON colony_assign.processes
    (colony, executor_type, preferred_location, (- priority), id)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NULL AND location IS NULL
      AND locality_until IS NOT NULL;
-- When the next preferred-location wait ends, and which ones have.
CREATE INDEX processes_locality_idx ON colony_assign.processes (locality_until)
    WHERE state = 0 AND locality_until IS NOT NULL;

-- Name-targeted processes: `executor_names @> ARRAY[me]` is a GIN operator (`= ANY` is not).
-- fastupdate is off because a pending list would be scanned in full by every assign.
CREATE INDEX processes_targeted_idx ON colony_assign.processes USING gin (executor_names)
    WITH (fastupdate = off)
    WHERE state = 0 AND pending_parents = 0 AND executor_names IS NOT NULL;

-- Running processes by executor: remove_executor() and stale-executor requeues.
-- `started_at IS NOT NULL` holds for every running process; it is in the predicate so that
-- only queries that say it can use this index. close(), fail() and log() find their process
-- by id and also say `state = 1 AND assigned_executor = $executor`: with a predicate of just
-- `state = 1` the planner takes this small index for them, and while a long transaction holds
-- a snapshot, every process an executor ran leaves a dead entry here that each of its closes
-- walked (measured: close 0.57 -> 1.4 ms in 45 s). The primary key is one descent.
CREATE INDEX processes_running_idx ON colony_assign.processes (colony, assigned_executor)
    WHERE state = 1 AND started_at IS NOT NULL;

-- Unacknowledged claim leases (coordinator claims only; src/claim.rs): the reaper gives back
-- those that ran out. An HTTP claim inserts one entry here; close/fail leave the predicate
-- (state), so the index only holds claims in flight. SQL-direct assign() never sets a lease.
CREATE INDEX processes_leased_idx ON colony_assign.processes (lease_until)
    WHERE state = 1 AND lease_until IS NOT NULL;

-- Deadlines for reap(): only rows that have one.
CREATE INDEX processes_exec_deadline_idx ON colony_assign.processes (exec_deadline)
    WHERE state = 1 AND exec_deadline IS NOT NULL;
CREATE INDEX processes_wait_deadline_idx ON colony_assign.processes (wait_deadline)
    WHERE state = 0 AND wait_deadline IS NOT NULL;

-- Retention and stats of finished processes.
-- state is INCLUDEd so stats() counts per state from the index alone once rows are all-visible.
CREATE INDEX processes_finished_idx ON colony_assign.processes (colony, ended_at) INCLUDE (state)
    WHERE state >= 2;

-- Workflow members (graph inspection, cancel of a whole graph).
CREATE INDEX processes_workflow_idx ON colony_assign.processes (workflow_id)
    WHERE workflow_id IS NOT NULL;

COMMENT ON TABLE colony_assign.processes IS
    'Processes: function calls with conditions, from submission to SUCCESS/FAILED/CANCELLED.';
COMMENT ON COLUMN colony_assign.processes.id IS 'Process id, increasing with submission order.';
COMMENT ON COLUMN colony_assign.processes.colony IS 'Colony the process was submitted to.';
COMMENT ON COLUMN colony_assign.processes.state IS 'WAITING 0, RUNNING 1, SUCCESS 2, FAILED 3, CANCELLED 4.';
COMMENT ON COLUMN colony_assign.processes.executor_type IS 'conditions.executortype: only executors of this type may run it.';
COMMENT ON COLUMN colony_assign.processes.location IS 'conditions.locationname; NULL = any location.';
COMMENT ON COLUMN colony_assign.processes.executor_names IS 'conditions.executornames; NULL = any executor of the type.';
COMMENT ON COLUMN colony_assign.processes.preferred_location IS 'conditions.preferredlocation: soft placement wish (local-first).';
COMMENT ON COLUMN colony_assign.processes.locality_wait IS
    'How long executors elsewhere hold off, in seconds: conditions.localitywait, or the default (5) when a preferred location is given without one.';
COMMENT ON COLUMN colony_assign.processes.locality_until IS
    'Until when only executors at preferred_location may take it (submitted_at + locality_wait); NULL = any executor of the type (released, or no preference).';
COMMENT ON COLUMN colony_assign.processes.lease_until IS
    'Claim lease: a RUNNING process claimed through a coordinator (assign_batch) that its executor has not acknowledged (close, fail, log, heartbeat) by then goes back to WAITING, no retry counted. NULL = acknowledged, or claimed by SQL-direct assign().';
COMMENT ON COLUMN colony_assign.processes.assigned_executor IS 'Name of the executor running (or that last ran) the process.';
COMMENT ON COLUMN colony_assign.processes.priority IS 'Higher runs first (-50000..50000); ties run oldest first.';
COMMENT ON COLUMN colony_assign.processes.funcname IS 'The function to run (spec.funcname).';
COMMENT ON COLUMN colony_assign.processes.label IS 'Free-form label (spec.label).';
COMMENT ON COLUMN colony_assign.processes.nodename IS 'Node name inside a workflow (spec.nodename).';
COMMENT ON COLUMN colony_assign.processes.max_wait_time IS 'Seconds it may wait before it fails; NULL = unlimited.';
COMMENT ON COLUMN colony_assign.processes.max_exec_time IS 'Seconds a run may take before it is requeued or failed; NULL = unlimited.';
COMMENT ON COLUMN colony_assign.processes.max_retries IS 'Requeues allowed after execution timeouts; -1 = unlimited.';
COMMENT ON COLUMN colony_assign.processes.spec IS 'The spec exactly as submitted.';
COMMENT ON COLUMN colony_assign.processes.input IS 'Input given to the executor (workflow children: parents'' outputs).';
COMMENT ON COLUMN colony_assign.processes.output IS 'Output reported by close().';
COMMENT ON COLUMN colony_assign.processes.errors IS 'Errors reported by fail(), or why the system failed it.';
COMMENT ON COLUMN colony_assign.processes.retries IS 'How many times an execution timeout sent it back to WAITING.';
COMMENT ON COLUMN colony_assign.processes.submitted_at IS 'Submission time.';
COMMENT ON COLUMN colony_assign.processes.started_at IS 'When the current (or last) run was assigned.';
COMMENT ON COLUMN colony_assign.processes.ended_at IS 'When it reached SUCCESS, FAILED or CANCELLED.';
COMMENT ON COLUMN colony_assign.processes.wait_deadline IS 'WAITING past this fails it (from maxwaittime).';
COMMENT ON COLUMN colony_assign.processes.exec_deadline IS 'RUNNING past this requeues or fails it (from maxexectime).';
COMMENT ON COLUMN colony_assign.processes.workflow_id IS 'The workflow (DAG) it belongs to; NULL for standalone processes.';
COMMENT ON COLUMN colony_assign.processes.pending_parents IS 'Parents not yet succeeded; assignable only at 0.';
COMMENT ON COLUMN colony_assign.processes.parents IS 'Parent process ids, in dependency order.';
COMMENT ON COLUMN colony_assign.processes.children IS 'Child process ids.';

--------------------------------------------------------------------------------
-- Idempotency keys
--------------------------------------------------------------------------------
CREATE TABLE colony_assign.idempotency_keys (
    colony      text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    ids         bigint[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (colony, key),
    CONSTRAINT idempotency_key_length CHECK (octet_length(key) BETWEEN 1 AND 255)
);
-- Retention: the reaper deletes keys older than their colony's retention.
CREATE INDEX idempotency_keys_created_idx ON colony_assign.idempotency_keys (created_at);
COMMENT ON TABLE colony_assign.idempotency_keys IS
    'Keys of idempotent submits (src/idempotency.rs): a retried submit with the same key returns these ids.';
COMMENT ON COLUMN colony_assign.idempotency_keys.colony IS 'Colony submitted to (keys are per colony).';
COMMENT ON COLUMN colony_assign.idempotency_keys.key IS 'The client''s key (1-255 bytes).';
COMMENT ON COLUMN colony_assign.idempotency_keys.fingerprint IS 'SHA-256 of the colony and the request''s specs: the same key with another request is refused.';
COMMENT ON COLUMN colony_assign.idempotency_keys.ids IS 'The process ids the first call made, in input order.';
COMMENT ON COLUMN colony_assign.idempotency_keys.created_at IS 'When the key was first used.';

--------------------------------------------------------------------------------
-- Workflows and logs
--------------------------------------------------------------------------------
CREATE TABLE colony_assign.workflows (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    colony       text        NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE colony_assign.workflows IS
    'Workflows (DAGs of processes). The graph itself lives on the processes: parents, children, pending_parents.';
COMMENT ON COLUMN colony_assign.workflows.id IS 'Workflow id.';
COMMENT ON COLUMN colony_assign.workflows.colony IS 'Colony it was submitted to.';
COMMENT ON COLUMN colony_assign.workflows.submitted_at IS 'Submission time.';

CREATE TABLE colony_assign.logs (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_id bigint      NOT NULL REFERENCES colony_assign.processes (id) ON DELETE CASCADE,
    executor   text        NOT NULL,
    message    text        NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX logs_process_idx ON colony_assign.logs (process_id, id);
COMMENT ON TABLE colony_assign.logs IS 'Progress messages executors write while running a process; deleted with it.';
COMMENT ON COLUMN colony_assign.logs.id IS 'Increasing with time of writing.';
COMMENT ON COLUMN colony_assign.logs.process_id IS 'The process the message is about.';
COMMENT ON COLUMN colony_assign.logs.executor IS 'The executor that wrote it.';
COMMENT ON COLUMN colony_assign.logs.message IS 'The message (at most 16 KiB).';
COMMENT ON COLUMN colony_assign.logs.logged_at IS 'When it was written.';

--------------------------------------------------------------------------------
-- The public shape of a process
--------------------------------------------------------------------------------
-- A type rather than the table's row type, so internal columns can change without changing
-- what assign() and process() return.
CREATE TYPE colony_assign.process AS (
    id                bigint,
    colony            text,
    state             integer,
    executor_type     text,
    location          text,
    executor_names    text[],
    assigned_executor text,
    priority          integer,
    funcname          text,
    label             text,
    nodename          text,
    spec              jsonb,
    input             jsonb,
    output            jsonb,
    errors            text[],
    retries           integer,
    submitted_at      timestamptz,
    started_at        timestamptz,
    ended_at          timestamptz,
    exec_deadline     timestamptz,
    workflow_id       bigint,
    -- Added in 0.2.0; last, as ALTER TYPE ADD ATTRIBUTE puts it in an upgraded database.
    lease_until       timestamptz
);
COMMENT ON TYPE colony_assign.process IS
    'A process as assign(), process() and the HTTP API return it. spec holds args, kwargs and every other submitted field. lease_until: the claim lease of a coordinator claim not yet acknowledged (processes.lease_until).';

REVOKE ALL ON ALL TABLES IN SCHEMA colony_assign FROM PUBLIC;
