-- assign(): what ColonyOS does in four database operations (mark alive, check pause, select,
-- update), done in one statement.

-- Strict mode: serializes claims per (colony, executor type) until commit. Two int4 keys put
-- our locks in their own space (the first is fixed), away from an application's bigint
-- advisory locks. A hash collision between two keys only adds serialization, never a wrong
-- assignment.
CREATE FUNCTION colony_assign._strict_lock(colony text, executor_type text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(
        1131376449, -- 'CALA' as an int4: colony_assign's advisory lock class
        hashtext(format('%s:%s/%s', length(colony), colony, executor_type)));
    RETURN true;
END
$$;

-- plan_cache_mode: with custom plans PL/pgSQL re-plans the statement below on every call
-- (its cost estimate always favours a plan for the exact values), which measured ~1 ms of a
-- ~1.1 ms call. The generic plan uses the same indexes: every key comes from an InitPlan.
-- jit = off on every entry point: these are short OLTP statements, and a JIT compile (which a
-- pessimistic cost estimate can trigger) costs more than the statement.
CREATE FUNCTION colony_assign.assign(colony text, executor text, max_count integer DEFAULT 1)
RETURNS SETOF colony_assign.process
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    wanted integer := max_count;
    claimed_count bigint;
    total bigint := 0;
BEGIN
    IF max_count IS NULL OR max_count NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 1000 (got %)', coalesce(max_count::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;

    -- A second attempt, from the head, only when the first started from a cursor and came up
    -- short: work may be waiting behind the cursor (src/cursor.rs), and "fewer than asked" must
    -- mean there is no more. The short scan has dropped the cursor.
    FOR attempt IN 1..2 LOOP
    RETURN QUERY
    WITH me AS MATERIALIZED (
        SELECT e.colony, e.name, e.executor_type, e.location, c.paused, c.strict
        FROM colony_assign.executors e
        JOIN colony_assign.colonies c ON c.name = e.colony
        WHERE e.colony = assign.colony AND e.name = assign.executor
          -- Strict mode takes its lock here, before any arm below reads the queue. The
          -- statement's snapshot is older than the lock, but a row claimed meanwhile is
          -- re-checked on lock (state = 0 no longer holds) and skipped, so order stays exact.
          AND CASE WHEN c.strict AND NOT c.paused
                   THEN colony_assign._strict_lock(e.colony, e.executor_type) ELSE true END
    ),
    -- Liveness, at most one write per executor per second.
    touched AS (
        UPDATE colony_assign.executors e SET last_seen = now(), stale_since = NULL
        FROM me
        WHERE e.colony = me.colony AND e.name = me.name AND e.last_seen < now() - interval '1 second'
    ),
    -- Where this session's scans start (src/cursor.rs): after the last row it claimed from the
    -- range, or the head. Strict mode always starts at the head.
    cursors AS MATERIALIZED (
        SELECT CASE WHEN me.strict OR me.location IS NULL THEN ARRAY[-50001, 0]::bigint[]
                    ELSE colony_assign._cursor_start(me.colony, me.executor_type, me.location) END AS located,
               CASE WHEN me.strict THEN ARRAY[-50001, 0]::bigint[]
                    ELSE colony_assign._cursor_start(me.colony, me.executor_type, NULL) END AS anywhere
        FROM me
    ),
    -- The arms: each reads one range of processes_assign_located_idx,
    -- processes_assign_anywhere_idx or (name-targeted work) processes_targeted_idx in queue order
    -- and locks up to `wanted` rows it can take, skipping rows other assigners hold. A paused
    -- colony yields NULL keys, so every arm is empty.
    at_my_location AS (
        SELECT p.id, p.priority
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL
          AND p.colony = (SELECT me.colony FROM me WHERE NOT me.paused)
          AND p.executor_type = (SELECT me.executor_type FROM me)
          AND p.location = (SELECT me.location FROM me)
          AND ((- p.priority), p.id) > ((SELECT c.located[1] FROM cursors c)::integer, (SELECT c.located[2] FROM cursors c))
        ORDER BY (- p.priority), p.id
        LIMIT wanted
        FOR NO KEY UPDATE OF p SKIP LOCKED
    ),
    anywhere AS (
        SELECT p.id, p.priority
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL
          AND p.colony = (SELECT me.colony FROM me WHERE NOT me.paused)
          AND p.executor_type = (SELECT me.executor_type FROM me)
          AND p.location IS NULL
          AND ((- p.priority), p.id) > ((SELECT c.anywhere[1] FROM cursors c)::integer, (SELECT c.anywhere[2] FROM cursors c))
        ORDER BY (- p.priority), p.id
        LIMIT wanted
        FOR NO KEY UPDATE OF p SKIP LOCKED
    ),
    named_me AS (
        SELECT p.id, p.priority
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NOT NULL
          AND p.executor_names @> ARRAY[(SELECT me.name FROM me WHERE NOT me.paused)]
          AND p.colony = (SELECT me.colony FROM me)
          AND p.executor_type = (SELECT me.executor_type FROM me)
          AND (p.location IS NULL OR p.location = (SELECT me.location FROM me))
        ORDER BY (- p.priority), p.id
        LIMIT wanted
        FOR NO KEY UPDATE OF p SKIP LOCKED
    ),
    -- (FOR NO KEY UPDATE is all an UPDATE that keeps the key needs, and unlike FOR UPDATE it
    -- does not conflict with the KEY SHARE lock that a log() insert takes on its process.)
    -- Merge the arms in queue order. Rows an arm locked but that lose the merge stay WAITING
    -- and are unlocked at commit; a concurrent assigner skips them meanwhile. This only
    -- happens when location-specific and location-less (or targeted) work of one type are
    -- interleaved, and costs such an assigner at most a retry.
    chosen AS (
        SELECT a.id
        FROM (SELECT * FROM at_my_location UNION ALL SELECT * FROM anywhere UNION ALL SELECT * FROM named_me) a
        ORDER BY (- a.priority), a.id
        LIMIT wanted
    ),
    claimed AS (
        UPDATE colony_assign.processes p
        SET state = 1,
            assigned_executor = me.name,
            -- clock_timestamp, not now(): the moment of the claim, which in strict mode orders claims.
            started_at = clock_timestamp(),
            exec_deadline = clock_timestamp() + p.max_exec_time * interval '1 second'
        FROM chosen, me
        WHERE p.id = chosen.id AND p.state = 0
        RETURNING (colony_assign._public(p)).*
    ),
    -- Move this session's cursors to the last row claimed from each range, or drop a cursor
    -- whose range came up short (rows may be waiting behind it).
    advanced AS (
        SELECT CASE WHEN me.location IS NULL THEN 0 ELSE colony_assign._cursor_advance(
                   me.colony, me.executor_type, me.location,
                   (SELECT ARRAY[- c.priority, c.id]::bigint[] FROM claimed c
                    WHERE c.executor_names IS NULL AND c.location IS NOT NULL
                    ORDER BY (- c.priority) DESC, c.id DESC LIMIT 1),
                   (SELECT count(*) FROM at_my_location) < wanted) END
             + colony_assign._cursor_advance(
                   me.colony, me.executor_type, NULL,
                   (SELECT ARRAY[- c.priority, c.id]::bigint[] FROM claimed c
                    WHERE c.executor_names IS NULL AND c.location IS NULL
                    ORDER BY (- c.priority) DESC, c.id DESC LIMIT 1),
                   (SELECT count(*) FROM anywhere) < wanted) AS done
        FROM me
        WHERE NOT me.strict AND NOT me.paused
    )
    -- Handed out in queue order. Reading `advanced` in a one-time filter is what makes it run,
    -- also when nothing was claimed (a join with an empty `claimed` would never read it).
    SELECT c.* FROM claimed c
    WHERE (SELECT count(*) FROM advanced) >= 0
    ORDER BY c.priority DESC, c.id;
    GET DIAGNOSTICS claimed_count = ROW_COUNT;
    total := total + claimed_count;
    wanted := wanted - claimed_count;
    EXIT WHEN wanted = 0 OR NOT colony_assign._cursor_used();
    END LOOP;

    IF total = 0 THEN
        -- Empty is the normal "nothing for you now" answer (also while the colony is paused);
        -- only an unknown colony or executor is an error. Checked only on this path.
        PERFORM colony_assign._executor(colony, executor);
    END IF;
END
$$;
