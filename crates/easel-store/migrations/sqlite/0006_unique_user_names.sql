-- User names are unique: keys belong to a named user that admins pick by name or id.
-- Earlier servers could make two users of one name; all but the oldest get their id's tail.
UPDATE users SET name = name || '-' || substr(id, 5, 8)
WHERE id NOT IN (SELECT MIN(id) FROM users GROUP BY name);
CREATE UNIQUE INDEX users_name ON users (name);
