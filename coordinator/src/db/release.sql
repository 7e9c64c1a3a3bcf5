-- Give back processes whose long-poll response never reached the executor.
SELECT colony_assign.release(colony => $1, executor => $2, process_ids => $3)
