-- The databases the launcher starts a worker for: every one that accepts connections, except
-- templates and those where colony_assign.reap_interval is set to 0 for the whole database
-- (ALTER DATABASE ... SET, visible in a shared catalog), so they cost no worker slot.
SELECT d.oid
FROM pg_catalog.pg_database d
WHERE d.datallowconn AND NOT d.datistemplate
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS c(setting)
      WHERE s.setdatabase = d.oid AND s.setrole = 0
        AND c.setting ~ '^colony_assign\.reap_interval=0(ms|s|min|h|d)?$')
