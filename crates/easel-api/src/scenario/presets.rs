//! A model's presets (`/models/{modelId}/presets`): parameter sets made from one of the
//! caller's generations. A generation on the model takes its default preset's parameters
//! for the fields the request leaves out (`service::submit` applies it; the request's own
//! values win, the model's defaults fill what both leave out). Preset ids are Easel's
//! (`prs_…`).

use easel_core::preset::{Preset, PresetParams, PresetSpec};
use easel_core::task::TaskInput;

use super::models::{editable, seen};
use super::*;

/// A preset as Scenario shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioPreset)]
pub(super) struct PresetView {
    id: String,
    model_id: String,
    author_id: String,
    /// The model's owner (the author, for a server's model).
    owner_id: String,
    is_default: bool,
    /// The inference parameters in Scenario's names (`FIELDS`), `type` the task, `seed` a
    /// string; `prompt` is `""`: a preset keeps parameters, each request brings its prompt.
    #[schema(value_type = Object)]
    parameters: Value,
    created_at: String,
    updated_at: String,
}

fn view(p: Preset, m: &Model) -> PresetView {
    let mut parameters = Map::new();
    parameters.insert("type".into(), json!(p.task.as_deref().unwrap_or("txt2img")));
    parameters.insert("prompt".into(), json!(""));
    let core = serde_json::to_value(&p.params).unwrap_or_default();
    for (wire, field) in FIELDS {
        if let Some(v) = core.get(*field).filter(|v| !v.is_null()) {
            parameters.insert(wire.to_string(), v.clone());
        }
    }
    if let Some(seed) = p.params.seed {
        parameters.insert("seed".into(), json!(seed.to_string()));
    }
    PresetView {
        id: p.id,
        model_id: ids::model(&p.model_id),
        owner_id: m.owner_id.clone().unwrap_or_else(|| p.author_id.clone()),
        author_id: p.author_id,
        is_default: p.is_default,
        parameters: Value::Object(parameters),
        created_at: ids::time(&p.created_at),
        updated_at: ids::time(&p.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioPresetOne)]
pub(super) struct PresetOne {
    preset: PresetView,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioPresets)]
pub(super) struct PresetsPage {
    presets: Vec<PresetView>,
}

/// `GET /models/{modelId}/presets`: oldest first; anyone who sees the model.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}/presets", tag = "scenario", params(("modelId" = String, Path)),
    responses((status = 200, body = PresetsPage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<PresetsPage>, Failure> {
    let m = seen(&state, Some(&who), &id).await?;
    let presets = easel_store::models::presets(&state.store.db, &m.id).await?;
    Ok(axum::Json(PresetsPage {
        presets: presets.into_iter().map(|p| view(p, &m)).collect(),
    }))
}

/// `POST /models/{modelId}/presets`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioPresetCreate)]
pub(super) struct PresetCreate {
    /// A generation job of the caller's (`job_…`).
    inference_id: String,
    #[serde(default)]
    is_default: Option<bool>,
}

/// The parameters a preset keeps of a generation job: what it ran with (defaults filled
/// in), less its prompt, images and LoRAs (`PresetParams::of`), and less its seed unless the
/// request chose one (a seed the server drew would make every later image the same).
fn params_of(job: &Job) -> Result<PresetParams, Error> {
    let not_generation = || {
        Error::invalid(
            "inferenceId",
            format!(
                "job {} is a `{}` job, not a generation (txt2img, img2img, inpaint)",
                job.id, job.task
            ),
        )
    };
    let input = TaskInput::from_json(&job.task, job.input.clone()).map_err(|_| not_generation())?;
    let g = input.generation().ok_or_else(not_generation)?;
    let mut params = PresetParams::of(&job.task, g);
    let chosen = view::scenario_request(job)
        .and_then(|r| r.get("body"))
        .and_then(|b| b.get("seed"))
        .is_some_and(|s| !s.is_null() && s.as_str() != Some(""));
    if !chosen {
        params.seed = None;
    }
    Ok(params)
}

/// `POST /models/{modelId}/presets` with `{inferenceId, isDefault}`: a preset of the
/// parameters of one of the caller's generations (`inferenceId` is its job; any model's),
/// named after it; `isDefault: true` makes it the model's default (the earlier default stops
/// being one). The model's owner, or an admin; at most 100 presets.
#[utoipa::path(post, path = "/scenario/v1/models/{modelId}/presets", tag = "scenario", params(("modelId" = String, Path)), request_body = PresetCreate,
    responses((status = 200, body = PresetOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<PresetCreate>,
) -> Result<axum::Json<PresetOne>, Failure> {
    let m = editable(&state, &who, &id).await?;
    let wire = body.inference_id.trim();
    let job_id = ids::job_in(wire)
        .ok_or_else(|| Error::invalid("inferenceId", format!("`{wire}` is not a job id")))?;
    let job = service::owned_job(&state, &who, &job_id)
        .await
        .map_err(|e| e.with_field("inferenceId"))?;
    let spec = PresetSpec {
        name: Some(format!("Preset from {}", job.id)),
        task: Some(job.task.clone()),
        params: Some(params_of(&job)?),
        is_default: body.is_default,
    };
    spec.validate(&state.limits)
        .map_err(|e| e.with_field("inferenceId"))?;
    // The store names its limit (100 presets a model) on `name`, which this request lacks.
    let p = easel_store::models::create_preset(&state.store.db, &m.id, &who.user_id, &spec)
        .await
        .map_err(|e| service::refield(e, "name", "modelId"))?;
    Ok(axum::Json(PresetOne {
        preset: view(p, &m),
    }))
}

/// `PUT /models/{modelId}/presets/{presetId}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioPresetEdit)]
pub(super) struct PresetEdit {
    is_default: bool,
}

/// `PUT /models/{modelId}/presets/{presetId}` with `{isDefault}`: make the preset the
/// model's default (the earlier default stops being one), or not. The model's owner, or an
/// admin.
#[utoipa::path(put, path = "/scenario/v1/models/{modelId}/presets/{presetId}", tag = "scenario", params(("modelId" = String, Path), ("presetId" = String, Path)), request_body = PresetEdit,
    responses((status = 200, body = PresetOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn update(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path((id, preset)): Path<(String, String)>,
    Json(body): Json<PresetEdit>,
) -> Result<axum::Json<PresetOne>, Failure> {
    let m = editable(&state, &who, &id).await?;
    let spec = PresetSpec {
        is_default: Some(body.is_default),
        ..Default::default()
    };
    let p = easel_store::models::update_preset(&state.store.db, &m.id, &preset, &spec)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => Error::not_found(&format!("preset {preset}")),
            _ => e,
        })?;
    Ok(axum::Json(PresetOne {
        preset: view(p, &m),
    }))
}

/// `DELETE /models/{modelId}/presets/{presetId}`: the model's owner, or an admin; `{}`.
#[utoipa::path(delete, path = "/scenario/v1/models/{modelId}/presets/{presetId}", tag = "scenario", params(("modelId" = String, Path), ("presetId" = String, Path)),
    responses((status = 200, description = "Deleted: `{}`"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path((id, preset)): Path<(String, String)>,
) -> Result<axum::Json<Value>, Failure> {
    let m = editable(&state, &who, &id).await?;
    if !easel_store::models::delete_preset(&state.store.db, &m.id, &preset).await? {
        return Err(Error::not_found(&format!("preset {preset}")).into());
    }
    Ok(axum::Json(json!({})))
}
