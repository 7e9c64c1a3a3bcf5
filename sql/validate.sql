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
-- conditions.dependencies. The field rules are in Rust (src/spec.rs, _spec_problem), which
-- reads the spec without args and kwargs: those are opaque payload, so only their shape is
-- checked, here.
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
        WHEN jsonb_typeof(a.s -> 'args') NOT IN ('array', 'null') THEN
            format('spec.args must be an array (got %s)', colony_assign._show(a.s -> 'args'))
        WHEN jsonb_typeof(a.s -> 'kwargs') NOT IN ('object', 'null') THEN
            format('spec.kwargs must be an object (got %s)', colony_assign._show(a.s -> 'kwargs'))
        ELSE colony_assign._spec_problem((a.s - '{args,kwargs}'::text[])::text, colony, in_workflow)
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
