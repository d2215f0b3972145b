-- What a job occupies while it runs (device, cpu, network): workers claim by it, so a job
-- waiting for a busy device is never claimed while others could run.
ALTER TABLE jobs ADD COLUMN resource TEXT NOT NULL DEFAULT 'cpu';
UPDATE jobs SET resource = 'device' WHERE task IN ('txt2img', 'img2img', 'inpaint');
CREATE INDEX jobs_queued_resource ON jobs (status, resource, priority, fair_rank);
