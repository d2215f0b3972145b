-- Blobs that may exist without their asset row: written before the row's transaction
-- commits, or whose row was deleted before the blob. A crash in between leaves the intent,
-- and the collector deletes the blob unless a row points to it.
CREATE TABLE blob_intents (
    asset_id TEXT PRIMARY KEY,
    blob_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX blob_intents_created ON blob_intents (created_at);
