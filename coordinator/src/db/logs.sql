SELECT coalesce(jsonb_agg(to_jsonb(l)), '[]') FROM colony_assign.logs(process_id => $1) AS l
