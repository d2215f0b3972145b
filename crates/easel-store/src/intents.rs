//! Blob intents: the record that keeps a crash from leaving a blob that no asset row points
//! to (an orphan, never served and never collected).
//!
//! A blob is written before its row (the invariant that no row lacks its blob), so between
//! the write and the commit of the row only the intent knows of it:
//!
//! - writing: `put` records the intent (committed), then writes the blob; the transaction
//!   that inserts the asset row deletes the intent (`assets::insert_tx`);
//! - deleting: the transaction that deletes asset rows records an intent for each blob
//!   (`assets::delete`, `jobs::delete`); `remove` then deletes the blobs and the intents.
//!
//! `collect` (at start and on a timer, in every process) deletes the blobs of intents older
//! than a grace period that no row points to, on local disk and S3 alike. The grace period
//! covers writes still in flight in other processes.

use std::time::Duration;

use bytes::Bytes;
use easel_core::{time, ErrorKind, Result};

use crate::db::{db_err, get_str, WriteTx};
use crate::Store;

/// Record that `key` (the blob of asset `asset_id`) may soon exist without its row.
pub(crate) async fn record_tx(tx: &mut WriteTx, asset_id: &str, key: &str) -> Result<()> {
    // An intent already there (a retried write) keeps its first time.
    let sql = "INSERT INTO blob_intents (asset_id, blob_key, created_at) VALUES ($1, $2, $3) \
               ON CONFLICT (asset_id) DO NOTHING";
    sqlx::query(sql)
        .bind(asset_id)
        .bind(key)
        .bind(time::to_millis(time::now()))
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The asset row is committed (in `tx`): its blob is no longer at risk.
pub(crate) async fn clear_tx(tx: &mut WriteTx, asset_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM blob_intents WHERE asset_id = $1")
        .bind(asset_id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Write the blob of an asset whose row is yet to be inserted: the intent first.
pub async fn put(store: &Store, asset_id: &str, key: &str, bytes: Bytes) -> Result<()> {
    let mut tx = store.db.begin().await?;
    record_tx(&mut tx, asset_id, key).await?;
    tx.commit().await?;
    store.blobs.put(key, bytes).await
}

/// Delete the blobs of assets whose rows are gone (deleted, or never committed), then their
/// intents. A blob that cannot be deleted now keeps its intent for the collector.
pub async fn remove(store: &Store, assets: &[(String, String)]) -> Result<()> {
    for (asset_id, key) in assets {
        store.blobs.delete(key).await?;
        sqlx::query("DELETE FROM blob_intents WHERE asset_id = $1")
            .bind(asset_id)
            .execute(&store.db.pool)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Delete the blobs of intents older than `grace` whose asset has no row, and drop those
/// intents (and any whose row exists). Returns how many blobs were collected.
pub async fn collect(store: &Store, grace: Duration) -> Result<usize> {
    let before = time::to_millis(time::now()) - grace.as_millis() as i64;
    let rows = sqlx::query(
        "SELECT i.asset_id, i.blob_key, a.id AS row_id FROM blob_intents i \
         LEFT JOIN assets a ON a.id = i.asset_id WHERE i.created_at <= $1 \
         ORDER BY i.created_at LIMIT 1000",
    )
    .bind(before)
    .fetch_all(&store.db.pool)
    .await
    .map_err(db_err)?;
    let mut collected = 0;
    for r in rows {
        let asset_id = get_str(&r, "asset_id")?;
        let key = get_str(&r, "blob_key")?;
        let has_row = crate::db::get_opt_str(&r, "row_id")?.is_some();
        if !has_row {
            match store.blobs.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            collected += 1;
            tracing::info!(asset = %asset_id, key = %key, "collected a blob without its asset row");
        }
        sqlx::query("DELETE FROM blob_intents WHERE asset_id = $1")
            .bind(&asset_id)
            .execute(&store.db.pool)
            .await
            .map_err(db_err)?;
    }
    Ok(collected)
}
