-- assign()'s targeted arm: up to $5 waiting processes that name executor $1 (of colony $2,
-- type $3, at location $4 or none), locked, in queue order.
SELECT (- p.priority), p.id
FROM colony_assign.processes p
WHERE p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NOT NULL
  AND p.executor_names @> ARRAY[$1::text]
  AND p.colony = $2 AND p.executor_type = $3
  AND (p.location IS NULL OR p.location = $4)
ORDER BY (- p.priority), p.id
LIMIT $5
FOR NO KEY UPDATE OF p SKIP LOCKED
