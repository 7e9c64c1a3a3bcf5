SELECT process_id, closed, error FROM colony_assign.close_many(executor => $1, closes => $2, colony => $3)
