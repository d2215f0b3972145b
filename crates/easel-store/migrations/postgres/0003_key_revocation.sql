-- When one of the user's keys was last revoked (epoch ms): signed asset URLs issued before
-- it stop working, so revoking a key also revokes the links handed out meanwhile.
ALTER TABLE users ADD COLUMN keys_revoked_at BIGINT;
