-- The executor behind a bearer token (no row when unknown).
SELECT colony, executor, executor_type, location FROM colony_assign.authenticate(token => $1)
