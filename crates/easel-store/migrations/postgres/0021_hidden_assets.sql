-- Hidden assets: kept and readable by id, left out of the owner's lists unless asked for.
ALTER TABLE assets ADD COLUMN hidden BIGINT NOT NULL DEFAULT 0;
