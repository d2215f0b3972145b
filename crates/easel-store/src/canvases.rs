//! Canvases (`easel_core::canvas`): the asset row of kind `canvas`, its current document,
//! version, thumbnail and lock (`canvases`), and its snapshots (`canvas_snapshots`). A
//! canvas has no blob: its document is a database row, so a save — the lock checked, the
//! document and the asset's size and hash replaced, a snapshot taken and the oldest beyond
//! `MAX_SNAPSHOTS` dropped — is one transaction, and nothing of it can be half-written.

use std::collections::HashMap;

use easel_core::asset::{Asset, AssetEdit};
use easel_core::canvas::{
    self, Canvas, CanvasLock, Snapshot, MAX_SNAPSHOTS, MAX_SNAPSHOT_PAGE_BYTES,
};
use easel_core::time::{self, from_millis, Timestamp};
use easel_core::{Error, Result};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_opt_i64, get_opt_str, get_str, Db, WriteTx};

const COLS: &str = "asset_id, version, thumbnail_id, lock_id, lock_holder, lock_expires_at";

/// Hex SHA-256 of a document (its asset's `sha256`, a snapshot's `hash`).
pub fn hash(document: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(document.as_ref()))
}

/// A row as of `now` (an expired lock reads as none), its holder's name from `names`.
fn from_row(r: &AnyRow, now: Timestamp, names: &HashMap<String, String>) -> Result<Canvas> {
    let lock = match (
        get_opt_str(r, "lock_id")?,
        get_opt_str(r, "lock_holder")?,
        get_opt_i64(r, "lock_expires_at")?,
    ) {
        (Some(id), Some(holder), Some(until)) if until > time::to_millis(now) => Some(CanvasLock {
            id: Some(id),
            holder_name: names.get(&holder).cloned().unwrap_or_default(),
            holder_id: holder,
            expires_at: from_millis(until),
        }),
        _ => None,
    };
    Ok(Canvas {
        asset_id: get_str(r, "asset_id")?,
        version: get_i64(r, "version")? as u64,
        lock,
        thumbnail_id: get_opt_str(r, "thumbnail_id")?,
    })
}

/// User names by id, for lock holders.
async fn names(conn: &mut sqlx::AnyConnection, rows: &[AnyRow]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for r in rows {
        if let Some(h) = get_opt_str(r, "lock_holder")? {
            if out.contains_key(&h) {
                continue;
            }
            let row = sqlx::query("SELECT name FROM users WHERE id = $1")
                .bind(&h)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            let name = match row {
                Some(r) => get_str(&r, "name")?,
                None => String::new(),
            };
            out.insert(h, name);
        }
    }
    Ok(out)
}

/// The canvas row of `id` in a transaction, locked for the rest of it.
async fn state_tx(tx: &mut WriteTx, db: &Db, id: &str, now: Timestamp) -> Result<Canvas> {
    let sql = format!(
        "SELECT {COLS} FROM canvases WHERE asset_id = $1{}",
        db.for_update()
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found(&format!("canvas {id}")))?;
    let rows = [row];
    let names = names(tx.conn(), &rows).await?;
    from_row(&rows[0], now, &names)
}

async fn snapshot_tx(
    tx: &mut WriteTx,
    id: &str,
    version: u64,
    author_id: &str,
    document: &str,
    now: Timestamp,
) -> Result<()> {
    let sha256 = hash(document);
    // Saved again unchanged: the latest snapshot already holds it.
    let latest = sqlx::query(
        "SELECT sha256 FROM canvas_snapshots WHERE asset_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?;
    if let Some(r) = latest {
        if get_str(&r, "sha256")? == sha256 {
            return Ok(());
        }
    }
    sqlx::query(&format!(
        "INSERT INTO canvas_snapshots (id, asset_id, version, author_id, sha256, bytes, document, taken_at) \
         VALUES ($1, $2, {version}, $3, $4, {}, $5, $6)",
        document.len()
    ))
    .bind(easel_core::id::new(easel_core::id::SNAPSHOT))
    .bind(id)
    .bind(author_id)
    .bind(&sha256)
    .bind(document)
    .bind(time::to_millis(now))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    // The oldest beyond the limit go.
    sqlx::query(&format!(
        "DELETE FROM canvas_snapshots WHERE asset_id = $1 AND version NOT IN \
         (SELECT version FROM canvas_snapshots WHERE asset_id = $1 ORDER BY version DESC LIMIT {MAX_SNAPSHOTS})"
    ))
    .bind(id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Insert a canvas: its asset row (kind `canvas`; `bytes` and `sha256` those of
/// `document`), version 1 and its first snapshot, by `asset.owner_id`, in `collections` (the
/// owner's, checked by the caller), with its `thumbnail` (an image asset derived from it,
/// whose blob the caller wrote under an intent). Returns the asset's lineage root.
pub async fn create(
    db: &Db,
    asset: &Asset,
    document: &str,
    collections: &[String],
    thumbnail: Option<&Asset>,
) -> Result<Option<String>> {
    let mut tx = db.begin().await?;
    let root = crate::assets::insert_tx(&mut tx, asset).await?;
    if let Some(t) = thumbnail {
        crate::assets::insert_tx(&mut tx, t).await?;
    }
    sqlx::query(
        "INSERT INTO canvases (asset_id, document, version, thumbnail_id) VALUES ($1, $2, 1, $3)",
    )
    .bind(&asset.id)
    .bind(document)
    .bind(thumbnail.map(|t| t.id.clone()))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    crate::collections::add_all_tx(&mut tx, collections, &asset.id, asset.created_at).await?;
    snapshot_tx(
        &mut tx,
        &asset.id,
        1,
        &asset.owner_id,
        document,
        asset.created_at,
    )
    .await?;
    tx.commit().await?;
    Ok(root)
}

/// The canvas of an asset as of `now`, `None` when the asset is not a canvas.
pub async fn get(db: &Db, id: &str, now: Timestamp) -> Result<Option<Canvas>> {
    Ok(get_many(db, &[id], now).await?.remove(id))
}

/// The canvases among `ids`, by asset id.
pub async fn get_many(db: &Db, ids: &[&str], now: Timestamp) -> Result<HashMap<String, Canvas>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {COLS} FROM canvases WHERE asset_id IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let mut conn = db.pool.acquire().await.map_err(db_err)?;
    let rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
    let names = names(&mut conn, &rows).await?;
    rows.iter()
        .map(|r| from_row(r, now, &names).map(|c| (c.asset_id.clone(), c)))
        .collect()
}

/// A canvas as of `now` with its current document, read together.
pub async fn read(db: &Db, id: &str, now: Timestamp) -> Result<Option<(Canvas, String)>> {
    let mut conn = db.pool.acquire().await.map_err(db_err)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLS}, document FROM canvases WHERE asset_id = $1"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let names = names(&mut conn, &rows).await?;
    match rows.first() {
        None => Ok(None),
        Some(r) => Ok(Some((from_row(r, now, &names)?, get_str(r, "document")?))),
    }
}

/// A canvas's current document.
pub async fn document(db: &Db, id: &str) -> Result<Option<String>> {
    sqlx::query("SELECT document FROM canvases WHERE asset_id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| get_str(&r, "document"))
        .transpose()
}

/// One save of a canvas.
#[derive(Debug, Default, Clone)]
pub struct Save<'a> {
    pub author_id: &'a str,
    /// The new document (checked by `canvas::check_document`).
    pub document: Option<&'a str>,
    /// A new thumbnail: an image asset of the owner derived from the canvas, whose blob the
    /// caller wrote under an intent; its row is inserted with the save.
    pub thumbnail: Option<&'a Asset>,
    /// The token of the live lock, if the canvas is locked.
    pub lock_id: Option<&'a str>,
    /// Extend the live lock (held with `lock_id`) to this time (`canvas::check_lock_end`).
    pub lock_until: Option<Timestamp>,
    /// Take a snapshot of the new document.
    pub snapshot: bool,
    /// The asset record's editable fields.
    pub edit: AssetEdit,
}

/// What a save leaves: the asset, the canvas, its document, and the thumbnail it replaced
/// (the caller deletes it).
pub struct Saved {
    pub asset: Asset,
    pub canvas: Canvas,
    pub document: String,
    pub replaced_thumbnail: Option<String>,
}

/// Save a canvas in one transaction. While a live lock is held, only its token passes
/// (409 naming the holder otherwise, the field `lock_id`); 404 for an asset that is not a
/// canvas.
pub async fn save(db: &Db, id: &str, s: &Save<'_>, now: Timestamp) -> Result<Saved> {
    let mut tx = db.begin().await?;
    let mut c = state_tx(&mut tx, db, id, now).await?;
    canvas::may_change(c.lock.as_ref(), s.lock_id, "lock_id")?;
    if let Some(until) = s.lock_until {
        let Some(lock) = &mut c.lock else {
            return Err(Error::invalid(
                "lock_expires_at",
                "the canvas is not locked: lock it first",
            ));
        };
        sqlx::query("UPDATE canvases SET lock_expires_at = $1 WHERE asset_id = $2")
            .bind(time::to_millis(until))
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        lock.expires_at = until;
    }
    let mut content = None;
    let sha;
    let document = match s.document {
        Some(d) => d.to_string(),
        None => {
            let r = sqlx::query("SELECT document FROM canvases WHERE asset_id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await
                .map_err(db_err)?;
            get_str(&r, "document")?
        }
    };
    if let Some(doc) = s.document {
        sha = hash(doc);
        c.version += 1;
        sqlx::query("UPDATE canvases SET document = $1, version = $2 WHERE asset_id = $3")
            .bind(doc)
            .bind(c.version as i64)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        if s.snapshot {
            snapshot_tx(&mut tx, id, c.version, s.author_id, doc, now).await?;
        }
        content = Some((doc.len() as u64, sha.as_str()));
    }
    let mut replaced_thumbnail = None;
    if let Some(t) = s.thumbnail {
        crate::assets::insert_tx(&mut tx, t).await?;
        sqlx::query("UPDATE canvases SET thumbnail_id = $1 WHERE asset_id = $2")
            .bind(&t.id)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
        replaced_thumbnail = c.thumbnail_id.replace(t.id.clone());
    }
    let asset = crate::assets::edit_tx(&mut tx, id, &s.edit, content)
        .await?
        .ok_or_else(|| Error::not_found(&format!("canvas {id}")))?;
    tx.commit().await?;
    Ok(Saved {
        asset,
        canvas: c,
        document,
        replaced_thumbnail,
    })
}

/// Lock a canvas for `holder` until `until` (`canvas::check_lock_end`): a new token, shown
/// in the answer. A live lock, whoever holds it, is a 409 naming its holder.
pub async fn lock(
    db: &Db,
    id: &str,
    holder: &str,
    until: Timestamp,
    now: Timestamp,
) -> Result<Canvas> {
    let mut tx = db.begin().await?;
    let mut c = state_tx(&mut tx, db, id, now).await?;
    if let Some(l) = &c.lock {
        return Err(canvas::locked(l, "lock_id"));
    }
    let token = easel_core::id::new(easel_core::id::CANVAS_LOCK);
    sqlx::query(
        "UPDATE canvases SET lock_id = $1, lock_holder = $2, lock_expires_at = $3 WHERE asset_id = $4",
    )
    .bind(&token)
    .bind(holder)
    .bind(time::to_millis(until))
    .bind(id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    let name = sqlx::query("SELECT name FROM users WHERE id = $1")
        .bind(holder)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?
        .map(|r| get_str(&r, "name"))
        .transpose()?
        .unwrap_or_default();
    tx.commit().await?;
    c.lock = Some(CanvasLock {
        id: Some(token),
        holder_id: holder.to_string(),
        holder_name: name,
        expires_at: until,
    });
    Ok(c)
}

/// End a canvas's lock: with its token, or `force` (a canvas's owner and admins, who alone
/// reach it, may always end a lock). Unlocking a canvas that is not locked is no error.
pub async fn unlock(
    db: &Db,
    id: &str,
    lock_id: Option<&str>,
    force: bool,
    now: Timestamp,
) -> Result<Canvas> {
    let mut tx = db.begin().await?;
    let mut c = state_tx(&mut tx, db, id, now).await?;
    if !force {
        canvas::may_change(c.lock.as_ref(), lock_id, "lock_id")?;
    }
    sqlx::query(
        "UPDATE canvases SET lock_id = NULL, lock_holder = NULL, lock_expires_at = NULL WHERE asset_id = $1",
    )
    .bind(id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    c.lock = None;
    Ok(c)
}

/// A page of a canvas's snapshots, newest first, older than version `before` (the cursor):
/// at most `limit`, fewer when their documents would pass `MAX_SNAPSHOT_PAGE_BYTES` (one at
/// least); and whether older ones remain.
pub async fn snapshots(
    db: &Db,
    id: &str,
    before: Option<u64>,
    limit: u32,
) -> Result<(Vec<Snapshot>, bool)> {
    let below = before
        .map(|v| format!(" AND version < {v}"))
        .unwrap_or_default();
    let heads = sqlx::query(&format!(
        "SELECT id, version, bytes AS len FROM canvas_snapshots \
         WHERE asset_id = $1{below} ORDER BY version DESC LIMIT {}",
        limit.clamp(1, 1000) + 1
    ))
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut ids = Vec::new();
    let mut bytes = 0usize;
    for r in heads.iter().take(limit.clamp(1, 1000) as usize) {
        let len = get_i64(r, "len")?.max(0) as usize;
        if !ids.is_empty() && bytes + len > MAX_SNAPSHOT_PAGE_BYTES {
            break;
        }
        bytes += len;
        ids.push(get_str(r, "id")?);
    }
    let more = heads.len() > ids.len();
    if ids.is_empty() {
        return Ok((Vec::new(), false));
    }
    let marks: Vec<String> = (2..=ids.len() + 1).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, version, author_id, sha256, document, taken_at FROM canvas_snapshots \
         WHERE asset_id = $1 AND id IN ({}) ORDER BY version DESC",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(id);
    for i in &ids {
        q = q.bind(i);
    }
    let rows = q
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(Snapshot {
                id: get_str(r, "id")?,
                version: get_i64(r, "version")? as u64,
                author_id: get_str(r, "author_id")?,
                sha256: get_str(r, "sha256")?,
                document: get_str(r, "document")?,
                taken_at: from_millis(get_i64(r, "taken_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((rows, more))
}

/// The live lock of a canvas in a transaction (`None` for another asset).
pub(crate) async fn live_lock_tx(
    tx: &mut WriteTx,
    db: &Db,
    id: &str,
    now: Timestamp,
) -> Result<Option<CanvasLock>> {
    // Locked for the rest of the transaction: no lock is taken between this read and the
    // delete that follows it.
    let sql = format!(
        "SELECT {COLS} FROM canvases WHERE asset_id = $1{}",
        db.for_update()
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .fetch_all(tx.conn())
        .await
        .map_err(db_err)?;
    let names = names(tx.conn(), &rows).await?;
    Ok(match rows.first() {
        Some(r) => from_row(r, now, &names)?.lock,
        None => None,
    })
}

/// Drop what belongs to an asset being deleted: its canvas and snapshots, and its place as
/// a canvas's thumbnail.
pub(crate) async fn forget_tx(tx: &mut WriteTx, id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM canvas_snapshots WHERE asset_id = $1",
        "DELETE FROM canvases WHERE asset_id = $1",
        "UPDATE canvases SET thumbnail_id = NULL WHERE thumbnail_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    Ok(())
}
