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
