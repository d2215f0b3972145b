//! Job rows and their transitions. Each transition is one transaction that also appends the
//! job's event log (which doubles as its status history) and, where the job has a webhook
//! that wants the event, a durable webhook delivery. Transitions done by a worker are guarded
//! by its lease (`lease_owner`), so a worker that lost its lease cannot overwrite the job.
//!
//! Fairness: each enqueue gets a `fair_rank` from the owner's virtual clock, never below the
//! smallest rank still queued (or, with nothing queued, the highest clock: all of that work
//! was served); claims go by priority, then rank, then id. An owner with 1,000 queued jobs
//! holds ranks n..n+1000, and a newcomer's job takes rank n, right behind the first of them.

use easel_core::job::{codes, JobError, NewJob, Resource, StatusChange};
use easel_core::time::{self, from_millis, Timestamp};
use easel_core::{Error, ErrorKind, Job, JobStatus, Result, WebhookEvent};
use serde::Serialize;
use sqlx::any::AnyRow;

use crate::db::{
    db_err, get_f64, get_i64, get_json, get_opt_i64, get_opt_json, get_opt_str, get_str, Db,
    WriteTx,
};
use crate::{assets, external_ids, usage, webhooks};

const JOB_COLS: &str = "id, owner_id, task, model, status, priority, input, progress, step, total_steps, \
     error_code, error_message, outputs, usage_units, webhook, attempts, max_attempts, cancel_requested, \
     provider, request, created_at, started_at, completed_at, hide_outputs";

/// Idempotency keys are honoured this long.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

fn job_from_row(row: &AnyRow) -> Result<Job> {
    let status = get_str(row, "status")?;
    let error = match (
        get_opt_str(row, "error_code")?,
        get_opt_str(row, "error_message")?,
    ) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or_default())),
        _ => None,
    };
    Ok(Job {
        id: get_str(row, "id")?,
        owner_id: get_str(row, "owner_id")?,
        task: get_str(row, "task")?,
        model: get_opt_str(row, "model")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("bad job status {status}")))?,
        priority: get_i64(row, "priority")? as i32,
        input: get_json(row, "input")?,
        progress: get_f64(row, "progress")? as f32,
        step: get_opt_i64(row, "step")?.map(|v| v as u32),
        total_steps: get_opt_i64(row, "total_steps")?.map(|v| v as u32),
        error,
        outputs: serde_json::from_value(get_json(row, "outputs")?).unwrap_or_default(),
        usage_units: get_f64(row, "usage_units")?,
        webhook: get_opt_json(row, "webhook")?,
        attempts: get_i64(row, "attempts")? as u32,
        max_attempts: get_i64(row, "max_attempts")? as u32,
        cancel_requested: get_i64(row, "cancel_requested")? != 0,
        provider: get_opt_str(row, "provider")?,
        request: get_opt_json(row, "request")?,
        hide_outputs: get_i64(row, "hide_outputs")? != 0,
        created_at: from_millis(get_i64(row, "created_at")?),
        started_at: get_opt_i64(row, "started_at")?.map(from_millis),
        completed_at: get_opt_i64(row, "completed_at")?.map(from_millis),
    })
}

/// An entry of a job's event log. Ids increase; SSE uses them as event ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: String,
    /// `status`, `progress` or `cancel_requested`.
    pub kind: String,
    pub data: serde_json::Value,
    pub at: Timestamp,
}

async fn append_event(
    tx: &mut WriteTx,
    job_id: &str,
    kind: &str,
    data: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO job_events (job_id, kind, data, created_at) VALUES ($1, $2, $3, $4)")
        .bind(job_id)
        .bind(kind)
        .bind(data.to_string())
        .bind(time::to_millis(time::now()))
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn status_event(tx: &mut WriteTx, job: &Job, reason: Option<&str>) -> Result<()> {
    let mut data = serde_json::json!({"status": job.status, "attempt": job.attempts});
    if let Some(r) = reason {
        data["reason"] = r.into();
    }
    if let Some(e) = &job.error {
        data["error"] = serde_json::to_value(e).unwrap_or_default();
    }
    append_event(tx, &job.id, "status", data).await
}

async fn maybe_webhook(tx: &mut WriteTx, job: &Job, event: WebhookEvent) -> Result<()> {
    match &job.webhook {
        Some(w) if w.wants(event) => webhooks::enqueue(tx, job, event).await,
        _ => Ok(()),
    }
}

/// Outcome of `insert`.
pub struct Inserted {
    pub job: Job,
    /// False when an idempotency key matched an existing job.
    pub created: bool,
}

/// Enqueue a job. Honours the owner's idempotency key and queued-job cap.
pub async fn insert(db: &Db, new: &NewJob, max_queued_per_owner: u64) -> Result<Inserted> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    if let Some(ext) = &new.external_id {
        let found = external_ids::find_in(&mut tx, ext.namespace, &new.owner_id, &ext.id).await?;
        if let Some(id) = found {
            drop(tx);
            let job = get(db, &id).await?.ok_or_else(|| Error::not_found("job"))?;
            return Ok(Inserted {
                job,
                created: false,
            });
        }
    }
    if let Some(key) = &new.idempotency_key {
        let row = sqlx::query(
            "SELECT job_id, created_at FROM idempotency_keys WHERE owner_id = $1 AND key = $2",
        )
        .bind(&new.owner_id)
        .bind(key)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?;
        if let Some(row) = row {
            if get_i64(&row, "created_at")? > now - IDEMPOTENCY_TTL_MS {
                let id = get_str(&row, "job_id")?;
                drop(tx);
                let job = get(db, &id).await?.ok_or_else(|| Error::not_found("job"))?;
                return Ok(Inserted {
                    job,
                    created: false,
                });
            }
            sqlx::query("DELETE FROM idempotency_keys WHERE owner_id = $1 AND key = $2")
                .bind(&new.owner_id)
                .bind(key)
                .execute(tx.conn())
                .await
                .map_err(db_err)?;
        }
    }
    let queued: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE owner_id = $1 AND status = 'queued'")
            .bind(&new.owner_id)
            .fetch_one(tx.conn())
            .await
            .and_then(|r| sqlx::Row::try_get(&r, "n"))
            .map_err(db_err)?;
    if queued as u64 >= max_queued_per_owner {
        let mut e = Error::new(
            ErrorKind::RateLimited,
            format!("you have {queued} queued jobs, the limit is {max_queued_per_owner}; wait for some to finish"),
        );
        e.retry_after = Some(5);
        return Err(e);
    }
    let rank_row = sqlx::query(
        "UPDATE users SET queue_vtime = CASE WHEN queue_vtime >= f.floor THEN queue_vtime + 1 ELSE f.floor END \
         FROM (SELECT COALESCE((SELECT MIN(fair_rank) FROM jobs WHERE status = 'queued'), \
                               (SELECT MAX(queue_vtime) FROM users), 0) AS floor) AS f \
         WHERE users.id = $1 RETURNING queue_vtime",
    )
    .bind(&new.owner_id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?
    .ok_or_else(|| Error::internal(format!("owner {} does not exist", new.owner_id)))?;
    let rank = get_i64(&rank_row, "queue_vtime")?;
    let id = easel_core::id::new(easel_core::id::JOB);
    let row = sqlx::query(&format!(
        "INSERT INTO jobs (id, owner_id, task, model, status, priority, fair_rank, input, webhook, max_attempts, request, resource, created_at, updated_at, hide_outputs) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $11, $12, $10, $10, {}) RETURNING {JOB_COLS}",
        new.hide_outputs as i64
    ))
    .bind(&id)
    .bind(&new.owner_id)
    .bind(&new.task)
    .bind(new.model.clone())
    .bind(new.priority.clamp(*easel_core::job::PRIORITY_RANGE.start(), *easel_core::job::PRIORITY_RANGE.end()) as i64)
    .bind(rank)
    .bind(new.input.to_string())
    .bind(new.webhook.as_ref().map(|w| serde_json::to_string(w).unwrap_or_default()))
    .bind(new.max_attempts.max(1) as i64)
    .bind(now)
    .bind(new.request.as_ref().map(|r| r.to_string()))
    .bind(new.resource.as_str())
    .fetch_one(tx.conn())
    .await
    .map_err(db_err)?;
    let job = job_from_row(&row)?;
    status_event(&mut tx, &job, None).await?;
    if let Some(key) = &new.idempotency_key {
        let r = sqlx::query("INSERT INTO idempotency_keys (owner_id, key, job_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&new.owner_id)
            .bind(key)
            .bind(&id)
            .bind(now)
            .execute(tx.conn())
            .await;
        if let Err(e) = r {
            let e = db_err(e);
            if e.kind == ErrorKind::Conflict {
                // A concurrent request with the same key won; answer with its job.
                drop(tx);
                return Box::pin(insert(db, new, max_queued_per_owner)).await;
            }
            return Err(e);
        }
    }
    if let Some(ext) = &new.external_id {
        let r = external_ids::insert_in(&mut tx, ext.namespace, &new.owner_id, &ext.id, &id).await;
        if let Err(e) = r {
            if e.kind == ErrorKind::Conflict {
                // A concurrent request with the same id won; answer with its job.
                drop(tx);
                return Box::pin(insert(db, new, max_queued_per_owner)).await;
            }
            return Err(e);
        }
    }
    // Workers in other processes claim it at once (sent when the transaction commits).
    let payload = format!("queued:{}:{id}", new.resource.as_str());
    db.notify_tx(&mut tx, crate::notify::JOBS, &payload).await?;
    tx.commit().await?;
    Ok(Inserted { job, created: true })
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Job>> {
    sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| job_from_row(&r))
        .transpose()
}

/// Several jobs by id, in no particular order; unknown ids are left out.
pub async fn get_many(db: &Db, ids: &[&str]) -> Result<Vec<Job>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {JOB_COLS} FROM jobs WHERE id IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    q.fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(job_from_row)
        .collect()
}

/// Filters for listing jobs, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// `None` lists every owner's jobs (admin).
    pub owner_id: Option<String>,
    pub status: Option<JobStatus>,
    /// Only jobs of these tasks; empty: any.
    pub tasks: Vec<String>,
    /// Only jobs older than this id (the cursor).
    pub before: Option<String>,
    /// Only jobs with an external id in this namespace (a dialect's own jobs).
    pub namespace: Option<&'static str>,
    /// Skip this many (offset paging, for dialects that page so).
    pub offset: u32,
    pub limit: u32,
}

pub async fn list(db: &Db, f: &JobFilter) -> Result<Vec<Job>> {
    let mut sql = format!("SELECT {JOB_COLS} FROM jobs WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let mut cond = |col: &str, v: String, op: &str| {
        binds.push(v);
        sql.push_str(&format!(" AND {col} {op} ${}", binds.len()));
    };
    if let Some(o) = &f.owner_id {
        cond("owner_id", o.clone(), "=");
    }
    if let Some(s) = f.status {
        cond("status", s.as_str().to_string(), "=");
    }
    if let Some(b) = &f.before {
        cond("id", b.clone(), "<");
    }
    if let Some(ns) = f.namespace {
        cond(
            "id IN (SELECT internal_id FROM external_ids WHERE namespace",
            ns.to_string(),
            "=",
        );
        sql.push(')');
    }
    if !f.tasks.is_empty() {
        let mut marks = Vec::new();
        for t in &f.tasks {
            binds.push(t.clone());
            marks.push(format!("${}", binds.len()));
        }
        sql.push_str(&format!(" AND task IN ({})", marks.join(", ")));
    }
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT {} OFFSET {}",
        f.limit.clamp(1, 1000),
        f.offset
    ));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    q.fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(job_from_row)
        .collect()
}

/// Claim the next queued job (optionally only of the given tasks) for `worker` with a lease.
pub async fn claim(
    db: &Db,
    worker: &str,
    lease_ms: i64,
    tasks: Option<&[String]>,
) -> Result<Option<Job>> {
    claim_for(db, worker, lease_ms, tasks, &Resource::ALL).await
}

/// Claim the next queued job of the given tasks (all when `None`) that needs one of
/// `resources`, in priority and fair order among those.
pub async fn claim_for(
    db: &Db,
    worker: &str,
    lease_ms: i64,
    tasks: Option<&[String]>,
    resources: &[Resource],
) -> Result<Option<Job>> {
    let now = time::to_millis(time::now());
    if resources.is_empty() || tasks.is_some_and(|t| t.is_empty()) {
        return Ok(None);
    }
    // Resource names are fixed words: inlined. Tasks are bound from $4.
    let names: Vec<String> = resources
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect();
    let mut filter = format!(" AND resource IN ({})", names.join(", "));
    if let Some(tasks) = tasks {
        let list: Vec<String> = (0..tasks.len()).map(|i| format!("${}", i + 4)).collect();
        filter.push_str(&format!(" AND task IN ({})", list.join(", ")));
    }
    let sql = format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
         started_at = COALESCE(started_at, $3), updated_at = $3 \
         WHERE status = 'queued' AND id = (SELECT id FROM jobs WHERE status = 'queued'{filter} \
         ORDER BY priority DESC, fair_rank, id LIMIT 1{}) RETURNING {JOB_COLS}",
        db.skip_locked()
    );
    let mut tx = db.begin().await?;
    let mut q = sqlx::query(&sql)
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now);
    for t in tasks.unwrap_or_default() {
        q = q.bind(t.clone());
    }
    let Some(row) = q.fetch_optional(tx.conn()).await.map_err(db_err)? else {
        return Ok(None);
    };
    let job = job_from_row(&row)?;
    status_event(&mut tx, &job, None).await?;
    // `start` is sent once: on the claim that set `started_at` (a requeued job keeps it).
    if job.started_at.map(time::to_millis) == Some(now) {
        maybe_webhook(&mut tx, &job, WebhookEvent::Start).await?;
    }
    tx.commit().await?;
    Ok(Some(job))
}

/// What a worker learns when it heartbeats or reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held {
        cancel_requested: bool,
    },
    /// The job is no longer ours (expired and taken over, or finished elsewhere).
    Lost,
}

fn lease_state(row: Option<AnyRow>) -> Result<LeaseState> {
    Ok(match row {
        Some(r) => LeaseState::Held {
            cancel_requested: get_i64(&r, "cancel_requested")? != 0,
        },
        None => LeaseState::Lost,
    })
}

/// Extend the lease.
pub async fn heartbeat(db: &Db, id: &str, worker: &str, lease_ms: i64) -> Result<LeaseState> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4 AND status = 'running' RETURNING cancel_requested",
    )
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .bind(worker)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    lease_state(row)
}

/// Record progress (also extends the lease); `webhook` asks for a progress delivery.
pub async fn set_progress(
    db: &Db,
    id: &str,
    worker: &str,
    lease_ms: i64,
    progress: &easel_core::job::Progress,
    webhook: bool,
) -> Result<LeaseState> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE jobs SET progress = $1, step = $2, total_steps = $3, lease_expires_at = $4, updated_at = $5 \
         WHERE id = $6 AND lease_owner = $7 AND status = 'running' RETURNING {JOB_COLS}"
    ))
    .bind(progress.fraction.clamp(0.0, 1.0) as f64)
    .bind(progress.step.map(|v| v as i64))
    .bind(progress.total_steps.map(|v| v as i64))
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .bind(worker)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(LeaseState::Lost);
    };
    let job = job_from_row(&row)?;
    append_event(
        &mut tx,
        id,
        "progress",
        serde_json::to_value(progress).unwrap_or_default(),
    )
    .await?;
    if webhook {
        maybe_webhook(&mut tx, &job, WebhookEvent::Progress).await?;
    }
    tx.commit().await?;
    Ok(LeaseState::Held {
        cancel_requested: job.cancel_requested,
    })
}

/// Append an event (a preview, a log line) to a running job the worker still holds; this
/// also extends the lease.
pub async fn append_running_event(
    db: &Db,
    id: &str,
    worker: &str,
    lease_ms: i64,
    kind: &str,
    data: serde_json::Value,
) -> Result<LeaseState> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4 AND status = 'running' RETURNING {JOB_COLS}"
    ))
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .bind(worker)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(LeaseState::Lost);
    };
    let job = job_from_row(&row)?;
    append_event(&mut tx, id, kind, data).await?;
    tx.commit().await?;
    Ok(LeaseState::Held {
        cancel_requested: job.cancel_requested,
    })
}

/// How a worker's attempt to finish a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// The job is now in the state the worker asked for.
    Done(Job),
    /// A cancel arrived first: the job is canceled and nothing was stored.
    Canceled(Job),
    /// The worker no longer holds the job; nothing was changed.
    LeaseLost,
}

/// Fields of a terminal transition.
struct Terminal<'a> {
    status: JobStatus,
    error: Option<&'a JobError>,
    outputs: &'a [String],
    usage_units: f64,
    provider: Option<&'a str>,
}

/// Move a job to a terminal state inside `tx`. `guard` restricts the update: a worker's
/// lease, or a required current status.
async fn terminal(
    tx: &mut WriteTx,
    id: &str,
    guard: &str,
    guard_val: &str,
    t: Terminal<'_>,
) -> Result<Option<Job>> {
    let now = time::to_millis(time::now());
    let progress_set = if t.status == JobStatus::Succeeded {
        ", progress = 1"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "UPDATE jobs SET status = $1, error_code = $2, error_message = $3, outputs = $4, usage_units = $5, \
         provider = $6, completed_at = $7, updated_at = $7, lease_owner = NULL, lease_expires_at = NULL{progress_set} \
         WHERE id = $8 AND {guard} = $9 RETURNING {JOB_COLS}"
    ))
    .bind(t.status.as_str())
    .bind(t.error.map(|e| e.code.clone()))
    .bind(t.error.map(|e| e.message.clone()))
    .bind(serde_json::to_string(t.outputs).unwrap_or_else(|_| "[]".into()))
    .bind(t.usage_units)
    .bind(t.provider.map(str::to_string))
    .bind(now)
    .bind(id)
    .bind(guard_val)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    let job = job_from_row(&row)?;
    status_event(tx, &job, None).await?;
    maybe_webhook(tx, &job, WebhookEvent::Completed).await?;
    Ok(Some(job))
}

/// The worker-held job in `tx`, if `worker` still holds it.
async fn held(tx: &mut WriteTx, id: &str, worker: &str) -> Result<Option<Job>> {
    sqlx::query(&format!(
        "SELECT {JOB_COLS} FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'running'"
    ))
    .bind(id)
    .bind(worker)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?
    .map(|r| job_from_row(&r))
    .transpose()
}

/// Finish a job successfully: its output asset rows (blobs already written), usage and the
/// terminal state in one transaction. If a cancel was requested meanwhile, the job ends
/// canceled instead and no asset row is written (the caller deletes the blobs).
pub async fn succeed(
    db: &Db,
    id: &str,
    worker: &str,
    outputs: &[easel_core::asset::Asset],
    usage_units: f64,
    provider: &str,
) -> Result<Finished> {
    let mut tx = db.begin().await?;
    let Some(job) = held(&mut tx, id, worker).await? else {
        return Ok(Finished::LeaseLost);
    };
    if job.cancel_requested {
        let job = cancel_held(&mut tx, id, worker).await?;
        tx.commit().await?;
        return Ok(job.map(Finished::Canceled).unwrap_or(Finished::LeaseLost));
    }
    for a in outputs {
        assets::insert_tx(&mut tx, a).await?;
    }
    let ids: Vec<String> = outputs.iter().map(|a| a.id.clone()).collect();
    let t = Terminal {
        status: JobStatus::Succeeded,
        error: None,
        outputs: &ids,
        usage_units,
        provider: Some(provider),
    };
    let Some(done) = terminal(&mut tx, id, "lease_owner", worker, t).await? else {
        return Ok(Finished::LeaseLost);
    };
    usage::record_tx(&mut tx, &done, outputs.len() as i64).await?;
    tx.commit().await?;
    Ok(Finished::Done(done))
}

async fn cancel_held(tx: &mut WriteTx, id: &str, worker: &str) -> Result<Option<Job>> {
    let t = Terminal {
        status: JobStatus::Canceled,
        error: None,
        outputs: &[],
        usage_units: 0.0,
        provider: None,
    };
    terminal(tx, id, "lease_owner", worker, t).await
}

/// Fail a job (no retry: task errors are deterministic). A pending cancel wins.
pub async fn fail(db: &Db, id: &str, worker: &str, error: &JobError) -> Result<Finished> {
    let mut tx = db.begin().await?;
    let Some(job) = held(&mut tx, id, worker).await? else {
        return Ok(Finished::LeaseLost);
    };
    let res = if job.cancel_requested {
        cancel_held(&mut tx, id, worker)
            .await?
            .map(Finished::Canceled)
    } else {
        let t = Terminal {
            status: JobStatus::Failed,
            error: Some(error),
            outputs: &[],
            usage_units: 0.0,
            provider: None,
        };
        terminal(&mut tx, id, "lease_owner", worker, t)
            .await?
            .map(Finished::Done)
    };
    tx.commit().await?;
    Ok(res.unwrap_or(Finished::LeaseLost))
}

/// The worker saw the cancel flag and stopped.
pub async fn finish_canceled(db: &Db, id: &str, worker: &str) -> Result<Finished> {
    let mut tx = db.begin().await?;
    let res = cancel_held(&mut tx, id, worker).await?;
    tx.commit().await?;
    Ok(res.map(Finished::Canceled).unwrap_or(Finished::LeaseLost))
}

/// Cancel: a queued job is canceled at once, a running one is flagged (its worker stops at
/// the next step). `owner_id` restricts to the owner's jobs (`None`: admin).
pub async fn request_cancel(db: &Db, id: &str, owner_id: Option<&str>) -> Result<Job> {
    let job = get(db, id)
        .await?
        .filter(|j| owner_id.is_none_or(|o| o == j.owner_id));
    let Some(job) = job else {
        return Err(Error::not_found("job"));
    };
    let mut tx = db.begin().await?;
    let t = Terminal {
        status: JobStatus::Canceled,
        error: None,
        outputs: &[],
        usage_units: 0.0,
        provider: None,
    };
    if let Some(done) = terminal(&mut tx, id, "status", "queued", t).await? {
        tx.commit().await?;
        return Ok(done);
    }
    let row = sqlx::query(&format!(
        "UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND status = 'running' RETURNING {JOB_COLS}"
    ))
    .bind(time::to_millis(time::now()))
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    if let Some(row) = row {
        let job = job_from_row(&row)?;
        append_event(&mut tx, id, "cancel_requested", serde_json::json!({})).await?;
        tx.commit().await?;
        return Ok(job);
    }
    drop(tx);
    let job = get(db, id).await?.unwrap_or(job);
    match job.status {
        JobStatus::Canceled => Ok(job),
        s => Err(Error::new(
            ErrorKind::Conflict,
            format!("the job has already {}", s.as_str()),
        )),
    }
}

/// Put a job `worker` holds back in the queue (with its event). `count_attempt: false` gives
/// the attempt back (a graceful release is not the job's fault).
async fn requeue(
    tx: &mut WriteTx,
    id: &str,
    worker: &str,
    count_attempt: bool,
    reason: &str,
) -> Result<Option<Job>> {
    let attempts = if count_attempt {
        "attempts"
    } else {
        "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
    };
    let row = sqlx::query(&format!(
        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, attempts = {attempts}, \
         progress = 0, step = NULL, updated_at = $1 \
         WHERE id = $2 AND lease_owner = $3 AND status = 'running' RETURNING {JOB_COLS}"
    ))
    .bind(time::to_millis(time::now()))
    .bind(id)
    .bind(worker)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let job = row.map(|r| job_from_row(&r)).transpose()?;
    if let Some(j) = &job {
        status_event(tx, j, Some(reason)).await?;
    }
    Ok(job)
}

/// Give a running job back to the queue without counting the attempt (graceful shutdown).
/// A job with a pending cancel ends canceled instead.
pub async fn release(db: &Db, id: &str, worker: &str) -> Result<Option<Job>> {
    let mut tx = db.begin().await?;
    let Some(job) = held(&mut tx, id, worker).await? else {
        return Ok(None);
    };
    if job.cancel_requested {
        let res = cancel_held(&mut tx, id, worker).await?;
        tx.commit().await?;
        return Ok(res);
    }
    let job = requeue(&mut tx, id, worker, false, "released by a stopping worker").await?;
    tx.commit().await?;
    Ok(job)
}

/// Requeue (or fail, after `max_attempts`) running jobs whose lease expired. Returns them.
pub async fn reap_expired(db: &Db) -> Result<Vec<Job>> {
    let now = time::to_millis(time::now());
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLS}, lease_owner FROM jobs WHERE status = 'running' AND lease_expires_at < $1 LIMIT 100"
    ))
    .bind(now)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let job = job_from_row(&row)?;
        let Some(worker) = get_opt_str(&row, "lease_owner")? else {
            continue;
        };
        let mut tx = db.begin().await?;
        // Re-check inside the transaction: the worker may have heartbeated meanwhile.
        let still = sqlx::query("SELECT id FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'running' AND lease_expires_at < $3")
            .bind(&job.id)
            .bind(&worker)
            .bind(now)
            .fetch_optional(tx.conn())
            .await
            .map_err(db_err)?;
        if still.is_none() {
            continue;
        }
        let done = if job.cancel_requested {
            cancel_held(&mut tx, &job.id, &worker).await?
        } else if job.attempts >= job.max_attempts {
            let err = JobError::new(
                codes::LEASE_EXPIRED,
                format!(
                    "the worker running this job stopped responding; gave up after {} attempts",
                    job.attempts
                ),
            );
            let t = Terminal {
                status: JobStatus::Failed,
                error: Some(&err),
                outputs: &[],
                usage_units: 0.0,
                provider: None,
            };
            terminal(&mut tx, &job.id, "lease_owner", &worker, t).await?
        } else {
            requeue(&mut tx, &job.id, &worker, true, "lease expired; requeued").await?
        };
        tx.commit().await?;
        out.extend(done);
    }
    Ok(out)
}

/// Events of a job with an id above `after`, oldest first.
pub async fn events_after(db: &Db, job_id: &str, after: i64) -> Result<Vec<JobEvent>> {
    let rows = sqlx::query("SELECT id, job_id, kind, data, created_at FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id")
        .bind(job_id)
        .bind(after)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(event_from_row).collect()
}

/// The events of one kind of several jobs, oldest first (one query, whatever else the
/// jobs' logs hold: previews are not read for a status history).
pub async fn events_of_kind(db: &Db, job_ids: &[&str], kind: &str) -> Result<Vec<JobEvent>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..job_ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT id, job_id, kind, data, created_at FROM job_events \
         WHERE kind = $1 AND job_id IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(kind);
    for id in job_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await.map_err(db_err)?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(r: &AnyRow) -> Result<JobEvent> {
    Ok(JobEvent {
        id: get_i64(r, "id")?,
        job_id: get_str(r, "job_id")?,
        kind: get_str(r, "kind")?,
        data: get_json(r, "data")?,
        at: from_millis(get_i64(r, "created_at")?),
    })
}

/// The messages of the jobs' `log` events (what their providers reported: retries,
/// fallbacks), oldest first, by job id; a job without any has no entry.
pub async fn log_lines(
    db: &Db,
    job_ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for e in events_of_kind(db, job_ids, "log").await? {
        let message = e.data["message"].as_str().unwrap_or_default().to_string();
        out.entry(e.job_id).or_default().push(message);
    }
    Ok(out)
}

/// The job's status history (from its event log).
pub async fn history(db: &Db, job_id: &str) -> Result<Vec<StatusChange>> {
    Ok(events_of_kind(db, &[job_id], "status")
        .await?
        .into_iter()
        .filter_map(|e| {
            let status = JobStatus::parse(e.data.get("status")?.as_str()?)?;
            Some(StatusChange { status, at: e.at })
        })
        .collect())
}

/// Jobs that succeeded in `[from, to)` (completion times, unix ms), newest first, of one
/// owner or everyone's, after skipping `offset` (usage reports).
pub async fn succeeded_between(
    db: &Db,
    owner_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    offset: u32,
    limit: u32,
) -> Result<Vec<Job>> {
    let sql = format!(
        "SELECT {JOB_COLS} FROM jobs WHERE status = 'succeeded' AND completed_at >= $1 \
         AND completed_at < $2 AND ($3 = '' OR owner_id = $3) \
         ORDER BY completed_at DESC, id DESC LIMIT {} OFFSET {offset}",
        limit.clamp(1, 100_000)
    );
    sqlx::query(&sql)
        .bind(from_ms)
        .bind(to_ms)
        .bind(owner_id.unwrap_or(""))
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(job_from_row)
        .collect()
}

/// Number of jobs per status (for metrics).
pub async fn counts_by_status(db: &Db) -> Result<Vec<(JobStatus, i64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let s = get_str(r, "status")?;
            Ok((
                JobStatus::parse(&s).unwrap_or(JobStatus::Queued),
                get_i64(r, "n")?,
            ))
        })
        .collect()
}

/// What [`delete`] removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    /// The job as it was when deleted.
    pub job: Job,
    /// The ids of its output assets whose rows were deleted; their blobs (under the job
    /// owner's prefix, each with an intent) are the caller's to delete after this returns
    /// (`intents::remove`) (a blob without a row
    /// is harmless, a row without a blob is not).
    pub assets: Vec<String>,
}

/// Delete a job and everything that is only the job's, in one transaction: its row, its
/// event log, its output asset rows, the external ids of the job and of those assets (every
/// namespace), idempotency keys naming it, and its webhook deliveries with their attempts.
/// Usage rows stay (they are per day, not per job). `None` when there is no such job.
///
/// Any state may be deleted. A running job's worker loses its lease: its next heartbeat,
/// progress or finish finds no row, it stops, and it deletes the blobs it wrote (as for any
/// lost lease); request a cancel first to stop it at the next step instead.
pub async fn delete(db: &Db, id: &str) -> Result<Option<Deleted>> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "DELETE FROM jobs WHERE id = $1 RETURNING {JOB_COLS}"
    ))
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let job = job_from_row(&row)?;
    for sql in [
        "DELETE FROM external_ids WHERE internal_id = $1 \
         OR internal_id IN (SELECT id FROM assets WHERE job_id = $1)",
        "DELETE FROM asset_tags WHERE asset_id IN (SELECT id FROM assets WHERE job_id = $1)",
        "DELETE FROM collection_items WHERE kind = 'asset' AND item_id IN (SELECT id FROM assets WHERE job_id = $1)",
        "DELETE FROM job_events WHERE job_id = $1",
        "DELETE FROM idempotency_keys WHERE job_id = $1",
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE job_id = $1)",
        "DELETE FROM webhook_deliveries WHERE job_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    let assets = sqlx::query("DELETE FROM assets WHERE job_id = $1 RETURNING id")
        .bind(id)
        .fetch_all(tx.conn())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| get_str(r, "id"))
        .collect::<Result<Vec<_>>>()?;
    for a in &assets {
        let key = easel_core::asset::blob_key(&job.owner_id, a);
        crate::intents::record_tx(&mut tx, a, &key).await?;
    }
    tx.commit().await?;
    Ok(Some(Deleted { job, assets }))
}
