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
