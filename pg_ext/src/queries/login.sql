-- The executor or admin a token belongs to ($1: the token's SHA-256): kind, colony, name and,
-- for admins, the colonies the token reaches (NULL = all).
SELECT 'executor', e.colony, e.name, NULL::text[]
FROM colony_assign.executors e
WHERE e.token_hash = $1
UNION ALL
SELECT 'admin', NULL, a.name, a.colonies
FROM colony_assign.admins a
WHERE a.token_hash = $1
