-- Blobs that may exist without their asset row: written before the row's transaction
-- commits, or whose row was deleted before the blob. A crash in between leaves the intent,
-- and the collector deletes the blob unless a row points to it.
CREATE TABLE blob_intents (
    asset_id TEXT PRIMARY KEY,
    blob_key TEXT NOT NULL,
    -- 0: pending; 1: claimed by the collector, which deletes the blob; 2: collected (kept a
    -- day). A row's transaction fails on a claimed or collected intent.
    claimed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX blob_intents_created ON blob_intents (created_at);
