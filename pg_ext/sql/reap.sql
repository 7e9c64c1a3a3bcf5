-- reap(): deadlines. Safe to run from any number of sessions at once: candidate rows are locked
-- with SKIP LOCKED (each row is handled by exactly one reaper) and every UPDATE re-checks the
-- state it expects (compare-and-set against close/fail/cancel racing with it).

-- How many rows one reap() call handles per kind of deadline, so a huge backlog of overdue
-- processes is worked off in short transactions (the background worker calls again at once
-- when a batch was full).
CREATE FUNCTION colony_assign._reap_batch() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 10000;

CREATE FUNCTION colony_assign.reap(OUT requeued bigint, OUT failed bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wait_failed bigint;
    channels integer;
BEGIN
    -- RUNNING past maxexectime: back to WAITING with one more retry, or FAILED once maxretries
    -- is used up (-1 = retry forever). ColonyOS semantics: maxretries 0 fails on the first timeout.
    WITH overdue AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 1 AND p.exec_deadline < now()
        ORDER BY p.exec_deadline
        LIMIT colony_assign._reap_batch()
        FOR UPDATE SKIP LOCKED
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
            exec_deadline = NULL
        FROM overdue
        WHERE p.id = overdue.id AND p.state = 1
        RETURNING p.state, p.colony, p.executor_type, p.location, p.executor_names
    ), keys AS (
        SELECT h.colony, h.executor_type, h.location, h.executor_names, count(*) AS n
        FROM handled h WHERE h.state = 0
        GROUP BY h.colony, h.executor_type, h.location, h.executor_names
    )
    SELECT (SELECT count(*) FROM handled h WHERE h.state = 0),
           (SELECT count(*) FROM handled h WHERE h.state = 3),
           (SELECT sum(colony_assign._wake_group(k.colony, k.executor_type, k.location, k.executor_names, k.n))
            FROM keys k)
    INTO requeued, failed, channels;

    -- WAITING past maxwaittime: FAILED.
    WITH overdue AS (
        SELECT p.id
        FROM colony_assign.processes p
        WHERE p.state = 0 AND p.wait_deadline < now()
        ORDER BY p.wait_deadline
        LIMIT colony_assign._reap_batch()
        FOR UPDATE SKIP LOCKED
    ), handled AS (
        UPDATE colony_assign.processes p
        SET state = 3, ended_at = now(),
            errors = array_append(coalesce(p.errors, '{}'),
                                  format('maximum waiting time of %s s exceeded', p.max_wait_time))
        FROM overdue
        WHERE p.id = overdue.id AND p.state = 0
        RETURNING p.id
    )
    SELECT count(*) INTO wait_failed FROM handled;
    failed := failed + wait_failed;
END
$$;
