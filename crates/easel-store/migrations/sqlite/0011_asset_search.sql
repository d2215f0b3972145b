-- Text search over assets (`assets::search`): one row per asset holding its name, description,
-- prompt and tags as one text (at most 100,000 characters), indexed by FTS5 (an
-- external-content table over it, kept by the standard triggers). The rows follow the assets
-- and their tags through triggers, so no write path can forget them. `n` is an explicit
-- INTEGER PRIMARY KEY: VACUUM keeps it.
CREATE TABLE asset_search (
    n INTEGER PRIMARY KEY,
    asset_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE VIRTUAL TABLE asset_search_fts USING fts5(
    body, content = 'asset_search', content_rowid = 'n',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER asset_search_fts_insert AFTER INSERT ON asset_search BEGIN
    INSERT INTO asset_search_fts (rowid, body) VALUES (new.n, new.body);
END;
CREATE TRIGGER asset_search_fts_delete AFTER DELETE ON asset_search BEGIN
    INSERT INTO asset_search_fts (asset_search_fts, rowid, body) VALUES ('delete', old.n, old.body);
END;
CREATE TRIGGER asset_search_fts_update AFTER UPDATE ON asset_search BEGIN
    INSERT INTO asset_search_fts (asset_search_fts, rowid, body) VALUES ('delete', old.n, old.body);
    INSERT INTO asset_search_fts (rowid, body) VALUES (new.n, new.body);
END;

-- The searchable text of every asset ('' for metadata that is not JSON).
CREATE VIEW asset_search_source AS
SELECT a.id AS asset_id, substr(
    coalesce(a.name, '') || ' ' || coalesce(a.description, '') || ' ' ||
    coalesce(CASE WHEN json_valid(a.metadata) THEN json_extract(a.metadata, '$.prompt') END, '') || ' ' ||
    coalesce((SELECT group_concat(t.tag, ' ') FROM asset_tags t WHERE t.asset_id = a.id), ''),
    1, 100000) AS body
FROM assets a;

CREATE TRIGGER assets_search_insert AFTER INSERT ON assets BEGIN
    INSERT INTO asset_search (asset_id, body)
    SELECT asset_id, body FROM asset_search_source WHERE asset_id = new.id;
END;
CREATE TRIGGER assets_search_update AFTER UPDATE OF name, description, metadata ON assets BEGIN
    UPDATE asset_search SET body = (SELECT body FROM asset_search_source WHERE asset_id = new.id)
    WHERE asset_id = new.id;
END;
CREATE TRIGGER assets_search_delete AFTER DELETE ON assets BEGIN
    DELETE FROM asset_search WHERE asset_id = old.id;
END;
CREATE TRIGGER asset_tags_search_insert AFTER INSERT ON asset_tags BEGIN
    UPDATE asset_search SET body = (SELECT body FROM asset_search_source WHERE asset_id = new.asset_id)
    WHERE asset_id = new.asset_id;
END;
CREATE TRIGGER asset_tags_search_update AFTER UPDATE ON asset_tags BEGIN
    UPDATE asset_search SET body = (SELECT body FROM asset_search_source WHERE asset_id = old.asset_id)
    WHERE asset_id = old.asset_id;
    UPDATE asset_search SET body = (SELECT body FROM asset_search_source WHERE asset_id = new.asset_id)
    WHERE asset_id = new.asset_id;
END;
CREATE TRIGGER asset_tags_search_delete AFTER DELETE ON asset_tags BEGIN
    UPDATE asset_search SET body = (SELECT body FROM asset_search_source WHERE asset_id = old.asset_id)
    WHERE asset_id = old.asset_id;
END;

-- The assets there already.
INSERT INTO asset_search (asset_id, body) SELECT asset_id, body FROM asset_search_source;
