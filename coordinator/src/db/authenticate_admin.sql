-- The admin behind a bearer token and the colonies it reaches (NULL = all); no row when unknown.
SELECT admin, colonies FROM colony_assign.authenticate_admin(token => $1)
