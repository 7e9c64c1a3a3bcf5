-- After fail() of processes $1 (bigint[]): every waiting descendant fails too, naming the
-- ancestor (sql/workflows.sql).
SELECT colony_assign._end_descendants($1, 3)
