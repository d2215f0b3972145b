//! Uploads in parts (`easel_core::upload`): the announced file and its parts.
//!
//! Every blob here is guarded by an intent (`intents`) until a row points to it, and gets an
//! intent again in the transaction that drops the row, so no crash leaves a part's blob
//! without its row or the reverse:
//!
//! - a part is written under a key of its own (`uploads/<owner>/<upload>/<n>-<id>`, never
//!   overwritten): intent, blob, then the part's row in a transaction that clears the intent
//!   and hands the blob of a part it replaces to an intent;
//! - completing (`finish`) inserts the asset (whose blob the caller wrote, with its intent),
//!   adds it to collections, marks the upload complete and hands every part's blob to an
//!   intent, in one transaction: an upload is complete exactly when its asset exists;
//! - failing and expiring do the same without the asset.
//!
//! The blobs handed to intents are deleted by the caller (`intents::remove`) or, after a
//! crash, by the collector.

use bytes::Bytes;
use easel_core::time::{self, from_millis};
use easel_core::upload::{Upload, UploadKind, UploadOptions, UploadPart, UploadStatus};
use easel_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_opt_str, get_str, Db, WriteTx};
use crate::Store;

const COLS: &str = "id, owner_id, kind, file_name, content_type, file_size, parts_count, status, \
    error, asset_id, options, source_url, created_at, updated_at, expires_at, model_id";

/// Blobs whose rows are gone, to delete (`intents::remove`): (intent id, blob key).
pub type Released = Vec<(String, String)>;

fn from_row(r: &AnyRow) -> Result<Upload> {
    let kind = get_str(r, "kind")?;
    let status = get_str(r, "status")?;
    let options: UploadOptions = serde_json::from_str(&get_str(r, "options")?)
        .map_err(|e| Error::internal(format!("bad upload options: {e}")))?;
    Ok(Upload {
        id: get_str(r, "id")?,
        owner_id: get_str(r, "owner_id")?,
        kind: UploadKind::parse(&kind)
            .ok_or_else(|| Error::internal(format!("bad upload kind {kind}")))?,
        file_name: get_str(r, "file_name")?,
        content_type: get_str(r, "content_type")?,
        file_size: get_i64(r, "file_size")? as u64,
        parts_count: get_i64(r, "parts_count")? as u32,
        status: UploadStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("bad upload status {status}")))?,
        error: get_opt_str(r, "error")?,
        asset_id: get_opt_str(r, "asset_id")?,
        model_id: get_opt_str(r, "model_id")?,
        options,
        source_url: get_opt_str(r, "source_url")?,
        created_at: from_millis(get_i64(r, "created_at")?),
        updated_at: from_millis(get_i64(r, "updated_at")?),
        expires_at: from_millis(get_i64(r, "expires_at")?),
    })
}

fn part_from_row(r: &AnyRow) -> Result<UploadPart> {
    Ok(UploadPart {
        number: get_i64(r, "number")? as u32,
        bytes: get_i64(r, "bytes")? as u64,
        sha256: get_str(r, "sha256")?,
        created_at: from_millis(get_i64(r, "created_at")?),
    })
}

pub async fn create(db: &Db, u: &Upload) -> Result<()> {
    let mut tx = db.begin().await?;
    insert_tx(&mut tx, u).await?;
    tx.commit().await
}

/// Record an import (an upload with a `source_url`, `validating` from the start: the server
/// fetches it) unless its owner has `max` imports being fetched already (a rate limit then).
/// The count and the insert are one transaction, the owner's row locked (PostgreSQL; SQLite's
/// writer lock serializes them), so concurrent requests cannot pass the bound together.
pub async fn create_import(db: &Db, u: &Upload, max: u64) -> Result<()> {
    debug_assert!(u.source_url.is_some() && u.status == UploadStatus::Validating);
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "SELECT id FROM users WHERE id = $1{}",
        db.for_update()
    ))
    .bind(&u.owner_id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM uploads WHERE owner_id = $1 AND status = 'validating' \
         AND source_url IS NOT NULL",
    )
    .bind(&u.owner_id)
    .fetch_one(tx.conn())
    .await
    .map_err(db_err)?;
    if get_i64(&row, "n")? as u64 >= max {
        return Err(Error::new(
            ErrorKind::RateLimited,
            format!("at most {max} imports may be fetched at once: wait for one to end"),
        ));
    }
    insert_tx(&mut tx, u).await?;
    tx.commit().await
}

async fn insert_tx(tx: &mut WriteTx, u: &Upload) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO uploads ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&u.id)
    .bind(&u.owner_id)
    .bind(u.kind.as_str())
    .bind(&u.file_name)
    .bind(&u.content_type)
    .bind(u.file_size as i64)
    .bind(u.parts_count as i64)
    .bind(u.status.as_str())
    .bind(u.error.clone())
    .bind(u.asset_id.clone())
    .bind(serde_json::to_string(&u.options).map_err(|e| Error::internal(e.to_string()))?)
    .bind(u.source_url.clone())
    .bind(time::to_millis(u.created_at))
    .bind(time::to_millis(u.updated_at))
    .bind(time::to_millis(u.expires_at))
    .bind(u.model_id.clone())
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Upload>> {
    sqlx::query(&format!("SELECT {COLS} FROM uploads WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .transpose()
}

/// The parts received, in order.
pub async fn parts(db: &Db, id: &str) -> Result<Vec<UploadPart>> {
    sqlx::query(
        "SELECT number, bytes, sha256, created_at FROM upload_parts WHERE upload_id = $1 ORDER BY number",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?
    .iter()
    .map(part_from_row)
    .collect()
}

/// Read the upload row in `tx` (locked on PostgreSQL).
async fn get_tx(db: &Db, tx: &mut WriteTx, id: &str) -> Result<Upload> {
    let r = sqlx::query(&format!(
        "SELECT {COLS} FROM uploads WHERE id = $1{}",
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?
    .ok_or_else(|| Error::not_found("upload"))?;
    from_row(&r)
}

/// Store part `number` of an open upload (the caller checked `Upload::check_part`): its blob
/// first, under a key of its own, then its row. A part sent again replaces the earlier one.
pub async fn put_part(
    store: &Store,
    upload: &Upload,
    number: u32,
    data: Bytes,
) -> Result<UploadPart> {
    let intent = easel_core::id::new(easel_core::id::UPLOAD_PART);
    let key = format!(
        "uploads/{}/{}/{number}-{}",
        upload.owner_id, upload.id, intent
    );
    let part = UploadPart {
        number,
        bytes: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
        created_at: time::now(),
    };
    crate::intents::put(store, &intent, &key, data).await?;
    let db = &store.db;
    let mut tx = db.begin().await?;
    let written = async {
        let now = get_tx(db, &mut tx, &upload.id).await?;
        now.check_part(number, part.bytes)?;
        let others = sqlx::query(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS n FROM upload_parts WHERE upload_id = $1 AND number <> $2",
        )
        .bind(&upload.id)
        .bind(number as i64)
        .fetch_one(tx.conn())
        .await
        .map_err(db_err)?;
        let others = get_i64(&others, "n")? as u64;
        if others + part.bytes > now.file_size {
            return Err(Error::invalid(
                "part",
                format!(
                    "the parts would hold {} bytes but the file was announced as {} bytes",
                    others + part.bytes,
                    now.file_size
                ),
            ));
        }
        let old =
            sqlx::query("SELECT blob_key FROM upload_parts WHERE upload_id = $1 AND number = $2")
                .bind(&upload.id)
                .bind(number as i64)
                .fetch_optional(tx.conn())
                .await
                .map_err(db_err)?
                .map(|r| get_str(&r, "blob_key"))
                .transpose()?;
        let mut released = Released::new();
        if let Some(old) = old {
            let id = easel_core::id::new(easel_core::id::UPLOAD_PART);
            crate::intents::record_tx(&mut tx, &id, &old).await?;
            released.push((id, old));
        }
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, number, bytes, sha256, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (upload_id, number) DO UPDATE SET \
             bytes = excluded.bytes, sha256 = excluded.sha256, blob_key = excluded.blob_key, \
             created_at = excluded.created_at",
        )
        .bind(&upload.id)
        .bind(number as i64)
        .bind(part.bytes as i64)
        .bind(&part.sha256)
        .bind(&key)
        .bind(time::to_millis(part.created_at))
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
        crate::intents::clear_tx(&mut tx, &intent).await?;
        Ok(released)
    }
    .await;
    match written {
        Ok(released) => {
            tx.commit().await?;
            release(store, &released).await;
            Ok(part)
        }
        Err(e) => {
            drop(tx);
            // The blob is not needed; its intent lets the collector delete it if this fails.
            let _ = crate::intents::remove(store, &[(intent, key)]).await;
            Err(e)
        }
    }
}

/// Delete released blobs now, after their rows' commit; what fails stays with its intent for
/// the collector (the commit stands either way).
async fn release(store: &Store, released: &Released) {
    if let Err(e) = crate::intents::remove(store, released).await {
        tracing::warn!(error = %e, "deleting released upload parts failed; the collector will");
    }
}

/// How many uploads `owner` has open (pending or being completed).
pub async fn open_count(db: &Db, owner: &str) -> Result<u64> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM uploads WHERE owner_id = $1 AND status IN ('pending', 'validating')",
    )
    .bind(owner)
    .fetch_one(&db.pool)
    .await
    .map_err(db_err)?;
    Ok(get_i64(&r, "n")? as u64)
}

/// The received parts joined in order, one part in memory besides the file; an error unless
/// they hold exactly `size` bytes (the caller checked they make the file; this checks what
/// was read).
pub async fn read_joined(store: &Store, id: &str, size: u64) -> Result<Bytes> {
    let rows =
        sqlx::query("SELECT blob_key FROM upload_parts WHERE upload_id = $1 ORDER BY number")
            .bind(id)
            .fetch_all(&store.db.pool)
            .await
            .map_err(db_err)?;
    let mut out = Vec::with_capacity(size as usize);
    for r in rows {
        let part = store.blobs.get(&get_str(&r, "blob_key")?).await?;
        if out.len() as u64 + part.len() as u64 > size {
            break;
        }
        out.extend_from_slice(&part);
    }
    if out.len() as u64 != size {
        return Err(Error::internal(format!(
            "the upload's parts hold other than its {size} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

/// Mark a pending upload `validating` (completion has begun: no part changes from now on),
/// or take over one left `validating` longer than `VALIDATING_STALE` (the process
/// completing it stopped); `Ok(false)` otherwise.
pub async fn begin_validating(db: &Db, id: &str) -> Result<bool> {
    let now = time::to_millis(time::now());
    let stale = now - easel_core::upload::VALIDATING_STALE.as_millis() as i64;
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE uploads SET status = 'validating', updated_at = $2 \
         WHERE id = $1 AND (status = 'pending' OR (status = 'validating' AND updated_at <= $3))",
    )
    .bind(id)
    .bind(now)
    .bind(stale)
    .execute(tx.conn())
    .await
    .map_err(db_err)?
    .rows_affected();
    tx.commit().await?;
    Ok(n > 0)
}

/// Hand every part's blob to an intent and drop the part rows, in `tx`.
async fn release_parts(tx: &mut WriteTx, id: &str) -> Result<Released> {
    let rows = sqlx::query("SELECT blob_key FROM upload_parts WHERE upload_id = $1")
        .bind(id)
        .fetch_all(tx.conn())
        .await
        .map_err(db_err)?;
    let mut released = Released::new();
    for r in rows {
        let key = get_str(&r, "blob_key")?;
        let intent = easel_core::id::new(easel_core::id::UPLOAD_PART);
        crate::intents::record_tx(tx, &intent, &key).await?;
        released.push((intent, key));
    }
    sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(released)
}

/// Complete an open upload with `asset` (its blob written through `intents::put`): in one
/// transaction the asset row, its collections, the upload marked `complete` and its parts
/// released. A conflict when the upload is no longer open (completed, failed or expired
/// meanwhile): then nothing is written, and the asset's blob is left to its intent.
pub async fn finish(
    store: &Store,
    id: &str,
    asset: &easel_core::asset::Asset,
    collections: &[String],
) -> Result<(Upload, Option<String>)> {
    let db = &store.db;
    let mut tx = db.begin().await?;
    open_tx(db, &mut tx, id).await?;
    let root = crate::assets::insert_tx(&mut tx, asset).await?;
    crate::collections::add_all_tx(&mut tx, collections, &asset.id, time::now()).await?;
    let released = complete_tx(&mut tx, id, "asset_id", &asset.id, asset.bytes).await?;
    tx.commit().await?;
    release(store, &released).await;
    Ok((completed(db, id).await?, root))
}

/// Complete an open upload of a LoRA: the model `model_id` of `spec` (its blob written under
/// an intent, which this clears) inserted as the owner's, the upload complete naming it and
/// its parts released, in one transaction; `size`: the file's bytes (an import learns it
/// only now). A conflict when the upload is no longer open.
pub async fn finish_model(
    store: &Store,
    id: &str,
    model_id: &str,
    spec: &easel_core::model::ModelSpec,
    size: u64,
) -> Result<Upload> {
    let db = &store.db;
    let mut tx = db.begin().await?;
    let u = open_tx(db, &mut tx, id).await?;
    crate::models::insert_in(&mut tx, model_id, spec, Some(&u.owner_id), false).await?;
    crate::intents::clear_tx(&mut tx, model_id).await?;
    let released = complete_tx(&mut tx, id, "model_id", model_id, size).await?;
    tx.commit().await?;
    release(store, &released).await;
    completed(db, id).await
}

/// The upload `id`, locked in `tx`, while it is open; a conflict once it is closed.
async fn open_tx(db: &Db, tx: &mut WriteTx, id: &str) -> Result<Upload> {
    let u = get_tx(db, tx, id).await?;
    if !u.status.is_open() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("the upload is already {}", u.status.as_str()),
        ));
    }
    Ok(u)
}

/// Mark the upload complete, naming what it made (`made_in`: `asset_id` or `model_id`) and
/// the file's size, and release its parts, in `tx`.
async fn complete_tx(
    tx: &mut WriteTx,
    id: &str,
    made_in: &'static str,
    made: &str,
    size: u64,
) -> Result<Released> {
    let released = release_parts(tx, id).await?;
    sqlx::query(&format!(
        "UPDATE uploads SET status = 'complete', error = NULL, {made_in} = $2, updated_at = $3, \
         file_size = $4 WHERE id = $1"
    ))
    .bind(id)
    .bind(made)
    .bind(time::to_millis(time::now()))
    .bind(size as i64)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(released)
}

/// An upload just completed, read back.
async fn completed(db: &Db, id: &str) -> Result<Upload> {
    get(db, id)
        .await?
        .ok_or_else(|| Error::internal("a completed upload is missing"))
}

/// Fail an open upload with `message`, releasing its parts (no-op on a closed one).
pub async fn fail(store: &Store, id: &str, message: &str) -> Result<()> {
    let db = &store.db;
    let mut tx = db.begin().await?;
    let u = get_tx(db, &mut tx, id).await?;
    if !u.status.is_open() {
        return Ok(());
    }
    let released = release_parts(&mut tx, id).await?;
    sqlx::query("UPDATE uploads SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(message)
        .bind(time::to_millis(time::now()))
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    tx.commit().await?;
    release(store, &released).await;
    Ok(())
}

/// Delete an upload and its parts (an upload abandoned by its owner, an import being
/// fetched, or any closed one); a conflict while one in parts is being completed
/// (`validating`, not stale).
pub async fn delete(store: &Store, id: &str) -> Result<bool> {
    let db = &store.db;
    let mut tx = db.begin().await?;
    let u = match get_tx(db, &mut tx, id).await {
        Ok(u) => u,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let stale = time::now()
        - chrono::Duration::from_std(easel_core::upload::VALIDATING_STALE).expect("fits");
    // An import being fetched may be deleted: its fetch stops at its next touch.
    if u.status == UploadStatus::Validating && u.updated_at > stale && u.source_url.is_none() {
        return Err(Error::new(
            ErrorKind::Conflict,
            "the upload is being completed; delete it once it is complete or failed",
        ));
    }
    let released = release_parts(&mut tx, id).await?;
    let n = sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    release(store, &released).await;
    Ok(n > 0)
}

/// Fail the open uploads that expired at `now` (a hundred at a time), releasing their parts;
/// returns how many. The part blobs are left to their intents (the collector deletes them),
/// so this never waits on the object store.
pub async fn expire(db: &Db, now: easel_core::time::Timestamp) -> Result<usize> {
    // Imports (a `source_url`) being fetched are touched every minute (`touch`): one
    // untouched past `VALIDATING_STALE` was left by a process that stopped.
    let stale = time::to_millis(now) - easel_core::upload::VALIDATING_STALE.as_millis() as i64;
    let rows = sqlx::query(
        "SELECT id, expires_at FROM uploads WHERE \
         (status IN ('pending', 'validating') AND expires_at <= $1) \
         OR (status = 'validating' AND source_url IS NOT NULL AND updated_at <= $2) \
         ORDER BY expires_at LIMIT 100",
    )
    .bind(time::to_millis(now))
    .bind(stale)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut n = 0;
    for r in rows {
        let id = get_str(&r, "id")?;
        let expired = get_i64(&r, "expires_at")? <= time::to_millis(now);
        let mut tx = db.begin().await?;
        let u = get_tx(db, &mut tx, &id).await?;
        // Closed, or an import touched since it was read: not this time.
        if !u.status.is_open() || (!expired && time::to_millis(u.updated_at) > stale) {
            continue;
        }
        release_parts(&mut tx, &id).await?;
        let why = if expired {
            format!(
                "expired: not completed within {} hours",
                easel_core::upload::UPLOAD_TTL.as_secs() / 3600
            )
        } else {
            "the import stopped (the server fetching it stopped): import it again".to_string()
        };
        sqlx::query(
            "UPDATE uploads SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(&id)
        .bind(why)
        .bind(time::to_millis(time::now()))
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
        tx.commit().await?;
        n += 1;
    }
    Ok(n)
}

/// Mark an upload being completed (`validating`) as still in hand: its `updated_at` now.
/// `false` when it is no longer `validating`.
pub async fn touch(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n =
        sqlx::query("UPDATE uploads SET updated_at = $2 WHERE id = $1 AND status = 'validating'")
            .bind(id)
            .bind(time::to_millis(time::now()))
            .execute(tx.conn())
            .await
            .map_err(db_err)?
            .rows_affected();
    tx.commit().await?;
    Ok(n > 0)
}

/// An owner's uploads (all owners' with `None`), newest first, older than `before`.
pub async fn list(
    db: &Db,
    owner: Option<&str>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<Upload>> {
    let mut sql = format!("SELECT {COLS} FROM uploads WHERE 1 = 1");
    let mut n = 0;
    let mut mark = || {
        n += 1;
        format!("${n}")
    };
    if owner.is_some() {
        sql += &format!(" AND owner_id = {}", mark());
    }
    if before.is_some() {
        sql += &format!(" AND id < {}", mark());
    }
    sql += &format!(" ORDER BY id DESC LIMIT {}", limit.min(1000));
    let mut q = sqlx::query(&sql);
    if let Some(o) = owner {
        q = q.bind(o);
    }
    if let Some(b) = before {
        q = q.bind(b);
    }
    q.fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(from_row)
        .collect()
}
