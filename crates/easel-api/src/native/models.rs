//! `/v1/models`: the models registry. The server's models are read by every caller and
//! written by admins; a user's models (compositions: a model of the server with LoRAs,
//! defaults, limits and presets on top) are written by their owner and seen by others as
//! their privacy says. Presets, copy and transfer live here too, and keyless reads of
//! public models under `/v1/public/models`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use easel_core::auth::Principal;
use easel_core::model::{Model, ModelPatch, ModelSpec};
use easel_core::preset::{Preset, PresetSpec};
use easel_core::Error;
use easel_store::models::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::service;
use crate::AppState;

#[derive(Deserialize, IntoParams)]
pub struct ModelListParams {
    pub skip: Option<u32>,
    /// 1..1000, default 100.
    pub limit: Option<u32>,
    /// `default` (the server's models and the caller's own), `mine`, `server`, `public`
    /// (everyone's public models), `all` (admins: every model).
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub data: Vec<Model>,
    pub count: u64,
}

/// List models by name (a user's model sorts by its id).
#[utoipa::path(get, path = "/v1/models", tag = "models", params(ModelListParams),
    responses((status = 200, body = ModelList), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ModelListParams>,
) -> ApiResult<axum::Json<ModelList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let scope = match q.scope.as_deref().unwrap_or("default") {
        "default" => Scope::For(&who.user_id),
        "mine" => Scope::OwnedBy(&who.user_id),
        "server" => Scope::Server,
        "public" => Scope::Public,
        "all" if who.is_admin() => Scope::All,
        "all" => {
            return Err(Error::new(
                easel_core::ErrorKind::Forbidden,
                "only admins list every model",
            )
            .into())
        }
        _ => {
            return Err(
                Error::invalid("scope", "must be default, mine, server, public or all").into(),
            )
        }
    };
    let (data, count) =
        easel_store::models::list(&state.store.db, scope, q.skip.unwrap_or(0), limit).await?;
    let data = data.into_iter().map(|m| shown(Some(&who), m)).collect();
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
    let m = service::visible_model(&state, Some(&who), &id).await?;
    Ok(axum::Json(shown(Some(&who), m)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PromptCheckParams {
    /// The prompt to check (A1111 emphasis is read as generation reads it).
    pub prompt: String,
}

/// How a prompt fits the model's text encoder: its tokens, the encoder's window, the
/// windows it takes (SD: several, none dropped), the tokens dropped (Sana), the emphasis
/// weights. Reads the model's tokenizer only.
#[utoipa::path(get, path = "/v1/models/{id}/prompt-check", tag = "models",
    params(("id" = String, Path, description = "Id, name or alias"), PromptCheckParams),
    responses((status = 200, body = easel_core::model::PromptCheck), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn prompt_check(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(q): Query<PromptCheckParams>,
) -> ApiResult<axum::Json<easel_core::model::PromptCheck>> {
    let (_, check) = service::prompt_check(&state, &who, &id, &q.prompt).await?;
    Ok(axum::Json(check))
}

/// A model as `who` may see it: whole for admins, without its locations for others.
fn shown(who: Option<&Principal>, m: Model) -> Model {
    if who.is_some_and(Principal::is_admin) {
        m
    } else {
        m.without_locations()
    }
}

/// Register a model. An admin's is a model of the server (any provider); a user's is their
/// own composition: `base_model` names the server's model it runs (`loras`, `defaults`,
/// `limits`, `description`, `examples`, `tags`, `privacy` on top; `private` by default).
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = ModelSpec,
    responses((status = 201, body = Model), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(spec): Json<ModelSpec>,
) -> ApiResult<(StatusCode, axum::Json<Model>)> {
    let m = if who.is_admin() {
        spec.check_paths(state.engine.model_roots())?;
        let spec = service::settle_spec(&state, &who, None, None, spec).await?;
        easel_store::models::create(&state.store.db, &spec, false).await?
    } else {
        let spec = service::settle_spec(&state, &who, Some(&who.user_id), None, spec).await?;
        easel_store::models::create_owned(&state.store.db, &spec, &who.user_id).await?
    };
    Ok((StatusCode::CREATED, axum::Json(shown(Some(&who), m))))
}

/// Change some fields of a model (its owner, or an admin).
#[utoipa::path(patch, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path)), request_body = ModelPatch,
    responses((status = 200, body = Model), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(patch): Json<ModelPatch>,
) -> ApiResult<axum::Json<Model>> {
    let m = service::editable_model(&state, &who, &id).await?;
    Ok(axum::Json(shown(
        Some(&who),
        service::save_model(&state, &who, &m, patch).await?,
    )))
}

/// Remove a model and its presets (its owner, or an admin).
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let m = service::editable_model(&state, &who, &id).await?;
    service::delete_model(&state, &m).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A model of the caller's own made from one they see: a copy of a composition (its base,
/// LoRAs, defaults, limits, description, tags and presets), or of a model of the server a
/// composition over it with its defaults and limits — the way to start presets and defaults
/// of one's own on a server's model.
#[utoipa::path(post, path = "/v1/models/{id}/copy", tag = "models", params(("id" = String, Path)), request_body = service::CopyModel,
    responses((status = 201, body = Model), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn copy(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<service::CopyModel>,
) -> ApiResult<(StatusCode, axum::Json<Model>)> {
    let m = service::visible_model(&state, Some(&who), &id).await?;
    let copied = service::copy_model(&state, &who, &m, req).await?;
    Ok((StatusCode::CREATED, axum::Json(shown(Some(&who), copied))))
}

/// Pack a user's model for download (its owner, or an admin): an archive (`GET` its `url`,
/// signed) of `model.json` — the model with its presets — and the LoRA files its owner
/// uploaded (the model's own, or its composition's). The server's models stay on the server
/// (422).
#[utoipa::path(post, path = "/v1/models/{id}/download", tag = "models", params(("id" = String, Path)),
    responses((status = 201, body = super::downloads::DownloadView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<super::downloads::DownloadView>)> {
    let m = service::visible_model(&state, Some(&who), &id).await?;
    let d = service::create_model_download(&state, &who, &m).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(super::downloads::view(&state, d)),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferModel {
    /// The user who will own the model: an id or a name.
    pub to: String,
}

/// Give a user's model to another user (its owner, or an admin); its presets go with it,
/// its examples that are not the new owner's assets stay behind.
#[utoipa::path(post, path = "/v1/models/{id}/transfer", tag = "models", params(("id" = String, Path)), request_body = TransferModel,
    responses((status = 200, body = Model), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn transfer(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<TransferModel>,
) -> ApiResult<axum::Json<Model>> {
    let m = service::editable_model(&state, &who, &id).await?;
    let moved = service::transfer_model(&state, &m, "to", &req.to).await?;
    Ok(axum::Json(shown(Some(&who), moved)))
}

#[derive(Serialize, ToSchema)]
pub struct PresetList {
    pub data: Vec<Preset>,
}

/// A model's presets, oldest first (anyone who sees the model).
#[utoipa::path(get, path = "/v1/models/{id}/presets", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = PresetList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn presets(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PresetList>> {
    let m = service::visible_model(&state, Some(&who), &id).await?;
    let data = easel_store::models::presets(&state.store.db, &m.id).await?;
    Ok(axum::Json(PresetList { data }))
}

/// Add a preset (`name` required) to a model the caller may change. A generation that
/// names the model and `preset` takes the preset's `params` for the fields its input leaves
/// out; `is_default: true` applies it when a request names no preset.
#[utoipa::path(post, path = "/v1/models/{id}/presets", tag = "models", params(("id" = String, Path)), request_body = PresetSpec,
    responses((status = 201, body = Preset), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_preset(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(spec): Json<PresetSpec>,
) -> ApiResult<(StatusCode, axum::Json<Preset>)> {
    let m = service::editable_model(&state, &who, &id).await?;
    spec.validate(&state.limits)?;
    let p = easel_store::models::create_preset(&state.store.db, &m.id, &who.user_id, &spec).await?;
    Ok((StatusCode::CREATED, axum::Json(p)))
}

/// Change a preset's fields (those given).
#[utoipa::path(patch, path = "/v1/models/{id}/presets/{preset}", tag = "models", params(("id" = String, Path), ("preset" = String, Path)), request_body = PresetSpec,
    responses((status = 200, body = Preset), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_preset(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path((id, preset)): Path<(String, String)>,
    Json(spec): Json<PresetSpec>,
) -> ApiResult<axum::Json<Preset>> {
    let m = service::editable_model(&state, &who, &id).await?;
    spec.validate(&state.limits)?;
    Ok(axum::Json(
        easel_store::models::update_preset(&state.store.db, &m.id, &preset, &spec).await?,
    ))
}

/// Remove a preset.
#[utoipa::path(delete, path = "/v1/models/{id}/presets/{preset}", tag = "models", params(("id" = String, Path), ("preset" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_preset(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path((id, preset)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let m = service::editable_model(&state, &who, &id).await?;
    if !easel_store::models::delete_preset(&state.store.db, &m.id, &preset).await? {
        return Err(Error::not_found("preset").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Everyone's public models by name; no key needed.
#[utoipa::path(get, path = "/v1/public/models", tag = "models", params(ModelListParams),
    responses((status = 200, body = ModelList), (status = 422, body = ErrorBody)))]
pub async fn list_public(
    State(state): State<AppState>,
    Query(q): Query<ModelListParams>,
) -> ApiResult<axum::Json<ModelList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    if q.scope.as_deref().is_some_and(|s| s != "public") {
        return Err(Error::invalid("scope", "public reads list public models only").into());
    }
    let (data, count) =
        easel_store::models::list(&state.store.db, Scope::Public, q.skip.unwrap_or(0), limit)
            .await?;
    let data = data.into_iter().map(|m| shown(None, m)).collect();
    Ok(axum::Json(ModelList { data, count }))
}

/// A public or unlisted model by id (a server's model also by name); no key needed.
#[utoipa::path(get, path = "/v1/public/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)))]
pub async fn get_public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Model>> {
    Ok(axum::Json(shown(
        None,
        service::visible_model(&state, None, &id).await?,
    )))
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
