SELECT colony_assign.admin_remove_executor(admin_token => $1, colony => $2, name => $3)
