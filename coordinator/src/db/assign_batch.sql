-- Claims for several executors at once (coalesced long-polls): per claimed process its request
-- (1-based index into the arrays) and the process as JSON, in queue order; per refused request
-- its SQLSTATE and message.
SELECT b.request, to_jsonb(b.process), b.sqlstate, b.message
FROM colony_assign.assign_batch(colonies => $1, executors => $2, max_counts => $3) AS b
