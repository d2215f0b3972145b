-- A job whose outputs are stored hidden (Scenario's `hideResults`, native `hide_outputs`).
ALTER TABLE jobs ADD COLUMN hide_outputs BIGINT NOT NULL DEFAULT 0;
