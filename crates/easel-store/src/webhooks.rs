//! Durable webhook deliveries and their attempts. Deliveries are enqueued in the same
//! transaction as the job change they report, so none is lost in a crash; a dispatcher
//! (easel-queue) claims due ones with a short lease, sends them, and records every attempt.

use easel_core::time::{self, from_millis, Timestamp};
use easel_core::{Job, Result, WebhookEvent};
use serde::Serialize;
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_json, get_opt_i64, get_opt_str, get_str, Db, WriteTx};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub job_id: String,
    pub owner_id: String,
    pub event: String,
    pub url: String,
    /// `{type, timestamp, data: job}`; the dispatcher may enrich `data` before sending.
    pub payload: serde_json::Value,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub attempt: u32,
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

const COLS: &str = "id, job_id, owner_id, event, url, payload, status, attempts, last_status_code, last_error, created_at";

fn from_row(r: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: get_str(r, "id")?,
        job_id: get_str(r, "job_id")?,
        owner_id: get_str(r, "owner_id")?,
        event: get_str(r, "event")?,
        url: get_str(r, "url")?,
        payload: get_json(r, "payload")?,
        status: get_str(r, "status")?,
        attempts: get_i64(r, "attempts")? as u32,
        last_status_code: get_opt_i64(r, "last_status_code")?.map(|v| v as u16),
        last_error: get_opt_str(r, "last_error")?,
        created_at: from_millis(get_i64(r, "created_at")?),
    })
}

pub(crate) async fn enqueue(tx: &mut WriteTx, job: &Job, event: WebhookEvent) -> Result<()> {
    let Some(hook) = &job.webhook else {
        return Ok(());
    };
    let now = time::now();
    let payload = serde_json::json!({
        "type": format!("job.{}", event.as_str()),
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": job,
    });
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, job_id, owner_id, event, url, payload, status, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7)",
    )
    .bind(easel_core::id::new(easel_core::id::WEBHOOK_DELIVERY))
    .bind(&job.id)
    .bind(&job.owner_id)
    .bind(event.as_str())
    .bind(&hook.url)
    .bind(payload.to_string())
    .bind(time::to_millis(now))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Claim up to `limit` due deliveries for `lease_ms` (oldest first).
pub async fn claim_due(db: &Db, lease_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    let rows = sqlx::query(&format!(
        "UPDATE webhook_deliveries SET lease_expires_at = $1 WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE status = 'pending' AND next_attempt_at <= $2 AND (lease_expires_at IS NULL OR lease_expires_at < $2) \
         ORDER BY next_attempt_at LIMIT {limit}{}) RETURNING {COLS}",
        db.skip_locked()
    ))
    .bind(now + lease_ms)
    .bind(now)
    .fetch_all(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    let mut out: Vec<Delivery> = rows.iter().map(from_row).collect::<Result<_>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The outcome of one attempt; `next_attempt_at: None` ends the delivery (`delivered` when
/// `ok`, else `failed`).
pub struct AttemptOutcome {
    pub ok: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub next_attempt_at: Option<Timestamp>,
}

pub async fn record_attempt(db: &Db, d: &Delivery, o: &AttemptOutcome) -> Result<()> {
    let now = time::to_millis(time::now());
    let attempt = d.attempts as i64 + 1;
    let status = match (o.ok, o.next_attempt_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.id)
    .bind(attempt)
    .bind(now)
    .bind(o.status_code.map(|c| c as i64))
    .bind(o.error.clone())
    .bind(o.duration_ms as i64)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, last_status_code = $3, last_error = $4, \
         next_attempt_at = $5, lease_expires_at = NULL, updated_at = $6 WHERE id = $7",
    )
    .bind(status)
    .bind(attempt)
    .bind(o.status_code.map(|c| c as i64))
    .bind(o.error.clone())
    .bind(o.next_attempt_at.map(time::to_millis).unwrap_or(now))
    .bind(now)
    .bind(&d.id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await
}

/// A job's deliveries with their attempts, oldest first.
pub async fn for_job(db: &Db, job_id: &str) -> Result<Vec<(Delivery, Vec<Attempt>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM webhook_deliveries WHERE job_id = $1 ORDER BY id"
    ))
    .bind(job_id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut out = Vec::new();
    for r in rows {
        let d = from_row(&r)?;
        let attempts = sqlx::query(
            "SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(&d.id)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|a| {
            Ok(Attempt {
                attempt: get_i64(a, "attempt")? as u32,
                at: from_millis(get_i64(a, "at")?),
                status_code: get_opt_i64(a, "status_code")?.map(|v| v as u16),
                error: get_opt_str(a, "error")?,
                duration_ms: get_i64(a, "duration_ms")? as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        out.push((d, attempts));
    }
    Ok(out)
}
