SELECT colony_assign.admin_remove_colony(admin_token => $1, name => $2)
