-- Per (executor type, location): assignable processes, and the oldest one's submission and age.
SELECT executor_type, location, waiting, to_jsonb(oldest_submitted_at) #>> '{}', oldest_age_s
FROM colony_assign.queues(colony => $1)
ORDER BY executor_type, location NULLS FIRST
