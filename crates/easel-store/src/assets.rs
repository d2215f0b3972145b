//! Asset rows. Blobs are written by the caller first (see the crate invariant).

use easel_core::asset::{Asset, AssetKind};
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_json, get_opt_i64, get_opt_str, get_str, Db, WriteTx};

const COLS: &str =
    "id, owner_id, job_id, output_index, kind, mime_type, width, height, bytes, sha256, metadata, parent_id, created_at";

fn from_row(r: &AnyRow) -> Result<Asset> {
    let kind = get_str(r, "kind")?;
    Ok(Asset {
        id: get_str(r, "id")?,
        owner_id: get_str(r, "owner_id")?,
        job_id: get_opt_str(r, "job_id")?,
        output_index: get_opt_i64(r, "output_index")?.map(|v| v as u32),
        kind: AssetKind::parse(&kind)
            .ok_or_else(|| Error::internal(format!("bad asset kind {kind}")))?,
        mime_type: get_str(r, "mime_type")?,
        width: get_opt_i64(r, "width")?.map(|v| v as u32),
        height: get_opt_i64(r, "height")?.map(|v| v as u32),
        bytes: get_i64(r, "bytes")? as u64,
        sha256: get_str(r, "sha256")?,
        metadata: get_json(r, "metadata")?,
        parent_id: get_opt_str(r, "parent_id")?,
        created_at: from_millis(get_i64(r, "created_at")?),
    })
}

pub(crate) async fn insert_tx(tx: &mut WriteTx, a: &Asset) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO assets ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&a.id)
    .bind(&a.owner_id)
    .bind(a.job_id.clone())
    .bind(a.output_index.map(|v| v as i64))
    .bind(a.kind.as_str())
    .bind(&a.mime_type)
    .bind(a.width.map(|v| v as i64))
    .bind(a.height.map(|v| v as i64))
    .bind(a.bytes as i64)
    .bind(&a.sha256)
    .bind(a.metadata.to_string())
    .bind(a.parent_id.clone())
    .bind(time::to_millis(a.created_at))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    crate::intents::clear_tx(tx, &a.id).await
}

/// Insert one asset row (an upload) in its own transaction.
pub async fn insert(db: &Db, a: &Asset) -> Result<()> {
    let mut tx = db.begin().await?;
    insert_tx(&mut tx, a).await?;
    tx.commit().await
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Asset>> {
    sqlx::query(&format!("SELECT {COLS} FROM assets WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .transpose()
}

/// An owner's assets, newest first, before the cursor id.
pub async fn list(db: &Db, owner_id: &str, before: Option<&str>, limit: u32) -> Result<Vec<Asset>> {
    // No sentinel for "no cursor": under a linguistic collation (PostgreSQL `en_US`, ICU)
    // punctuation such as `~` sorts before letters.
    let cursor = if before.is_some() { " AND id < $2" } else { "" };
    let sql = format!(
        "SELECT {COLS} FROM assets WHERE owner_id = $1{cursor} ORDER BY id DESC LIMIT {}",
        limit.clamp(1, 1000)
    );
    let mut q = sqlx::query(&sql).bind(owner_id);
    if let Some(b) = before {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&db.pool).await.map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// Delete the row, recording an intent for its blob, which the caller then deletes with
/// `intents::remove` (a crash before that leaves the intent to the collector: never a row
/// without its blob, never a blob forgotten).
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let row = sqlx::query("SELECT owner_id, job_id FROM assets WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?;
    let job_id = match &row {
        Some(r) => {
            let owner = crate::db::get_str(r, "owner_id")?;
            // The blob outlives the row until the caller deletes it (`intents::remove`).
            crate::intents::record_tx(&mut tx, id, &easel_core::asset::blob_key(&owner, id))
                .await?;
            Some(crate::db::get_opt_str(r, "job_id")?)
        }
        None => None,
    };
    let n = sqlx::query("DELETE FROM assets WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    // The job that made it no longer lists it: every dialect answers the outputs that exist.
    if let Some(Some(job_id)) = job_id {
        let sql = format!("SELECT outputs FROM jobs WHERE id = $1{}", db.for_update());
        let row = sqlx::query(&sql)
            .bind(&job_id)
            .fetch_optional(tx.conn())
            .await
            .map_err(db_err)?;
        if let Some(row) = row {
            let mut outputs: Vec<String> =
                serde_json::from_value(crate::db::get_json(&row, "outputs")?)
                    .map_err(|e| Error::internal(format!("bad outputs of job {job_id}: {e}")))?;
            outputs.retain(|o| o != id);
            sqlx::query("UPDATE jobs SET outputs = $1 WHERE id = $2")
                .bind(serde_json::to_string(&outputs).unwrap_or_else(|_| "[]".into()))
                .bind(&job_id)
                .execute(tx.conn())
                .await
                .map_err(db_err)?;
        }
    }
    tx.commit().await?;
    Ok(n > 0)
}
