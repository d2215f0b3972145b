-- What a job occupies while it runs (device, cpu, network): workers claim by it, so a job
-- waiting for a busy device is never claimed while others could run.
ALTER TABLE jobs ADD COLUMN resource TEXT NOT NULL DEFAULT 'cpu';
UPDATE jobs SET resource = 'device' WHERE task IN ('txt2img', 'img2img', 'inpaint');
-- Generations of models that another server runs wait on the network, not the device.
UPDATE jobs SET resource = 'network' WHERE task IN ('txt2img', 'img2img', 'inpaint')
    AND model IN (SELECT name FROM models WHERE spec NOT LIKE '%"provider":"local"%');
CREATE INDEX jobs_queued_resource ON jobs (status, resource, priority, fair_rank);
