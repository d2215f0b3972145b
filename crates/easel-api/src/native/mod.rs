//! The native API under `/v1`: jobs, assets, models, keys, usage, and the request options.

pub mod assets;
pub mod canvases;
pub mod collections;
pub mod downloads;
pub mod jobs;
pub mod keys;
pub mod models;
pub mod options;
pub mod pulls;
pub mod uploads;

use axum::routing::{get, post};
use axum::Router;

/// The query of a signed URL (asset content, an upload's part, a download's archive): what
/// `service::check_signature` checks. Without it the route asks for a key.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct SignedParams {
    /// Expiry of a signed URL (unix seconds).
    pub expires: Option<i64>,
    /// Time of issue of a signed URL (unix ms).
    pub iat: Option<i64>,
    /// Signature of a signed URL.
    pub sig: Option<String>,
}

/// The query of a cursor-paged list (collections, uploads).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CursorParams {
    pub cursor: Option<String>,
    /// 1..100, default 20.
    pub limit: Option<u32>,
}

/// A list's `limit` (1..100, default 20), checked the same way by every cursor-paged list.
pub fn page_limit(limit: Option<u32>) -> easel_core::Result<u32> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(easel_core::Error::invalid(
            "limit",
            "must be between 1 and 100",
        ));
    }
    Ok(limit)
}

/// One page of rows read with `limit + 1` (newest first, ids sorting by time): the first
/// `limit`, and the cursor of the next page when there is one (the last row's id).
pub fn page<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|r| id(r).to_string()))
        .flatten();
    (rows, next)
}

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/webhooks", get(jobs::webhooks))
        .route("/v1/assets", post(assets::upload).get(assets::list))
        .route(
            "/v1/assets/{id}",
            get(assets::get).delete(assets::delete).patch(assets::edit),
        )
        .route("/v1/public/assets", get(assets::list_public))
        .route("/v1/public/assets/{id}", get(assets::get_public))
        .route("/v1/assets/{id}/content", get(assets::content))
        .route("/v1/assets/{id}/tags", axum::routing::put(assets::put_tags))
        .route("/v1/tags", get(assets::tags))
        .route(
            "/v1/collections",
            post(collections::create).get(collections::list),
        )
        .route(
            "/v1/collections/{id}",
            get(collections::get)
                .patch(collections::rename)
                .delete(collections::delete),
        )
        .route(
            "/v1/collections/{id}/items",
            axum::routing::put(collections::items),
        )
        .route("/v1/canvases", post(canvases::create))
        .route("/v1/canvases/{id}", get(canvases::get).put(canvases::save))
        .route("/v1/canvases/{id}/lock", post(canvases::lock))
        .route("/v1/canvases/{id}/unlock", post(canvases::unlock))
        .route("/v1/canvases/{id}/snapshots", get(canvases::snapshots))
        .route("/v1/downloads", post(downloads::create))
        .route("/v1/downloads/{id}", get(downloads::get))
        .route("/v1/downloads/{id}/archive", get(downloads::archive))
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route("/v1/uploads/import", post(uploads::import))
        .route(
            "/v1/uploads/{id}",
            get(uploads::get).delete(uploads::delete),
        )
        .route(
            "/v1/uploads/{id}/parts/{number}",
            axum::routing::put(uploads::put_part),
        )
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/v1/models", get(models::list).post(models::create))
        .route("/v1/models/{id}/copy", post(models::copy))
        .route("/v1/models/{id}/prompt-check", get(models::prompt_check))
        .route("/v1/models/{id}/transfer", post(models::transfer))
        .route("/v1/models/{id}/download", post(models::download))
        .route(
            "/v1/models/{id}/presets",
            get(models::presets).post(models::create_preset),
        )
        .route(
            "/v1/models/{id}/presets/{preset}",
            axum::routing::patch(models::update_preset).delete(models::delete_preset),
        )
        .route("/v1/public/models", get(models::list_public))
        .route("/v1/public/models/{id}", get(models::get_public))
        .route("/v1/models-folder/scan", post(models::scan))
        .route("/v1/models-folder/tiny", post(models::make_tiny))
        .route(
            "/v1/models-folder/pulls",
            post(pulls::create).get(pulls::list),
        )
        .route("/v1/models-folder/pulls/{id}", get(pulls::get))
        .route(
            "/v1/models/{id}",
            get(models::get)
                .patch(models::update)
                .delete(models::delete),
        )
        .route("/v1/options", get(options::get))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/v1/users", post(keys::create_user).get(keys::list_users))
        .route("/v1/me", get(keys::me))
        .route("/v1/usage", get(keys::usage))
        .layer(axum::middleware::from_fn(
            crate::extract::valid_text::<crate::error::ApiError>,
        ))
}
