-- Users' models: an owner (NULL: a model of the server) and a privacy; presets. A user's
-- model keeps its id in `name` (the unique registry name) and its title in the spec.
ALTER TABLE models ADD COLUMN owner_id TEXT;
ALTER TABLE models ADD COLUMN privacy TEXT NOT NULL DEFAULT 'private';
CREATE INDEX models_owner ON models (owner_id, name);
CREATE INDEX models_privacy ON models (privacy, name);

CREATE TABLE model_presets (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    name TEXT NOT NULL,
    task TEXT,
    params TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX model_presets_model ON model_presets (model_id, created_at, id);

-- The searchable text now holds the spec's name (a user's model's title) and descriptions.
DROP VIEW model_search_source;
CREATE VIEW model_search_source AS
SELECT m.id AS model_id, substr(m.name || ' ' || CASE WHEN json_valid(m.spec) THEN
    coalesce(json_extract(m.spec, '$.name'), '') || ' ' ||
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.aliases')), '') || ' ' ||
    coalesce(json_extract(m.spec, '$.family'), '') || ' ' ||
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.tasks')), '') || ' ' ||
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.tags')), '') || ' ' ||
    coalesce(json_extract(m.spec, '$.short_description'), '') || ' ' ||
    coalesce(json_extract(m.spec, '$.description'), '')
    ELSE '' END, 1, 100000) AS body
FROM models m;
UPDATE model_search SET body =
    (SELECT s.body FROM model_search_source s WHERE s.model_id = model_search.model_id);
