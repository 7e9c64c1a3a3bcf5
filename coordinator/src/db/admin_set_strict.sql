SELECT colony_assign.admin_set_strict(admin_token => $1, colony => $2, strict => $3)
