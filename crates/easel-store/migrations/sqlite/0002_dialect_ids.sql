-- What a dialect received (its wire request, for echoing back and for the record), and the
-- ids dialects give to Easel's objects (Leonardo's UUIDv4 generation ids, client-chosen
-- Replicate prediction ids), each scoped to an owner.
ALTER TABLE jobs ADD COLUMN request TEXT;
CREATE TABLE external_ids (
    namespace TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    internal_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, owner_id, external_id)
);
CREATE UNIQUE INDEX external_ids_internal ON external_ids (namespace, internal_id);
