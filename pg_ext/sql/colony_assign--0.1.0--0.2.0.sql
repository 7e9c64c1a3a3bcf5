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

-- Every function of 0.1.0 goes; 0.2.0 defines all of its own below. Functions with a SQL-standard
-- body depend on those they call, so they go first. No CASCADE: an object of yours that uses
-- one of these functions makes the update fail instead of being dropped with it.
DO $drop$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                                   AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'colony_assign'
        ORDER BY p.prosqlbody IS NULL, p.oid
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$drop$;
/* <begin connected objects> */
-- pg_ext/src/lib.rs:80
-- requires:
--   bootstrap

-- Identity: who a session acts as (src/identity.rs explains the model; docs/sql-api.md the use).
-- login() and logout() are C functions: the identity lives in the backend's memory, where
-- every executor entry point checks it.

CREATE FUNCTION colony_assign.login(token text,
    OUT kind text, OUT colony text, OUT name text)
RETURNS record
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_login';

CREATE FUNCTION colony_assign.logout() RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_logout';

-- An admin token: for operators (SQL login) and the coordinator's admin routes. The token is
-- returned once; only its SHA-256 is stored. `colonies` NULL reaches every colony.
CREATE FUNCTION colony_assign.add_admin(name text, colonies text[] DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- 244 random bits, as executor tokens; the prefix tells a leaked admin token apart.
    token text := 'caa_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
    unknown text;
BEGIN
    PERFORM colony_assign._check_name(name, 'admin');
    IF colonies IS NOT NULL THEN
        SELECT c INTO unknown FROM unnest(colonies) AS c
        WHERE c IS NULL OR NOT EXISTS (SELECT FROM colony_assign.colonies k WHERE k.name = c) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unknown colony %', coalesce(to_jsonb(unknown)::text, 'NULL') USING ERRCODE = 'P0002';
        END IF;
    END IF;
    INSERT INTO colony_assign.admins (name, token_hash, colonies)
    VALUES (add_admin.name, sha256(convert_to(token, 'UTF8')), add_admin.colonies)
    ON CONFLICT ON CONSTRAINT admins_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'admin % already exists', to_jsonb(name)::text USING ERRCODE = '23505';
    END IF;
    RETURN token;
END
$$;

CREATE FUNCTION colony_assign.remove_admin(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'admin');
    DELETE FROM colony_assign.admins a WHERE a.name = remove_admin.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown admin %', to_jsonb(name)::text USING ERRCODE = 'P0002';
    END IF;
    -- Coordinators drop the cached token.
    PERFORM pg_notify('ca_control', jsonb_build_object('event', 'admin_removed', 'admin', name)::text);
END
$$;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:54
-- requires:
--   bootstrap

-- Input validation shared by the SQL functions. Specs are checked in Rust (src/spec.rs), where
-- they are parsed once into the row that is stored.

--------------------------------------------------------------------------------
-- Names (colonies, executors, executor types, locations)
--------------------------------------------------------------------------------

-- Raises 22004 for NULL and 22023 for an empty or over-long name. Names may hold any
-- characters (quotes, unicode); they are data, never spliced into SQL or channel names.
CREATE FUNCTION colony_assign._check_name(value text, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', what USING ERRCODE = '22004';
    ELSIF value = '' THEN
        RAISE EXCEPTION '% must not be empty', what USING ERRCODE = '22023';
    ELSIF octet_length(value) > 255 THEN
        RAISE EXCEPTION '% is too long: % bytes, at most 255', what, octet_length(value)
            USING ERRCODE = '22023';
    END IF;
END
$$;

-- Largest accepted spec, output and error list, in bytes (as stored). Over it: SQLSTATE 54000.
CREATE FUNCTION colony_assign._max_document_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 262144;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/identity.rs:156
-- colony_assign::identity::_acting_as
CREATE  FUNCTION "_acting_as"(
	"colony" TEXT, /* Option < & str > */
	"executor" TEXT, /* Option < & str > */
	"token_hash" bytea /* Option < & [u8] > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_acting_as_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/channel.rs:22
-- colony_assign::channel::_executor_channels
CREATE  FUNCTION "_executor_channels"(
	"colony" TEXT, /* & str */
	"executor_type" TEXT, /* & str */
	"location" TEXT, /* Option < & str > */
	"executor" TEXT /* & str */
) RETURNS TEXT[] /* Vec < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_executor_channels_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/workflow.rs:9
-- colony_assign::workflow::_find_cycle
CREATE  FUNCTION "_find_cycle"(
	"n" INT, /* i32 */
	"child" INT[], /* Vec < i32 > */
	"parent" INT[] /* Vec < i32 > */
) RETURNS INT[] /* Vec < i32 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_find_cycle_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/identity.rs:145
-- colony_assign::identity::_may_see
CREATE  FUNCTION "_may_see"(
	"colony" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_may_see_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/identity.rs:183
-- colony_assign::identity::_session_colony
CREATE  FUNCTION "_session_colony"() RETURNS TEXT /* Option < String > */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_session_colony_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/strict.rs:59
-- colony_assign::strict::_strict_lock
CREATE  FUNCTION "_strict_lock"(
	"colony" TEXT, /* & str */
	"executor_type" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_strict_lock_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/identity.rs:175
-- colony_assign::identity::_trusted
CREATE  FUNCTION "_trusted"() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_trusted_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/notify.rs:43
-- colony_assign::notify::_wake
CREATE  FUNCTION "_wake"(
	"colony" TEXT, /* & str */
	"executor_type" TEXT, /* & str */
	"location" TEXT, /* Option < & str > */
	"executor_names" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"n" bigint /* i64 */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wake_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:55
-- requires:
--   validate
--   notify::_wake
--   identity::_may_see

-- Processes: submit, close, fail, cancel, inspect.
--
-- Every transition is one UPDATE guarded by the expected current state (and, for close/fail, by
-- the assigned executor): compare-and-set, so any number of callers can race safely. Why an
-- UPDATE matched nothing is worked out only afterwards, on the error path.
--
-- The per-request entry points (submit, submit_many, close, fail, close_many; assign in
-- assign.sql) are C functions of the extension (src/submit.rs, src/finish.rs): they read and
-- write the tables through the heap and index access methods with everything the executor
-- would rebuild per statement kept per session (src/table.rs), which a profile showed was most
-- of the cost of a call. Their declarations, grants and comments stay here in SQL.
--
-- The PL/pgSQL functions carry SET clauses (search_path, generic plans, no JIT) on their public
-- entry points only. The internal _functions are executable by the owner alone and always run
-- beneath an entry point (or beneath a C entry point's pinned search path, src/spi.rs); a SET
-- clause on each of them cost a GUC save/restore per nested call.

--------------------------------------------------------------------------------
-- Internal helpers
--------------------------------------------------------------------------------

-- The public shape of a stored process.
CREATE FUNCTION colony_assign._public(p colony_assign.processes) RETURNS colony_assign.process
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(p.id, p.colony, p.state, p.executor_type, p.location, p.executor_names,
           p.assigned_executor, p.priority, p.funcname, p.label, p.nodename, p.spec, p.input,
           p.output, p.errors, p.retries, p.submitted_at, p.started_at, p.ended_at,
           p.exec_deadline, p.workflow_id,
           -- close, fail and cancel leave the column as it was: a lease is shown while RUNNING.
           CASE WHEN p.state = 1 THEN p.lease_until END)::colony_assign.process;

-- Name of a state, for error messages.
CREATE FUNCTION colony_assign._state_name(state integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (ARRAY['WAITING', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELLED'])[state + 1];

-- Raises the error that explains why a close/fail by `executor` (of `colony`, when given)
-- matched no row.
CREATE FUNCTION colony_assign._explain_not_running(process_id bigint, executor text, colony text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    p colony_assign.processes;
BEGIN
    SELECT * INTO p FROM colony_assign.processes WHERE id = process_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
    ELSIF colony IS NOT NULL AND p.colony <> colony THEN
        -- Another colony's process looks exactly like none.
        RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
    ELSIF p.state <> 1 THEN
        RAISE EXCEPTION 'process % is not running (it is %)', process_id, colony_assign._state_name(p.state)
            USING ERRCODE = '55000';
    ELSE
        RAISE EXCEPTION 'process % is assigned to another executor, not %', process_id, to_jsonb(executor)::text
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- Refreshes an executor's liveness, at most once per second so a busy executor does not turn
-- every call into a write of its row.
CREATE FUNCTION colony_assign._touch(colony text, executor text) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    UPDATE colony_assign.executors e SET last_seen = now(), stale_since = NULL
    WHERE e.colony = _touch.colony AND e.name = _touch.executor
      AND e.last_seen < now() - interval '1 second';
END
$$;

-- Wakes a group of n processes sharing (colony, type, location, names). For targeted processes
-- only registered executors of the type whose location fits are woken, so a wake never goes
-- to a named executor that could not take the work. Returns the number of channels notified.
CREATE FUNCTION colony_assign._wake_group(colony text, executor_type text, location text,
                                          executor_names text[], n bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF executor_names IS NOT NULL THEN
        executor_names := ARRAY(
            SELECT e.name FROM colony_assign.executors e
            WHERE e.colony = _wake_group.colony AND e.name = ANY (_wake_group.executor_names)
              AND e.executor_type = _wake_group.executor_type
              AND (_wake_group.location IS NULL OR e.location = _wake_group.location));
    END IF;
    RETURN colony_assign._wake(colony, executor_type, location, executor_names, n);
END
$$;

-- What submit_workflow() checks and inserts, shared with submit() and submit_many(): specs
-- parsed once into typed rows (src/spec.rs) and inserted with their notifications
-- (src/submit.rs).
CREATE FUNCTION colony_assign._check_specs(colony text, specs jsonb, single boolean, in_workflow boolean)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'colony_assign_check_specs';

CREATE FUNCTION colony_assign._insert_specs(colony text, specs jsonb, workflow_id bigint DEFAULT NULL,
                                            pending integer[] DEFAULT NULL) RETURNS bigint[]
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'colony_assign_insert_specs';

--------------------------------------------------------------------------------
-- Public functions
--------------------------------------------------------------------------------

CREATE FUNCTION colony_assign.submit(colony text, spec jsonb, idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_submit';

CREATE FUNCTION colony_assign.submit_many(colony text, specs jsonb, idempotency_key text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 100
AS 'MODULE_PATHNAME', 'colony_assign_submit_many';

-- RUNNING → SUCCESS (close) or FAILED (fail), compare-and-set on the state and the assigned
-- executor (and the colony, when given); the error says why a call matched nothing.
CREATE FUNCTION colony_assign.close(process_id bigint, executor text, output jsonb DEFAULT NULL,
                                    colony text DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_close';

CREATE FUNCTION colony_assign.fail(process_id bigint, executor text, errors text[],
                                   colony text DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_fail';

CREATE FUNCTION colony_assign.cancel(process_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    current_state integer;
    process_colony text;
    cancelled_children bigint[];
BEGIN
    -- Another colony's process looks exactly like none (src/identity.rs).
    SELECT p.colony INTO process_colony FROM colony_assign.processes p WHERE p.id = process_id;
    IF NOT FOUND OR NOT colony_assign._may_see(process_colony) THEN
        RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE colony_assign.processes p
    SET state = 4, ended_at = now(), exec_deadline = NULL
    WHERE p.id = process_id AND p.state IN (0, 1)
    RETURNING p.children INTO cancelled_children;
    IF FOUND AND cancelled_children IS NOT NULL THEN
        PERFORM colony_assign._end_descendants(ARRAY[process_id], 4);
    ELSIF NOT FOUND THEN
        SELECT p.state INTO current_state FROM colony_assign.processes p WHERE p.id = process_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
        END IF;
        RAISE EXCEPTION 'process % has already ended (it is %)', process_id, colony_assign._state_name(current_state)
            USING ERRCODE = '55000';
    END IF;
END
$$;

CREATE FUNCTION colony_assign.process(process_id bigint) RETURNS colony_assign.process
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result colony_assign.process;
BEGIN
    -- Expanded with .*: INTO a row variable assigns column by column.
    SELECT (colony_assign._public(p)).* INTO result FROM colony_assign.processes p WHERE p.id = process_id;
    -- Another colony's process looks exactly like none (src/identity.rs).
    IF NOT FOUND OR NOT colony_assign._may_see(result.colony) THEN
        RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;

-- Closes a batch of processes for one executor: a JSON array of
-- {"id": <process id>, "output": <any JSON, optional>}. Each item is reported, closed or not
-- (with why), so one process the reaper took back does not sink the others.
CREATE FUNCTION colony_assign.close_many(executor text, closes jsonb, colony text DEFAULT NULL)
RETURNS TABLE (process_id bigint, closed boolean, error text)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 100
AS 'MODULE_PATHNAME', 'colony_assign_close_many';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:64
-- requires:
--   processes

-- assign(): what ColonyOS does in four database operations (mark the executor alive, honour a
-- paused colony, select, update), done in one call.
--
-- A C function of the extension (src/claim.rs): it walks the partial indexes of the queue
-- ranges the executor can take from (its location's, its type's location-less range, and
-- name-targeted work that lists it) in queue order, locks each row it takes FOR NO KEY UPDATE
-- SKIP LOCKED, re-checks it and marks it RUNNING with its deadline. Strict colonies serialize
-- claims per (colony, executor type) (src/strict.rs); distributed ones start at this session's
-- scan cursors (src/cursor.rs).
CREATE FUNCTION colony_assign.assign(colony text, executor text, max_count integer DEFAULT 1)
RETURNS SETOF colony_assign.process
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
AS 'MODULE_PATHNAME', 'colony_assign_assign';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:67
-- requires:
--   processes
--   workflow::_find_cycle

-- Workflows: DAGs of processes by nodename and conditions.dependencies.
--
-- The graph lives on the processes themselves: `parents` (in dependency order), `children`
-- and `pending_parents`. A child is assignable when pending_parents reaches 0, which happens
-- in the transaction of its last parent's close(): one decrement per edge, never a re-read of
-- the whole graph (ColonyOS re-resolves the graph on every assign and close).

-- Called by close() with the children of a process that just succeeded: decrements each,
-- and releases (inputs + notification) those whose last parent this was. Returns how many.
CREATE FUNCTION colony_assign._release_children(child_ids bigint[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ready bigint[];
    channels integer;
BEGIN
    -- Two parents closing at once serialize on the child's row lock, so exactly one of them
    -- sees the count reach 0.
    WITH counted AS (
        UPDATE colony_assign.processes c SET pending_parents = c.pending_parents - 1
        WHERE c.id = ANY (child_ids) AND c.state = 0 AND c.pending_parents > 0
        RETURNING c.id, c.pending_parents
    )
    SELECT array_agg(counted.id) INTO ready FROM counted WHERE counted.pending_parents = 0;
    IF ready IS NULL THEN
        RETURN 0;
    END IF;
    -- A second statement on purpose: its fresh snapshot sees the output of a parent whose
    -- close committed while the decrement above waited for the child's row lock.
    -- A child with a preferred location starts its wait for it now (local-first placement),
    -- and is announced on that location's key until the wait is over.
    WITH filled AS (
        UPDATE colony_assign.processes c
        SET input = (SELECT jsonb_agg(p.output ORDER BY u.ord)
                     FROM unnest(c.parents) WITH ORDINALITY AS u(id, ord)
                     JOIN colony_assign.processes p ON p.id = u.id),
            locality_until = CASE
                WHEN c.preferred_location IS NOT NULL AND c.location IS NULL AND c.executor_names IS NULL
                     AND c.locality_wait > 0
                THEN now() + c.locality_wait * interval '1 second' END
        WHERE c.id = ANY (ready)
        RETURNING c.colony, c.executor_type, coalesce(c.location, CASE WHEN c.locality_until IS NOT NULL
                                                                   THEN c.preferred_location END) AS location,
                  c.executor_names
    ), keys AS (
        SELECT f.colony, f.executor_type, f.location, f.executor_names, count(*) AS n
        FROM filled f GROUP BY f.colony, f.executor_type, f.location, f.executor_names
    )
    SELECT sum(colony_assign._wake_group(k.colony, k.executor_type, k.location, k.executor_names, k.n))
    INTO channels FROM keys k;
    RETURN cardinality(ready);
END
$$;

-- Ends every waiting descendant of the `ended` processes as FAILED (3) or CANCELLED (4), each
-- with an error naming the ancestor that ended it. Returns how many.
CREATE FUNCTION colony_assign._end_descendants(ended bigint[], new_state integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    count bigint;
BEGIN
    WITH RECURSIVE below(id, root) AS (
        SELECT c.id, p.id
        FROM colony_assign.processes p, unnest(p.children) AS c(id)
        WHERE p.id = ANY (ended)
        UNION
        SELECT c.id, b.root
        FROM below b
        JOIN colony_assign.processes p ON p.id = b.id
        CROSS JOIN unnest(p.children) AS c(id)
    ), first_root AS (
        SELECT DISTINCT ON (b.id) b.id, b.root FROM below b ORDER BY b.id, b.root
    ), done AS (
        UPDATE colony_assign.processes p
        SET state = new_state, ended_at = now(),
            errors = array_append(coalesce(p.errors, '{}'),
                format('parent %s (process %s) %s', to_jsonb(r.nodename), r.id,
                       CASE WHEN new_state = 3 THEN 'failed' ELSE 'was cancelled' END))
        FROM first_root f
        JOIN colony_assign.processes r ON r.id = f.root
        WHERE p.id = f.id AND p.state = 0
        RETURNING p.id
    )
    SELECT count(*) INTO count FROM done;
    RETURN count;
END
$$;

CREATE FUNCTION colony_assign.submit_workflow(colony text, specs jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    n integer;
    nodes text[];
    bad bigint;
    name text;
    edge_child integer[];
    edge_parent integer[];
    edge_dep text[];
    pending integer[];
    cycle integer[];
    workflow bigint;
    ids bigint[];
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._visible_colony(colony);
    PERFORM colony_assign._check_specs(colony, specs, false, true);
    n := jsonb_array_length(specs);
    IF n = 0 THEN
        RAISE EXCEPTION 'a workflow needs at least one spec' USING ERRCODE = '22023';
    END IF;

    SELECT array_agg(coalesce(a.s ->> 'nodename', '') ORDER BY a.i) INTO nodes
    FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i);
    SELECT u.i - 1 INTO bad FROM unnest(nodes) WITH ORDINALITY AS u(node, i) WHERE u.node = '' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: spec.nodename is required in a workflow', bad USING ERRCODE = '22023';
    END IF;
    SELECT u.node INTO name FROM unnest(nodes) AS u(node) GROUP BY u.node HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'nodename % is used twice', to_jsonb(name)::text USING ERRCODE = '22023';
    END IF;

    -- Edges child <- parent as 0-based spec indexes, grouped by child with its dependencies in
    -- the order written (so an edge's position orders a child's parents).
    SELECT coalesce(array_agg(e.child ORDER BY e.child, e.ord), '{}'),
           coalesce(array_agg(e.parent ORDER BY e.child, e.ord), '{}'),
           coalesce(array_agg(e.dep ORDER BY e.child, e.ord), '{}')
    INTO edge_child, edge_parent, edge_dep
    FROM (SELECT (a.i - 1)::integer AS child, array_position(nodes, d.dep) - 1 AS parent, d.dep, d.ord
          FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i),
               jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.s #> '{conditions,dependencies}') = 'array'
                                              THEN a.s #> '{conditions,dependencies}' ELSE '[]' END)
                   WITH ORDINALITY AS d(dep, ord)) AS e;
    SELECT e.child, e.dep INTO bad, name
    FROM unnest(edge_child, edge_parent, edge_dep) AS e(child, parent, dep) WHERE e.parent IS NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: dependency % is not a nodename of this workflow', bad, to_jsonb(name)::text
            USING ERRCODE = '22023';
    END IF;
    SELECT e.child, e.dep INTO bad, name
    FROM unnest(edge_child, edge_dep) AS e(child, dep) GROUP BY e.child, e.dep HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: dependency % is listed twice', bad, to_jsonb(name)::text USING ERRCODE = '22023';
    END IF;
    cycle := colony_assign._find_cycle(n, edge_child, edge_parent);
    IF cardinality(cycle) > 0 THEN
        RAISE EXCEPTION 'the dependencies form a cycle: %',
            (SELECT string_agg(to_jsonb(nodes[c.i + 1])::text, ' -> ' ORDER BY c.ord)
             FROM unnest(cycle || cycle[1]) WITH ORDINALITY AS c(i, ord))
            USING ERRCODE = '22023';
    END IF;

    INSERT INTO colony_assign.workflows (colony) VALUES (colony) RETURNING id INTO workflow;
    SELECT array_agg(coalesce(x.parents, 0)::integer ORDER BY g.i) INTO pending
    FROM generate_series(0, n - 1) AS g(i)
    LEFT JOIN (SELECT e.child, count(*) AS parents FROM unnest(edge_child) AS e(child) GROUP BY e.child) x
        ON x.child = g.i;
    -- Roots are assignable (and notified) at once; the others wait for their parents.
    ids := colony_assign._insert_specs(colony, specs, workflow, pending);
    UPDATE colony_assign.processes p
    SET parents = up.parent_ids, children = down.child_ids
    FROM generate_series(0, n - 1) AS g(i)
    LEFT JOIN (SELECT e.child, array_agg(ids[e.parent + 1] ORDER BY e.k) AS parent_ids
               FROM unnest(edge_child, edge_parent) WITH ORDINALITY AS e(child, parent, k)
               GROUP BY e.child) up ON up.child = g.i
    LEFT JOIN (SELECT e.parent, array_agg(ids[e.child + 1] ORDER BY e.child) AS child_ids
               FROM unnest(edge_child, edge_parent) AS e(child, parent)
               GROUP BY e.parent) down ON down.parent = g.i
    WHERE p.id = ids[g.i + 1] AND (up.parent_ids IS NOT NULL OR down.child_ids IS NOT NULL);
    RETURN workflow;
END
$$;

-- A workflow and its graph, as JSON: state (the graph's: FAILED if any member failed,
-- CANCELLED if any was cancelled, SUCCESS when all succeeded, RUNNING once any started, else
-- WAITING) and every node with its process, state and edges by nodename.
CREATE FUNCTION colony_assign.workflow(workflow_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    SELECT jsonb_build_object(
        'id', w.id,
        'colony', w.colony,
        'submitted_at', w.submitted_at,
        'state', CASE WHEN bool_or(p.state = 3) THEN 3
                      WHEN bool_or(p.state = 4) THEN 4
                      WHEN bool_and(p.state = 2) THEN 2
                      WHEN bool_or(p.state IN (1, 2)) THEN 1
                      ELSE 0 END,
        'nodes', jsonb_agg(jsonb_build_object(
            'nodename', p.nodename,
            'process_id', p.id,
            'state', p.state,
            'pending_parents', p.pending_parents,
            'parents', (SELECT coalesce(jsonb_agg(q.nodename ORDER BY u.ord), '[]')
                        FROM unnest(p.parents) WITH ORDINALITY AS u(id, ord)
                        JOIN colony_assign.processes q ON q.id = u.id),
            'children', (SELECT coalesce(jsonb_agg(q.nodename ORDER BY q.id), '[]')
                         FROM colony_assign.processes q WHERE q.id = ANY (p.children)))
            ORDER BY p.id))
    INTO result
    FROM colony_assign.workflows w
    JOIN colony_assign.processes p ON p.workflow_id = w.id
    WHERE w.id = workflow.workflow_id
    GROUP BY w.id, w.colony, w.submitted_at;
    -- Another colony's workflow looks exactly like none (src/identity.rs).
    IF result IS NULL OR NOT colony_assign._may_see(result ->> 'colony') THEN
        RAISE EXCEPTION 'unknown workflow %', workflow_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:59
-- requires:
--   processes

-- Colonies: add, remove, pause/resume, strict mode, statistics.
--
-- Every public function is SECURITY DEFINER with a pinned search_path and schema-qualified
-- references, so a caller's search_path (say, a shadowing public.processes) cannot redirect it.

--------------------------------------------------------------------------------
-- Internal helpers
--------------------------------------------------------------------------------

-- Raises P0002 when the colony does not exist; returns its row otherwise.
CREATE FUNCTION colony_assign._colony(colony text) RETURNS colony_assign.colonies
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_colony colony_assign.colonies;
BEGIN
    PERFORM colony_assign._check_name(colony, 'colony');
    SELECT * INTO found_colony FROM colony_assign.colonies c WHERE c.name = colony;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    RETURN found_colony;
END
$$;

-- Notifies every key that has assignable waiting work in the colony (resume, and anything
-- else that may have left waiters asleep). Returns how many processes that covers.
CREATE FUNCTION colony_assign._wake_colony(colony text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    total bigint := 0;
    key record;
BEGIN
    FOR key IN
        -- A process still waiting for its preferred location is announced on that location's key.
        SELECT p.executor_type,
               coalesce(p.location, CASE WHEN p.locality_until IS NOT NULL THEN p.preferred_location END) AS location,
               p.executor_names, count(*) AS n
        FROM colony_assign.processes p
        WHERE p.colony = _wake_colony.colony AND p.state = 0 AND p.pending_parents = 0
        GROUP BY 1, 2, 3
    LOOP
        PERFORM colony_assign._wake_group(colony, key.executor_type, key.location, key.executor_names, key.n);
        total := total + key.n;
    END LOOP;
    RETURN total;
END
$$;

-- True when this session may see the colony; raises P0002 (as for an unknown colony) when it
-- may not, and 42501 when it has not logged in (src/identity.rs).
CREATE FUNCTION colony_assign._visible_colony(colony text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT colony_assign._may_see(colony) THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END
$$;

--------------------------------------------------------------------------------
-- Public functions
--------------------------------------------------------------------------------

CREATE FUNCTION colony_assign.add_colony(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'colony');
    INSERT INTO colony_assign.colonies (name) VALUES (add_colony.name)
    ON CONFLICT ON CONSTRAINT colonies_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'colony % already exists', to_jsonb(name)::text USING ERRCODE = '23505';
    END IF;
END
$$;

CREATE FUNCTION colony_assign.remove_colony(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'colony');
    DELETE FROM colony_assign.colonies c WHERE c.name = remove_colony.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(name)::text USING ERRCODE = 'P0002';
    END IF;
    DELETE FROM colony_assign.executors e WHERE e.colony = remove_colony.name;
    DELETE FROM colony_assign.processes p WHERE p.colony = remove_colony.name;
    DELETE FROM colony_assign.idempotency_keys k WHERE k.colony = remove_colony.name;
    -- Coordinators drop cached tokens of this colony and answer its parked long-polls.
    PERFORM pg_notify('ca_control', jsonb_build_object('event', 'colony_removed', 'colony', name)::text);
END
$$;

CREATE FUNCTION colony_assign.pause(colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    UPDATE colony_assign.colonies c SET paused = true WHERE c.name = pause.colony;
END
$$;

CREATE FUNCTION colony_assign.resume(colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    UPDATE colony_assign.colonies c SET paused = false WHERE c.name = resume.colony AND c.paused;
    -- Waiters parked on any coordinator replica (or SQL-direct) wake through their own keys,
    -- unlike ColonyOS where only the replica that served the resume call wakes its waiters.
    IF FOUND THEN
        PERFORM colony_assign._wake_colony(colony);
    END IF;
END
$$;

CREATE FUNCTION colony_assign.set_strict(colony text, strict boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    IF strict IS NULL THEN
        RAISE EXCEPTION 'strict must not be NULL' USING ERRCODE = '22004';
    END IF;
    UPDATE colony_assign.colonies c SET strict = set_strict.strict WHERE c.name = set_strict.colony;
END
$$;

CREATE FUNCTION colony_assign.configure(colony text, stale_after interval DEFAULT NULL,
                                        retention interval DEFAULT NULL,
                                        claim_lease interval DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    IF stale_after <= interval '0' OR retention <= interval '0' OR claim_lease <= interval '0' THEN
        RAISE EXCEPTION 'stale_after, retention and claim_lease must be positive' USING ERRCODE = '22023';
    END IF;
    -- Bounded so that now() - retention (reap) and last_seen + stale_after stay timestamps:
    -- one colony's setting must not break reap() for every colony of the database.
    IF stale_after > interval '10 years' OR retention > interval '10 years' THEN
        RAISE EXCEPTION 'stale_after and retention must be at most 10 years' USING ERRCODE = '22023';
    END IF;
    -- A lease is added to a claim's time inside the claim (src/claim.rs), in microseconds.
    IF claim_lease > interval '1 day' THEN
        RAISE EXCEPTION 'claim_lease must be at most 1 day' USING ERRCODE = '22023';
    END IF;
    UPDATE colony_assign.colonies c
    SET stale_after = coalesce(configure.stale_after, c.stale_after),
        retention = coalesce(configure.retention, c.retention),
        claim_lease = coalesce(configure.claim_lease, c.claim_lease)
    WHERE c.name = configure.colony;
END
$$;

-- Each count is written so that a partial index answers it: stats() must not scan the whole
-- processes table of a busy colony.
CREATE FUNCTION colony_assign.stats(colony text,
    OUT paused boolean, OUT strict boolean, OUT executors bigint,
    OUT waiting bigint, OUT blocked bigint, OUT running bigint,
    OUT succeeded bigint, OUT failed bigint, OUT cancelled bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.paused, c.strict,
           (SELECT count(*) FROM colony_assign.executors e WHERE e.colony = c.name),
           (SELECT count(*) FROM colony_assign.processes p
             WHERE p.colony = c.name AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL)
         + (SELECT count(*) FROM colony_assign.processes p
             WHERE p.colony = c.name AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NOT NULL),
           (SELECT count(*) FROM colony_assign.processes p
             WHERE p.workflow_id IS NOT NULL AND p.colony = c.name AND p.state = 0 AND p.pending_parents > 0),
           (SELECT count(*) FROM colony_assign.processes p WHERE p.colony = c.name AND p.state = 1 AND p.started_at IS NOT NULL),
           finished.succeeded, finished.failed, finished.cancelled
    FROM colony_assign._colony(stats.colony) AS c
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE p.state = 2) AS succeeded,
               count(*) FILTER (WHERE p.state = 3) AS failed,
               count(*) FILTER (WHERE p.state = 4) AS cancelled
        FROM colony_assign.processes p WHERE p.colony = c.name AND p.state >= 2
    ) AS finished
    -- Another colony's stats look like an unknown colony's (src/identity.rs).
    WHERE colony_assign._visible_colony(c.name);
END;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:60
-- requires:
--   colonies
--   channel::_executor_channels

-- Executors: registration with a bearer token, removal, and the channels to LISTEN on.

-- Raises P0002 when the executor is not registered in the colony; returns its row otherwise.
CREATE FUNCTION colony_assign._executor(colony text, executor text) RETURNS colony_assign.executors
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_executor colony_assign.executors;
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._check_name(executor, 'executor');
    SELECT * INTO found_executor FROM colony_assign.executors e
        WHERE e.colony = _executor.colony AND e.name = _executor.executor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown executor % in colony %', to_jsonb(executor)::text, to_jsonb(colony)::text
            USING ERRCODE = 'P0002';
    END IF;
    RETURN found_executor;
END
$$;

-- The executor row, for a call made as that executor: 42501 unless this session may act as it
-- (src/identity.rs; checked before anything is revealed about it), then P0002 when it is not
-- registered (and 22004/22023 for a bad name).
CREATE FUNCTION colony_assign._as_executor(colony text, executor text) RETURNS colony_assign.executors
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM colony_assign._acting_as(colony, executor,
        (SELECT e.token_hash FROM colony_assign.executors e
         WHERE e.colony = _as_executor.colony AND e.name = _as_executor.executor));
    RETURN colony_assign._executor(colony, executor);
END
$$;

-- Puts RUNNING processes back to WAITING and notifies their keys. No retry is counted: the
-- process did not time out, its executor went away or never received it. The caller holds the
-- rows' locks (FOR NO KEY UPDATE in the statement that chose them), so each is still as it was
-- chosen; the state is checked again all the same. Returns how many went back.
CREATE FUNCTION colony_assign._requeue_ids(ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    requeued bigint;
BEGIN
    IF cardinality(ids) > 0 THEN
        WITH back AS (
            UPDATE colony_assign.processes p
            -- A requeued process may run anywhere: its wait for a preferred location was once.
            SET state = 0, assigned_executor = NULL, started_at = NULL, exec_deadline = NULL,
                wait_deadline = now() + p.max_wait_time * interval '1 second', locality_until = NULL,
                lease_until = NULL
            WHERE p.id = ANY (ids) AND p.state = 1
            RETURNING p.colony, p.executor_type, p.location, p.executor_names
        ), keys AS (
            SELECT b.colony, b.executor_type, b.location, b.executor_names, count(*) AS n
            FROM back b GROUP BY b.colony, b.executor_type, b.location, b.executor_names
        )
        SELECT coalesce(sum(k.n), 0) INTO requeued FROM keys k
        WHERE colony_assign._wake_group(k.colony, k.executor_type, k.location, k.executor_names, k.n) >= 0;
    END IF;
    RETURN coalesce(requeued, 0);
END
$$;

-- Puts an executor's RUNNING processes (all, or only `only_ids`) back to WAITING and notifies
-- their keys (_requeue_ids). Returns how many went back.
CREATE FUNCTION colony_assign._requeue_running(colony text, executor text, only_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT colony_assign._requeue_ids(ARRAY(
        SELECT p.id FROM colony_assign.processes p
        WHERE p.colony = _requeue_running.colony AND p.assigned_executor = _requeue_running.executor
          AND p.state = 1 AND p.started_at IS NOT NULL -- (processes_running_idx)
          AND (_requeue_running.only_ids IS NULL OR p.id = ANY (_requeue_running.only_ids))
        -- Waits for a close or fail under way; a row it ended no longer matches.
        FOR NO KEY UPDATE));
END;

CREATE FUNCTION colony_assign.add_executor(colony text, name text, executor_type text,
                                           location text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- 244 random bits from the server's strong RNG (gen_random_uuid is built in since PG 13);
    -- the prefix lets secret scanners recognise a leaked token.
    token text := 'cat_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._check_name(name, 'executor');
    PERFORM colony_assign._check_name(executor_type, 'executor_type');
    -- '' means "no location", as an empty conditions.locationname does.
    IF location = '' THEN
        location := NULL;
    END IF;
    IF location IS NOT NULL THEN
        PERFORM colony_assign._check_name(location, 'location');
    END IF;
    INSERT INTO colony_assign.executors (colony, name, executor_type, location, token_hash)
    VALUES (colony, name, executor_type, location, sha256(convert_to(token, 'UTF8')))
    ON CONFLICT ON CONSTRAINT executors_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'executor % already exists in colony %', to_jsonb(name)::text, to_jsonb(colony)::text
            USING ERRCODE = '23505';
    END IF;
    RETURN token;
END
$$;

CREATE FUNCTION colony_assign.remove_executor(colony text, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._executor(colony, name);
    DELETE FROM colony_assign.executors e WHERE e.colony = remove_executor.colony AND e.name = remove_executor.name;
    PERFORM colony_assign._requeue_running(colony, name);
    -- Coordinators drop the cached token and answer the executor's parked long-polls.
    PERFORM pg_notify('ca_control',
        jsonb_build_object('event', 'executor_removed', 'colony', colony, 'executor', name)::text);
END
$$;

CREATE FUNCTION colony_assign.channels(colony text, executor text) RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e colony_assign.executors;
BEGIN
    PERFORM colony_assign._check_name(colony, 'colony'), colony_assign._check_name(executor, 'executor');
    -- What an executor listens on is its own business (and the coordinator's).
    IF NOT colony_assign._may_see(colony) THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    e := colony_assign._executor(colony, executor);
    RETURN QUERY SELECT unnest(colony_assign._executor_channels(e.colony, e.executor_type, e.location, e.name));
END
$$;

-- Liveness, and the acknowledgement of the claim leases of `processes` (docs/RELIABILITY.md,
-- defect 2): those of them RUNNING for this executor; other ids are ignored. NULL or empty
-- acknowledges nothing (a bare liveness heartbeat must not acknowledge a claim whose answer was
-- lost) and writes no process.
CREATE FUNCTION colony_assign.heartbeat(colony text, executor text, processes bigint[] DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    PERFORM colony_assign._as_executor(colony, executor);
    UPDATE colony_assign.executors e SET last_seen = now(), stale_since = NULL
    WHERE e.colony = heartbeat.colony AND e.name = heartbeat.executor;
    IF cardinality(heartbeat.processes) > 0 THEN
        -- The named rows by id (or the leased index, when that is smaller); writes only rows
        -- that still carry a lease (once per claim).
        UPDATE colony_assign.processes p SET lease_until = NULL
        WHERE p.id = ANY (heartbeat.processes) AND p.state = 1
          AND p.colony = heartbeat.colony AND p.assigned_executor = heartbeat.executor
          AND p.lease_until IS NOT NULL;
    END IF;
END
$$;

-- The processes RUNNING for an executor, oldest claim first: those it holds, and any claim
-- whose answer it never received. A SQL-direct assign() commits before its answer is sent, so a
-- session that dies in between (crash restart, failover, a cut link) leaves a claim the
-- executor does not know of; SQL-direct claims carry no lease (docs/RELIABILITY.md, defect 2).
-- An executor calls this on each new session, before its first assign(), and runs (or fails)
-- what it does not hold. Reads processes_running_idx only; writes nothing.
CREATE FUNCTION colony_assign.running(colony text, executor text) RETURNS SETOF colony_assign.process
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
ROWS 10
AS $$
BEGIN
    PERFORM colony_assign._as_executor(colony, executor);
    RETURN QUERY
        SELECT (colony_assign._public(p)).*
        FROM colony_assign.processes p
        WHERE p.colony = running.colony AND p.assigned_executor = running.executor
          AND p.state = 1 AND p.started_at IS NOT NULL -- (processes_running_idx)
        ORDER BY p.started_at, p.id;
END
$$;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:66
-- requires:
--   executors

-- Functions for the HTTP coordinator (granted to colony_assign_coordinator): authenticating
-- bearer tokens, giving back claims that never reached their executor, and the catch-up check
-- that bounds how long a lost notification can delay a parked executor.

-- The executor a bearer token belongs to; no row for an unknown token. Only the SHA-256 of a
-- token is stored, so the lookup hashes the presented token the same way.
CREATE FUNCTION colony_assign.authenticate(token text,
    OUT colony text, OUT executor text, OUT executor_type text, OUT location text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT e.colony, e.name, e.executor_type, e.location
    FROM colony_assign.executors e
    WHERE e.token_hash = sha256(convert_to(authenticate.token, 'UTF8'));
END
$$;

-- Puts processes claimed by `executor` back to WAITING (no retry counted) and notifies their
-- keys: for a long-poll whose response could not be delivered. Returns how many went back.
CREATE FUNCTION colony_assign.release(colony text, executor text, process_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN colony_assign._requeue_running(colony, executor, coalesce(process_ids, '{}'));
END
$$;

-- Catch-up: for each key (parallel arrays, one entry per key), how many processes are
-- assignable right now, capped at `cap` (callers only need min(waiting, parked waiters)).
-- executors[i] NULL: the untargeted key of (colonies[i], executor_types[i], locations[i]),
-- a NULL location being the broadcast key; a location's key also counts the processes still
-- waiting for it as their preferred location. executors[i] set: that executor's name key, with
-- locations[i] its location. Paused colonies have nothing assignable.
CREATE FUNCTION colony_assign.backlog(colonies text[], executor_types text[], locations text[],
                                      executors text[], cap integer DEFAULT 1000)
RETURNS TABLE (key_index integer, waiting integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
BEGIN ATOMIC
    SELECT k.i::integer, counted.n::integer
    FROM unnest(backlog.colonies, backlog.executor_types, backlog.locations, backlog.executors)
         WITH ORDINALITY AS k(colony, executor_type, location, executor, i)
    JOIN colony_assign.colonies c ON c.name = k.colony AND NOT c.paused
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT 1 FROM colony_assign.processes p
            WHERE k.executor IS NULL AND k.location IS NOT NULL
              AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL
              AND p.colony = k.colony AND p.executor_type = k.executor_type AND p.location = k.location
            UNION ALL
            SELECT 1 FROM colony_assign.processes p
            WHERE k.executor IS NULL AND k.location IS NOT NULL
              AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL
              AND p.colony = k.colony AND p.executor_type = k.executor_type AND p.location IS NULL
              AND p.locality_until IS NOT NULL AND p.preferred_location = k.location
            UNION ALL
            SELECT 1 FROM colony_assign.processes p
            WHERE k.executor IS NULL AND k.location IS NULL
              AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL
              AND p.colony = k.colony AND p.executor_type = k.executor_type AND p.location IS NULL
              AND p.locality_until IS NULL
            UNION ALL
            SELECT 1 FROM colony_assign.processes p
            WHERE k.executor IS NOT NULL
              AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NOT NULL
              AND p.executor_names @> ARRAY[k.executor]
              AND p.colony = k.colony AND p.executor_type = k.executor_type
              AND (p.location IS NULL OR p.location = k.location)
            LIMIT backlog.cap
        ) AS assignable
    ) AS counted
    WHERE counted.n > 0;
END;

-- Whether this database's background worker (relay and reaper) is running; coordinators reap
-- themselves when it is not.
CREATE FUNCTION colony_assign.worker_active() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT EXISTS (SELECT FROM pg_stat_activity a
                   WHERE a.backend_type = 'colony_assign worker' AND a.datname = current_database());
END;

-- Coalesced calls: a replica that has several long-polls wanting work, or several close
-- requests, at the same moment sends them as one call (one round trip, one commit). Each
-- request is served as the single call would serve it, in array order, and reports its own
-- failure (SQLSTATE and message, as the single call would raise them) without sinking the
-- others. In strict colonies one batch holds the (colony, type) lock once for all its claims.
CREATE FUNCTION colony_assign.assign_batch(colonies text[], executors text[], max_counts integer[])
RETURNS TABLE (request integer, process colony_assign.process, sqlstate text, message text)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 10
AS 'MODULE_PATHNAME', 'colony_assign_assign_batch';

CREATE FUNCTION colony_assign.close_batch(process_ids bigint[], executors text[], outputs jsonb[],
                                          colonies text[])
RETURNS TABLE (request integer, sqlstate text, message text)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 10
AS 'MODULE_PATHNAME', 'colony_assign_close_batch';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:71
-- requires:
--   executors
--   identity::_trusted
--   identity::_session_colony
--   identity::_acting_as

-- Logs: progress messages an executor writes while it runs a process.

-- Largest log message accepted, in bytes. Over it: SQLSTATE 54000.
CREATE FUNCTION colony_assign._max_log_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 16384;

CREATE FUNCTION colony_assign.log(process_id bigint, executor text, message text, colony text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    process_colony text;
    leased boolean;
BEGIN
    PERFORM colony_assign._check_name(executor, 'executor');
    -- Only as the executor this session may act as (src/identity.rs); within its colony.
    IF NOT colony_assign._trusted() THEN
        colony := coalesce(log.colony, colony_assign._session_colony());
        PERFORM colony_assign._acting_as(colony, executor,
            (SELECT e.token_hash FROM colony_assign.executors e WHERE e.colony = log.colony AND e.name = log.executor));
    END IF;
    IF message IS NULL THEN
        RAISE EXCEPTION 'message must not be NULL' USING ERRCODE = '22004';
    ELSIF octet_length(message) > colony_assign._max_log_bytes() THEN
        RAISE EXCEPTION 'message is % bytes, at most %', octet_length(message), colony_assign._max_log_bytes()
            USING ERRCODE = '54000';
    END IF;
    SELECT p.colony, p.lease_until IS NOT NULL INTO process_colony, leased FROM colony_assign.processes p
    WHERE p.id = process_id AND p.state = 1 AND p.assigned_executor = executor
      AND (log.colony IS NULL OR p.colony = log.colony);
    IF NOT FOUND THEN
        PERFORM colony_assign._explain_not_running(process_id, executor, colony);
    END IF;
    -- The executor has it: its claim lease is acknowledged (the first log only).
    IF leased THEN
        UPDATE colony_assign.processes p SET lease_until = NULL
        WHERE p.id = process_id AND p.state = 1 AND p.assigned_executor = executor;
    END IF;
    INSERT INTO colony_assign.logs (process_id, executor, message) VALUES (process_id, executor, message);
    PERFORM colony_assign._touch(process_colony, executor);
END
$$;

CREATE FUNCTION colony_assign.logs(process_id bigint)
RETURNS TABLE (logged_at timestamptz, executor text, message text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    process_colony text;
BEGIN
    SELECT p.colony INTO process_colony FROM colony_assign.processes p WHERE p.id = logs.process_id;
    -- Another colony's process looks exactly like none (src/identity.rs).
    IF NOT FOUND OR NOT colony_assign._may_see(process_colony) THEN
        RAISE EXCEPTION 'unknown process %', logs.process_id USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY SELECT l.logged_at, l.executor, l.message FROM colony_assign.logs l
        WHERE l.process_id = logs.process_id ORDER BY l.id;
END
$$;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:81
-- requires:
--   colonies
--   executors
--   identity

-- Administration and read API: what the coordinator's admin routes (docs/coordinator.md) and
-- operators in SQL use to list colonies, executors and processes, and to administer colonies
-- on behalf of an admin token.
--
-- Listings are pages: `(items jsonb, next text)`, where `items` is a JSON array in the shape
-- the HTTP API returns and `next` is an opaque cursor to pass back as `after` (NULL on the last
-- page). Pages are keyset pages: each starts where the cursor points in an index, so a page
-- costs the same at the millionth row as at the first, and rows inserted meanwhile never shift
-- a page or make one repeat a row.
--
-- Process listings read only indexes the hot path maintains anyway (the primary key,
-- processes_finished_idx, processes_running_idx, processes_workflow_idx). An index of its own
-- ((colony, submitted_at, id) was tried) would cost every process three more index insertions
-- (submit, claim and close: each update of a process is a non-HOT update), measured at 10-20%
-- fewer claim+close cycles per second, for a listing an operator runs now and then.
--
-- The admin_* functions exist for the coordinator. Its role (colony_assign_coordinator) holds no
-- admin power of its own: each admin_* call carries the admin's token, which is checked here, in
-- the same transaction as the change, together with the token's colony scope. A coordinator's
-- cached view of a token (removed a moment ago, say) therefore never lets a change through.

--------------------------------------------------------------------------------
-- Internal helpers
--------------------------------------------------------------------------------

-- The admin a token belongs to; 28000 for an unknown (or removed) token, 22004 for NULL.
CREATE FUNCTION colony_assign._admin(token text) RETURNS colony_assign.admins
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_admin colony_assign.admins;
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'admin_token must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO found_admin FROM colony_assign.admins a
    WHERE a.token_hash = sha256(convert_to(_admin.token, 'UTF8'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown admin token' USING ERRCODE = '28000';
    END IF;
    RETURN found_admin;
END
$$;

-- The admin of `token`, which must reach `colony`: a colony outside a scoped token's list looks
-- exactly like one that does not exist (P0002), as it does to executors.
CREATE FUNCTION colony_assign._admin_of(token text, colony text) RETURNS colony_assign.admins
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_admin colony_assign.admins := colony_assign._admin(token);
BEGIN
    PERFORM colony_assign._check_name(colony, 'colony');
    IF found_admin.colonies IS NOT NULL AND NOT (colony = ANY (found_admin.colonies)) THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    RETURN found_admin;
END
$$;

-- Rows a process listing examines per page at most, matching or not: process ids in
-- submission order, finished processes in end order. What keeps a page with a rare filter (a
-- state, a type, a small colony among big ones) from walking the table: a page that runs out
-- of it before it is full ends early, with a cursor to go on from.
CREATE FUNCTION colony_assign._list_scan_budget() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 10000;

-- A page size: 1..1000 (22023 otherwise, 22004 for NULL).
CREATE FUNCTION colony_assign._check_page_size(max_count integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF max_count IS NULL THEN
        RAISE EXCEPTION 'max_count must not be NULL' USING ERRCODE = '22004';
    ELSIF max_count NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 1000, not %', max_count USING ERRCODE = '22023';
    END IF;
END
$$;

-- A process listing's cursor, the position after which the next page starts: `s:<id>` in
-- submission order, `e:<ended_at in microseconds since the epoch>:<id>` in end order. Integer
-- microseconds make the position exact, whatever the session's time zone or DateStyle.
CREATE FUNCTION colony_assign._process_cursor(order_by text, at timestamptz, id bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN order_by = 'ended' THEN 'e:' || (extract(epoch FROM at) * 1000000)::bigint || ':' || id
            ELSE 's:' || id END;

--------------------------------------------------------------------------------
-- For the coordinator: admin tokens and what only admins may do
--------------------------------------------------------------------------------

-- The admin a bearer token belongs to and the colonies it reaches (NULL = every colony); no row
-- for an unknown token. Only the SHA-256 of a token is stored, so the presented token is
-- hashed the same way.
CREATE FUNCTION colony_assign.authenticate_admin(token text, OUT admin text, OUT colonies text[])
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT a.name, a.colonies FROM colony_assign.admins a
    WHERE a.token_hash = sha256(convert_to(authenticate_admin.token, 'UTF8'));
END;

-- A scoped admin may add only colonies its list names (say, to re-create one it removed).
CREATE FUNCTION colony_assign.admin_add_colony(admin_token text, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_admin colony_assign.admins := colony_assign._admin(admin_token);
BEGIN
    PERFORM colony_assign._check_name(name, 'colony');
    IF found_admin.colonies IS NOT NULL AND NOT (name = ANY (found_admin.colonies)) THEN
        RAISE EXCEPTION 'admin % may only add the colonies its token names, not %',
            to_jsonb(found_admin.name)::text, to_jsonb(name)::text USING ERRCODE = '42501';
    END IF;
    PERFORM colony_assign.add_colony(name);
END
$$;

CREATE FUNCTION colony_assign.admin_remove_colony(admin_token text, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, name);
    PERFORM colony_assign.remove_colony(name);
END
$$;

CREATE FUNCTION colony_assign.admin_add_executor(admin_token text, colony text, name text,
                                                 executor_type text, location text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, colony);
    RETURN colony_assign.add_executor(colony, name, executor_type, location);
END
$$;

CREATE FUNCTION colony_assign.admin_remove_executor(admin_token text, colony text, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, colony);
    PERFORM colony_assign.remove_executor(colony, name);
END
$$;

CREATE FUNCTION colony_assign.admin_pause(admin_token text, colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, colony);
    PERFORM colony_assign.pause(colony);
END
$$;

CREATE FUNCTION colony_assign.admin_resume(admin_token text, colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, colony);
    PERFORM colony_assign.resume(colony);
END
$$;

CREATE FUNCTION colony_assign.admin_set_strict(admin_token text, colony text, strict boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._admin_of(admin_token, colony);
    PERFORM colony_assign.set_strict(colony, strict);
END
$$;

--------------------------------------------------------------------------------
-- Listings
--------------------------------------------------------------------------------

-- Colonies by name, those this session may see and, when `within` is given, only those (the
-- coordinator passes a scoped admin token's list). Cursor: the last name.
CREATE FUNCTION colony_assign.list_colonies(within text[] DEFAULT NULL, after text DEFAULT NULL,
                                            max_count integer DEFAULT 100,
                                            OUT items jsonb, OUT next text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    names text[];
BEGIN
    PERFORM colony_assign._check_page_size(max_count);
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'name', c.name, 'paused', c.paused, 'strict', c.strict,
               'stale_after_s', extract(epoch FROM c.stale_after)::double precision,
               'retention_s', extract(epoch FROM c.retention)::double precision,
               'created_at', c.created_at) ORDER BY c.name), '[]'),
           array_agg(c.name ORDER BY c.name)
    INTO items, names
    FROM (
        SELECT k.* FROM colony_assign.colonies k
        WHERE (list_colonies.after IS NULL OR k.name > list_colonies.after)
          AND (list_colonies.within IS NULL OR k.name = ANY (list_colonies.within))
          AND colony_assign._may_see(k.name)
        ORDER BY k.name
        LIMIT list_colonies.max_count
    ) AS c;
    next := CASE WHEN cardinality(names) = max_count THEN names[max_count] END;
END
$$;

-- A colony's executors by name, with liveness: `alive` while it has been seen within its
-- colony's stale_after and the reaper has not marked it stale; `running` = processes it runs.
-- Cursor: the last name.
CREATE FUNCTION colony_assign.list_executors(colony text, after text DEFAULT NULL,
                                             max_count integer DEFAULT 100,
                                             OUT items jsonb, OUT next text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_colony colony_assign.colonies := colony_assign._colony(colony);
    names text[];
BEGIN
    PERFORM colony_assign._visible_colony(colony);
    PERFORM colony_assign._check_page_size(max_count);
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'name', e.name, 'executor_type', e.executor_type, 'location', e.location,
               'registered_at', e.registered_at, 'last_seen', e.last_seen,
               'stale_since', e.stale_since,
               'alive', e.stale_since IS NULL AND e.last_seen >= now() - found_colony.stale_after,
               'running', (SELECT count(*) FROM colony_assign.processes p
                           WHERE p.colony = e.colony AND p.assigned_executor = e.name
                             AND p.state = 1 AND p.started_at IS NOT NULL -- (processes_running_idx)
                          )) ORDER BY e.name), '[]'),
           array_agg(e.name ORDER BY e.name)
    INTO items, names
    FROM (
        SELECT x.* FROM colony_assign.executors x
        WHERE x.colony = list_executors.colony
          AND (list_executors.after IS NULL OR x.name > list_executors.after)
        ORDER BY x.name
        LIMIT list_executors.max_count
    ) AS e;
    next := CASE WHEN cardinality(names) = max_count THEN names[max_count] END;
END
$$;

-- A colony's processes, newest first, as summaries (a process without spec, input, output and
-- errors: those can be large; process(id) has them). Filters: state, executor type, location,
-- assigned executor, workflow, and a time range [since, until).
--   order_by 'submitted' (default): by id descending (ids increase with submission), over the
--     primary key; the time range bounds submitted_at.
--   order_by 'ended': finished processes (SUCCESS, FAILED, CANCELLED) by (ended_at, id)
--     descending, over processes_finished_idx; the time range bounds ended_at (an index range).
-- A page examines at most _list_scan_budget() rows: in submission order the ids below the
-- cursor (of every colony: the primary key has no colony), in end order the colony's finished
-- processes. When the filters match few of them the page ends early, even empty, with a `next`
-- cursor; no page walks the table. Two filters read their own small index instead, whole:
-- running processes (processes_running_idx) and a workflow's (processes_workflow_idx).
CREATE FUNCTION colony_assign.list_processes(colony text, state integer DEFAULT NULL,
                                             executor_type text DEFAULT NULL,
                                             location text DEFAULT NULL,
                                             executor text DEFAULT NULL,
                                             workflow_id bigint DEFAULT NULL,
                                             since timestamptz DEFAULT NULL,
                                             until timestamptz DEFAULT NULL,
                                             order_by text DEFAULT 'submitted',
                                             after text DEFAULT NULL,
                                             max_count integer DEFAULT 100,
                                             OUT items jsonb, OUT next text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Every statement here reads an index range in order, or a small index whole. Without these,
-- a range the planner underestimates (a row comparison's selectivity is a guess) can make a
-- bitmap of the whole range and a sort of it look cheaper than reading a page's worth in
-- order: a page would then cost as much as the colony.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    budget integer := colony_assign._list_scan_budget();
    -- Absent bounds become infinities, so the statements below need no `x IS NULL OR ...`
    -- (which could not bound an index scan).
    cursor_at timestamptz := 'infinity';
    cursor_id bigint := 9223372036854775807;
    lower_at timestamptz := coalesce(since, '-infinity');
    upper_at timestamptz := coalesce(until, 'infinity');
    lowest_id bigint;
    parts text[];
    ids bigint[] := '{}';
    examined integer := 0;
    scanned integer;
    chunk integer;
    r record;
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._visible_colony(colony);
    PERFORM colony_assign._check_page_size(max_count);
    IF order_by IS NULL OR order_by NOT IN ('submitted', 'ended') THEN
        RAISE EXCEPTION 'order_by must be ''submitted'' or ''ended'', not %', coalesce(to_jsonb(order_by)::text, 'NULL')
            USING ERRCODE = '22023';
    ELSIF state NOT BETWEEN 0 AND 4 THEN
        RAISE EXCEPTION 'state must be between 0 (WAITING) and 4 (CANCELLED), not %', state USING ERRCODE = '22023';
    ELSIF order_by = 'ended' AND state < 2 THEN
        RAISE EXCEPTION 'order_by ''ended'' lists finished processes; state % has not ended', colony_assign._state_name(state)
            USING ERRCODE = '22023';
    END IF;
    IF after IS NOT NULL THEN
        -- Only cursors this function made, for this order.
        parts := CASE WHEN order_by = 'ended' THEN regexp_match(after, '^e:(-?[0-9]{1,19}):([0-9]{1,19})$')
                      ELSE regexp_match(after, '^s:([0-9]{1,19})$') END;
        IF parts IS NULL THEN
            RAISE EXCEPTION 'after is not a cursor of this listing: %', to_jsonb(after)::text USING ERRCODE = '22023';
        END IF;
        BEGIN
            IF order_by = 'ended' THEN
                cursor_at := timestamptz 'epoch' + (parts[1] || ' microseconds')::interval;
                cursor_id := parts[2]::bigint;
            ELSE
                cursor_id := parts[1]::bigint;
            END IF;
        EXCEPTION WHEN numeric_value_out_of_range OR datetime_field_overflow OR interval_field_overflow THEN
            RAISE EXCEPTION 'after is not a cursor of this listing: %', to_jsonb(after)::text USING ERRCODE = '22023';
        END;
    END IF;

    IF workflow_id IS NOT NULL OR state = 1 THEN
        -- A workflow's members, or the colony's running processes: few (a workflow's size, the
        -- colony's executors' claims), read whole from their own index and sorted. MATERIALIZED
        -- keeps the planner from reading the primary key in order instead, through the table.
        WITH few AS MATERIALIZED (
            SELECT p.id, p.submitted_at, p.ended_at, p.state, p.executor_type, p.location, p.assigned_executor
            FROM colony_assign.processes p
            WHERE list_processes.workflow_id IS NOT NULL AND p.workflow_id = list_processes.workflow_id
              AND p.colony = list_processes.colony
            UNION ALL
            SELECT p.id, p.submitted_at, p.ended_at, p.state, p.executor_type, p.location, p.assigned_executor
            FROM colony_assign.processes p
            WHERE list_processes.workflow_id IS NULL
              AND p.colony = list_processes.colony AND p.state = 1 AND p.started_at IS NOT NULL -- (processes_running_idx)
        )
        SELECT coalesce(array_agg(f.id ORDER BY f.at DESC, f.id DESC), '{}') INTO ids
        FROM (
            SELECT w.id, CASE WHEN order_by = 'ended' THEN w.ended_at ELSE NULL END AS at
            FROM few w
            WHERE (list_processes.state IS NULL OR w.state = list_processes.state)
              AND (order_by = 'submitted' OR w.state >= 2)
              AND (list_processes.executor_type IS NULL OR w.executor_type = list_processes.executor_type)
              AND (list_processes.location IS NULL OR w.location = list_processes.location)
              AND (list_processes.executor IS NULL OR w.assigned_executor = list_processes.executor)
              AND CASE WHEN order_by = 'ended' THEN (w.ended_at, w.id) < (cursor_at, cursor_id) AND w.ended_at >= lower_at AND w.ended_at < upper_at
                       ELSE w.id < cursor_id AND w.submitted_at >= lower_at AND w.submitted_at < upper_at END
            ORDER BY 2 DESC NULLS LAST, 1 DESC
            LIMIT max_count
        ) AS f;
        IF cardinality(ids) = max_count THEN
            SELECT colony_assign._process_cursor(order_by, p.ended_at, p.id) INTO next
            FROM colony_assign.processes p WHERE p.id = ids[max_count];
        END IF;

    ELSIF order_by = 'submitted' THEN
        -- One range of the primary key: the `budget` ids below the cursor, of every colony,
        -- filtered; a page that does not fill ends at the range's start.
        IF after IS NULL THEN
            SELECT max(p.id) + 1 INTO cursor_id FROM colony_assign.processes p;
        END IF;
        SELECT coalesce(array_agg(x.id ORDER BY x.id DESC), '{}') INTO ids
        FROM (
            SELECT p.id FROM colony_assign.processes p
            WHERE p.id < cursor_id AND p.id >= cursor_id - budget
              AND p.colony = list_processes.colony
              AND p.submitted_at >= lower_at AND p.submitted_at < upper_at
              AND (list_processes.state IS NULL OR p.state = list_processes.state)
              AND (list_processes.executor_type IS NULL OR p.executor_type = list_processes.executor_type)
              AND (list_processes.location IS NULL OR p.location = list_processes.location)
              AND (list_processes.executor IS NULL OR p.assigned_executor = list_processes.executor)
            ORDER BY p.id DESC
            LIMIT max_count
        ) AS x;
        IF cardinality(ids) = max_count THEN
            next := 's:' || ids[max_count];
        ELSE
            -- A page that did not fill: more only when the range did not reach the first id.
            SELECT min(p.id) INTO lowest_id FROM colony_assign.processes p;
            IF cursor_id - budget > lowest_id THEN
                next := 's:' || (cursor_id - budget);
            END IF;
        END IF;

    ELSE
        -- The colony's finished processes in end order, statement after statement from the last
        -- row examined, until the page is full, the budget is used up or the range ends. Each
        -- statement is planned with its actual bounds (EXECUTE): a cached generic plan could not
        -- tell a short ordered index scan from a sort of the whole range. ended_at <= $2 repeats
        -- the row comparison's first column so that it bounds the index scan
        -- (processes_finished_idx has no id to compare as a row).
        LOOP
            -- Small enough that the planner reads the index in order, large enough that a page
            -- takes few statements.
            chunk := least(1000, budget - examined);
            scanned := 0;
            FOR r IN EXECUTE
                'SELECT p.id, p.ended_at AS at, p.state, p.executor_type, p.location, p.assigned_executor
                 FROM colony_assign.processes p
                 WHERE p.colony = $1 AND p.state >= 2
                   AND p.ended_at <= $2 AND (p.ended_at, p.id) < ($2, $3)
                   AND p.ended_at >= $4 AND p.ended_at < $5
                 ORDER BY p.ended_at DESC, p.id DESC LIMIT $6'
                USING colony, cursor_at, cursor_id, lower_at, upper_at, chunk
            LOOP
                scanned := scanned + 1;
                examined := examined + 1;
                cursor_at := r.at;
                cursor_id := r.id;
                CONTINUE WHEN (list_processes.state IS NOT NULL AND r.state <> list_processes.state)
                    OR (list_processes.executor_type IS NOT NULL AND r.executor_type <> list_processes.executor_type)
                    OR (list_processes.location IS NOT NULL AND r.location IS DISTINCT FROM list_processes.location)
                    OR (list_processes.executor IS NOT NULL AND r.assigned_executor IS DISTINCT FROM list_processes.executor);
                ids := ids || r.id;
                EXIT WHEN cardinality(ids) = max_count;
            END LOOP;
            EXIT WHEN cardinality(ids) = max_count OR examined >= budget OR scanned < chunk;
        END LOOP;
        -- A full page, or a budget used up, goes on after the last row examined.
        IF cardinality(ids) = max_count OR examined >= budget THEN
            next := colony_assign._process_cursor(order_by, cursor_at, cursor_id);
        END IF;
    END IF;

    SELECT coalesce(jsonb_agg(to_jsonb(colony_assign._public(p)) - ARRAY['spec', 'input', 'output', 'errors']
                              ORDER BY CASE WHEN order_by = 'ended' THEN p.ended_at END DESC NULLS LAST,
                                       p.id DESC), '[]')
    INTO items
    FROM colony_assign.processes p WHERE p.id = ANY (ids);
END
$$;

-- A colony's queues: per (executor type, location) the processes assignable now and since when
-- the oldest of them waits. `location` NULL is the location-less queue (processes any executor
-- of the type may take; those still waiting for a preferred location included); processes
-- that name executors count in their type and location too. Blocked workflow children are not
-- assignable and not counted (stats() has them). Each arm reads one partial index's range.
CREATE FUNCTION colony_assign.queues(colony text)
RETURNS TABLE (executor_type text, location text, waiting bigint, oldest_submitted_at timestamptz,
               oldest_age_s double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._visible_colony(colony);
    RETURN QUERY
    WITH arms AS (
        SELECT p.executor_type, p.location, count(*) AS n, min(p.id) AS first_id
        FROM colony_assign.processes p
        WHERE p.colony = queues.colony AND p.state = 0 AND p.pending_parents = 0
          AND p.executor_names IS NULL AND p.location IS NOT NULL -- (processes_assign_located_idx)
        GROUP BY p.executor_type, p.location
        UNION ALL
        SELECT p.executor_type, NULL, count(*), min(p.id)
        FROM colony_assign.processes p
        WHERE p.colony = queues.colony AND p.state = 0 AND p.pending_parents = 0
          AND p.executor_names IS NULL AND p.location IS NULL
          AND p.locality_until IS NULL -- (processes_assign_anywhere_idx)
        GROUP BY p.executor_type
        UNION ALL
        SELECT p.executor_type, NULL, count(*), min(p.id)
        FROM colony_assign.processes p
        WHERE p.colony = queues.colony AND p.state = 0 AND p.pending_parents = 0
          AND p.executor_names IS NULL AND p.location IS NULL
          AND p.locality_until IS NOT NULL -- (processes_assign_preferred_idx)
        GROUP BY p.executor_type
        UNION ALL
        SELECT p.executor_type, p.location, count(*), min(p.id)
        FROM colony_assign.processes p
        WHERE p.colony = queues.colony AND p.state = 0 AND p.pending_parents = 0
          AND p.executor_names IS NOT NULL
        GROUP BY p.executor_type, p.location
    ), keys AS (
        SELECT a.executor_type, a.location, sum(a.n)::bigint AS n, min(a.first_id) AS first_id
        FROM arms a GROUP BY a.executor_type, a.location
    )
    SELECT k.executor_type, k.location, k.n, o.submitted_at,
           extract(epoch FROM now() - o.submitted_at)::double precision
    FROM keys k
    JOIN colony_assign.processes o ON o.id = k.first_id
    ORDER BY k.executor_type, k.location NULLS FIRST;
END
$$;

--------------------------------------------------------------------------------
-- Privileges and comments
--------------------------------------------------------------------------------
-- PostgreSQL grants EXECUTE to PUBLIC by default; finalize.sql revokes it schema-wide, and it
-- is revoked here too so these grants do not depend on which file runs last.
REVOKE ALL ON FUNCTION
    colony_assign._admin(text),
    colony_assign._admin_of(text, text),
    colony_assign._list_scan_budget(),
    colony_assign._check_page_size(integer),
    colony_assign._process_cursor(text, timestamptz, bigint),
    colony_assign.authenticate_admin(text),
    colony_assign.admin_add_colony(text, text),
    colony_assign.admin_remove_colony(text, text),
    colony_assign.admin_add_executor(text, text, text, text, text),
    colony_assign.admin_remove_executor(text, text, text),
    colony_assign.admin_pause(text, text),
    colony_assign.admin_resume(text, text),
    colony_assign.admin_set_strict(text, text, boolean),
    colony_assign.list_colonies(text[], text, integer),
    colony_assign.list_executors(text, text, integer),
    colony_assign.list_processes(text, integer, text, text, text, bigint, timestamptz, timestamptz, text, text, integer),
    colony_assign.queues(text)
FROM PUBLIC;

-- Reading is for whoever may inspect a colony (submitters, and through role membership the
-- coordinator and admins); logged-in sessions see only their colonies.
GRANT EXECUTE ON FUNCTION
    colony_assign.list_colonies(text[], text, integer),
    colony_assign.list_executors(text, text, integer),
    colony_assign.list_processes(text, integer, text, text, text, bigint, timestamptz, timestamptz, text, text, integer),
    colony_assign.queues(text)
TO colony_assign_submitter;

-- Admin tokens act through the coordinator; admins in SQL call add_colony() and the rest.
GRANT EXECUTE ON FUNCTION
    colony_assign.authenticate_admin(text),
    colony_assign.admin_add_colony(text, text),
    colony_assign.admin_remove_colony(text, text),
    colony_assign.admin_add_executor(text, text, text, text, text),
    colony_assign.admin_remove_executor(text, text, text),
    colony_assign.admin_pause(text, text),
    colony_assign.admin_resume(text, text),
    colony_assign.admin_set_strict(text, text, boolean)
TO colony_assign_coordinator;

COMMENT ON FUNCTION colony_assign._admin(text) IS 'Internal: the admin row of a token, or 28000.';
COMMENT ON FUNCTION colony_assign._admin_of(text, text) IS
    'Internal: the admin row of a token that reaches the colony; 28000 unknown token, P0002 colony out of its scope.';
COMMENT ON FUNCTION colony_assign._list_scan_budget() IS 'Internal: rows list_processes() examines per page at most.';
COMMENT ON FUNCTION colony_assign._check_page_size(integer) IS 'Internal: raises 22004/22023 unless 1 <= max_count <= 1000.';
COMMENT ON FUNCTION colony_assign._process_cursor(text, timestamptz, bigint) IS 'Internal: the cursor of a process listing position.';
COMMENT ON FUNCTION colony_assign.authenticate_admin(text) IS
    'Coordinator: the admin (name, colonies; NULL = every colony) a bearer token belongs to; no row for an unknown token.';
COMMENT ON FUNCTION colony_assign.admin_add_colony(text, text) IS
    'Coordinator, for an admin token: add_colony(). Errors: 28000 unknown token, 42501 a scoped token and a colony it does not name, and those of add_colony().';
COMMENT ON FUNCTION colony_assign.admin_remove_colony(text, text) IS
    'Coordinator, for an admin token: remove_colony(). Errors: 28000 unknown token, P0002 unknown colony or out of the token''s scope.';
COMMENT ON FUNCTION colony_assign.admin_add_executor(text, text, text, text, text) IS
    'Coordinator, for an admin token: add_executor(); returns the executor''s token. Errors: 28000 unknown token, P0002 colony out of scope, and those of add_executor().';
COMMENT ON FUNCTION colony_assign.admin_remove_executor(text, text, text) IS
    'Coordinator, for an admin token: remove_executor(). Errors: 28000 unknown token, P0002 colony out of scope or unknown executor.';
COMMENT ON FUNCTION colony_assign.admin_pause(text, text) IS
    'Coordinator, for an admin token: pause(). Errors: 28000 unknown token, P0002 unknown colony or out of scope.';
COMMENT ON FUNCTION colony_assign.admin_resume(text, text) IS
    'Coordinator, for an admin token: resume(). Errors: 28000 unknown token, P0002 unknown colony or out of scope.';
COMMENT ON FUNCTION colony_assign.admin_set_strict(text, text, boolean) IS
    'Coordinator, for an admin token: set_strict(). Errors: 28000 unknown token, P0002 unknown colony or out of scope, 22004 NULL.';
COMMENT ON FUNCTION colony_assign.list_colonies(text[], text, integer) IS
    'A page of colonies by name: items = [{name, paused, strict, stale_after_s, retention_s, created_at}], next = cursor for after (NULL on the last page). within limits it to those names. Errors: 22023/22004 max_count outside 1..1000.';
COMMENT ON FUNCTION colony_assign.list_executors(text, text, integer) IS
    'A page of a colony''s executors by name: items = [{name, executor_type, location, registered_at, last_seen, stale_since, alive, running}], next = cursor for after. Errors: P0002 unknown colony, 22023 max_count outside 1..1000.';
COMMENT ON FUNCTION colony_assign.list_processes(text, integer, text, text, text, bigint, timestamptz, timestamptz, text, text, integer) IS
    'A keyset page of a colony''s processes: newest first by id (or, order_by ''ended'', finished ones by ended_at), filtered by state, executor type, location, assigned executor, workflow and [since, until); items are process summaries (no spec, input, output, errors), next = opaque cursor for after (NULL on the last page). A page examines at most 10,000 rows, so it may be short or empty and still have a next. Errors: P0002 unknown colony, 22023 bad state, order_by, cursor or max_count.';
COMMENT ON FUNCTION colony_assign.queues(text) IS
    'Per (executor type, location) of a colony: processes assignable now, and the oldest one''s submission time and age in seconds. Errors: P0002 unknown colony.';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:65
-- requires:
--   processes

-- reap(): deadlines, stale executors and retention. Safe to run from any number of sessions at
-- once: candidate rows are locked with SKIP LOCKED (each is handled by exactly one reaper) and
-- every UPDATE re-checks the state it expects (compare-and-set against close/fail/cancel).

-- How many rows one reap() pass handles per kind of work, so a huge backlog is worked off in
-- short transactions (`more` tells the caller to come back at once).
CREATE FUNCTION colony_assign._reap_batch() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 10000;

-- Local-first placement: processes whose wait for their preferred location is over join the
-- anywhere range (every executor of their type may take them now) and are announced on their
-- type's broadcast key, in the same transaction. Returns how many. Compare-and-set under SKIP
-- LOCKED, so the worker and any number of reapers may run it together.
CREATE FUNCTION colony_assign._release_local() RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    released bigint;
BEGIN
    WITH due AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.locality_until <= clock_timestamp()
        ORDER BY p.locality_until
        LIMIT colony_assign._reap_batch()
        FOR NO KEY UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE colony_assign.processes p SET locality_until = NULL
        FROM due
        WHERE p.id = due.id AND p.state = 0 AND p.locality_until IS NOT NULL
        RETURNING p.colony, p.executor_type
    ), keys AS (
        SELECT m.colony, m.executor_type, count(*) AS n FROM moved m GROUP BY m.colony, m.executor_type
    )
    SELECT coalesce(sum(k.n), 0) INTO released FROM keys k
    WHERE colony_assign._wake_group(k.colony, k.executor_type, NULL, NULL, k.n) >= 0;
    RETURN released;
END
$$;

-- When the next preferred-location wait ends (NULL: none); the worker sleeps until then.
CREATE FUNCTION colony_assign._next_release() RETURNS timestamptz
LANGUAGE sql STABLE
RETURN (SELECT min(p.locality_until) FROM colony_assign.processes p
        WHERE p.state = 0 AND p.locality_until IS NOT NULL);

CREATE FUNCTION colony_assign.reap(OUT requeued bigint, OUT failed bigint, OUT stale_executors bigint,
                                   OUT deleted bigint, OUT more boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    batch constant integer := colony_assign._reap_batch();
    wait_failed bigint;
    stale_requeued bigint;
    lease_requeued bigint;
    ended_parents bigint[];
    channels integer;
BEGIN
    -- Preferred-location waits that are over (the background worker also runs this at the
    -- moment they end; this catches up where there is no worker).
    PERFORM colony_assign._release_local();

    -- RUNNING past maxexectime: back to WAITING with one more retry, or FAILED once maxretries
    -- is used up (-1 = retry forever). ColonyOS semantics: maxretries 0 fails on the first timeout.
    WITH overdue AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 1 AND p.exec_deadline < now()
        ORDER BY p.exec_deadline
        LIMIT batch
        FOR NO KEY UPDATE SKIP LOCKED
    ), handled AS (
        UPDATE colony_assign.processes p
        SET state = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries THEN 0 ELSE 3 END,
            retries = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries
                           THEN p.retries + 1 ELSE p.retries END,
            assigned_executor = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries
                                     THEN NULL ELSE p.assigned_executor END,
            started_at = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries
                              THEN NULL ELSE p.started_at END,
            ended_at = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries THEN NULL ELSE now() END,
            errors = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries THEN p.errors
                          ELSE array_append(coalesce(p.errors, '{}'),
                                            format('maximum execution time of %s s exceeded', p.max_exec_time)) END,
            wait_deadline = CASE WHEN p.max_retries = -1 OR p.retries < p.max_retries
                                 THEN now() + p.max_wait_time * interval '1 second' ELSE p.wait_deadline END,
            exec_deadline = NULL, lease_until = NULL,
            -- A requeued process may run anywhere: its wait for a preferred location was once.
            locality_until = NULL
        FROM overdue
        WHERE p.id = overdue.id AND p.state = 1
        RETURNING p.id, p.state, p.colony, p.executor_type, p.location, p.executor_names, p.children
    ), keys AS (
        SELECT h.colony, h.executor_type, h.location, h.executor_names, count(*) AS n
        FROM handled h WHERE h.state = 0
        GROUP BY h.colony, h.executor_type, h.location, h.executor_names
    )
    SELECT (SELECT count(*) FROM handled h WHERE h.state = 0),
           (SELECT count(*) FROM handled h WHERE h.state = 3),
           (SELECT array_agg(h.id) FROM handled h WHERE h.state = 3 AND h.children IS NOT NULL),
           (SELECT sum(colony_assign._wake_group(k.colony, k.executor_type, k.location, k.executor_names, k.n))
            FROM keys k)
    INTO requeued, failed, ended_parents, channels;
    more := requeued + failed >= batch;
    IF ended_parents IS NOT NULL THEN
        PERFORM colony_assign._end_descendants(ended_parents, 3);
    END IF;

    -- Coordinator claims whose lease ran out unacknowledged (docs/RELIABILITY.md, defect 2):
    -- the answer never reached the executor, so the process goes back to WAITING with no retry
    -- counted and its key is woken, as release() does. Reads only processes_leased_idx (whose
    -- predicate `lease_until < now()` implies).
    WITH expired AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 1 AND p.lease_until < now()
        ORDER BY p.lease_until
        LIMIT batch
        FOR NO KEY UPDATE SKIP LOCKED
    )
    SELECT colony_assign._requeue_ids(array_agg(x.id)) INTO lease_requeued FROM expired x;
    requeued := requeued + lease_requeued;
    more := more OR lease_requeued >= batch;

    -- WAITING past maxwaittime: FAILED, and so are its workflow descendants.
    WITH overdue AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.wait_deadline < now()
        ORDER BY p.wait_deadline
        LIMIT batch
        FOR NO KEY UPDATE SKIP LOCKED
    ), handled AS (
        UPDATE colony_assign.processes p
        SET state = 3, ended_at = now(),
            errors = array_append(coalesce(p.errors, '{}'),
                                  format('maximum waiting time of %s s exceeded', p.max_wait_time))
        FROM overdue
        WHERE p.id = overdue.id AND p.state = 0
        RETURNING p.id, p.children
    )
    SELECT count(*), array_agg(h.id) FILTER (WHERE h.children IS NOT NULL)
    INTO wait_failed, ended_parents FROM handled h;
    failed := failed + wait_failed;
    more := more OR wait_failed >= batch;
    IF ended_parents IS NOT NULL THEN
        PERFORM colony_assign._end_descendants(ended_parents, 3);
    END IF;

    -- Executors silent past their colony's stale_after: marked stale (once: the UPDATE re-checks
    -- stale_since under its row lock) and their RUNNING processes requeued and notified. An
    -- executor that heartbeats is never stale, however long its process runs.
    WITH gone AS (
        UPDATE colony_assign.executors e
        SET stale_since = now()
        FROM colony_assign.colonies c
        WHERE c.name = e.colony AND e.stale_since IS NULL AND e.last_seen < now() - c.stale_after
        RETURNING e.colony, e.name
    )
    SELECT count(*), coalesce(sum(colony_assign._requeue_running(g.colony, g.name)), 0)
    INTO stale_executors, stale_requeued FROM gone g;
    requeued := requeued + stale_requeued;

    -- Retention: finished processes older than their colony's retention, in one bounded batch.
    -- A workflow's members go only once the whole workflow has finished, so a finished parent
    -- is still there when a sibling branch needs it.
    WITH doomed AS (
        -- Per colony, a range scan of processes_finished_idx below the cutoff: nothing to read
        -- when nothing is old enough. The workflow check is a correlated scalar subquery on
        -- purpose: as NOT EXISTS the planner hashes every unfinished process, every pass.
        SELECT old.id
        FROM colony_assign.colonies c
        CROSS JOIN LATERAL (
            SELECT p.id, p.workflow_id
            FROM colony_assign.processes p
            WHERE p.colony = c.name AND p.state >= 2 AND p.ended_at < now() - c.retention
            ORDER BY p.ended_at
            LIMIT batch
            FOR UPDATE OF p SKIP LOCKED
        ) AS old
        WHERE old.workflow_id IS NULL
           OR (SELECT 1 FROM colony_assign.processes q
               WHERE q.workflow_id = old.workflow_id AND q.state < 2 LIMIT 1) IS NULL
        LIMIT batch
    ), gone AS (
        DELETE FROM colony_assign.processes p USING doomed d WHERE p.id = d.id AND p.state >= 2
        RETURNING p.id, p.workflow_id
    ), emptied AS (
        DELETE FROM colony_assign.workflows w
        WHERE w.id IN (SELECT g.workflow_id FROM gone g)
          AND NOT EXISTS (SELECT FROM colony_assign.processes q
                          WHERE q.workflow_id = w.id AND q.id NOT IN (SELECT g.id FROM gone g))
    )
    SELECT count(*) INTO deleted FROM gone;
    more := more OR deleted >= batch;

    -- Idempotency keys older than their colony's retention (a retry that late finds none).
    DELETE FROM colony_assign.idempotency_keys k
    USING colony_assign.colonies c
    WHERE c.name = k.colony AND k.created_at < now() - c.retention;
END
$$;
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/background/mod.rs:83
-- colony_assign::background::_wake_launcher
CREATE  FUNCTION "_wake_launcher"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wake_launcher_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/channel.rs:10
-- colony_assign::channel::channel
CREATE  FUNCTION "channel"(
	"colony" TEXT, /* Option < & str > */
	"executor_type" TEXT, /* Option < & str > */
	"location" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'channel_wrapper';
/* </end connected objects> */
/* <begin connected objects> */
-- pg_ext/src/lib.rs:85
-- requires:
--   colonies
--   executors
--   assign
--   reap
--   coordinator
--   workflows
--   logs
--   identity
--   background::_wake_launcher
--   channel::channel
--   strict::_strict_lock

-- finalize
-- Privileges and function comments. Runs last.
--
-- Nobody but the owner touches the tables. Functions are executable only by the role that
-- needs them (PostgreSQL grants EXECUTE to PUBLIC by default, so that is revoked first):
--   colony_assign_executor     assign, close, fail and what an executor inspects
--   colony_assign_submitter    submit, cancel and inspection
--   colony_assign_coordinator  both of the above, plus token checks, release and catch-up
--   colony_assign_admin        everything, including colonies, executors and reap()

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA colony_assign FROM PUBLIC;
GRANT USAGE ON SCHEMA colony_assign
    TO colony_assign_executor, colony_assign_submitter, colony_assign_coordinator, colony_assign_admin;

-- Everyone with a colony_assign role logs in (and out) the same way.
GRANT EXECUTE ON FUNCTION colony_assign.login(text), colony_assign.logout()
TO colony_assign_executor, colony_assign_submitter, colony_assign_coordinator, colony_assign_admin;

GRANT EXECUTE ON FUNCTION
    colony_assign.assign(text, text, integer),
    colony_assign.close(bigint, text, jsonb, text),
    colony_assign.close_many(text, jsonb, text),
    colony_assign.fail(bigint, text, text[], text),
    colony_assign.channels(text, text),
    colony_assign.channel(text, text, text),
    colony_assign.process(bigint),
    colony_assign.workflow(bigint),
    colony_assign.heartbeat(text, text, bigint[]),
    colony_assign.running(text, text),
    colony_assign.log(bigint, text, text, text),
    colony_assign.logs(bigint)
TO colony_assign_executor;

GRANT EXECUTE ON FUNCTION
    colony_assign.submit(text, jsonb, text),
    colony_assign.submit_many(text, jsonb, text),
    colony_assign.cancel(bigint),
    colony_assign.channel(text, text, text),
    colony_assign.process(bigint),
    colony_assign.stats(text),
    colony_assign.submit_workflow(text, jsonb),
    colony_assign.workflow(bigint),
    colony_assign.logs(bigint)
TO colony_assign_submitter;

GRANT EXECUTE ON FUNCTION
    colony_assign.authenticate(text),
    colony_assign.release(text, text, bigint[]),
    colony_assign.backlog(text[], text[], text[], text[], integer),
    colony_assign.worker_active(),
    colony_assign.assign_batch(text[], text[], integer[]),
    colony_assign.close_batch(bigint[], text[], jsonb[], text[]),
    -- reap() is compare-and-set, so coordinators may run it when no background worker does.
    colony_assign.reap()
TO colony_assign_coordinator;

GRANT EXECUTE ON FUNCTION
    colony_assign.add_colony(text),
    colony_assign.remove_colony(text),
    colony_assign.add_executor(text, text, text, text),
    colony_assign.remove_executor(text, text),
    colony_assign.pause(text),
    colony_assign.resume(text),
    colony_assign.set_strict(text, boolean),
    colony_assign.configure(text, interval, interval, interval),
    colony_assign.add_admin(text, text[]),
    colony_assign.remove_admin(text)
TO colony_assign_admin;

--------------------------------------------------------------------------------
-- Public functions. SQLSTATEs: 22004 NULL argument, 22023 invalid value, 23505 already
-- exists, 42501 not allowed, 54000 too large, 55000 wrong state, P0002 not found.
--------------------------------------------------------------------------------
COMMENT ON FUNCTION colony_assign.login(text) IS
    'Binds this session to the executor or admin that owns the token, until logout() or the session ends; returns (kind, colony, name). Roles other than colony_assign_coordinator and colony_assign_admin act only as what they logged in as. Errors: 28000 unknown token, 22004 NULL.';
COMMENT ON FUNCTION colony_assign.logout() IS 'Ends this session''s login: it acts as nobody again.';
COMMENT ON FUNCTION colony_assign.add_admin(text, text[]) IS
    'Creates an admin token reaching the given colonies (NULL = every colony); returns the token once (only its SHA-256 is stored). Errors: 22004/22023 bad name, P0002 unknown colony, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_admin(text) IS 'Removes an admin token and tells coordinators. Errors: P0002 unknown admin.';
COMMENT ON FUNCTION colony_assign.add_colony(text) IS
    'Adds a colony. Errors: 22004/22023 bad name, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_colony(text) IS
    'Removes a colony with its executors and processes, and tells coordinators. Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.add_executor(text, text, text, text) IS
    'Registers an executor of a type, optionally at a location; returns its bearer token (only the SHA-256 is stored). Errors: P0002 unknown colony, 22004/22023 bad name, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_executor(text, text) IS
    'Removes an executor; its RUNNING processes go back to WAITING at once and are notified. Errors: P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.submit(text, jsonb, text) IS
    'Submits one ColonyOS-style FunctionSpec; returns its id and notifies its key at commit. With an idempotency_key, a retry returns the first call''s id instead of submitting again. Errors: P0002 unknown colony, 22023 invalid spec (the message names the field) or key reused for another request, 54000 spec over 256 KiB.';
COMMENT ON FUNCTION colony_assign.submit_many(text, jsonb, text) IS
    'Submits a JSON array of specs in one transaction (all or none); returns ids in input order; one NOTIFY per distinct key. Errors as submit(), messages prefixed with spec[i]; 54000 over 100000 specs.';
COMMENT ON FUNCTION colony_assign.assign(text, text, integer) IS
    'Claims up to max_count processes the executor may run (type, names, location; priority then age) with FOR UPDATE SKIP LOCKED, marks them RUNNING with deadlines and the executor alive. Empty when nothing is assignable or the colony is paused. Strict colonies serialize claims per type for exact order. Errors: 22023 max_count outside 1..1000, P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.close(bigint, text, jsonb, text) IS
    'Marks a RUNNING process SUCCESS with its output; only its assigned executor may (of the given colony, when one is given: executor names are unique per colony). Errors: P0002 unknown process, 55000 not running (e.g. closed twice), 42501 assigned to another executor or in another colony, 54000 output over 256 KiB.';
COMMENT ON FUNCTION colony_assign.close_many(text, jsonb, text) IS
    'Closes a batch (JSON array of {"id", "output"}, at most 1000) for one executor in one statement; returns per id whether it was closed and why not. Errors: 22023 malformed batch, 54000 too many or an output over 256 KiB.';
COMMENT ON FUNCTION colony_assign.fail(bigint, text, text[], text) IS
    'Marks a RUNNING process FAILED with errors; only its assigned executor may. Errors as close().';
COMMENT ON FUNCTION colony_assign.authenticate(text) IS
    'The executor (colony, name, type, location) a bearer token belongs to; no row for an unknown token.';
COMMENT ON FUNCTION colony_assign.assign_batch(text[], text[], integer[]) IS
    'Coordinator: assign() for several executors in one call (parallel arrays, served in order); per claimed process (request, process), per refused request (request, NULL, sqlstate, message). Strict colonies hold their (colony, type) lock once for the batch. Each claim carries a lease (lease_until = claim time + the colony''s claim_lease) that the executor''s close, fail, log or heartbeat acknowledges; reap() gives back claims whose lease ran out. Errors: 22004 NULL array, 22023 arrays of different lengths.';
COMMENT ON FUNCTION colony_assign.close_batch(bigint[], text[], jsonb[], text[]) IS
    'Coordinator: close() for several (process, executor, output, colony) in one call; one row per request (request, sqlstate, message), sqlstate NULL when closed, else what close() would have raised. Errors: 22004 NULL array, 22023 arrays of different lengths.';
COMMENT ON FUNCTION colony_assign.release(text, text, bigint[]) IS
    'Puts processes claimed by an executor back to WAITING (no retry counted) and notifies them: for a long-poll response that could not be delivered.';
COMMENT ON FUNCTION colony_assign.backlog(text[], text[], text[], text[], integer) IS
    'Catch-up check: per wake-up key (parallel arrays), how many processes are assignable now, capped. Keys without work and keys of paused colonies are left out.';
COMMENT ON FUNCTION colony_assign.cancel(bigint) IS
    'Cancels a WAITING or RUNNING process. Errors: P0002 unknown process, 55000 already ended.';
COMMENT ON FUNCTION colony_assign.pause(text) IS
    'Pauses assignment in a colony: assign() returns nothing until resume(). Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.resume(text) IS
    'Resumes assignment and notifies every key with waiting work, so waiters on every coordinator replica wake. Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.set_strict(text, boolean) IS
    'Switches a colony between distributed (SKIP LOCKED, concurrent) and strict (exact priority order) assignment. Errors: P0002 unknown colony, 22004 NULL.';
COMMENT ON FUNCTION colony_assign.reap() IS
    'Enforces deadlines (RUNNING past maxexectime back to WAITING with retries + 1, or FAILED when maxretries is used up; WAITING past maxwaittime FAILED; workflow descendants of what failed fail too), gives back (WAITING, no retry counted, key notified) coordinator claims whose lease ran out unacknowledged, requeues the processes of executors silent past stale_after, and deletes finished processes past retention. Bounded batches; more = call again. Safe to run from many sessions at once.';
COMMENT ON FUNCTION colony_assign.submit_workflow(text, jsonb) IS
    'Submits a DAG: a JSON array of specs, each with a unique nodename and conditions.dependencies naming its parents; returns the workflow id. Roots are assignable at once, a child when its last parent succeeds (its input = the parents'' outputs in dependency order); a failed or cancelled node ends its descendants. Errors: 22023 empty, missing/duplicate nodename, unknown or repeated dependency, cycle (named), invalid spec; 54000 too large; P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.workflow(bigint) IS
    'A workflow as JSON: its state and every node with process id, state and edges. Errors: P0002 unknown workflow.';
COMMENT ON FUNCTION colony_assign.heartbeat(text, text, bigint[]) IS
    'Keeps a busy executor alive (every executor call does too) and acknowledges the claim leases of the listed processes that are RUNNING for it (others are ignored; NULL or empty acknowledges nothing). Errors: 22004 NULL name, P0002 unknown colony or executor, 42501 not the logged-in executor.';
COMMENT ON FUNCTION colony_assign.running(text, text) IS
    'The processes RUNNING for an executor, oldest claim first: those it holds and any claim whose answer it lost (a session that died between assign()''s commit and its answer). Call on each new session before the first assign() and run or fail what you do not hold. Writes nothing. Errors: 22004 NULL name, P0002 unknown colony or executor, 42501 not the logged-in executor.';
COMMENT ON FUNCTION colony_assign.log(bigint, text, text, text) IS
    'Appends a progress message to a RUNNING process (acknowledging its claim lease); only its assigned executor may. Errors: 22004 NULL message, 54000 over 16 KiB, and those of close().';
COMMENT ON FUNCTION colony_assign.logs(bigint) IS
    'A process''s log messages, oldest first. Errors: P0002 unknown process.';
COMMENT ON FUNCTION colony_assign.configure(text, interval, interval, interval) IS
    'Sets a colony''s stale_after (executor liveness), retention (finished processes) and claim_lease (how long a coordinator claim may go unacknowledged before the reaper gives it back; default 15 s); NULL keeps a value. Errors: P0002 unknown colony, 22023 not positive, stale_after or retention over 10 years, claim_lease over 1 day.';
COMMENT ON FUNCTION colony_assign.worker_active() IS
    'Whether the background reaper runs in this database.';
COMMENT ON FUNCTION colony_assign.channels(text, text) IS
    'The channels an executor LISTENs on: its location key, its type''s broadcast key and its name key. Errors: 22004 NULL name, P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.channel(text, text, text) IS
    'The notification channel of (colony, executor type, location); NULL or empty location = the broadcast channel. At most 63 bytes, safe for any input.';
COMMENT ON FUNCTION colony_assign.process(bigint) IS
    'One process. Errors: P0002 unknown process.';
COMMENT ON FUNCTION colony_assign.stats(text) IS
    'Counts of a colony''s executors and processes per state. Errors: P0002 unknown colony.';

--------------------------------------------------------------------------------
-- Internal functions (not granted to anyone)
--------------------------------------------------------------------------------
COMMENT ON FUNCTION colony_assign._wake(text, text, text, text[], bigint) IS
    'Internal: records that n processes became assignable for a key; one NOTIFY per key is sent at commit.';
COMMENT ON FUNCTION colony_assign._executor_channels(text, text, text, text) IS
    'Internal: channel names of an executor with these attributes.';
COMMENT ON FUNCTION colony_assign._check_name(text, text) IS 'Internal: raises 22004/22023 for a NULL, empty or over-long name.';
COMMENT ON FUNCTION colony_assign._max_document_bytes() IS 'Internal: largest spec, output or error list accepted (bytes).';
COMMENT ON FUNCTION colony_assign._colony(text) IS 'Internal: the colony row, or P0002.';
COMMENT ON FUNCTION colony_assign._wake_colony(text) IS 'Internal: notifies every key with assignable work in a colony.';
COMMENT ON FUNCTION colony_assign._as_executor(text, text) IS 'Internal: the executor row for a call made as it: 42501 unless this session may act as it, then P0002 when unknown.';
COMMENT ON FUNCTION colony_assign._executor(text, text) IS 'Internal: the executor row, or P0002.';
COMMENT ON FUNCTION colony_assign._requeue_ids(bigint[]) IS 'Internal: puts RUNNING processes (row locks held by the caller) back to WAITING, no retry counted, and notifies their keys.';
COMMENT ON FUNCTION colony_assign._requeue_running(text, text, bigint[]) IS 'Internal: puts an executor''s RUNNING processes (all, or the given ones) back to WAITING and notifies them.';
COMMENT ON FUNCTION colony_assign._public(colony_assign.processes) IS 'Internal: a stored process in its public shape.';
COMMENT ON FUNCTION colony_assign._state_name(integer) IS 'Internal: name of a state.';
COMMENT ON FUNCTION colony_assign._wake_group(text, text, text, text[], bigint) IS 'Internal: notifies the key(s) of a group of processes; named ones only wake executors that could take them.';
COMMENT ON FUNCTION colony_assign._explain_not_running(bigint, text, text) IS 'Internal: raises why a close/fail matched no row.';
COMMENT ON FUNCTION colony_assign._touch(text, text) IS 'Internal: refreshes executor liveness (at most once a second).';
COMMENT ON FUNCTION colony_assign._check_specs(text, jsonb, boolean, boolean) IS 'Internal: raises the first problem of an array of specs (22023/54000, spec[i]: prefixed).';
COMMENT ON FUNCTION colony_assign._insert_specs(text, jsonb, bigint, integer[]) IS 'Internal: inserts checked specs and notifies the assignable ones.';
COMMENT ON FUNCTION colony_assign._release_children(bigint[]) IS 'Internal: one decrement per edge after a parent succeeded; releases children whose last parent it was.';
COMMENT ON FUNCTION colony_assign._end_descendants(bigint[], integer) IS 'Internal: fails or cancels every waiting descendant, naming the ancestor.';
COMMENT ON FUNCTION colony_assign._find_cycle(integer, integer[], integer[]) IS 'Internal: one cycle of a dependency graph (Kahn''s algorithm), or an empty array.';
COMMENT ON FUNCTION colony_assign._max_log_bytes() IS 'Internal: largest log message accepted (bytes).';
COMMENT ON FUNCTION colony_assign._reap_batch() IS 'Internal: rows per reap() pass.';
COMMENT ON FUNCTION colony_assign._release_local() IS 'Internal: processes whose preferred-location wait is over join the anywhere range and are announced to every executor of their type.';
COMMENT ON FUNCTION colony_assign._next_release() IS 'Internal: when the next preferred-location wait ends (NULL: none).';
COMMENT ON FUNCTION colony_assign._wake_launcher() IS 'Internal: asks the background launcher to look for databases when this transaction commits (the install script calls it).';
COMMENT ON FUNCTION colony_assign._may_see(text) IS 'Internal: whether this session may see a colony''s objects (42501 when it has not logged in).';
COMMENT ON FUNCTION colony_assign._visible_colony(text) IS 'Internal: true, or P0002 as for an unknown colony when this session may not see it.';
COMMENT ON FUNCTION colony_assign._trusted() IS 'Internal: whether this session''s role acts for anyone (coordinator, admin, superuser).';
COMMENT ON FUNCTION colony_assign._session_colony() IS 'Internal: the colony of the executor this session logged in as (NULL for trusted roles).';
COMMENT ON FUNCTION colony_assign._acting_as(text, text, bytea) IS 'Internal: 42501 unless this session may act as the executor (and its login token is still the executor''s).';
COMMENT ON FUNCTION colony_assign._strict_lock(text, text) IS 'Internal: takes strict mode''s (colony, executor type) lock, as assign() does (for tests that hold it).';

-- A database where the extension was just installed gets its background worker when this
-- transaction commits, not at the launcher's next round.
SELECT colony_assign._wake_launcher();
/* </end connected objects> */
