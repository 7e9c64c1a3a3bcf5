-- Input validation shared by every public function.
--
-- The *_problem functions return NULL for valid input and otherwise a message naming the offending
-- field and value. They are single expressions without subqueries, so the planner inlines them
-- into _spec_problems, which checks a whole array of specs in one statement. They are declared
-- STABLE, not IMMUTABLE: they use format() and to_jsonb(), which are STABLE, and PostgreSQL
-- will not inline an IMMUTABLE function whose body is less than that (each call then ran as a
-- function execution of its own). The callers raise
-- the message with SQLSTATE 22023 (invalid_parameter_value).

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

--------------------------------------------------------------------------------
-- Spec fields
--------------------------------------------------------------------------------

-- A shortened rendering of a JSON value for error messages.
CREATE FUNCTION colony_assign._show(v jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN length(v::text) > 60 THEN left(v::text, 57) || '...' ELSE v::text END;

-- NULL when v is absent, JSON null, or an integer within [lo, hi].
CREATE FUNCTION colony_assign._int_problem(v jsonb, path text, lo bigint, hi bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN NULL
    WHEN jsonb_typeof(v) <> 'number'
    THEN format('%s must be an integer between %s and %s (got %s)', path, lo, hi, colony_assign._show(v))
    -- A separate WHEN, not an OR: only CASE guarantees the cast runs after the type check.
    WHEN v::numeric <> trunc(v::numeric) OR v::numeric NOT BETWEEN lo AND hi
    THEN format('%s must be an integer between %s and %s (got %s)', path, lo, hi, colony_assign._show(v))
END;

-- NULL when v is absent, JSON null, or a string of 1..255 bytes (or, with allow_empty, "").
CREATE FUNCTION colony_assign._name_problem(v jsonb, path text, allow_empty boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN NULL
    WHEN jsonb_typeof(v) <> 'string' THEN format('%s must be a string (got %s)', path, colony_assign._show(v))
    WHEN octet_length(v #>> '{}') > 255 THEN format('%s is too long: %s bytes, at most 255', path, octet_length(v #>> '{}'))
    WHEN NOT allow_empty AND v #>> '{}' = '' THEN format('%s must not be empty', path)
END;

-- NULL when v is absent, JSON null, or an array of at most max_len entries (the entries are
-- checked by _spec_problems, which can say which one is wrong).
CREATE FUNCTION colony_assign._array_problem(v jsonb, path text, max_len integer) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN NULL
    WHEN jsonb_typeof(v) <> 'array' THEN format('%s must be an array of strings (got %s)', path, colony_assign._show(v))
    WHEN jsonb_array_length(v) > max_len THEN format('%s has %s entries, at most %s', path, jsonb_array_length(v), max_len)
END;

-- Turns an optional JSON string into text; NULL for absent, null or "".
CREATE FUNCTION colony_assign._opt_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN jsonb_typeof(v) = 'string' AND v #>> '{}' <> '' THEN v #>> '{}' END;

-- Seconds for maxwaittime/maxexectime: -1 and 0 (ColonyOS' "unset") mean unlimited = NULL.
CREATE FUNCTION colony_assign._opt_seconds(v jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN jsonb_typeof(v) IS DISTINCT FROM 'number' THEN NULL
            WHEN v::integer > 0 THEN v::integer END;

--------------------------------------------------------------------------------
-- Whole specs
--------------------------------------------------------------------------------

-- The first invalid spec of a JSON array of specs, as (index, message); no row when all are
-- valid. `colony` is the colony they are submitted to (a ColonyOS spec may carry
-- conditions.colonyname; it must then name the same colony). `in_workflow` allows
-- conditions.dependencies.
--
-- One statement for the whole array, on purpose: a SQL function that contains a subquery is
-- never inlined, and calling one per spec costs an executor start-up per spec (~1 ms here).
-- The per-field helpers above have no subqueries, so they are inlined into this plan. It is
-- PL/pgSQL so that plan is made once per session (as a SQL function it was re-planned on
-- every call: ~650 µs of a single submit).
CREATE FUNCTION colony_assign._spec_problems(specs jsonb, colony text, in_workflow boolean)
RETURNS TABLE (idx bigint, problem text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $body$
BEGIN
    RETURN QUERY
    SELECT a.i - 1, checked.problem
    FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i)
    CROSS JOIN LATERAL (SELECT CASE
        WHEN jsonb_typeof(a.s) <> 'object' THEN
            format('a spec must be a JSON object (got %s)', colony_assign._show(a.s))
        ELSE coalesce(
            (SELECT format('unknown key %s in spec (allowed: funcname, args, kwargs, priority, maxwaittime, '
                           'maxexectime, maxretries, label, nodename, conditions)', to_jsonb(k))
             FROM jsonb_object_keys(a.s) AS k
             WHERE k <> ALL (ARRAY['funcname', 'args', 'kwargs', 'priority', 'maxwaittime', 'maxexectime',
                                   'maxretries', 'label', 'nodename', 'conditions'])
             LIMIT 1),
            CASE WHEN jsonb_typeof(a.s -> 'funcname') IS DISTINCT FROM 'string' OR a.s ->> 'funcname' = ''
                 THEN 'spec.funcname is required and must be a non-empty string' END,
            colony_assign._name_problem(a.s -> 'funcname', 'spec.funcname', false),
            CASE WHEN jsonb_typeof(a.s -> 'args') NOT IN ('array', 'null')
                 THEN format('spec.args must be an array (got %s)', colony_assign._show(a.s -> 'args')) END,
            CASE WHEN jsonb_typeof(a.s -> 'kwargs') NOT IN ('object', 'null')
                 THEN format('spec.kwargs must be an object (got %s)', colony_assign._show(a.s -> 'kwargs')) END,
            colony_assign._int_problem(a.s -> 'priority', 'spec.priority', -50000, 50000),
            -- 10 years: long enough for anything real, small enough for timestamptz arithmetic.
            colony_assign._int_problem(a.s -> 'maxwaittime', 'spec.maxwaittime', -1, 315360000),
            colony_assign._int_problem(a.s -> 'maxexectime', 'spec.maxexectime', -1, 315360000),
            colony_assign._int_problem(a.s -> 'maxretries', 'spec.maxretries', -1, 1000000),
            colony_assign._name_problem(a.s -> 'label', 'spec.label', true),
            colony_assign._name_problem(a.s -> 'nodename', 'spec.nodename', true),
            CASE WHEN jsonb_typeof(a.s -> 'conditions') IS DISTINCT FROM 'object'
                 THEN 'spec.conditions is required and must be an object with at least executortype' END,
            (SELECT format('unknown key %s in spec.conditions (allowed: executortype, executornames, '
                           'locationname, dependencies, preferredlocation, localitywait, colonyname)', to_jsonb(k))
             FROM jsonb_object_keys(a.s -> 'conditions') AS k
             WHERE k <> ALL (ARRAY['executortype', 'executornames', 'locationname', 'dependencies',
                                   'preferredlocation', 'localitywait', 'colonyname'])
             LIMIT 1),
            CASE WHEN jsonb_typeof(a.s #> '{conditions,executortype}') IS DISTINCT FROM 'string'
                 THEN 'spec.conditions.executortype is required and must be a string' END,
            colony_assign._name_problem(a.s #> '{conditions,executortype}', 'spec.conditions.executortype', false),
            colony_assign._array_problem(a.s #> '{conditions,executornames}', 'spec.conditions.executornames', 100),
            colony_assign._array_problem(a.s #> '{conditions,dependencies}', 'spec.conditions.dependencies', 1000),
            (SELECT CASE WHEN jsonb_typeof(x.e) <> 'string'
                         THEN format('%s[%s] must be a string (got %s)', arr.path, x.j - 1, colony_assign._show(x.e))
                         ELSE colony_assign._name_problem(x.e, format('%s[%s]', arr.path, x.j - 1), false) END
             FROM (VALUES (1, 'spec.conditions.executornames', a.s #> '{conditions,executornames}'),
                          (2, 'spec.conditions.dependencies', a.s #> '{conditions,dependencies}')) AS arr(n, path, v),
                  jsonb_array_elements(CASE WHEN jsonb_typeof(arr.v) = 'array' THEN arr.v ELSE '[]' END)
                      WITH ORDINALITY AS x(e, j)
             WHERE jsonb_typeof(x.e) <> 'string'
                OR colony_assign._name_problem(x.e, format('%s[%s]', arr.path, x.j - 1), false) IS NOT NULL
             ORDER BY arr.n, x.j
             LIMIT 1),
            colony_assign._name_problem(a.s #> '{conditions,locationname}', 'spec.conditions.locationname', true),
            colony_assign._name_problem(a.s #> '{conditions,preferredlocation}', 'spec.conditions.preferredlocation', true),
            colony_assign._int_problem(a.s #> '{conditions,localitywait}', 'spec.conditions.localitywait', 0, 86400),
            CASE WHEN NOT in_workflow
                  AND jsonb_typeof(a.s #> '{conditions,dependencies}') = 'array'
                  AND a.s #> '{conditions,dependencies}' <> '[]'
                 THEN 'spec.conditions.dependencies is only allowed in submit_workflow()' END,
            CASE WHEN jsonb_typeof(a.s #> '{conditions,colonyname}') NOT IN ('string', 'null')
                 THEN 'spec.conditions.colonyname must be a string'
                 WHEN a.s #>> '{conditions,colonyname}' NOT IN ('', colony)
                 THEN format('spec.conditions.colonyname is %s but the spec is submitted to colony %s',
                             a.s #> '{conditions,colonyname}', to_jsonb(colony)) END
        )
    END) AS checked(problem)
    WHERE checked.problem IS NOT NULL
    ORDER BY a.i
    LIMIT 1;
END
$body$;

-- Largest accepted spec, output and error list, in bytes (as stored). Over it: SQLSTATE 54000.
CREATE FUNCTION colony_assign._max_document_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 262144;
