//! Usage counters per owner, UTC day and task.

use easel_core::usage::{ModelUsageRow, UsageRow};
use easel_core::{Job, Result};

use crate::db::{db_err, get_f64, get_i64, get_str, Db, WriteTx};

pub(crate) async fn record_tx(tx: &mut WriteTx, job: &Job, outputs: i64) -> Result<()> {
    let day = job
        .completed_at
        .unwrap_or(job.created_at)
        .format("%Y-%m-%d")
        .to_string();
    sqlx::query(
        "INSERT INTO usage (owner_id, day, task, jobs, units, outputs) VALUES ($1, $2, $3, 1, $4, $5) \
         ON CONFLICT (owner_id, day, task) DO UPDATE SET jobs = usage.jobs + 1, \
         units = usage.units + excluded.units, outputs = usage.outputs + excluded.outputs",
    )
    .bind(&job.owner_id)
    .bind(&day)
    .bind(&job.task)
    .bind(job.usage_units)
    .bind(outputs)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    if let Some(model) = &job.model {
        sqlx::query(
            "INSERT INTO usage_models (owner_id, day, model, jobs, units) VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (owner_id, day, model) DO UPDATE SET jobs = usage_models.jobs + 1, \
             units = usage_models.units + excluded.units",
        )
        .bind(&job.owner_id)
        .bind(&day)
        .bind(model)
        .bind(job.usage_units)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Usage rows, newest day first; `owner_id: None` for everyone's.
pub async fn list(
    db: &Db,
    owner_id: Option<&str>,
    since_day: Option<&str>,
) -> Result<Vec<UsageRow>> {
    let rows = sqlx::query(
        "SELECT owner_id, day, task, jobs, units, outputs FROM usage \
         WHERE ($1 = '' OR owner_id = $1) AND day >= $2 ORDER BY day DESC, owner_id, task LIMIT 10000",
    )
    .bind(owner_id.unwrap_or(""))
    .bind(since_day.unwrap_or(""))
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                owner_id: get_str(r, "owner_id")?,
                day: get_str(r, "day")?,
                task: get_str(r, "task")?,
                jobs: get_i64(r, "jobs")? as u64,
                units: easel_core::usage::round_units(get_f64(r, "units")?),
                outputs: get_i64(r, "outputs")? as u64,
            })
        })
        .collect()
}

/// Usage per UTC day and model (of succeeded jobs, recorded as they succeed), from
/// `since_day` on, oldest day first; `owner_id: None` for everyone's.
pub async fn by_model(
    db: &Db,
    owner_id: Option<&str>,
    since_day: Option<&str>,
) -> Result<Vec<ModelUsageRow>> {
    let rows = sqlx::query(
        "SELECT day, model, CAST(SUM(jobs) AS BIGINT) AS n, SUM(units) AS u FROM usage_models \
         WHERE ($1 = '' OR owner_id = $1) AND day >= $2 \
         GROUP BY day, model ORDER BY day, model LIMIT 10000",
    )
    .bind(owner_id.unwrap_or(""))
    .bind(since_day.unwrap_or(""))
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(ModelUsageRow {
                day: get_str(r, "day")?,
                model: get_str(r, "model")?,
                jobs: get_i64(r, "n")? as u64,
                units: easel_core::usage::round_units(get_f64(r, "u")?),
            })
        })
        .collect()
}
