//! Blob intents: the record that keeps a crash from leaving a blob that no asset row points
//! to (an orphan, never served and never collected). A user's LoRA is a blob whose row is
//! its model's (`models/<model id>.safetensors`): its intent is keyed by the model's id, and
//! a model row keeps its blob from the collector as an asset row does.
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
//! than a grace period that no row points to, on local disk and S3 alike. It claims an
//! intent (commits `claimed = 1`) before it deletes the blob, and a row's transaction fails
//! on a claimed intent: a write slower than the grace period loses its row (the request or
//! job fails), never its blob.

use std::time::Duration;

use bytes::Bytes;
use easel_core::{time, Error, ErrorKind, Result};

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

/// The asset row is being inserted (in `tx`): its blob is no longer at risk. Fails when the
/// collector claimed the intent (its blob is being, or was, deleted).
pub(crate) async fn clear_tx(tx: &mut WriteTx, asset_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM blob_intents WHERE asset_id = $1 AND claimed = 0")
        .bind(asset_id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    let claimed = sqlx::query("SELECT asset_id FROM blob_intents WHERE asset_id = $1")
        .bind(asset_id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?;
    if claimed.is_some() {
        return Err(Error::unavailable(
            "the output was written too slowly and has been collected; try again",
        ));
    }
    Ok(())
}

/// Write the blob of an asset whose row is yet to be inserted: the intent first.
pub async fn put(store: &Store, asset_id: &str, key: &str, bytes: Bytes) -> Result<()> {
    record(store, &[(asset_id.to_string(), key.to_string())]).await?;
    store.blobs.put(key, bytes).await
}

/// Record the intents of several blobs (a job's outputs) in one transaction, before any of
/// them is written.
pub async fn record(store: &Store, blobs: &[(String, String)]) -> Result<()> {
    let mut tx = store.db.begin().await?;
    for (asset_id, key) in blobs {
        record_tx(&mut tx, asset_id, key).await?;
    }
    tx.commit().await
}

/// Delete the blobs of assets whose rows are gone (deleted, or never committed), then their
/// intents. A blob that cannot be deleted now keeps its intent for the collector.
pub async fn remove(store: &Store, assets: &[(String, String)]) -> Result<()> {
    for (asset_id, key) in assets {
        store.blobs.delete(key).await?;
        let mut tx = store.db.begin().await?;
        sqlx::query("DELETE FROM blob_intents WHERE asset_id = $1")
            .bind(asset_id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        tx.commit().await?;
    }
    Ok(())
}

/// How long the record of a collected blob is kept, so that a write slower still than the
/// grace period cannot commit its row after the blob was deleted.
const TOMBSTONE: Duration = Duration::from_secs(24 * 3600);

/// Claim the intents older than `grace`, then delete the blobs of claimed intents whose
/// asset has no row (claims a stopped collector left included); their intents stay as
/// tombstones (`claimed = 2`) for a day. Returns how many blobs were collected.
pub async fn collect(store: &Store, grace: Duration) -> Result<usize> {
    let now = time::to_millis(time::now());
    let before = now - grace.as_millis() as i64;
    let db = &store.db;
    let run = |sql: &'static str, bind: i64| async move {
        let mut tx = db.begin().await?;
        sqlx::query(sql)
            .bind(bind)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        tx.commit().await
    };
    run(
        "UPDATE blob_intents SET claimed = 1 WHERE claimed = 0 AND created_at <= $1",
        before,
    )
    .await?;
    let rows = sqlx::query(
        "SELECT i.asset_id, i.blob_key, COALESCE(a.id, m.id) AS row_id FROM blob_intents i \
         LEFT JOIN assets a ON a.id = i.asset_id LEFT JOIN models m ON m.id = i.asset_id \
         WHERE i.claimed = 1 \
         ORDER BY i.created_at LIMIT 1000",
    )
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut collected = 0;
    for r in rows {
        let asset_id = get_str(&r, "asset_id")?;
        let key = get_str(&r, "blob_key")?;
        let has_row = crate::db::get_opt_str(&r, "row_id")?.is_some();
        let sql = if has_row {
            "DELETE FROM blob_intents WHERE asset_id = $1"
        } else {
            match store.blobs.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            collected += 1;
            tracing::info!(asset = %asset_id, key = %key, "collected a blob without its asset row");
            "UPDATE blob_intents SET claimed = 2 WHERE asset_id = $1"
        };
        let mut tx = db.begin().await?;
        sqlx::query(sql)
            .bind(&asset_id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        tx.commit().await?;
    }
    run(
        "DELETE FROM blob_intents WHERE claimed = 2 AND created_at <= $1",
        before - TOMBSTONE.as_millis() as i64,
    )
    .await?;
    Ok(collected)
}
