SELECT requeued, failed, stale_executors, deleted, more FROM colony_assign.reap()
