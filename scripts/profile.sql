-- The workload of scripts/profile: colony "p", executors e1..e50 of type "t" (no location),
-- 200,000 waiting location-less processes (submit_many takes at most 100,000 per call).
CREATE EXTENSION colony_assign;
SELECT colony_assign.add_colony('p');
SELECT count(colony_assign.add_executor('p', 'e' || g, 't', NULL)) FROM generate_series(1, 50) g;
\set specs '(SELECT jsonb_agg(jsonb_build_object(''funcname'', ''f'', ''conditions'', jsonb_build_object(''executortype'', ''t''))) FROM generate_series(1, 100000))'
SELECT count(*) FROM colony_assign.submit_many('p', :specs);
SELECT count(*) FROM colony_assign.submit_many('p', :specs);
VACUUM ANALYZE colony_assign.processes;
