-- Submit a JSON array of specs in one transaction; ids in input order. With an idempotency
-- key ($3, NULL for none) a retry returns the first call's ids.
SELECT colony_assign.submit_many(colony => $1, specs => $2, idempotency_key => $3)
