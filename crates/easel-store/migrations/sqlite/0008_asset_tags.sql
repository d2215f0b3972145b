-- Tags on assets: an owner's tag names (with when each was first and last used) and which
-- of the owner's assets carry which.
CREATE TABLE tags (
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (owner_id, name)
);
CREATE TABLE asset_tags (
    asset_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (asset_id, tag)
);
CREATE INDEX asset_tags_owner_tag ON asset_tags (owner_id, tag);
