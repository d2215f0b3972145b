-- User names are unique: keys belong to a named user that admins pick by name or id.
-- Earlier servers could make two users of one name; all but the oldest get their id appended
-- (ids are unique, so the new names are too).
UPDATE users SET name = name || '-' || id
WHERE id NOT IN (SELECT MIN(id) FROM users GROUP BY name);
CREATE UNIQUE INDEX users_name ON users (name);
