SELECT colony_assign.log(process_id => $1, executor => $2, message => $3, colony => $4)
