//! Canvases (`easel_core::canvas`) as every API serves them: made (with a thumbnail, a
//! parent, collections), read, saved (the lock's token, the snapshot), locked, unlocked,
//! copied and deleted; and an asset's content whatever its kind (a canvas's document is a
//! database row, every other asset's a blob).

use bytes::Bytes;
use easel_core::asset::{blob_key, Asset, AssetEdit, AssetKind};
use easel_core::auth::Principal;
use easel_core::canvas::{self, Canvas};
use easel_core::{time, Error, Result};

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

/// Make a canvas of the caller: the asset, its document, its first snapshot and its place
/// in collections at once; then its thumbnail, if sent.
pub async fn create_canvas(
    state: &AppState,
    who: &Principal,
    n: NewCanvas,
) -> Result<(Asset, Canvas)> {
    canvas::check_document("document", &n.document)?;
    let edit = AssetEdit {
        name: n.name,
        description: n.description,
        privacy: None,
    };
    edit.validate()?;
    super::check_upload_options(
        state,
        who,
        &easel_core::upload::UploadOptions {
            name: None,
            parent_id: n.parent_id.clone(),
            collection_ids: n.collection_ids.clone(),
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
        created_at: now,
        updated_at: now,
    };
    asset.root_id =
        easel_store::canvases::create(&state.store.db, &asset, &n.document, &n.collection_ids)
            .await?;
    let c = easel_store::canvases::get(&state.store.db, &asset.id, now)
        .await?
        .ok_or_else(|| Error::internal("a canvas just made is missing"))?;
    match n.thumbnail {
        None => Ok((asset, c)),
        Some(t) => {
            save_canvas(
                state,
                who,
                &asset,
                CanvasSave {
                    thumbnail: Some(t),
                    ..Default::default()
                },
            )
            .await
        }
    }
}

/// One of the caller's canvases (admins: anyone's) with its state; 404 for an asset that
/// is not a canvas, or not theirs.
pub async fn owned_canvas(state: &AppState, who: &Principal, id: &str) -> Result<(Asset, Canvas)> {
    let a = super::owned_asset(state, who, id).await?;
    let c = easel_store::canvases::get(&state.store.db, &a.id, time::now())
        .await?
        .ok_or_else(|| Error::not_found(&format!("canvas {id}")))?;
    Ok((a, c))
}

/// Save a canvas (`easel_store::canvases::save`): the document checked, the thumbnail
/// stored first as an image derived from the canvas (and the one it replaces deleted after).
/// Errors name the native fields (`document`, `thumbnail`, `lock_id`, `lock_expires_at`).
pub async fn save_canvas(
    state: &AppState,
    who: &Principal,
    a: &Asset,
    s: CanvasSave,
) -> Result<(Asset, Canvas)> {
    if let Some(d) = &s.document {
        canvas::check_document("document", d)?;
    }
    s.edit.validate()?;
    let now = time::now();
    let lock_until = s
        .lock_until
        .map(|t| canvas::check_lock_end("lock_expires_at", now, t))
        .transpose()?;
    // The canvas's lock is checked before anything is stored for it.
    if let Some(c) = easel_store::canvases::get(&state.store.db, &a.id, now).await? {
        canvas::may_change(c.lock.as_ref(), s.lock_id.as_deref(), "lock_id")?;
    }
    let thumbnail = match s.thumbnail {
        None => None,
        Some(bytes) => Some(
            thumbnail_asset(state, a, bytes)
                .await
                .map_err(|e| super::refield(e, "file", "thumbnail"))?,
        ),
    };
    let saved = easel_store::canvases::save(
        &state.store.db,
        &a.id,
        &easel_store::canvases::Save {
            author_id: &who.user_id,
            document: s.document.as_deref(),
            thumbnail_id: thumbnail.as_ref().map(|t| t.id.as_str()),
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
            // Locked since the check: the new thumbnail goes.
            if let Some(t) = &thumbnail {
                super::delete_asset(state, t).await?;
            }
            return Err(e);
        }
    };
    if let Some(old) = &saved.replaced_thumbnail {
        if let Some(t) = easel_store::assets::get(&state.store.db, old).await? {
            super::delete_asset(state, &t).await?;
        }
    }
    Ok((saved.asset, saved.canvas))
}

/// A thumbnail of canvas `a`: an image of the canvas's owner, derived from it.
async fn thumbnail_asset(state: &AppState, a: &Asset, bytes: Bytes) -> Result<Asset> {
    let name = format!("{} thumbnail", a.name.as_deref().unwrap_or("canvas"));
    let metadata = serde_json::json!({ "name": name, "thumbnail_of": a.id });
    let mut t = super::image_asset(state, &a.owner_id, &bytes, metadata, Some(&a.id)).await?;
    let key = blob_key(&t.owner_id, &t.id);
    easel_store::intents::put(&state.store, &t.id, &key, bytes).await?;
    t.root_id = easel_store::assets::insert(&state.store.db, &t).await?;
    Ok(t)
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
pub async fn copy_canvas(state: &AppState, who: &Principal, a: &Asset) -> Result<(Asset, Canvas)> {
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
