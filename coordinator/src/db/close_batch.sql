-- Closes for several executors at once (coalesced close requests): one row per request, with
-- the SQLSTATE and message close() would have raised when it was refused.
SELECT b.request, b.sqlstate, b.message
FROM colony_assign.close_batch(process_ids => $1, executors => $2, outputs => $3, colonies => $4) AS b
