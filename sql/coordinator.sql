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
