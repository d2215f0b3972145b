-- Bulk downloads: the assets resolved when the download was asked for; the archive is
-- streamed from their blobs on each read, never stored.
CREATE TABLE downloads (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    asset_ids TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX downloads_owner ON downloads (owner_id, id);
CREATE INDEX downloads_expiry ON downloads (expires_at);
