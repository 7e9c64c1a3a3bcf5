-- Admin calls carry the admin's token: the database checks it and its colony scope again, in
-- the same transaction as the change.
SELECT colony_assign.admin_add_colony(admin_token => $1, name => $2)
