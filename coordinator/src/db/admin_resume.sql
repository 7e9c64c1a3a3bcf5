SELECT colony_assign.admin_resume(admin_token => $1, colony => $2)
