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
