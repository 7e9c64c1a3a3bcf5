-- The new executor's bearer token (returned once; only its hash is stored).
SELECT colony_assign.admin_add_executor(admin_token => $1, colony => $2, name => $3, executor_type => $4, location => $5)
