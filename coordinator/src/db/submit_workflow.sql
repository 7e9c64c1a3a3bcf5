SELECT colony_assign.submit_workflow(colony => $1, specs => $2)
