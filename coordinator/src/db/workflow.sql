SELECT colony_assign.workflow(workflow_id => $1)
