SELECT colony_assign.heartbeat(colony => $1, executor => $2, processes => $3)
