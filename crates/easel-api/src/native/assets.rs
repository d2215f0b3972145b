//! `/v1/assets`: upload (multipart or raw body), metadata, content (ETag, Range, signed
//! URLs for header-less clients), list, delete.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use easel_core::asset::{blob_key, Asset, AssetKind};
use easel_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{bytes_rejection, too_large, Query};
use crate::service;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct AssetView {
    pub id: String,
    pub kind: AssetKind,
    pub mime_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
    pub sha256: String,
    pub job_id: Option<String>,
    pub output_index: Option<u32>,
    pub parent_id: Option<String>,
    /// The asset its chain of parents starts from (absent for an asset derived from nothing).
    pub root_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Its tags, sorted (`PUT /v1/assets/{id}/tags`).
    pub tags: Vec<String>,
    /// The record's editable fields (`PATCH /v1/assets/{id}`).
    pub name: Option<String>,
    pub description: Option<String>,
    /// `private` (the owner only), `unlisted` (anyone with the id, without a key: `GET
    /// /v1/public/assets/{id}`) or `public` (also listed in `GET /v1/public/assets`).
    pub privacy: easel_core::asset::Privacy,
    /// Left out of the owner's lists (`GET /v1/assets?hidden=true` lists these).
    pub hidden: bool,
    pub updated_at: String,
    pub created_at: String,
    /// Signed URL of the content.
    pub url: String,
}

/// Assets as the native API shows them, with their tags (one query for all).
pub async fn views(state: &AppState, assets: Vec<Asset>) -> easel_core::Result<Vec<AssetView>> {
    let ids: Vec<&str> = assets.iter().map(|a| a.id.as_str()).collect();
    let mut tags = easel_store::tags::of_assets(&state.store.db, &ids).await?;
    Ok(assets
        .into_iter()
        .map(|a| {
            let t = tags.remove(&a.id).unwrap_or_default();
            view(state, a, t)
        })
        .collect())
}

fn view(state: &AppState, a: Asset, tags: Vec<String>) -> AssetView {
    AssetView {
        tags,
        url: service::asset_url(state, &a.id),
        id: a.id,
        kind: a.kind,
        mime_type: a.mime_type,
        width: a.width,
        height: a.height,
        bytes: a.bytes,
        sha256: a.sha256,
        job_id: a.job_id,
        output_index: a.output_index,
        parent_id: a.parent_id,
        root_id: a.root_id,
        metadata: a.metadata,
        name: a.name,
        description: a.description,
        privacy: a.privacy,
        hidden: a.hidden,
        updated_at: easel_core::time::rfc3339(a.updated_at),
        created_at: easel_core::time::rfc3339(a.created_at),
    }
}

/// Upload an image: `multipart/form-data` with a `file` part, or the raw bytes with an
/// `image/*` content type. The image is decoded to validate it.
#[utoipa::path(post, path = "/v1/assets", tag = "assets",
    request_body(content_type = "multipart/form-data", description = "A `file` part with the image (or a raw image/* body)"),
    responses((status = 201, body = AssetView), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(who): Auth,
    req: Request,
) -> ApiResult<Response> {
    let limit = state.limits.max_body_bytes;
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &state).await.map_err(|e| {
            Error::bad_request(format!("malformed multipart body: {}", e.body_text()))
        })?;
        let mut found = None;
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(too_large(limit).into())
                }
                Err(e) => {
                    return Err(Error::bad_request(format!(
                        "malformed multipart body: {}",
                        e.body_text()
                    ))
                    .into())
                }
            };
            if field.name() == Some("file") || (found.is_none() && field.file_name().is_some()) {
                let data = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large(limit)
                    } else {
                        Error::bad_request(format!("malformed multipart body: {}", e.body_text()))
                    }
                })?;
                found = Some(data);
            }
        }
        found.ok_or_else(|| Error::invalid("file", "the multipart body has no `file` part"))?
    } else if ctype.starts_with("image/") || ctype == "application/octet-stream" {
        Bytes::from_request(req, &state)
            .await
            .map_err(|r| bytes_rejection(&r, limit))?
    } else {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "send multipart/form-data with a `file` part, or the image bytes with an image/* Content-Type",
        )
        .into());
    };
    let asset = service::store_upload(&state, &who, bytes, serde_json::json!({}), None).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(&state, asset, Vec::new())),
    )
        .into_response())
}

/// Asset metadata.
#[utoipa::path(get, path = "/v1/assets/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<AssetView>> {
    let a = service::owned_asset(&state, &who, &id).await?;
    let mut v = views(&state, vec![a]).await?;
    Ok(axum::Json(v.remove(0)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AssetListParams {
    pub cursor: Option<String>,
    /// 1..100, default 20.
    pub limit: Option<u32>,
    /// Outputs of jobs run by this model (registry name).
    pub model: Option<String>,
    /// Outputs of jobs of this task; `uploaded` for uploads.
    pub task: Option<String>,
    /// Outputs of this job.
    pub job: Option<String>,
    /// Derived from this asset (its children).
    pub parent: Option<String>,
    /// Of this lineage: assets whose lineage root (`root_id`) is this asset.
    pub root: Option<String>,
    /// Made on or after this UTC day (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// Made on or before this UTC day (`YYYY-MM-DD`).
    pub until: Option<String>,
    /// Carrying any of these tags (comma-separated).
    pub tag: Option<String>,
    /// Of this privacy only.
    pub privacy: Option<easel_core::asset::Privacy>,
    /// In this collection (the caller's).
    pub collection: Option<String>,
    /// Text search: assets whose name, description, prompt or tags hold every word of this
    /// (each as a word or the start of one, any case; words are runs of letters and digits),
    /// at most 500 characters.
    pub q: Option<String>,
    /// `true`: the hidden assets only; default `false`: those not hidden.
    pub hidden: Option<bool>,
}

/// The id bound of a UTC day's start (`days` after `day`), for time filters on ids.
fn day_bound(field: &str, day: &str, days: u64) -> easel_core::Result<String> {
    let d = easel_core::time::parse_day(field, day)?;
    let ms = easel_core::time::day_start_millis(d, days);
    Ok(easel_core::id::lower_bound(easel_core::id::ASSET, ms))
}

#[derive(Serialize, ToSchema)]
pub struct AssetList {
    pub data: Vec<AssetView>,
    pub next_cursor: Option<String>,
}

/// The caller's assets, newest first, optionally filtered by model, task, job, parent, day,
/// tag, privacy, collection and text (`q`); hidden ones only with `hidden=true`.
#[utoipa::path(get, path = "/v1/assets", tag = "assets", params(AssetListParams),
    responses((status = 200, body = AssetList), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<AssetListParams>,
) -> ApiResult<axum::Json<AssetList>> {
    let limit = super::page_limit(q.limit)?;
    if let Some(t) = &q.task {
        if t != "uploaded" && !easel_core::task::TASKS.contains(&t.as_str()) {
            return Err(Error::invalid(
                "task",
                format!(
                    "unknown task `{t}`; known: uploaded, {}",
                    easel_core::task::TASKS.join(", ")
                ),
            )
            .into());
        }
    }
    let until = q
        .until
        .as_deref()
        .map(|d| day_bound("until", d, 1))
        .transpose()?;
    // The older of the cursor and the end of `until`.
    let before = match (q.cursor.clone(), until) {
        (Some(c), Some(u)) => Some(c.min(u)),
        (c, u) => c.or(u),
    };
    let filter = easel_store::assets::AssetFilter {
        owner_id: who.user_id.clone(),
        before,
        since: q
            .since
            .as_deref()
            .map(|d| day_bound("since", d, 0))
            .transpose()?,
        job_id: q.job.clone(),
        parent_id: q.parent.clone(),
        root_id: q.root.clone(),
        model: q.model.clone(),
        tasks: q.task.clone().into_iter().collect(),
        tags: q
            .tag
            .as_deref()
            .map(|t| {
                let list: Vec<String> = t.split(',').map(str::to_string).collect();
                easel_core::asset::check_tags("tag", &list)
            })
            .transpose()?
            .unwrap_or_default(),
        privacy: q.privacy,
        collection_id: match &q.collection {
            Some(c) => Some(
                service::owned_collection(&state, &who, c)
                    .await
                    .map_err(|e| e.with_field("collection"))?
                    .id,
            ),
            None => None,
        },
        text: easel_core::asset::search_text("q", q.q.as_deref())?,
        with_public: false,
        hidden: Some(q.hidden.unwrap_or(false)),
        limit: limit + 1,
        ..Default::default()
    };
    let rows = easel_store::assets::list(&state.store.db, &filter).await?;
    let (rows, next_cursor) = super::page(rows, limit, |a| &a.id);
    Ok(axum::Json(AssetList {
        data: views(&state, rows).await?,
        next_cursor,
    }))
}

/// The asset's bytes, with `Content-Type`, `ETag` (its SHA-256) and `Range` support.
/// Authorized by a key or by a signed URL's `expires` + `sig`.
#[utoipa::path(get, path = "/v1/assets/{id}/content", tag = "assets", params(("id" = String, Path), super::SignedParams,
        ("Range" = Option<String>, Header, description = "bytes=start-end")),
    responses((status = 200, description = "The content"), (status = 206, description = "Part of the content"),
        (status = 304, description = "Not modified"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 416, description = "Bad range")),
    security(("bearer" = []), ()))]
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<super::SignedParams>,
    req: Request,
) -> ApiResult<Response> {
    let (mut parts, _) = req.into_parts();
    let asset = match (q.expires, q.sig.as_deref()) {
        (Some(expires), Some(sig)) => {
            let issued = q.iat.unwrap_or(i64::MIN);
            let invalid = || {
                Error::new(
                    ErrorKind::Unauthorized,
                    "the signed URL is invalid, expired or revoked",
                )
            };
            service::check_signature(&state, &id, expires, issued, sig)?;
            let asset = easel_store::assets::get(&state.store.db, &id)
                .await?
                .ok_or_else(|| Error::not_found("asset"))?;
            // Issued before the owner's last key revocation: revoked with it.
            service::check_unrevoked(&state, &asset.owner_id, issued).await?;
            // Issued while it was readable without a key, and private again since: ended.
            if asset.privacy == easel_core::asset::Privacy::Private {
                let since = easel_store::assets::private_since(&state.store.db, &asset.id).await?;
                if since.is_some_and(|t| issued < t) {
                    return Err(invalid().into());
                }
            }
            asset
        }
        _ => {
            let who = auth::authenticate(&state, auth::presented_key(&parts).as_deref()).await?;
            parts.extensions.insert(who.clone());
            service::owned_asset(&state, &who, &id).await?
        }
    };
    serve_bytes(&state, &asset, &parts.headers).await
}

async fn serve_bytes(state: &AppState, a: &Asset, headers: &HeaderMap) -> ApiResult<Response> {
    // A canvas's content changes under the same URL: its ETag and length are those of the
    // document read now, and a cache revalidates it each time.
    let canvas = match a.kind {
        AssetKind::Canvas => Some(service::asset_content(&state.store, a).await?),
        _ => None,
    };
    let (etag, len, cache) = match &canvas {
        Some(d) => (
            format!("\"{}\"", easel_store::canvases::hash(d)),
            d.len() as u64,
            "private, no-cache",
        ),
        None => (
            format!("\"{}\"", a.sha256),
            a.bytes,
            "private, max-age=31536000, immutable",
        ),
    };
    let key = blob_key(&a.owner_id, &a.id);
    let base = |status: StatusCode| {
        let mut r = Response::builder()
            .status(status)
            .header(header::ETAG, &etag)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CACHE_CONTROL, cache);
        if status != StatusCode::NOT_MODIFIED {
            r = r.header(header::CONTENT_TYPE, &a.mime_type);
        }
        r
    };
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok(base(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .expect("response"));
        }
    }
    if let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        return match parse_range(range, len) {
            Some((start, end)) => {
                let data = match &canvas {
                    Some(d) => d.slice(start as usize..end as usize + 1),
                    None => state.store.blobs.get_range(&key, start..end + 1).await?,
                };
                Ok(base(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                    .body(Body::from(data))
                    .expect("response"))
            }
            None => Ok(Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .expect("response")),
        };
    }
    let data = match canvas {
        Some(d) => d,
        None => state.store.blobs.get(&key).await?,
    };
    let mut r = base(StatusCode::OK)
        .body(Body::from(data))
        .expect("response");
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

/// One `bytes=` range → inclusive (start, end) within `len`; `None` if unsatisfiable.
/// Several ranges are answered with the first.
pub fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    if len == 0 {
        return None;
    }
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().ok()?, len - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

/// Delete an asset (the row first, then the blob).
#[utoipa::path(delete, path = "/v1/assets/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let a = service::owned_asset(&state, &who, &id).await?;
    service::delete_asset(&state, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=9-3", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagChange {
    /// Tags to add (1 to 64 characters, no commas).
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub delete: Vec<String>,
    /// Adding a tag the asset has, or removing one it lacks, is a 409 (default false: they
    /// are skipped).
    #[serde(default)]
    pub strict: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TagsChanged {
    pub added: Vec<String>,
    pub deleted: Vec<String>,
    /// The asset's tags now.
    pub tags: Vec<String>,
}

/// Add and remove tags of an asset (at most 50 on one asset).
#[utoipa::path(put, path = "/v1/assets/{id}/tags", tag = "assets", params(("id" = String, Path)), request_body = TagChange,
    responses((status = 200, body = TagsChanged), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_tags(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<TagChange>,
) -> ApiResult<axum::Json<TagsChanged>> {
    let c = service::change_tags(&state, &who, &id, &body.add, &body.delete, body.strict).await?;
    Ok(axum::Json(TagsChanged {
        added: c.added,
        deleted: c.deleted,
        tags: c.tags,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TagList {
    pub data: Vec<easel_core::asset::TagCount>,
}

/// The caller's tags with how many assets carry each, by name.
#[utoipa::path(get, path = "/v1/tags", tag = "assets",
    responses((status = 200, body = TagList)), security(("bearer" = [])))]
pub async fn tags(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<axum::Json<TagList>> {
    Ok(axum::Json(TagList {
        data: easel_store::tags::list(&state.store.db, &who.user_id).await?,
    }))
}

/// Edit an asset's record: `name`, `description`, `privacy`, `hidden` (what is absent
/// stays).
#[utoipa::path(patch, path = "/v1/assets/{id}", tag = "assets", params(("id" = String, Path)), request_body = easel_core::asset::AssetEdit,
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<easel_core::asset::AssetEdit>,
) -> ApiResult<axum::Json<AssetView>> {
    body.validate()?;
    let a = service::owned_asset(&state, &who, &id).await?;
    // A canvas's record changes under its lock, like its document: no token here, so a
    // locked canvas is a 409 (its holder edits it with `PUT /v1/canvases/{id}`, which takes
    // `lock_id` and the same fields).
    let a = if a.kind == AssetKind::Canvas {
        let s = service::CanvasSave {
            edit: body,
            ..Default::default()
        };
        service::save_canvas(&state, &who, &a, s).await?.asset
    } else {
        easel_store::assets::edit(&state.store.db, &a.id, &body)
            .await?
            .ok_or_else(|| Error::not_found("asset"))?
    };
    Ok(axum::Json(views(&state, vec![a]).await?.remove(0)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PublicListParams {
    pub cursor: Option<String>,
    /// 1..100, default 20.
    pub limit: Option<u32>,
}

/// Every user's public assets, newest first; no key needed.
#[utoipa::path(get, path = "/v1/public/assets", tag = "assets", params(PublicListParams),
    responses((status = 200, body = AssetList), (status = 422, body = ErrorBody)))]
pub async fn list_public(
    State(state): State<AppState>,
    Query(q): Query<PublicListParams>,
) -> ApiResult<axum::Json<AssetList>> {
    let limit = super::page_limit(q.limit)?;
    let rows =
        easel_store::assets::list_public(&state.store.db, q.cursor.as_deref(), &[], limit + 1)
            .await?;
    let (rows, next_cursor) = super::page(rows, limit, |a| &a.id);
    Ok(axum::Json(AssetList {
        data: views(&state, rows).await?,
        next_cursor,
    }))
}

/// A public or unlisted asset by id; no key needed (private ones are 404, as if absent).
#[utoipa::path(get, path = "/v1/public/assets/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)))]
pub async fn get_public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<AssetView>> {
    let a = service::public_asset(&state, &id).await?;
    Ok(axum::Json(views(&state, vec![a]).await?.remove(0)))
}
