-- The channels an executor should be woken on, per the database (detects stale caches).
SELECT colony_assign.channels(colony => $1, executor => $2)
