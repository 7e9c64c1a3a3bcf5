SELECT to_jsonb(p) FROM colony_assign.process(process_id => $1) AS p
