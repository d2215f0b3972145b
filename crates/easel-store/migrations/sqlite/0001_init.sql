-- Easel schema (SQLite). Integers are read as i64, booleans are 0/1, times are epoch ms,
-- JSON is TEXT. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    queue_vtime INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    fair_rank INTEGER NOT NULL,
    input TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    step INTEGER,
    total_steps INTEGER,
    error_code TEXT,
    error_message TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    usage_units REAL NOT NULL DEFAULT 0,
    webhook TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    provider TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_claim ON jobs (priority DESC, fair_rank, id) WHERE status = 'queued';
CREATE INDEX jobs_queued_rank ON jobs (fair_rank) WHERE status = 'queued';
CREATE INDEX jobs_owner ON jobs (owner_id, id);
CREATE INDEX jobs_owner_status ON jobs (owner_id, status);
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);
CREATE TABLE idempotency_keys (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    job_id TEXT,
    output_index INTEGER,
    kind TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    parent_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX assets_owner ON assets (owner_id, id);
CREATE INDEX assets_job ON assets (job_id);
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    discovered INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE model_names (
    name TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE
);
CREATE TABLE usage (
    owner_id TEXT NOT NULL,
    day TEXT NOT NULL,
    task TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    units REAL NOT NULL,
    outputs INTEGER NOT NULL,
    PRIMARY KEY (owner_id, day, task)
);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_expires_at INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_job ON webhook_deliveries (job_id);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
