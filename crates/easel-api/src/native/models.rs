//! `/v1/models`: the models registry. Reads for every caller, writes for admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use easel_core::model::{Model, ModelPatch, ModelSpec};
use easel_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::AppState;

#[derive(Deserialize, IntoParams)]
pub struct ModelListParams {
    pub skip: Option<u32>,
    /// 1..1000, default 100.
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub data: Vec<Model>,
    pub count: u64,
}

/// List models by name.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(ModelListParams),
    responses((status = 200, body = ModelList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ModelListParams>,
) -> ApiResult<axum::Json<ModelList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let (data, count) =
        easel_store::models::list(&state.store.db, q.skip.unwrap_or(0), limit).await?;
    let data = data.into_iter().map(|m| shown(&who, m)).collect();
    Ok(axum::Json(ModelList { data, count }))
}

/// A model by id, name or alias.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Id, name or alias")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Model>> {
    let m = easel_store::models::resolve(&state.store.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("model"))?;
    Ok(axum::Json(shown(&who, m)))
}

/// A model as `who` may see it: whole for admins, without its locations for others.
fn shown(who: &easel_core::auth::Principal, m: Model) -> Model {
    if who.is_admin() {
        m
    } else {
        m.without_locations()
    }
}

/// Register a model (admin).
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = ModelSpec,
    responses((status = 201, body = Model), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    Json(spec): Json<ModelSpec>,
) -> ApiResult<(StatusCode, axum::Json<Model>)> {
    spec.check_paths(state.engine.model_roots())?;
    let m = easel_store::models::create(&state.store.db, &spec, false).await?;
    Ok((StatusCode::CREATED, axum::Json(m)))
}

/// Change some fields of a model (admin).
#[utoipa::path(patch, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path)), request_body = ModelPatch,
    responses((status = 200, body = Model), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Json(patch): Json<ModelPatch>,
) -> ApiResult<axum::Json<Model>> {
    let m = easel_store::models::resolve(&state.store.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("model"))?;
    let spec: ModelSpec = m.spec().patched(patch);
    spec.check_paths(state.engine.model_roots())?;
    Ok(axum::Json(
        easel_store::models::update(&state.store.db, &m.id, &spec).await?,
    ))
}

/// Remove a model from the registry (admin).
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let m = easel_store::models::resolve(&state.store.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("model"))?;
    easel_store::models::delete(&state.store.db, &m.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Scanned {
    /// Models registered or updated from the folder.
    pub found: usize,
}

/// Scan `<data-dir>/models/` and register what is there (admin). Discovery also runs at
/// start and when a request names a model the registry does not have.
#[utoipa::path(post, path = "/v1/models-folder/scan", tag = "models",
    responses((status = 200, body = Scanned), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn scan(State(state): State<AppState>, _: Admin) -> ApiResult<axum::Json<Scanned>> {
    let found = crate::service::rescan(&state).await?;
    Ok(axum::Json(Scanned { found }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeTiny {
    /// The folder name under `<data-dir>/models/`, and the model's name: letters, digits,
    /// `-`, `_` and `.`, at most 64.
    pub name: String,
    /// A family id (`GET /v1/options`).
    pub family: String,
    /// Seed of the random weights (default 0).
    #[serde(default)]
    pub seed: u64,
}

/// Write a tiny random-weight model of a family into the models folder and register it
/// (admin): for trying the server and its clients in seconds; its images are noise.
#[utoipa::path(post, path = "/v1/models-folder/tiny", tag = "models", request_body = MakeTiny,
    responses((status = 201, body = Model), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn make_tiny(
    State(state): State<AppState>,
    _: Admin,
    Json(req): Json<MakeTiny>,
) -> ApiResult<(StatusCode, axum::Json<Model>)> {
    easel_core::model::check_name("name", &req.name)?;
    if req.name.starts_with('.') {
        return Err(Error::invalid("name", "must not start with `.` (a hidden folder)").into());
    }
    let family = easel_providers::family::parse(&req.family)
        .map_err(|e| Error::invalid("family", e.to_string()))?;
    let taken = |what: String| Error::new(easel_core::ErrorKind::Conflict, what).with_field("name");
    if easel_store::models::resolve(&state.store.db, &req.name)
        .await?
        .is_some()
    {
        return Err(taken(format!("a model named `{}` exists", req.name)).into());
    }
    // Claim the folder: of two requests for one name, the second finds it taken.
    let dir = state.models_dir.join(&req.name);
    std::fs::create_dir_all(&state.models_dir)
        .and_then(|()| std::fs::create_dir(&dir))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                taken(format!("{} exists in the models folder", req.name))
            }
            _ => Error::internal(format!("creating {}: {e}", dir.display())),
        })?;
    let (make, seed, target) = (family.make_tiny, req.seed, dir.clone());
    tokio::task::spawn_blocking(move || make(&target, seed))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            Error::internal(format!("writing the tiny model failed: {e}"))
        })?;
    crate::service::rescan(&state).await?;
    let m = easel_store::models::resolve(&state.store.db, &req.name)
        .await?
        .ok_or_else(|| Error::internal("the tiny model was written but not discovered"))?;
    Ok((StatusCode::CREATED, axum::Json(m)))
}
