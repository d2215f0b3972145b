-- Text search over the models registry (`models::search`), as `asset_search` for assets: one
-- row per model holding its name, aliases, family, tasks and tags, kept by triggers on
-- `models`, indexed by FTS5.
CREATE TABLE model_search (
    n INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE VIRTUAL TABLE model_search_fts USING fts5(
    body, content = 'model_search', content_rowid = 'n',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER model_search_fts_insert AFTER INSERT ON model_search BEGIN
    INSERT INTO model_search_fts (rowid, body) VALUES (new.n, new.body);
END;
CREATE TRIGGER model_search_fts_delete AFTER DELETE ON model_search BEGIN
    INSERT INTO model_search_fts (model_search_fts, rowid, body) VALUES ('delete', old.n, old.body);
END;
CREATE TRIGGER model_search_fts_update AFTER UPDATE ON model_search BEGIN
    INSERT INTO model_search_fts (model_search_fts, rowid, body) VALUES ('delete', old.n, old.body);
    INSERT INTO model_search_fts (rowid, body) VALUES (new.n, new.body);
END;

-- The searchable text of every model (its name alone for a spec that is not JSON).
CREATE VIEW model_search_source AS
SELECT m.id AS model_id, substr(m.name || ' ' || CASE WHEN json_valid(m.spec) THEN
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.aliases')), '') || ' ' ||
    coalesce(json_extract(m.spec, '$.family'), '') || ' ' ||
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.tasks')), '') || ' ' ||
    coalesce((SELECT group_concat(value, ' ') FROM json_each(m.spec, '$.tags')), '')
    ELSE '' END, 1, 100000) AS body
FROM models m;

CREATE TRIGGER models_search_insert AFTER INSERT ON models BEGIN
    INSERT INTO model_search (model_id, body)
    SELECT model_id, body FROM model_search_source WHERE model_id = new.id;
END;
CREATE TRIGGER models_search_update AFTER UPDATE OF name, spec ON models BEGIN
    UPDATE model_search SET body = (SELECT body FROM model_search_source WHERE model_id = new.id)
    WHERE model_id = new.id;
END;
CREATE TRIGGER models_search_delete AFTER DELETE ON models BEGIN
    DELETE FROM model_search WHERE model_id = old.id;
END;

INSERT INTO model_search (model_id, body) SELECT model_id, body FROM model_search_source;
