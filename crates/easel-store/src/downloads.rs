//! Bulk downloads (`easel_core::download`): the resolved asset ids and the archive's
//! options. No blob belongs to a download (its archive is streamed from the assets' blobs),
//! so a row is all there is to write, read and expire.

use easel_core::download::{ArchiveOptions, Download};
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_opt_str, get_str, Db};

const COLS: &str = "id, owner_id, asset_ids, options, created_at, expires_at, model_id";

fn from_row(r: &AnyRow) -> Result<Download> {
    let bad = |e: serde_json::Error| Error::internal(format!("bad download row: {e}"));
    let asset_ids: Vec<String> = serde_json::from_str(&get_str(r, "asset_ids")?).map_err(bad)?;
    let options: ArchiveOptions = serde_json::from_str(&get_str(r, "options")?).map_err(bad)?;
    Ok(Download {
        id: get_str(r, "id")?,
        owner_id: get_str(r, "owner_id")?,
        asset_ids,
        model_id: get_opt_str(r, "model_id")?,
        options,
        created_at: from_millis(get_i64(r, "created_at")?),
        expires_at: from_millis(get_i64(r, "expires_at")?),
    })
}

pub async fn create(db: &Db, d: &Download) -> Result<()> {
    let json = |v: serde_json::Result<String>| v.map_err(|e| Error::internal(e.to_string()));
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO downloads ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&d.id)
    .bind(&d.owner_id)
    .bind(json(serde_json::to_string(&d.asset_ids))?)
    .bind(json(serde_json::to_string(&d.options))?)
    .bind(time::to_millis(d.created_at))
    .bind(time::to_millis(d.expires_at))
    .bind(d.model_id.clone())
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await
}

/// A download that has not expired at `now`.
pub async fn get(db: &Db, id: &str, now: time::Timestamp) -> Result<Option<Download>> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM downloads WHERE id = $1 AND expires_at > $2"
    ))
    .bind(id)
    .bind(time::to_millis(now))
    .fetch_optional(&db.pool)
    .await
    .map_err(db_err)?
    .map(|r| from_row(&r))
    .transpose()
}

/// Delete the downloads expired at `now`; returns how many.
pub async fn expire(db: &Db, now: time::Timestamp) -> Result<u64> {
    let mut tx = db.begin().await?;
    let n = sqlx::query("DELETE FROM downloads WHERE expires_at <= $1")
        .bind(time::to_millis(now))
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    Ok(n)
}
