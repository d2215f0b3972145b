-- Text search over the models registry (`models::search`), as `asset_search` for assets: one
-- row per model holding its name, aliases, family, tasks and tags and its `simple` tsvector of
-- the runs of letters and digits, GIN-indexed, kept by triggers on `models`.
CREATE TABLE model_search (
    model_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    doc tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED
);
CREATE INDEX model_search_doc ON model_search USING GIN (doc);

-- The searchable text of one model (its name alone for a spec that is not JSON).
CREATE FUNCTION model_search_body(mid TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
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
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'aliases') = 'array' THEN j -> 'aliases' ELSE '[]' END) x),
            j ->> 'family',
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'tasks') = 'array' THEN j -> 'tasks' ELSE '[]' END) x),
            (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(j -> 'tags') = 'array' THEN j -> 'tags' ELSE '[]' END) x))
        INTO extra;
    EXCEPTION WHEN others THEN
        extra := '';
    END;
    RETURN left(coalesce(nm, '') || ' ' || coalesce(extra, ''), 100000);
END
$$;

CREATE FUNCTION models_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM model_search WHERE model_id = OLD.id;
        RETURN OLD;
    END IF;
    INSERT INTO model_search (model_id, body) VALUES (NEW.id, model_search_body(NEW.id))
    ON CONFLICT (model_id) DO UPDATE SET body = EXCLUDED.body;
    RETURN NEW;
END
$$;
CREATE TRIGGER models_search AFTER INSERT OR DELETE OR UPDATE OF name, spec
    ON models FOR EACH ROW EXECUTE FUNCTION models_search_sync();

INSERT INTO model_search (model_id, body) SELECT id, model_search_body(id) FROM models;
