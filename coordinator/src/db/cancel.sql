SELECT colony_assign.cancel(process_id => $1)
