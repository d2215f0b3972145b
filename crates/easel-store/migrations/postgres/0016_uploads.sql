-- Uploads in parts: the announced file, where it stands, and the parts received (each a
-- blob under `uploads/`; a part's row is committed with the clearing of its blob's intent).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    parts_count BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    asset_id TEXT,
    options TEXT NOT NULL,
    source_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX uploads_owner ON uploads (owner_id, id);
CREATE INDEX uploads_open ON uploads (status, expires_at);
CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
