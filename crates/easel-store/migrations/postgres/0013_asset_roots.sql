-- The lineage root of each derived asset (Scenario's rootAssetId): the asset its chain of
-- parents starts from, as it was when the asset was made (`assets::insert` takes the
-- parent's root, or the parent when it has none or is gone). Existing rows: the same rule
-- up the chain that is still there (the parent of the topmost ancestor still there when
-- that one has a parent that is gone, else that ancestor).
ALTER TABLE assets ADD COLUMN root_id TEXT;
UPDATE assets SET root_id = coalesce((
    WITH RECURSIVE up(id, parent) AS (
        SELECT p.id, p.parent_id FROM assets p WHERE p.id = assets.parent_id
        UNION ALL
        SELECT q.id, q.parent_id FROM assets q JOIN up ON q.id = up.parent
    )
    SELECT CASE WHEN u.parent IS NULL THEN u.id ELSE u.parent END FROM up u
    WHERE u.parent IS NULL OR NOT EXISTS (SELECT 1 FROM assets r WHERE r.id = u.parent)
    LIMIT 1
), parent_id)
WHERE parent_id IS NOT NULL;
CREATE INDEX assets_owner_root ON assets (owner_id, root_id);
