SELECT colony_assign.worker_active()
