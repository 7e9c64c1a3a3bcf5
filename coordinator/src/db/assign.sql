-- Claim up to max_count processes for an executor; each row as JSON, in queue order.
SELECT to_jsonb(p) FROM colony_assign.assign(colony => $1, executor => $2, max_count => $3) AS p
