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
