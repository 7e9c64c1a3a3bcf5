-- Processes: submit, close, fail, cancel, inspect.
--
-- Every transition is one UPDATE guarded by the expected current state (and, for close/fail, by
-- the assigned executor): compare-and-set, so any number of callers can race safely. Why an
-- UPDATE matched nothing is worked out only afterwards, on the error path.
--
-- Functions called per request are PL/pgSQL, not LANGUAGE sql: a (non-inlined) SQL function
-- reads and plans its body again on every call, PL/pgSQL caches its plans per session. On the
-- assign+close cycle that difference was most of the CPU time.
--
-- Only the public entry points carry SET clauses (search_path, generic plans, no JIT). The
-- internal _functions are executable by the owner alone and always run beneath an entry point,
-- whose settings they inherit; a SET clause on each of them cost a GUC save/restore and a
-- search-path recomputation per nested call.

--------------------------------------------------------------------------------
-- Internal helpers
--------------------------------------------------------------------------------

-- The public shape of a stored process.
CREATE FUNCTION colony_assign._public(p colony_assign.processes) RETURNS colony_assign.process
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(p.id, p.colony, p.state, p.executor_type, p.location, p.executor_names,
           p.assigned_executor, p.priority, p.funcname, p.label, p.nodename, p.spec, p.input,
           p.output, p.errors, p.retries, p.submitted_at, p.started_at, p.ended_at,
           p.exec_deadline, p.workflow_id)::colony_assign.process;

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
        RAISE EXCEPTION 'process % belongs to another colony', process_id USING ERRCODE = '42501';
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

-- Raises the first problem of a JSON array of specs: 22023 when it is not an array or a spec
-- is invalid, 54000 when there are too many or one is too large. `single` only shapes the
-- messages (no "spec[i]: " prefix); `in_workflow` allows dependencies.
CREATE FUNCTION colony_assign._check_specs(colony text, specs jsonb, single boolean, in_workflow boolean)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    problem text;
    bad bigint;
    too_big integer;
BEGIN
    IF specs IS NULL OR jsonb_typeof(specs) <> 'array' THEN
        RAISE EXCEPTION 'specs must be a JSON array of specs (got %)', coalesce(colony_assign._show(specs), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(specs) > 100000 THEN
        RAISE EXCEPTION 'too many specs in one call: %, at most 100000', jsonb_array_length(specs)
            USING ERRCODE = '54000';
    END IF;
    SELECT a.i - 1, pg_column_size(a.s) INTO bad, too_big
    FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i)
    WHERE pg_column_size(a.s) > colony_assign._max_document_bytes()
    ORDER BY a.i LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%spec is % bytes, at most %',
            CASE WHEN single THEN '' ELSE format('spec[%s]: ', bad) END, too_big, colony_assign._max_document_bytes()
            USING ERRCODE = '54000';
    END IF;
    SELECT sp.idx, sp.problem INTO bad, problem FROM colony_assign._spec_problems(specs, colony, in_workflow) sp;
    IF FOUND THEN
        RAISE EXCEPTION '%', CASE WHEN single THEN '' ELSE format('spec[%s]: ', bad) END || problem
            USING ERRCODE = '22023';
    END IF;
END
$$;

-- Inserts checked specs in one statement and notifies the keys of those that are assignable
-- at once; returns the ids in input order. `pending` gives each spec's count of unfinished
-- parents (workflows; NULL = none), `workflow_id` the workflow they belong to.
CREATE FUNCTION colony_assign._insert_specs(colony text, specs jsonb, workflow_id bigint DEFAULT NULL,
                                            pending integer[] DEFAULT NULL) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ids bigint[];
    channels integer;
BEGIN
    WITH inserted AS (
        INSERT INTO colony_assign.processes (colony, executor_type, location, executor_names,
            preferred_location, locality_wait, priority, funcname, label, nodename,
            max_wait_time, max_exec_time, max_retries, spec, wait_deadline, workflow_id, pending_parents)
        SELECT colony,
               a.s #>> '{conditions,executortype}',
               colony_assign._opt_text(a.s #> '{conditions,locationname}'),
               CASE WHEN jsonb_typeof(a.s #> '{conditions,executornames}') IS DISTINCT FROM 'array' THEN NULL
                    WHEN a.s #> '{conditions,executornames}' <> '[]'
                    THEN ARRAY(SELECT jsonb_array_elements_text(a.s #> '{conditions,executornames}')) END,
               colony_assign._opt_text(a.s #> '{conditions,preferredlocation}'),
               CASE WHEN jsonb_typeof(a.s #> '{conditions,localitywait}') = 'number'
                    THEN (a.s #> '{conditions,localitywait}')::integer END,
               -- jsonb-to-integer casts (not ->> then ::integer) so 1.0 and 1e2 work as PostgreSQL
               -- numerics do; the CASE keeps JSON null from reaching the cast.
               CASE WHEN jsonb_typeof(a.s -> 'priority') = 'number' THEN (a.s -> 'priority')::integer ELSE 0 END,
               a.s ->> 'funcname',
               colony_assign._opt_text(a.s -> 'label'),
               colony_assign._opt_text(a.s -> 'nodename'),
               colony_assign._opt_seconds(a.s -> 'maxwaittime'),
               colony_assign._opt_seconds(a.s -> 'maxexectime'),
               CASE WHEN jsonb_typeof(a.s -> 'maxretries') = 'number' THEN (a.s -> 'maxretries')::integer ELSE 0 END,
               a.s,
               now() + colony_assign._opt_seconds(a.s -> 'maxwaittime') * interval '1 second',
               _insert_specs.workflow_id,
               coalesce(pending[a.i::integer], 0)
        FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i)
        ORDER BY a.i
        RETURNING id, executor_type, location, executor_names, pending_parents
    ), keys AS (
        SELECT executor_type, location, executor_names, count(*) AS n
        FROM inserted WHERE pending_parents = 0
        GROUP BY executor_type, location, executor_names
    )
    -- Ids come from one sequence in input order, so sorting by id restores input order.
    SELECT (SELECT array_agg(id ORDER BY id) FROM inserted),
           (SELECT sum(colony_assign._wake_group(colony, k.executor_type, k.location, k.executor_names, k.n)) FROM keys k)
    INTO ids, channels;
    RETURN coalesce(ids, '{}');
END
$$;

-- Validates and inserts standalone specs (a JSON array) in one transaction.
CREATE FUNCTION colony_assign._submit(colony text, specs jsonb, single boolean) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._check_specs(colony, specs, single, false);
    RETURN colony_assign._insert_specs(colony, specs);
END
$$;

--------------------------------------------------------------------------------
-- Public functions
--------------------------------------------------------------------------------

CREATE FUNCTION colony_assign.submit(colony text, spec jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN (colony_assign._submit(colony, jsonb_build_array(spec), true))[1];
END
$$;

CREATE FUNCTION colony_assign.submit_many(colony text, specs jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN QUERY SELECT unnest(colony_assign._submit(colony, specs, false));
END
$$;

-- Ends a RUNNING process as SUCCESS (2) or FAILED (3), compare-and-set on its state and
-- assigned executor (and colony, when given); explains a miss. Shared by close() and fail().
CREATE FUNCTION colony_assign._finish(process_id bigint, executor text, colony text, new_state integer,
                                      output jsonb, errors text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    finished_colony text;
    finished_children bigint[];
BEGIN
    IF pg_column_size(output) > colony_assign._max_document_bytes() THEN
        RAISE EXCEPTION 'output is % bytes, at most %', pg_column_size(output), colony_assign._max_document_bytes()
            USING ERRCODE = '54000';
    END IF;
    IF pg_column_size(errors) > colony_assign._max_document_bytes() THEN
        RAISE EXCEPTION 'errors are % bytes, at most %', pg_column_size(errors), colony_assign._max_document_bytes()
            USING ERRCODE = '54000';
    END IF;
    UPDATE colony_assign.processes p
    SET state = new_state, output = _finish.output, errors = _finish.errors, ended_at = now(), exec_deadline = NULL
    WHERE p.id = process_id AND p.state = 1 AND p.assigned_executor = executor
      AND (_finish.colony IS NULL OR p.colony = _finish.colony)
    RETURNING p.colony, p.children INTO finished_colony, finished_children;
    IF NOT FOUND THEN
        PERFORM colony_assign._explain_not_running(process_id, executor, colony);
    END IF;
    -- Workflows, in the same transaction: success may release children; failure ends every
    -- descendant.
    IF finished_children IS NOT NULL THEN
        IF new_state = 2 THEN
            PERFORM colony_assign._release_children(finished_children);
        ELSE
            PERFORM colony_assign._end_descendants(ARRAY[process_id], new_state);
        END IF;
    END IF;
    PERFORM colony_assign._touch(finished_colony, executor);
END
$$;

CREATE FUNCTION colony_assign.close(process_id bigint, executor text, output jsonb DEFAULT NULL,
                                    colony text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    PERFORM colony_assign._finish(process_id, executor, colony, 2, output, NULL);
END
$$;

CREATE FUNCTION colony_assign.fail(process_id bigint, executor text, errors text[],
                                   colony text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    PERFORM colony_assign._finish(process_id, executor, colony, 3, NULL, coalesce(errors, '{}'));
END
$$;

CREATE FUNCTION colony_assign.cancel(process_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    current_state integer;
    cancelled_children bigint[];
BEGIN
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
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown process %', process_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;

-- Closes a batch of processes for one executor in one statement: a JSON array of
-- {"id": <process id>, "output": <any JSON, optional>}. Each item is reported, closed or not
-- (with why), so one process the reaper took back does not sink the others.
CREATE FUNCTION colony_assign.close_many(executor text, closes jsonb, colony text DEFAULT NULL)
RETURNS TABLE (process_id bigint, closed boolean, error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    bad bigint;
    closed_ids bigint[];
    closed_colony text;
    with_children bigint[];
BEGIN
    IF closes IS NULL OR jsonb_typeof(closes) <> 'array' THEN
        RAISE EXCEPTION 'closes must be a JSON array of {"id": ..., "output": ...}' USING ERRCODE = '22023';
    ELSIF jsonb_array_length(closes) > 1000 THEN
        RAISE EXCEPTION 'too many closes in one call: %, at most 1000', jsonb_array_length(closes)
            USING ERRCODE = '54000';
    END IF;
    SELECT a.i - 1 INTO bad FROM jsonb_array_elements(closes) WITH ORDINALITY AS a(c, i)
    WHERE CASE WHEN jsonb_typeof(a.c) <> 'object' THEN true
               WHEN jsonb_typeof(a.c -> 'id') <> 'number' THEN true
               WHEN (a.c -> 'id')::numeric <> trunc((a.c -> 'id')::numeric) THEN true
               ELSE EXISTS (SELECT FROM jsonb_object_keys(a.c) k WHERE k NOT IN ('id', 'output')) END
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'closes[%] must be {"id": <integer>, "output": <optional JSON>}', bad USING ERRCODE = '22023';
    END IF;
    SELECT a.i - 1 INTO bad FROM jsonb_array_elements(closes) WITH ORDINALITY AS a(c, i)
    WHERE pg_column_size(a.c -> 'output') > colony_assign._max_document_bytes() LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'closes[%]: output is over % bytes', bad, colony_assign._max_document_bytes()
            USING ERRCODE = '54000';
    END IF;

    WITH items AS (
        SELECT DISTINCT ON ((a.c -> 'id')::bigint) (a.c -> 'id')::bigint AS id, a.c -> 'output' AS output
        FROM jsonb_array_elements(closes) AS a(c)
    ), done AS (
        UPDATE colony_assign.processes p
        SET state = 2, output = i.output, ended_at = now(), exec_deadline = NULL
        FROM items i
        WHERE p.id = i.id AND p.state = 1 AND p.assigned_executor = close_many.executor
          AND (close_many.colony IS NULL OR p.colony = close_many.colony)
        RETURNING p.id, p.colony, p.children
    )
    SELECT coalesce(array_agg(d.id), '{}'), min(d.colony),
           array_agg(d.id) FILTER (WHERE d.children IS NOT NULL)
    INTO closed_ids, closed_colony, with_children FROM done d;
    IF with_children IS NOT NULL THEN
        PERFORM colony_assign._release_children(array_agg(c))
        FROM colony_assign.processes p, unnest(p.children) AS c WHERE p.id = ANY (with_children);
    END IF;
    IF closed_colony IS NOT NULL THEN
        PERFORM colony_assign._touch(closed_colony, executor);
    END IF;

    RETURN QUERY
    SELECT i.id, i.id = ANY (closed_ids),
           CASE WHEN i.id = ANY (closed_ids) THEN NULL
                WHEN p.id IS NULL THEN 'unknown process'
                WHEN close_many.colony IS NOT NULL AND p.colony <> close_many.colony THEN 'belongs to another colony'
                WHEN p.state <> 1 THEN format('not running (it is %s)', colony_assign._state_name(p.state))
                ELSE 'assigned to another executor' END
    FROM (SELECT DISTINCT (a.c -> 'id')::bigint AS id FROM jsonb_array_elements(closes) AS a(c)) i
    LEFT JOIN colony_assign.processes p ON p.id = i.id
    ORDER BY i.id;
END
$$;
