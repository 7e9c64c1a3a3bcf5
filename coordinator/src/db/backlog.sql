-- Catch-up: which of these wake-up keys have assignable work right now.
SELECT key_index, waiting
FROM colony_assign.backlog(colonies => $1, executor_types => $2, locations => $3, executors => $4)
