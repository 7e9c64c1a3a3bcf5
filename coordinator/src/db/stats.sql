SELECT to_jsonb(s) FROM colony_assign.stats(colony => $1) AS s
