-- A keyset page of a colony's processes (summaries), newest first, and the next page's cursor.
-- since/until arrive as text (RFC 3339): PostgreSQL parses them (22007/22008 when it cannot).
SELECT items, next
FROM colony_assign.list_processes(colony => $1, state => $2, executor_type => $3, location => $4,
                                  executor => $5, workflow_id => $6,
                                  since => $7::text::timestamptz, until => $8::text::timestamptz,
                                  order_by => $9, after => $10, max_count => $11)
