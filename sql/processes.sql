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
