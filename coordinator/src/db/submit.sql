-- Submit a JSON array of specs in one transaction; ids in input order.
SELECT colony_assign.submit_many(colony => $1, specs => $2)
