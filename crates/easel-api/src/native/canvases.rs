//! `/v1/canvases`: canvas documents (`easel_core::canvas`) — an editor's JSON kept as an
//! asset of kind `canvas`, saved with snapshots, locked by one editor at a time. A canvas is
//! an asset like any other for reads, lists, tags, collections, privacy and deletion (`GET
//! /v1/assets/{id}/content` answers its current document); these routes make, save, lock
//! and unlock it and list its snapshots. Only the owner (and admins) reach a canvas.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use easel_core::asset::AssetEdit;
use easel_core::canvas::CanvasLock;
use easel_core::time::rfc3339;
use easel_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::native::assets::{views, AssetView};
use crate::service::{self, CanvasRead, CanvasSave, NewCanvas};
use crate::AppState;

/// A canvas to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCanvas {
    /// The document: a JSON object or array, at most 2 MiB.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// One of the caller's assets it derives from.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// The caller's collections to add it to.
    #[serde(default)]
    pub collection_ids: Vec<String>,
    /// An image shown for it, in base64 (stored as an asset derived from the canvas).
    #[serde(default)]
    pub thumbnail: Option<String>,
}

/// A save: what is absent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveCanvas {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub document: Option<serde_json::Value>,
    /// A new thumbnail in base64 (the one it replaces is deleted).
    #[serde(default)]
    pub thumbnail: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub privacy: Option<easel_core::asset::Privacy>,
    /// The lock's token, needed while the canvas is locked.
    #[serde(default)]
    pub lock_id: Option<String>,
    /// Extend the lock held with `lock_id` to this time (at most 24 hours ahead).
    #[serde(default)]
    pub lock_expires_at: Option<String>,
    /// Take a snapshot of the new document (default `true`).
    #[serde(default = "yes")]
    pub snapshot: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockCanvas {
    /// Until when (RFC 3339, at most 24 hours ahead).
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockCanvas {
    /// The lock's token.
    #[serde(default)]
    pub lock_id: Option<String>,
    /// End the lock without its token (the owner and admins may).
    #[serde(default)]
    pub force: bool,
}

/// A canvas: its asset, its state and (on reads and saves) its document.
#[derive(Serialize, ToSchema)]
pub struct CanvasView {
    pub asset: AssetView,
    /// 1 at creation, one more per saved document.
    pub version: u64,
    /// The live lock; its `id` (the token) only to its holder.
    pub lock: Option<CanvasLockView>,
    pub thumbnail_id: Option<String>,
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct CanvasLockView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub holder_id: String,
    pub holder_name: String,
    pub expires_at: String,
}

fn lock_view(l: CanvasLock) -> CanvasLockView {
    CanvasLockView {
        id: l.id,
        holder_id: l.holder_id,
        holder_name: l.holder_name,
        expires_at: rfc3339(l.expires_at),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SnapshotView {
    pub id: String,
    /// The canvas's version it saved.
    pub version: u64,
    pub author_id: String,
    pub sha256: String,
    pub taken_at: String,
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct SnapshotPage {
    pub data: Vec<SnapshotView>,
    pub next_cursor: Option<String>,
}

fn json_doc(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

async fn canvas_view(
    state: &AppState,
    viewer: &str,
    r: CanvasRead,
) -> easel_core::Result<CanvasView> {
    let c = r.canvas.seen_by(viewer);
    Ok(CanvasView {
        asset: views(state, vec![r.asset]).await?.remove(0),
        version: c.version,
        lock: c.lock.map(lock_view),
        thumbnail_id: c.thumbnail_id,
        document: json_doc(&r.document),
    })
}

fn base64_image(field: &str, s: Option<String>) -> easel_core::Result<Option<Bytes>> {
    s.map(|s| service::base64_bytes(field, &s)).transpose()
}

fn document_text(v: &serde_json::Value) -> easel_core::Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(e.to_string()))
}

/// Make a canvas.
#[utoipa::path(post, path = "/v1/canvases", tag = "assets", request_body = CreateCanvas,
    responses((status = 201, body = CanvasView), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<CreateCanvas>,
) -> ApiResult<(StatusCode, axum::Json<CanvasView>)> {
    let n = NewCanvas {
        document: document_text(&body.document)?,
        name: body.name,
        description: body.description,
        parent_id: body.parent_id,
        collection_ids: body.collection_ids,
        thumbnail: base64_image("thumbnail", body.thumbnail)?,
        hidden: false,
    };
    let r = service::create_canvas(&state, &who, n).await?;
    let v = canvas_view(&state, &who.user_id, r).await?;
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// A canvas with its document.
#[utoipa::path(get, path = "/v1/canvases/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = CanvasView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CanvasView>> {
    let r = service::owned_canvas(&state, &who, &id).await?;
    Ok(axum::Json(canvas_view(&state, &who.user_id, r).await?))
}

/// Save a canvas: its document (a snapshot taken unless `snapshot: false`), thumbnail,
/// name, description, privacy, the lock's end. While it is locked, only the lock's token passes
/// (409 naming the holder).
#[utoipa::path(put, path = "/v1/canvases/{id}", tag = "assets", params(("id" = String, Path)), request_body = SaveCanvas,
    responses((status = 200, body = CanvasView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn save(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<SaveCanvas>,
) -> ApiResult<axum::Json<CanvasView>> {
    let a = service::owned_canvas(&state, &who, &id).await?.asset;
    let s = CanvasSave {
        document: body.document.as_ref().map(document_text).transpose()?,
        thumbnail: base64_image("thumbnail", body.thumbnail)?,
        lock_id: body.lock_id,
        lock_until: body
            .lock_expires_at
            .as_deref()
            .map(|t| easel_core::time::parse_time("lock_expires_at", t))
            .transpose()?,
        snapshot: body.snapshot,
        edit: AssetEdit {
            name: body.name,
            description: body.description,
            privacy: body.privacy,
            hidden: None,
        },
    };
    let r = service::save_canvas(&state, &who, &a, s).await?;
    Ok(axum::Json(canvas_view(&state, &who.user_id, r).await?))
}

/// Lock a canvas: the answer's `lock.id` is the token saves and the unlock present. A live
/// lock, whoever holds it, is a 409 naming its holder.
#[utoipa::path(post, path = "/v1/canvases/{id}/lock", tag = "assets", params(("id" = String, Path)), request_body = LockCanvas,
    responses((status = 200, body = CanvasView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn lock(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<LockCanvas>,
) -> ApiResult<axum::Json<CanvasView>> {
    let mut r = service::owned_canvas(&state, &who, &id).await?;
    let until = easel_core::time::parse_time("expires_at", &body.expires_at)?;
    r.canvas = service::lock_canvas(&state, &who, &r.asset, "expires_at", until).await?;
    Ok(axum::Json(canvas_view(&state, &who.user_id, r).await?))
}

/// Unlock a canvas, with the lock's token or `force`.
#[utoipa::path(post, path = "/v1/canvases/{id}/unlock", tag = "assets", params(("id" = String, Path)), request_body = UnlockCanvas,
    responses((status = 200, body = CanvasView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn unlock(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<UnlockCanvas>,
) -> ApiResult<axum::Json<CanvasView>> {
    let mut r = service::owned_canvas(&state, &who, &id).await?;
    r.canvas = easel_store::canvases::unlock(
        &state.store.db,
        &r.asset.id,
        body.lock_id.as_deref(),
        body.force,
        easel_core::time::now(),
    )
    .await?;
    Ok(axum::Json(canvas_view(&state, &who.user_id, r).await?))
}

/// A canvas's snapshots, newest first (at most 100 are kept; a page stops early past 16 MiB
/// of documents).
#[utoipa::path(get, path = "/v1/canvases/{id}/snapshots", tag = "assets", params(("id" = String, Path), super::CursorParams),
    responses((status = 200, body = SnapshotPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn snapshots(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(q): Query<super::CursorParams>,
) -> ApiResult<axum::Json<SnapshotPage>> {
    let a = service::owned_canvas(&state, &who, &id).await?.asset;
    let limit = super::page_limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| Error::invalid("cursor", "not a cursor of this list"))
        })
        .transpose()?;
    let (rows, more) =
        easel_store::canvases::snapshots(&state.store.db, &a.id, before, limit).await?;
    let next_cursor = rows.last().filter(|_| more).map(|s| s.version.to_string());
    Ok(axum::Json(SnapshotPage {
        data: rows
            .into_iter()
            .map(|s| SnapshotView {
                document: json_doc(&s.document),
                version: s.version,
                id: s.id,
                author_id: s.author_id,
                sha256: s.sha256,
                taken_at: rfc3339(s.taken_at),
            })
            .collect(),
        next_cursor,
    }))
}
