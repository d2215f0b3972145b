-- An asset's record: a name and description its owner edits, who may read it (private,
-- unlisted, public), when it was last edited, and since when it is private again after
-- being readable without a key (signed URLs issued before that stop working). Uploads
-- named in their metadata (Scenario's uploads) keep that name.
ALTER TABLE assets ADD COLUMN name TEXT;
ALTER TABLE assets ADD COLUMN description TEXT;
ALTER TABLE assets ADD COLUMN privacy TEXT NOT NULL DEFAULT 'private';
ALTER TABLE assets ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN private_since BIGINT;
UPDATE assets SET updated_at = created_at;
UPDATE assets SET name = CASE WHEN json_typeof((metadata::json)->'name') = 'string' THEN (metadata::json)->>'name' END WHERE metadata NOT LIKE '%u0000%';
CREATE INDEX assets_public ON assets (privacy, id);
