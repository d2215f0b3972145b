-- Text search over assets (`assets::search`): one row per asset holding its name, description,
-- prompt and tags as one text (at most 100,000 characters) and its `simple` tsvector of the
-- runs of letters and digits (no stemming, as SQLite's FTS5 unicode61; `fox.png` is `fox` and
-- `png` on both), GIN-indexed. The rows follow the assets and their tags through triggers, so
-- no write path can forget them.
CREATE TABLE asset_search (
    asset_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    doc tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED
);
CREATE INDEX asset_search_doc ON asset_search USING GIN (doc);

-- The searchable text of one asset ('' for metadata that is not JSON).
CREATE FUNCTION asset_search_body(aid TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    head TEXT;
    meta TEXT;
    prompt TEXT;
    tags TEXT;
BEGIN
    SELECT coalesce(name, '') || ' ' || coalesce(description, ''), metadata INTO head, meta
    FROM assets WHERE id = aid;
    -- Only what looks like a JSON object is parsed (the block costs a subtransaction).
    IF meta LIKE '{%' THEN
        BEGIN
            prompt := (meta::json) ->> 'prompt';
        EXCEPTION WHEN others THEN
            prompt := NULL;
        END;
    END IF;
    SELECT string_agg(tag, ' ') INTO tags FROM asset_tags WHERE asset_id = aid;
    RETURN left(coalesce(head, '') || ' ' || coalesce(prompt, '') || ' ' || coalesce(tags, ''), 100000);
END
$$;

CREATE FUNCTION assets_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM asset_search WHERE asset_id = OLD.id;
        RETURN OLD;
    END IF;
    INSERT INTO asset_search (asset_id, body) VALUES (NEW.id, asset_search_body(NEW.id))
    ON CONFLICT (asset_id) DO UPDATE SET body = EXCLUDED.body;
    RETURN NEW;
END
$$;
CREATE TRIGGER assets_search AFTER INSERT OR DELETE OR UPDATE OF name, description, metadata
    ON assets FOR EACH ROW EXECUTE FUNCTION assets_search_sync();

CREATE FUNCTION asset_tags_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE asset_search SET body = asset_search_body(OLD.asset_id) WHERE asset_id = OLD.asset_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE asset_search SET body = asset_search_body(NEW.asset_id) WHERE asset_id = NEW.asset_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER asset_tags_search AFTER INSERT OR DELETE OR UPDATE ON asset_tags
    FOR EACH ROW EXECUTE FUNCTION asset_tags_search_sync();

-- The assets there already.
INSERT INTO asset_search (asset_id, body) SELECT id, asset_search_body(id) FROM assets;
