SELECT colony_assign.close(process_id => $1, executor => $2, output => $3, colony => $4)
