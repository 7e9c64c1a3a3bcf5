-- Input validation shared by the SQL functions. Specs are checked in Rust (src/spec.rs), where
-- they are parsed once into the row that is stored.

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

-- Largest accepted spec, output and error list, in bytes (as stored). Over it: SQLSTATE 54000.
CREATE FUNCTION colony_assign._max_document_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 262144;
