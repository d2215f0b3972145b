//! `/v1/uploads`: files larger than one request body, sent in parts (`easel_core::upload`).
//! Announce the file (`POST /v1/uploads`), `PUT` each part's bytes to its signed URL (no key
//! needed; a part sent again replaces the earlier one), then `POST …/complete`: the asset
//! is created (`asset_id`) — or, for `kind: lora`, a private model of the caller's made of
//! the LoRA file (`model_id`) — or the upload fails saying why. Only the owner sees an
//! upload. `POST /v1/uploads/import` makes an upload of a file the server fetches itself: an
//! image from a URL (complete at once), or a LoRA from a URL or a Hugging Face hub repository
//! (fetched in the background: `validating`, then `complete` or `failed`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use easel_core::upload::{Upload, UploadKind, UploadOptions, UploadPart, UploadSpec, UploadStatus};
use easel_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{bytes_rejection, Json, Query};
use crate::service;
use crate::AppState;
use easel_core::time::rfc3339;

/// An upload to announce.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name (1 to 255 characters); the asset's name unless `name` is given.
    pub file_name: String,
    /// Its size in bytes, at most the server's `max_upload_bytes`.
    pub file_size: u64,
    /// Its MIME type as the client knows it (the decoded image decides the asset's type).
    pub content_type: String,
    /// How many parts it is sent in: 1 to 10,000, each within the request body limit.
    pub parts: u32,
    /// What it becomes: `image` (the default), an image asset; `lora`, a private model of
    /// the caller's (a `.safetensors` file of LoRA weights; pickles are refused), applied by
    /// naming its id in a request's `loras`.
    #[serde(default)]
    pub kind: UploadKind,
    /// The asset's name (a LoRA: the model's, at most 200 characters; default the file
    /// name without `.safetensors`).
    #[serde(default)]
    pub name: Option<String>,
    /// One of the caller's assets this one derives from.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Collections of the caller the asset is added to (at most 49).
    #[serde(default)]
    pub collection_ids: Vec<String>,
    /// Hide the asset from the caller's lists (`GET /v1/assets?hidden=true` lists them).
    #[serde(default)]
    pub hidden: bool,
}

/// A file for the server to fetch: `url` or `hub`, one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportUpload {
    /// What it becomes: `image` (the default; by `url` only) or `lora`.
    #[serde(default)]
    pub kind: UploadKind,
    /// An http(s) URL, fetched under the server's fetch policy (`--fetch-images`): an image
    /// within the request body limit, a LoRA within `max_upload_bytes`.
    #[serde(default)]
    pub url: Option<String>,
    /// A LoRA's file in a repository of the Hugging Face hub (or the mirror the server's
    /// `HF_ENDPOINT` names): public repositories only, the server's token is never sent.
    #[serde(default)]
    pub hub: Option<HubSource>,
    /// The asset's or the model's name (default: the file's name; from the hub, the
    /// repository's).
    #[serde(default)]
    pub name: Option<String>,
    /// One of the caller's assets this one derives from (images).
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Collections of the caller the asset is added to (images; at most 49).
    #[serde(default)]
    pub collection_ids: Vec<String>,
    /// Hide the asset from the caller's lists (images).
    #[serde(default)]
    pub hidden: bool,
}

/// A file of a hub repository.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// The `.safetensors` file's path in the repository (default: the repository's LoRA
    /// file — `pytorch_lora_weights.safetensors`, or its one `.safetensors` file).
    #[serde(default)]
    pub file: Option<String>,
}

/// Where a part is sent: `PUT` its bytes to `url` before `expires`.
#[derive(Serialize, ToSchema)]
pub struct PartLink {
    pub number: u32,
    pub url: String,
    pub expires: String,
}

/// An upload.
#[derive(Serialize, ToSchema)]
pub struct UploadView {
    pub id: String,
    pub kind: UploadKind,
    pub status: UploadStatus,
    pub file_name: String,
    pub content_type: String,
    pub file_size: u64,
    pub parts_count: u32,
    /// The URL the file was imported from, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Where to send each part, while the upload is `pending` (left out of lists: read one
    /// upload for them).
    pub part_urls: Vec<PartLink>,
    /// The parts received so far (none once closed: they are joined or deleted).
    pub received: Vec<UploadPart>,
    /// The asset made from it, once `complete` (an image).
    pub asset_id: Option<String>,
    /// The model made from it, once `complete` (a LoRA).
    pub model_id: Option<String>,
    /// Why it failed, once `failed`.
    pub error: Option<String>,
    pub options: UploadOptions,
    pub created_at: String,
    pub updated_at: String,
    /// When it expires unless complete (its parts are then deleted).
    pub expires_at: String,
}

/// An upload's view; `urls`: with its part URLs (not in lists: an upload may have 10,000).
pub(crate) async fn view(state: &AppState, u: Upload, urls: bool) -> ApiResult<UploadView> {
    let received = if u.status.is_open() {
        easel_store::uploads::parts(&state.store.db, &u.id).await?
    } else {
        Vec::new()
    };
    let part_urls = if urls {
        service::part_urls(state, &u)
    } else {
        Vec::new()
    };
    let part_urls = part_urls
        .into_iter()
        .map(|p| PartLink {
            number: p.number,
            url: p.url,
            expires: rfc3339(p.expires),
        })
        .collect();
    Ok(UploadView {
        kind: u.kind,
        status: u.status,
        file_size: u.file_size,
        parts_count: u.parts_count,
        part_urls,
        received,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        expires_at: rfc3339(u.expires_at),
        id: u.id,
        file_name: u.file_name,
        content_type: u.content_type,
        source_url: u.source_url,
        asset_id: u.asset_id,
        model_id: u.model_id,
        error: u.error,
        options: u.options,
    })
}

/// Announce an upload: the answer holds a signed URL for each part.
#[utoipa::path(post, path = "/v1/uploads", tag = "assets", request_body = CreateUpload,
    responses((status = 201, body = UploadView), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<CreateUpload>,
) -> ApiResult<(StatusCode, axum::Json<UploadView>)> {
    let spec = UploadSpec {
        file_name: body.file_name,
        content_type: body.content_type,
        file_size: body.file_size,
        parts: body.parts,
        kind: body.kind,
        options: UploadOptions {
            name: body.name,
            parent_id: body.parent_id,
            collection_ids: body.collection_ids,
            hidden: body.hidden,
        },
    };
    let u = service::create_upload(&state, &who, spec).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(&state, u, true).await?),
    ))
}

/// Import a file the server fetches: an image by URL answers 201 with the upload complete
/// (its `asset_id`), or the error; a LoRA answers 202 with the upload `validating` — poll
/// `GET /v1/uploads/{id}` until it is `complete` (its `model_id`) or `failed` (`error`).
#[utoipa::path(post, path = "/v1/uploads/import", tag = "assets", request_body = ImportUpload,
    responses((status = 201, body = UploadView, description = "An image, imported"),
        (status = 202, body = UploadView, description = "A LoRA, being fetched"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 501, body = ErrorBody, description = "A hub import on a server without hub access")),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<ImportUpload>,
) -> ApiResult<(StatusCode, axum::Json<UploadView>)> {
    let (field, from) = match (body.url, body.hub) {
        (Some(url), None) => ("url", service::ImportFrom::Url(url)),
        (None, Some(h)) => (
            "hub",
            service::ImportFrom::Hub {
                repo: h.repo,
                revision: h.revision,
                file: h.file,
            },
        ),
        (Some(_), Some(_)) => {
            return Err(Error::invalid("hub", "give `url` or `hub`, not both").into())
        }
        (None, None) => return Err(Error::invalid("url", "give `url` or `hub`").into()),
    };
    let options = UploadOptions {
        name: body.name,
        parent_id: body.parent_id,
        collection_ids: body.collection_ids,
        hidden: body.hidden,
    };
    let u = service::import_upload(&state, &who, field, from, body.kind, options).await?;
    let status = if u.status == UploadStatus::Complete {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(view(&state, u, false).await?)))
}

#[derive(Serialize, ToSchema)]
pub struct UploadList {
    pub data: Vec<UploadView>,
    pub next_cursor: Option<String>,
}

/// The caller's uploads, newest first (without their part URLs).
#[utoipa::path(get, path = "/v1/uploads", tag = "assets", params(super::CursorParams),
    responses((status = 200, body = UploadList), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<super::CursorParams>,
) -> ApiResult<axum::Json<UploadList>> {
    let limit = super::page_limit(q.limit)?;
    let rows = easel_store::uploads::list(
        &state.store.db,
        Some(&who.user_id),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = super::page(rows, limit, |u| &u.id);
    let mut data = Vec::with_capacity(rows.len());
    for u in rows {
        data.push(view(&state, u, false).await?);
    }
    Ok(axum::Json(UploadList { data, next_cursor }))
}

/// An upload, with its part URLs while it is open.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = UploadView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UploadView>> {
    let u = service::owned_upload(&state, &who, &id).await?;
    Ok(axum::Json(view(&state, u, true).await?))
}

/// Send one part's bytes (any content type). Signed URLs need no key; without a signature
/// the owner's key is asked for.
#[utoipa::path(put, path = "/v1/uploads/{id}/parts/{number}", tag = "assets",
    params(("id" = String, Path), ("number" = u32, Path), super::SignedParams),
    request_body(content_type = "application/octet-stream", description = "The part's bytes"),
    responses((status = 200, body = UploadPart), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn put_part(
    State(state): State<AppState>,
    Path((id, number)): Path<(String, String)>,
    Query(q): Query<super::SignedParams>,
    req: Request,
) -> ApiResult<axum::Json<UploadPart>> {
    let number: u32 = number
        .parse()
        .map_err(|_| Error::invalid("number", "must be a part number (1, 2, …)"))?;
    let u = match (q.expires, q.sig.as_deref()) {
        (Some(expires), Some(sig)) => {
            service::signed_upload(&state, &id, number, expires, q.iat.unwrap_or(i64::MIN), sig)
                .await?
        }
        _ => {
            let (parts, body) = req.into_parts();
            let who = auth::authenticate(&state, auth::presented_key(&parts).as_deref()).await?;
            let u = service::owned_upload(&state, &who, &id).await?;
            return receive(&state, u, number, Request::from_parts(parts, body)).await;
        }
    };
    receive(&state, u, number, req).await
}

async fn receive(
    state: &AppState,
    u: Upload,
    number: u32,
    req: Request,
) -> ApiResult<axum::Json<UploadPart>> {
    let limit = state.limits.max_body_bytes;
    let data = Bytes::from_request(req, state)
        .await
        .map_err(|r| bytes_rejection(&r, limit))?;
    let part = service::put_upload_part(state, &u, number, data).await?;
    Ok(axum::Json(part))
}

/// Join the parts into the asset. 422 naming `parts` while some are missing (the upload
/// stays open); 422 naming `file` when the file is not a valid image (the upload fails).
/// Completing a complete upload answers it again.
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = UploadView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UploadView>> {
    let u = service::owned_upload(&state, &who, &id).await?;
    let u = service::complete_upload(&state, u).await?;
    Ok(axum::Json(view(&state, u, true).await?))
}

/// Abandon an upload (its parts are deleted) or forget a closed one; the asset of a
/// complete upload stays.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let u = service::owned_upload(&state, &who, &id).await?;
    easel_store::uploads::delete(&state.store, &u.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
