-- A page of colonies: the items as the HTTP API returns them, and the cursor of the next page.
SELECT items, next FROM colony_assign.list_colonies(within => $1, after => $2, max_count => $3)
