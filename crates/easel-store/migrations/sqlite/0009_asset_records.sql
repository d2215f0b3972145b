-- An asset's record: a name and description its owner edits, who may read it (private,
-- unlisted, public), when it was last edited, and since when it is private again after
-- being readable without a key (signed URLs issued before that stop working). Uploads
-- named in their metadata (Scenario's uploads) keep that name.
ALTER TABLE assets ADD COLUMN name TEXT;
ALTER TABLE assets ADD COLUMN description TEXT;
ALTER TABLE assets ADD COLUMN privacy TEXT NOT NULL DEFAULT 'private';
ALTER TABLE assets ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN private_since INTEGER;
UPDATE assets SET updated_at = created_at;
UPDATE assets SET name = CASE WHEN json_type(metadata, '$.name') = 'text' THEN json_extract(metadata, '$.name') END;
CREATE INDEX assets_public ON assets (privacy, id);
