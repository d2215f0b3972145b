//! Bulk downloads: `POST /assets/download` and `GET /assets/download/{jobId}` on the core's
//! downloads (`service::create_download`). The "job" is a download, ready at once: its
//! `downloadUrl` streams the ZIP (signed, no key needed). `query.inferenceIds` are job ids,
//! `query.modelIds` models (Scenario's ids or registry names); `options.fileNameTemplate`,
//! `flat` and `archiveName` name the files (`<id>` is Easel's asset id); `preferOriginal`
//! changes nothing, images being archived as they were stored.

use easel_core::download::ArchiveOptions;

use super::*;
use crate::service::DownloadRequest;

/// The core's fields by Scenario's names.
const FIELDS: &[(&str, &str)] = &[
    ("query.assetIds", "asset_ids"),
    ("query.inferenceIds", "job_ids"),
    ("query.modelIds", "models"),
    ("options.fileNameTemplate", "name_template"),
    ("options.archiveName", "archive_name"),
];

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioDownloadQuery)]
pub(super) struct DownloadQuery {
    #[serde(default)]
    asset_ids: Vec<String>,
    #[serde(default)]
    inference_ids: Vec<String>,
    #[serde(default)]
    model_ids: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioDownloadOptions)]
pub(super) struct DownloadOptions {
    #[serde(default)]
    file_name_template: Option<String>,
    #[serde(default)]
    flat: Option<bool>,
    #[serde(default)]
    archive_name: Option<String>,
    /// Images are archived as they are stored: always their original.
    #[serde(default)]
    #[allow(dead_code)]
    prefer_original: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ScenarioDownloadRequest)]
pub(super) struct DownloadBody {
    query: DownloadQuery,
    #[serde(default)]
    options: Option<DownloadOptions>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioDownloadJob)]
pub(super) struct DownloadJob {
    job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
}

/// `POST /assets/download`: 1 to 1,000 assets in all.
#[utoipa::path(post, path = "/scenario/v1/assets/download", tag = "scenario", request_body = DownloadBody,
    responses((status = 200, body = DownloadJob), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<DownloadBody>,
) -> Result<axum::Json<DownloadJob>, Failure> {
    let opts = body.options.unwrap_or(DownloadOptions {
        file_name_template: None,
        flat: None,
        archive_name: None,
        prefer_original: None,
    });
    let req = DownloadRequest {
        asset_ids: body
            .query
            .asset_ids
            .iter()
            .map(|a| ids::asset_in(a).unwrap_or_else(|| a.clone()))
            .collect(),
        job_ids: body.query.inference_ids,
        models: body
            .query
            .model_ids
            .iter()
            .map(|m| ids::model_ref(m))
            .collect(),
        options: ArchiveOptions {
            name_template: opts.file_name_template.filter(|t| !t.is_empty()),
            flat: opts.flat.unwrap_or(false),
            archive_name: opts.archive_name.filter(|n| !n.is_empty()),
        },
    };
    let d = service::create_download(&state, &who, req)
        .await
        .map_err(|e| error::renamed(e, FIELDS))?;
    Ok(axum::Json(DownloadJob {
        job_id: d.id,
        job_status: None,
        download_url: None,
    }))
}

/// `GET /assets/download/{jobId}`: `success` with the archive's URL.
#[utoipa::path(get, path = "/scenario/v1/assets/download/{jobId}", tag = "scenario", params(("jobId" = String, Path)),
    responses((status = 200, body = DownloadJob), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<DownloadJob>, Failure> {
    let d = service::owned_download(&state, &who, &id).await?;
    Ok(axum::Json(DownloadJob {
        download_url: Some(service::download_url(&state, &d)),
        job_status: Some(STATUS.succeeded),
        job_id: d.id,
    }))
}
