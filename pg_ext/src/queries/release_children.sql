-- After close() of processes $1 (bigint[]) that have children: one decrement per edge, and
-- the children whose last parent this was become assignable (sql/workflows.sql).
SELECT colony_assign._release_children(array_agg(c))
FROM colony_assign.processes p, unnest(p.children) AS c
WHERE p.id = ANY ($1)
