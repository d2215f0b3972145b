-- Usage per owner, UTC day and model, kept like `usage` (per task): recorded when a job
-- succeeds and never removed with the job. Filled from the jobs already there.
CREATE TABLE usage_models (
    owner_id TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    jobs BIGINT NOT NULL,
    units DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner_id, day, model)
);
INSERT INTO usage_models (owner_id, day, model, jobs, units)
SELECT owner_id,
       to_char(to_timestamp(COALESCE(completed_at, created_at) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
       model, COUNT(*), SUM(usage_units)
FROM jobs WHERE status = 'succeeded' AND model IS NOT NULL
GROUP BY 1, 2, 3;
