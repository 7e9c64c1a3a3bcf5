SELECT items, next FROM colony_assign.list_executors(colony => $1, after => $2, max_count => $3)
