SELECT colony_assign.admin_pause(admin_token => $1, colony => $2)
