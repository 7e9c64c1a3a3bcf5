-- assign(): what ColonyOS does in four database operations (mark the executor alive, honour a
-- paused colony, select, update), done in one call.
--
-- A C function of the extension (src/claim.rs): it walks the partial indexes of the queue
-- ranges the executor can take from (its location's, its type's location-less range, and
-- name-targeted work that lists it) in queue order, locks each row it takes FOR NO KEY UPDATE
-- SKIP LOCKED, re-checks it and marks it RUNNING with its deadline. Strict colonies serialize
-- claims per (colony, executor type) (src/strict.rs); distributed ones start at this session's
-- scan cursors (src/cursor.rs).
CREATE FUNCTION colony_assign.assign(colony text, executor text, max_count integer DEFAULT 1)
RETURNS SETOF colony_assign.process
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
AS 'MODULE_PATHNAME', 'colony_assign_assign';
