//! `/v1/downloads`: many assets in one ZIP (`easel_core::download`). `POST` names assets,
//! jobs and models; the answer is ready at once with a signed `url` (no key needed) that
//! streams the archive, written as it is read from the assets' blobs. Only the owner sees a
//! download.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use easel_core::download::{ArchiveOptions, Download};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::service::{self, DownloadRequest};
use crate::AppState;
use easel_core::time::rfc3339;

/// What to put in the archive: 1 to 1,000 assets in all, each once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDownload {
    /// The caller's assets.
    #[serde(default)]
    pub asset_ids: Vec<String>,
    /// Every output of these jobs of the caller.
    #[serde(default)]
    pub job_ids: Vec<String>,
    /// Every output of the caller made by these models (names or ids).
    #[serde(default)]
    pub models: Vec<String>,
    /// File names: `<seed>`, `<num>` (the image's index in its job), `<prompt>` (its
    /// words, lower-cased, without function words, at most 8, joined by `_`),
    /// `<description>` (the same of the description), `<generator>` (the model) and `<id>`
    /// replaced by each asset's; a `/` makes a folder; the extension follows the image type.
    /// Default: the asset's name, else its id.
    #[serde(default)]
    pub name_template: Option<String>,
    /// All files at the top; otherwise a folder per job (`uploads/` for uploads).
    #[serde(default)]
    pub flat: bool,
    /// The archive's file name, without `.zip` (default `<YYYYMMDD>-export`).
    #[serde(default)]
    pub archive_name: Option<String>,
}

/// A download.
#[derive(Serialize, ToSchema)]
pub struct DownloadView {
    pub id: String,
    /// `ready`: the archive is written as the URL is read.
    pub status: &'static str,
    pub asset_count: usize,
    /// A model's download: the model packed (`model.json` and the LoRA files its owner
    /// uploaded).
    pub model_id: Option<String>,
    /// The archive (signed: no key needed) until `expires_at`.
    pub url: String,
    pub name_template: Option<String>,
    pub flat: bool,
    /// The archive's file name.
    pub file_name: String,
    pub created_at: String,
    pub expires_at: String,
}

/// `attachment` with the name in ASCII (others as `_`) and, for clients that read it, in
/// UTF-8 (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let utf8 = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

pub(crate) fn view(state: &AppState, d: Download) -> DownloadView {
    DownloadView {
        url: service::download_url(state, &d),
        status: "ready",
        asset_count: d.asset_ids.len(),
        model_id: d.model_id.clone(),
        created_at: rfc3339(d.created_at),
        expires_at: rfc3339(d.expires_at),
        file_name: easel_core::download::archive_file_name(&d),
        name_template: d.options.name_template,
        flat: d.options.flat,
        id: d.id,
    }
}

/// Ask for an archive of assets.
#[utoipa::path(post, path = "/v1/downloads", tag = "assets", request_body = CreateDownload,
    responses((status = 201, body = DownloadView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<CreateDownload>,
) -> ApiResult<(StatusCode, axum::Json<DownloadView>)> {
    let req = DownloadRequest {
        asset_ids: body.asset_ids,
        job_ids: body.job_ids,
        models: body.models,
        options: ArchiveOptions {
            name_template: body.name_template,
            flat: body.flat,
            archive_name: body.archive_name,
        },
    };
    let d = service::create_download(&state, &who, req).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&state, d))))
}

/// A download, with a fresh URL.
#[utoipa::path(get, path = "/v1/downloads/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = DownloadView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DownloadView>> {
    let d = service::owned_download(&state, &who, &id).await?;
    Ok(axum::Json(view(&state, d)))
}

/// The archive (`application/zip`), streamed. Signed URLs need no key; without a signature
/// the owner's key is asked for. Assets deleted since the download was made are left out.
#[utoipa::path(get, path = "/v1/downloads/{id}/archive", tag = "assets", params(("id" = String, Path), super::SignedParams),
    responses((status = 200, description = "The ZIP archive", content_type = "application/zip"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<super::SignedParams>,
    req: Request,
) -> ApiResult<Response> {
    let d = match (q.expires, q.sig.as_deref()) {
        (Some(expires), Some(sig)) => {
            service::signed_download(&state, &id, expires, q.iat.unwrap_or(i64::MIN), sig).await?
        }
        _ => {
            let (parts, _) = req.into_parts();
            let who = auth::authenticate(&state, auth::presented_key(&parts).as_deref()).await?;
            service::owned_download(&state, &who, &id).await?
        }
    };
    let stream = service::archive_stream(&state, &d).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                content_disposition(&easel_core::download::archive_file_name(&d)),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
