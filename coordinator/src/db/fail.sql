SELECT colony_assign.fail(process_id => $1, executor => $2, errors => $3, colony => $4)
