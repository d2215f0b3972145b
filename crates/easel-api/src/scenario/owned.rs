//! Users' models written through Scenario: create (a composition), edit, delete, copy,
//! transfer, description, examples, tags. The rules are the core's and the native API's
//! (`service::settle_spec`, `service::{save_model, copy_model, transfer_model}`); this
//! module reads Scenario's fields, names errors by them, and answers in Scenario's shapes.
//! Who may change a model: its owner, or an admin (`models::editable`: others get 403 for a
//! model they see, 404 for one they do not).

use std::collections::HashMap;

use easel_core::asset::Privacy;
use easel_core::generate::LoraRef;
use easel_core::model::{ModelPatch, ModelSpec};
use easel_store::collections::{self, Kind};

use super::assets::{TagsChange, TagsChanged};
use super::models::{editable, one, seen, views};
use super::*;
use crate::service::{copy_model, save_model, transfer_model, CopyModel};

/// A model spec's fields that requests here set, as (Scenario's name, the core's): errors
/// about them are named back by this table (`wire`).
const SPEC_FIELDS: &[(&str, &str)] = &[
    ("shortDescription", "short_description"),
    ("baseModelId", "base_model"),
    ("concepts", "loras"),
    ("assetIds", "examples"),
];

/// The same error, naming Scenario's field where it named the core's (`loras[1].model` →
/// `concepts[1].modelId`, `examples[0]` → `assetIds[0]`).
fn wire(e: Error) -> Error {
    let Some(field) = e.field.clone() else {
        return e;
    };
    match error::by_table(&field, SPEC_FIELDS) {
        Some(w) if w.starts_with("concepts") => e.with_field(w.replace(".model", ".modelId")),
        Some(w) => e.with_field(w),
        None => e,
    }
}

/// The LoRAs of `concepts` (scales within the spec's −2…2; `modelEpoch` has nothing to
/// choose here: LoRAs have no epochs).
fn loras(concepts: &[Concept]) -> Result<Vec<LoraRef>, Error> {
    concepts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !(-2.0..=2.0).contains(&c.scale) {
                return Err(Error::invalid(
                    format!("concepts[{i}].scale"),
                    "must be between -2 and 2",
                ));
            }
            Ok(LoraRef {
                model: ids::model_ref(&c.model_id),
                scale: c.scale,
            })
        })
        .collect()
}

/// A field Easel does not keep, sent with a value: a 400 naming it.
fn refuse(field: &str, value: &Option<Value>, why: &str) -> Result<(), Error> {
    match value {
        Some(v) if !v.is_null() => Err(Error::invalid(field, why.to_string())),
        _ => Ok(()),
    }
}

const NO_CLASSES: &str = "model classes are not kept by Easel";

/// `POST /models`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelCreate)]
pub(super) struct ModelCreate {
    /// The title (1–200 characters); default: the base model's name.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    short_description: Option<String>,
    /// The server's model the composition runs (required: training is not offered).
    #[serde(default)]
    base_model_id: Option<String>,
    /// Its LoRAs.
    #[serde(default)]
    concepts: Option<Vec<Concept>>,
    /// When given, the composition's type (`sd-1_5-composition`, …: the base's family).
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Not kept: a value other than `null` is a 400.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    class_slug: Option<Value>,
    /// The caller's collections to put the model in.
    #[serde(default)]
    collection_ids: Option<Vec<String>>,
}

/// `POST /models`: a model of the caller's own, `private`: a composition of `baseModelId`
/// (a server's model the caller sees; a composition there is one of its base, with its
/// LoRAs first) with `concepts` as its LoRAs; `name` (default: the base's),
/// `shortDescription`; `type`, when given, must be the composition's; `collectionIds` (the
/// caller's collections; others' 404) get the model. A model over no base is a 400
/// naming `baseModelId` (training is not offered).
#[utoipa::path(post, path = "/scenario/v1/models", tag = "scenario", request_body = ModelCreate,
    responses((status = 200, body = ModelOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<ModelCreate>,
) -> Result<axum::Json<ModelOne>, Failure> {
    refuse("classSlug", &body.class_slug, NO_CLASSES)?;
    let base = body
        .base_model_id
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "baseModelId",
                "required: a model of yours here is a composition of one of the server's \
                 models (its LoRAs in `concepts`); training is not offered",
            )
        })?;
    let named = service::find_model(&state, Some(&who), &ids::model_ref(base))
        .await?
        .ok_or_else(|| Error::invalid("baseModelId", format!("no model `{base}`")))?;
    // The collections first: nothing is made when one is not the caller's.
    let mut cols = Vec::new();
    for (i, c) in body.collection_ids.iter().flatten().enumerate() {
        let field = format!("collectionIds[{i}]");
        let id = ids::collection_in(c)
            .ok_or_else(|| Error::not_found(&format!("collection {c}")).with_field(&field))?;
        let found = service::owned_collection(&state, &who, &id)
            .await
            .map_err(|e| e.with_field(&field))?;
        cols.push(found.id);
    }
    let spec = ModelSpec {
        short_description: body.short_description,
        base_model: Some(named.id.clone()),
        loras: loras(body.concepts.as_deref().unwrap_or_default())?,
        privacy: Some(Privacy::Private),
        ..ModelSpec::new(body.name.unwrap_or_else(|| named.name.clone()))
    };
    let spec = service::settle_spec(&state, &who, Some(&who.user_id), None, spec)
        .await
        .map_err(wire)?;
    if let Some(t) = body.kind.as_deref() {
        let want = view::composition_type(&spec.family);
        if t != want {
            return Err(Error::invalid(
                "type",
                format!("a composition of this base is `{want}` (models are not trained here)"),
            )
            .into());
        }
    }
    let db = &state.store.db;
    let m = easel_store::models::create_owned(db, &spec, &who.user_id)
        .await
        .map_err(wire)?;
    for c in &cols {
        collections::change(db, c, Kind::Model, std::slice::from_ref(&m.id), &[]).await?;
    }
    one(&state, Some(&who), m).await
}

/// `PUT /models/{modelId}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelEdit)]
pub(super) struct ModelEdit {
    #[serde(default)]
    name: Option<String>,
    /// `""` clears it.
    #[serde(default)]
    short_description: Option<String>,
    /// A composition's LoRAs, all of them.
    #[serde(default)]
    concepts: Option<Vec<Concept>>,
    /// Checked: a model's type follows its base.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    class_slug: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    thumbnail: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    prompt_embedding: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    negative_prompt_embedding: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    epoch: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
}

/// `PUT /models/{modelId}`: `name`, `shortDescription` (`""` clears), `concepts` (a
/// composition's LoRAs); `type` must be the model's own. The fields Easel does not keep
/// (`classSlug`, `thumbnail`, `promptEmbedding`, `negativePromptEmbedding`, `epoch`,
/// training `parameters`) are a 400 naming the field unless `null`. Its owner, or an admin.
#[utoipa::path(put, path = "/scenario/v1/models/{modelId}", tag = "scenario", params(("modelId" = String, Path)), request_body = ModelEdit,
    responses((status = 200, body = ModelOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn update(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelEdit>,
) -> Result<axum::Json<ModelOne>, Failure> {
    refuse("classSlug", &body.class_slug, NO_CLASSES)?;
    refuse(
        "thumbnail",
        &body.thumbnail,
        "thumbnails are not kept by Easel: a model shows its examples (PUT /models/{modelId}/examples)",
    )?;
    for f in [
        ("promptEmbedding", &body.prompt_embedding),
        ("negativePromptEmbedding", &body.negative_prompt_embedding),
    ] {
        refuse(f.0, f.1, "prompt embeddings are not applied by Easel")?;
    }
    refuse("epoch", &body.epoch, "Easel's models have no epochs")?;
    refuse(
        "parameters",
        &body.parameters,
        "training is not offered by Easel",
    )?;
    let m = editable(&state, &who, &id).await?;
    if let Some(t) = body.kind.as_deref() {
        let have = view::model_type(&m);
        if t != have {
            return Err(Error::invalid(
                "type",
                format!("the model is `{have}`: its type follows its base"),
            )
            .into());
        }
    }
    let patch = ModelPatch {
        name: body.name,
        short_description: body.short_description,
        loras: body.concepts.as_deref().map(loras).transpose()?,
        ..Default::default()
    };
    let m = save_model(&state, &who, &m, patch).await.map_err(wire)?;
    one(&state, Some(&who), m).await
}

/// `DELETE /models/{modelId}`: the model, its presets, and its place in collections (its
/// owner, or an admin); `{}`.
#[utoipa::path(delete, path = "/scenario/v1/models/{modelId}", tag = "scenario", params(("modelId" = String, Path)),
    responses((status = 200, description = "Deleted: `{}`"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Failure> {
    let m = editable(&state, &who, &id).await?;
    service::delete_model(&state, &m).await?;
    Ok(axum::Json(json!({})))
}

/// `POST /models/{modelId}/copy`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelCopy)]
pub(super) struct ModelCopy {
    /// Default: true for the caller's own model (its examples are theirs), false for
    /// another's (whose examples the caller cannot own).
    #[serde(default)]
    copy_examples: Option<bool>,
    /// Read, nothing to do: Easel's models have no training data.
    #[serde(default)]
    copy_as_trained: Option<bool>,
}

/// `POST /models/{modelId}/copy`: a `private` model of the caller's own made from one they
/// see, with its presets (`service::copy_model`: a copy of a composition, or a
/// composition over a server's model). `copyExamples` keeps the examples (they must be
/// the caller's: a 400 naming it otherwise).
#[utoipa::path(post, path = "/scenario/v1/models/{modelId}/copy", tag = "scenario", params(("modelId" = String, Path)), request_body = ModelCopy,
    responses((status = 200, body = ModelOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn copy(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelCopy>,
) -> Result<axum::Json<ModelOne>, Failure> {
    let _ = body.copy_as_trained;
    let m = seen(&state, Some(&who), &id).await?;
    let copy_examples = body
        .copy_examples
        .unwrap_or(m.owner_id.as_deref() == Some(who.user_id.as_str()));
    let req = CopyModel {
        copy_examples,
        ..Default::default()
    };
    let copied = copy_model(&state, &who, &m, req)
        .await
        .map_err(|e| match e.field.as_deref() {
            Some(f) if f.starts_with("examples") => e.with_field("copyExamples"),
            Some("id") => e.with_field("modelId"),
            _ => wire(e),
        })?;
    one(&state, Some(&who), copied).await
}

/// `POST /models/{modelId}/transfer`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelTransfer)]
pub(super) struct ModelTransfer {
    /// The user who will own the model: a user id or name (Easel has no projects).
    destination_project_id: String,
    /// Read, not used: Easel has no teams.
    #[serde(default)]
    destination_team_id: Option<String>,
}

/// `POST /models/{modelId}/transfer`: Easel has no projects or teams, so the destination is
/// a user, named by id or name in `destinationProjectId`; the model and its presets become
/// theirs (`service::transfer_model`). Its owner, or an admin; the server's models
/// are a 400 (copy them instead).
#[utoipa::path(post, path = "/scenario/v1/models/{modelId}/transfer", tag = "scenario", params(("modelId" = String, Path)), request_body = ModelTransfer,
    responses((status = 200, body = ModelOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn transfer(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelTransfer>,
) -> Result<axum::Json<ModelOne>, Failure> {
    let _ = body.destination_team_id;
    let m = editable(&state, &who, &id).await?;
    let to = body.destination_project_id.trim();
    let moved = transfer_model(&state, &m, "destinationProjectId", to).await?;
    one(&state, Some(&who), moved).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelDownload)]
pub(super) struct ModelDownload {
    #[serde(default)]
    model_epoch: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioModelDownloadJob)]
pub(super) struct ModelDownloadJob {
    job_id: String,
}

/// `POST /models/{modelId}/download`: a download of a user's model (its owner, or an
/// admin; `service::create_model_download`): `model.json` and the LoRA files its owner
/// uploaded, zipped. The `jobId` is read with `GET /jobs/{jobId}` (`model-download`,
/// `metadata.output.url`) or `GET /assets/download/{jobId}`. `modelEpoch` is a 400: Easel
/// trains no models. The server's models are a 400.
#[utoipa::path(post, path = "/scenario/v1/models/{modelId}/download", tag = "scenario", params(("modelId" = String, Path)), request_body = ModelDownload,
    responses((status = 200, body = ModelDownloadJob), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn download(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelDownload>,
) -> Result<axum::Json<ModelDownloadJob>, Failure> {
    if body.model_epoch.is_some() {
        return Err(Error::invalid(
            "modelEpoch",
            "Easel trains no models: a model has no epochs",
        )
        .into());
    }
    let m = service::visible_model(&state, Some(&who), &ids::model_ref(&id)).await?;
    let d = service::create_model_download(&state, &who, &m)
        .await
        .map_err(|e| error::renamed(e, &[("modelId", "id")]))?;
    Ok(axum::Json(ModelDownloadJob { job_id: d.id }))
}

/// The references of a description's `{asset:<id>}` and `{model:<id>}` tags, each once, in
/// order: (assets, models).
fn references(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut assets, mut models) = (Vec::new(), Vec::new());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let tag = &rest[..close];
        let list = match tag.split_once(':') {
            Some(("asset", id)) => Some((&mut assets, id)),
            Some(("model", id)) => Some((&mut models, id)),
            _ => None,
        };
        if let Some((list, id)) = list {
            let id = id.trim().to_string();
            if !id.is_empty() && !list.contains(&id) {
                list.push(id);
            }
            rest = &rest[close + 1..];
        }
    }
    (assets, models)
}

/// `{description: {value, models, assets}}`: the markdown, and the models and assets its
/// `{model:<id>}` and `{asset:<id>}` tags name that `who` may see on their own (their own,
/// public or unlisted assets: a tag is free text, written by whoever edited the model, so it
/// grants nothing — unlike the examples, which the owner chose among their own assets).
async fn description_of(state: &AppState, who: &Principal, m: &Model) -> Result<Value, Error> {
    let text = m.description.clone().unwrap_or_default();
    let (asset_refs, model_refs) = references(&text);
    let mut models: Vec<Model> = Vec::new();
    for r in &model_refs {
        if let Some(found) = service::find_model(state, Some(who), &ids::model_ref(r)).await? {
            if !models.iter().any(|x| x.id == found.id) {
                models.push(found);
            }
        }
    }
    let wanted: Vec<String> = asset_refs.iter().filter_map(|a| ids::asset_in(a)).collect();
    let assets = shown_assets(state, who, None, &wanted).await?;
    Ok(json!({"description": {
        "value": text,
        "models": views(state, Some(who), models).await?,
        "assets": view::assets(state, Some(&who.user_id), assets).await?,
    }}))
}

/// The assets among `ids` (in that order) that `who` may see: their own, public or unlisted
/// ones, and with `examples_of` a model, those of its owner (examples, which `settle_spec`
/// checked were the owner's when they were set).
async fn shown_assets(
    state: &AppState,
    who: &Principal,
    examples_of: Option<&Model>,
    ids: &[String],
) -> Result<Vec<Asset>, Error> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut by_id: HashMap<String, Asset> = easel_store::assets::get_many(&state.store.db, &refs)
        .await?
        .into_iter()
        .filter(|a| {
            who.is_admin()
                || a.owner_id == who.user_id
                || a.privacy != Privacy::Private
                || examples_of.is_some_and(|m| m.owner_id.as_deref() == Some(a.owner_id.as_str()))
        })
        .map(|a| (a.id.clone(), a))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// `GET /models/{modelId}/description`: anyone who sees the model.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}/description", tag = "scenario", params(("modelId" = String, Path)),
    responses((status = 200, description = "`{description: {value, models, assets}}`"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn description(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Failure> {
    let m = seen(&state, Some(&who), &id).await?;
    Ok(axum::Json(description_of(&state, &who, &m).await?))
}

/// `null` read as `None`, and a missing field as an error (the field is required).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// `PUT /models/{modelId}/description`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ScenarioModelDescription)]
pub(super) struct DescriptionEdit {
    /// Markdown (at most 20,000 characters); `null` or `""` removes it.
    #[serde(deserialize_with = "nullable")]
    description: Option<String>,
}

/// `PUT /models/{modelId}/description`: the markdown description (its owner, or an admin).
#[utoipa::path(put, path = "/scenario/v1/models/{modelId}/description", tag = "scenario", params(("modelId" = String, Path)), request_body = DescriptionEdit,
    responses((status = 200, description = "`{description: {value, models, assets}}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put_description(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<DescriptionEdit>,
) -> Result<axum::Json<Value>, Failure> {
    let m = editable(&state, &who, &id).await?;
    let patch = ModelPatch {
        description: Some(body.description.unwrap_or_default()),
        ..Default::default()
    };
    let m = save_model(&state, &who, &m, patch).await.map_err(wire)?;
    Ok(axum::Json(description_of(&state, &who, &m).await?))
}

/// `{examples: [{modelId, asset, inferenceId, inferenceParameters, job}]}`: the model's
/// example assets in order, each with the model that made it (the job's, else this one),
/// and for a generation its inference; the job itself only for its owner (and admins).
async fn examples_of(state: &AppState, who: &Principal, m: &Model) -> Result<Value, Error> {
    let assets = shown_assets(state, who, Some(m), &m.examples).await?;
    let mut job_ids: Vec<&str> = assets.iter().filter_map(|a| a.job_id.as_deref()).collect();
    job_ids.sort_unstable();
    job_ids.dedup();
    let jobs: HashMap<String, Job> = easel_store::jobs::get_many(&state.store.db, &job_ids)
        .await?
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    let made_by: Vec<Option<Job>> = assets
        .iter()
        .map(|a| a.job_id.as_ref().and_then(|j| jobs.get(j)).cloned())
        .collect();
    let asset_views = view::assets(state, Some(&who.user_id), assets).await?;
    let mut out = Vec::new();
    for (asset, job) in asset_views.into_iter().zip(made_by) {
        let model = job
            .as_ref()
            .and_then(|j| j.model.as_deref())
            .unwrap_or(&m.id);
        let mut e = json!({"modelId": ids::model(model), "asset": asset});
        if let Some(j) = job {
            e["inferenceId"] = json!(j.id);
            if view::job_type(&j.task) == "inference" {
                e["inferenceParameters"] = view::inference(&j);
            }
            if who.is_admin() || j.owner_id == who.user_id {
                e["job"] = json!(view::jobs(state, vec![j]).await?.remove(0));
            }
        }
        out.push(e);
    }
    Ok(json!({ "examples": out }))
}

/// `GET /models/{modelId}/examples`: anyone who sees the model.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}/examples", tag = "scenario", params(("modelId" = String, Path)),
    responses((status = 200, description = "`{examples: [{modelId, asset, inferenceId, inferenceParameters, job}]}`"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn examples(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Failure> {
    let m = seen(&state, Some(&who), &id).await?;
    Ok(axum::Json(examples_of(&state, &who, &m).await?))
}

/// `PUT /models/{modelId}/examples`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioModelExamples)]
pub(super) struct ExamplesEdit {
    /// Every example, in order (at most 50): assets of the model's owner.
    asset_ids: Vec<String>,
}

/// `PUT /models/{modelId}/examples`: the model's examples, all of them in order (adds,
/// removes and sorts at once); each an asset of the model's owner (else a 400 naming
/// `assetIds[i]`). Its owner, or an admin.
#[utoipa::path(put, path = "/scenario/v1/models/{modelId}/examples", tag = "scenario", params(("modelId" = String, Path)), request_body = ExamplesEdit,
    responses((status = 200, description = "`{examples: […]}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put_examples(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ExamplesEdit>,
) -> Result<axum::Json<Value>, Failure> {
    let m = editable(&state, &who, &id).await?;
    let mut examples: Vec<String> = Vec::new();
    for (i, a) in body.asset_ids.iter().enumerate() {
        let id = ids::asset_in(a).ok_or_else(|| {
            Error::invalid(
                format!("assetIds[{i}]"),
                format!("`{a}` is not an asset id"),
            )
        })?;
        if !examples.contains(&id) {
            examples.push(id);
        }
    }
    let patch = ModelPatch {
        examples: Some(examples),
        ..Default::default()
    };
    let m = save_model(&state, &who, &m, patch).await.map_err(wire)?;
    Ok(axum::Json(examples_of(&state, &who, &m).await?))
}

#[derive(Deserialize)]
pub(super) struct ImagesQuery {
    ids: Option<String>,
    #[serde(flatten)]
    _others: HashMap<String, String>,
}

/// `DELETE /models/{modelId}/images?ids=…`: Easel's models have no training images; the
/// images a model shows are its examples, so the assets named (comma-separated) leave its
/// examples (the assets stay; ids that are not examples change nothing). Its owner, or an
/// admin; `{}`.
#[utoipa::path(delete, path = "/scenario/v1/models/{modelId}/images", tag = "scenario", params(("modelId" = String, Path), ("ids" = String, Query)),
    responses((status = 200, description = "`{}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete_images(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    ListQuery(q): ListQuery<ImagesQuery>,
) -> Result<axum::Json<Value>, Failure> {
    let gone: Vec<String> = query::list_param(q.ids.as_deref())
        .iter()
        .map(|a| ids::asset_in(a).unwrap_or_else(|| a.clone()))
        .collect();
    if gone.is_empty() {
        return Err(Error::invalid("ids", "required: the asset ids to remove").into());
    }
    let m = editable(&state, &who, &id).await?;
    let kept: Vec<String> = m
        .examples
        .iter()
        .filter(|a| !gone.contains(a))
        .cloned()
        .collect();
    if kept.len() != m.examples.len() {
        let patch = ModelPatch {
            examples: Some(kept),
            ..Default::default()
        };
        save_model(&state, &who, &m, patch).await.map_err(wire)?;
    }
    Ok(axum::Json(json!({})))
}

/// `PUT /models/{modelId}/tags`: `add` and `delete` (tags of 1–64 characters, no commas; at
/// most 50), `strict` by default as the spec says (a tag already there or missing is a 400
/// `conflict` naming `add`/`delete` and changes nothing); `{added, deleted}`. Its owner, or
/// an admin.
#[utoipa::path(put, path = "/scenario/v1/models/{modelId}/tags", tag = "scenario", params(("modelId" = String, Path)), request_body = TagsChange,
    responses((status = 200, body = TagsChanged), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put_tags(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<TagsChange>,
) -> Result<axum::Json<TagsChanged>, Failure> {
    let check = easel_core::asset::check_tags;
    let (add, delete) = (check("add", &body.add)?, check("delete", &body.delete)?);
    let m = editable(&state, &who, &id).await?;
    let easel_core::asset::TagChange {
        after,
        added,
        deleted,
    } = easel_core::asset::change_tags("model", &m.tags, &add, &delete, body.strict)?;
    if after != m.tags {
        let patch = ModelPatch {
            tags: Some(after),
            ..Default::default()
        };
        save_model(&state, &who, &m, patch).await.map_err(wire)?;
    }
    Ok(axum::Json(TagsChanged { added, deleted }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_reference_assets_and_models() {
        let (assets, models) = references(
            "# Fox {asset:asset_1} and {model:model_2}, {asset:asset_1} again; {other} {asset:}",
        );
        assert_eq!(assets, ["asset_1"]);
        assert_eq!(models, ["model_2"]);
    }

    #[test]
    fn core_fields_are_named_as_scenario_names_them() {
        let named = |f: &str| wire(Error::invalid(f, "x")).field.unwrap();
        assert_eq!(named("loras[1].model"), "concepts[1].modelId");
        assert_eq!(named("loras[0].scale"), "concepts[0].scale");
        assert_eq!(named("base_model"), "baseModelId");
        assert_eq!(named("short_description"), "shortDescription");
        assert_eq!(named("examples[2]"), "assetIds[2]");
        assert_eq!(named("name"), "name");
    }
}
