//! Canvases (`easel_core::canvas`) as every API serves them: made (with a thumbnail, a
//! parent, collections), read, saved (the lock's token, the snapshot), locked, unlocked,
//! copied and deleted; and an asset's content whatever its kind (a canvas's document is a
//! database row, every other asset's a blob).

use bytes::Bytes;
use easel_core::asset::{blob_key, Asset, AssetEdit, AssetKind};
use easel_core::auth::Principal;
use easel_core::canvas::{self, Canvas};
use easel_core::{time, Error, ErrorKind, Result};

use crate::AppState;

/// A canvas to make.
#[derive(Debug, Default)]
pub struct NewCanvas {
    /// JSON text (`canvas::check_document`; errors name `document`).
    pub document: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// One of the caller's assets (`parent_id`).
    pub parent_id: Option<String>,
    /// The caller's collections to add it to (`collection_ids[i]`).
    pub collection_ids: Vec<String>,
    /// An image shown for it (`thumbnail`), stored as an asset derived from the canvas.
    pub thumbnail: Option<Bytes>,
    /// Left out of the owner's lists.
    pub hidden: bool,
}

/// A save of a canvas (`easel_store::canvases::Save`, with the thumbnail as an image).
#[derive(Debug, Default)]
pub struct CanvasSave {
    pub document: Option<String>,
    pub thumbnail: Option<Bytes>,
    pub lock_id: Option<String>,
    /// Extend the lock held with `lock_id` (`lock_expires_at`).
    pub lock_until: Option<time::Timestamp>,
    pub snapshot: bool,
    pub edit: AssetEdit,
}

/// A canvas as read or saved: its asset, its state and its document (a save's three from
/// its transaction; a read's state and document from one query).
pub struct CanvasRead {
    pub asset: Asset,
    pub canvas: Canvas,
    pub document: String,
}

/// Make a canvas of the caller: the thumbnail's blob first (under its intent), then the
/// asset, its document, its first snapshot, its thumbnail's row and its place in
/// collections in one transaction.
pub async fn create_canvas(state: &AppState, who: &Principal, n: NewCanvas) -> Result<CanvasRead> {
    canvas::check_document("document", &n.document)?;
    let edit = AssetEdit {
        name: n.name,
        description: n.description,
        privacy: None,
        hidden: None,
    };
    edit.validate()?;
    super::check_upload_options(
        state,
        who,
        &easel_core::upload::UploadOptions {
            name: None,
            parent_id: n.parent_id.clone(),
            collection_ids: n.collection_ids.clone(),
            hidden: false,
        },
    )
    .await?;
    let now = time::now();
    let blank = |v: Option<String>| v.filter(|s| !s.is_empty());
    let mut asset = Asset {
        id: easel_core::id::new(easel_core::id::ASSET),
        owner_id: who.user_id.clone(),
        job_id: None,
        output_index: None,
        kind: AssetKind::Canvas,
        mime_type: canvas::MIME.into(),
        width: None,
        height: None,
        bytes: n.document.len() as u64,
        sha256: easel_store::canvases::hash(&n.document),
        metadata: serde_json::json!({}),
        parent_id: n.parent_id,
        root_id: None,
        name: blank(edit.name),
        description: blank(edit.description),
        privacy: Default::default(),
        hidden: n.hidden,
        created_at: now,
        updated_at: now,
    };
    let thumbnail = match n.thumbnail {
        None => None,
        Some(bytes) => Some(thumbnail_blob(state, &asset, bytes).await?),
    };
    let made = easel_store::canvases::create(
        &state.store.db,
        &asset,
        &n.document,
        &n.collection_ids,
        thumbnail.as_ref(),
    )
    .await;
    asset.root_id = match made {
        Ok(root) => root,
        Err(e) => {
            drop_blob(state, thumbnail.as_ref(), &e).await;
            return Err(e);
        }
    };
    let canvas = easel_store::canvases::get(&state.store.db, &asset.id, now)
        .await?
        .ok_or_else(|| Error::internal("a canvas just made is missing"))?;
    Ok(CanvasRead {
        asset,
        canvas,
        document: n.document,
    })
}

/// One of the caller's canvases (admins: anyone's), its state and document read together;
/// 404 for an asset that is not a canvas, or not theirs.
pub async fn owned_canvas(state: &AppState, who: &Principal, id: &str) -> Result<CanvasRead> {
    let asset = super::owned_asset(state, who, id).await?;
    let (canvas, document) = easel_store::canvases::read(&state.store.db, &asset.id, time::now())
        .await?
        .ok_or_else(|| Error::not_found(&format!("canvas {id}")))?;
    Ok(CanvasRead {
        asset,
        canvas,
        document,
    })
}

/// Save a canvas (`easel_store::canvases::save`): the document checked; a thumbnail's blob
/// written first under its intent, its row inserted with the save (the one it replaces is
/// deleted after). Errors name the native fields (`document`, `thumbnail`, `lock_id`,
/// `lock_expires_at`).
pub async fn save_canvas(
    state: &AppState,
    who: &Principal,
    a: &Asset,
    s: CanvasSave,
) -> Result<CanvasRead> {
    if let Some(d) = &s.document {
        canvas::check_document("document", d)?;
    }
    s.edit.validate()?;
    let now = time::now();
    let lock_until = s
        .lock_until
        .map(|t| canvas::check_lock_end("lock_expires_at", now, t))
        .transpose()?;
    let thumbnail = match s.thumbnail {
        None => None,
        Some(bytes) => {
            // Nothing is stored for a canvas whose lock refuses the caller.
            if let Some(c) = easel_store::canvases::get(&state.store.db, &a.id, now).await? {
                canvas::may_change(c.lock.as_ref(), s.lock_id.as_deref(), "lock_id")?;
            }
            Some(thumbnail_blob(state, a, bytes).await?)
        }
    };
    let saved = easel_store::canvases::save(
        &state.store.db,
        &a.id,
        &easel_store::canvases::Save {
            author_id: &who.user_id,
            document: s.document.as_deref(),
            thumbnail: thumbnail.as_ref(),
            lock_id: s.lock_id.as_deref(),
            lock_until,
            snapshot: s.snapshot,
            edit: s.edit,
        },
        now,
    )
    .await;
    let saved = match saved {
        Ok(s) => s,
        Err(e) => {
            drop_blob(state, thumbnail.as_ref(), &e).await;
            return Err(e);
        }
    };
    // The save is committed: the replaced thumbnail's removal cannot undo it (a failure
    // leaves that image an ordinary asset of the owner).
    if let Some(old) = &saved.replaced_thumbnail {
        let gone = match easel_store::assets::get(&state.store.db, old).await {
            Ok(Some(t)) => super::delete_asset(state, &t).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = gone {
            tracing::warn!(thumbnail = %old, error = %e.message, "a replaced canvas thumbnail stays");
        }
    }
    Ok(CanvasRead {
        asset: saved.asset,
        canvas: saved.canvas,
        document: saved.document,
    })
}

/// A thumbnail of canvas `a`: an image of the canvas's owner derived from it, validated
/// (errors name `thumbnail`) and its blob written under its intent; its row is the caller's
/// to insert.
async fn thumbnail_blob(state: &AppState, a: &Asset, bytes: Bytes) -> Result<Asset> {
    let name = format!("{} thumbnail", a.name.as_deref().unwrap_or("canvas"));
    let metadata = serde_json::json!({ "name": name, "thumbnail_of": a.id });
    let t = super::image_asset(state, &a.owner_id, &bytes, metadata, Some(&a.id))
        .await
        .map_err(|e| super::refield(e, "file", "thumbnail"))?;
    let key = blob_key(&t.owner_id, &t.id);
    easel_store::intents::put(&state.store, &t.id, &key, bytes).await?;
    // A canvas's picture, not one of the owner's images: hidden from their lists (read
    // through the canvas, or by id).
    Ok(Asset { hidden: true, ..t })
}

/// Remove a thumbnail's blob whose row was refused (`e`: a lock, a missing canvas, bad
/// input). After a failure of the database itself the transaction may have committed, so
/// the intent stays for the collector, which deletes only blobs without their row.
async fn drop_blob(state: &AppState, t: Option<&Asset>, e: &Error) {
    let refused = !matches!(
        e.kind,
        ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::Timeout
    );
    if let Some(t) = t.filter(|_| refused) {
        let blob = [(t.id.clone(), blob_key(&t.owner_id, &t.id))];
        if let Err(e) = easel_store::intents::remove(&state.store, &blob).await {
            tracing::warn!(asset = %t.id, error = %e.message, "an unused thumbnail blob is left to the collector");
        }
    }
}

/// Lock a canvas for the caller until `until` (checked: ahead, at most a day; errors name
/// `field`).
pub async fn lock_canvas(
    state: &AppState,
    who: &Principal,
    a: &Asset,
    field: &str,
    until: time::Timestamp,
) -> Result<Canvas> {
    let now = time::now();
    let until = canvas::check_lock_end(field, now, until)?;
    easel_store::canvases::lock(&state.store.db, &a.id, &who.user_id, until, now).await
}

/// A copy of a canvas for the caller: its current document as a new canvas derived from
/// it (no lock, one snapshot), its name kept.
pub async fn copy_canvas(state: &AppState, who: &Principal, a: &Asset) -> Result<CanvasRead> {
    let document = easel_store::canvases::document(&state.store.db, &a.id)
        .await?
        .ok_or_else(|| Error::not_found(&format!("canvas {}", a.id)))?;
    create_canvas(
        state,
        who,
        NewCanvas {
            document,
            name: a.name.clone(),
            description: a.description.clone(),
            parent_id: Some(a.id.clone()).filter(|_| a.owner_id == who.user_id),
            ..Default::default()
        },
    )
    .await
}

/// Bytes sent in base64, or as a `data:` URL of base64 (a canvas's thumbnail, Scenario's
/// images); the error names `field`.
pub fn base64_bytes(field: &str, s: &str) -> Result<Bytes> {
    use base64::Engine;
    let b64 = match s.split_once(";base64,") {
        Some((head, data)) if head.starts_with("data:") => data,
        _ => s,
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map(Bytes::from)
        .map_err(|_| Error::invalid(field, "is not valid base64"))
}

/// An asset's content: a canvas's current document, or the blob of any other asset.
pub async fn asset_content(store: &easel_store::Store, a: &Asset) -> Result<Bytes> {
    if a.kind == AssetKind::Canvas {
        return easel_store::canvases::document(&store.db, &a.id)
            .await?
            .map(Bytes::from)
            .ok_or_else(|| Error::not_found("asset"));
    }
    store.blobs.get(&blob_key(&a.owner_id, &a.id)).await
}
