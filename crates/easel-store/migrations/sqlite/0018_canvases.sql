-- Canvases: an asset of kind `canvas` whose content (the current JSON document) lives here,
-- not in a blob, so a save (document, version, lock check, snapshot) is one transaction.
CREATE TABLE canvases (
    asset_id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    version BIGINT NOT NULL,
    thumbnail_id TEXT,
    lock_id TEXT,
    lock_holder TEXT,
    lock_expires_at BIGINT
);
CREATE INDEX canvases_thumbnail ON canvases (thumbnail_id);
-- The saved versions of a canvas (at most 100 kept, the oldest dropped first), ordered by
-- the canvas's version they saved (counted under the canvas row's lock, so in order across
-- processes whatever their clocks).
CREATE TABLE canvas_snapshots (
    id TEXT PRIMARY KEY,
    asset_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    author_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    document TEXT NOT NULL,
    taken_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX canvas_snapshots_asset ON canvas_snapshots (asset_id, version);
