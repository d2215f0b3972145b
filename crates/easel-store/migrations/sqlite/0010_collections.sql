-- Collections: an owner's named sets of assets and models.
CREATE TABLE collections (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX collections_owner ON collections (owner_id, id);
CREATE TABLE collection_items (
    collection_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (collection_id, kind, item_id)
);
CREATE INDEX collection_items_item ON collection_items (kind, item_id);
