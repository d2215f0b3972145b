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
    is_default BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX model_presets_model ON model_presets (model_id, created_at, id);

-- The searchable text now holds the spec's name (a user's model's title) and descriptions.
CREATE OR REPLACE FUNCTION model_search_body(mid TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    nm TEXT;
    sp TEXT;
    j jsonb;
    extra TEXT := '';
BEGIN
    SELECT name, spec INTO nm, sp FROM models WHERE id = mid;
    BEGIN
        j := sp::jsonb;
        SELECT concat_ws(' ',
            j ->> 'name',
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'aliases') = 'array' THEN j -> 'aliases' ELSE '[]' END) x),
            j ->> 'family',
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'tasks') = 'array' THEN j -> 'tasks' ELSE '[]' END) x),
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'tags') = 'array' THEN j -> 'tags' ELSE '[]' END) x),
            j ->> 'short_description',
            j ->> 'description')
        INTO extra;
    EXCEPTION WHEN others THEN
        extra := '';
    END;
    RETURN left(coalesce(nm, '') || ' ' || coalesce(extra, ''), 100000);
END
$$;
UPDATE model_search SET body = model_search_body(model_id);
