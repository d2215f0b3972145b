//! What every dialect does the same way: validate a task, resolve its model and input
//! images (asset ids of the caller, or `data:` URLs stored as uploads), enqueue it; store an
//! upload; sign asset URLs; read image references (ids, `data:` URLs, this server's asset
//! URLs); wait for a job to end; a job's outputs as URLs or base64; uploads in parts (signed
//! part URLs, completion into an asset); bulk downloads (the set, the signed archive URL, the
//! archive's stream); the prompt check; canvases (`canvas`: made, saved under their lock,
//! copied; an asset's content whatever its kind). Dialect modules call these and only
//! translate shapes.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use easel_core::asset::{blob_key, Asset, AssetKind};
use easel_core::auth::Principal;
use easel_core::job::{NewJob, PRIORITY_RANGE};
use easel_core::model::{Model, ModelPatch, ModelSpec, Privacy};
use easel_core::task::{check_size, ImageRef, TaskInput};
use easel_core::{time, Error, ErrorKind, Job, Result, Webhook};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::AppState;

mod canvas;
pub use canvas::*;

/// A task as a dialect asks for it: the core's typed input (its task is the variant), which
/// `submit` validates.
pub struct TaskRequest {
    pub model: Option<String>,
    /// A preset of the model (id or name) whose parameters fill what the input leaves out;
    /// `None`: the model's default preset, if it has one.
    pub preset: Option<String>,
    pub input: TaskInput,
    pub priority: Option<i32>,
    pub webhook: Option<Webhook>,
    pub idempotency_key: Option<String>,
    /// The wire request, kept with the job (`Job::request`).
    pub request: Option<serde_json::Value>,
    /// An id the dialect gives the job (see `NewJob::external_id`).
    pub external_id: Option<easel_core::job::ExternalId>,
    /// Store the outputs hidden from the owner's lists.
    pub hide_outputs: bool,
    /// What becomes of the images sent inline.
    pub inline: InlineImages,
}

/// The images a request sends inline (`data:` URLs) are stored as uploads of the caller:
/// `hidden` from their lists, derived from `parent_id` (one of the caller's assets; an
/// error names `inline.parent_id`).
#[derive(Debug, Clone, Default)]
pub struct InlineImages {
    pub hidden: bool,
    pub parent_id: Option<String>,
}

/// The `Idempotency-Key` header (checked by `submit`), for dialects that honour it.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>> {
    match headers.get("idempotency-key") {
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| Error::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_string(),
        )),
        None => Ok(None),
    }
}

/// Validate and enqueue. Returns the job and whether it was created (false: an
/// idempotency key matched an earlier job).
pub async fn submit(state: &AppState, who: &Principal, req: TaskRequest) -> Result<(Job, bool)> {
    let (new, _) = prepare(state, who, req, Stage::Enqueue).await?;
    let ins = state.queue.submit(new).await?;
    Ok((ins.job, ins.created))
}

/// Validate a task as `submit` does, without enqueuing it or storing anything (a dry run):
/// the usage units it will record (`usage::estimate_units` for generations; the output
/// megapixels of a tool, from its input image's size).
pub async fn quote(state: &AppState, who: &Principal, req: TaskRequest) -> Result<f64> {
    let (_, units) = prepare(state, who, req, Stage::Quote).await?;
    Ok(units)
}

/// Whether `prepare` may store what the request carries (`data:` images become uploads).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Enqueue,
    Quote,
}

/// The job a request makes: validated, its model and images resolved, defaults filled in;
/// and the units it will use.
async fn prepare(
    state: &AppState,
    who: &Principal,
    req: TaskRequest,
    stage: Stage,
) -> Result<(NewJob, f64)> {
    let mut input = req.input;
    input.check(&state.limits)?;
    let task = input.task();
    let priority = req.priority.unwrap_or(0);
    if !PRIORITY_RANGE.contains(&priority) {
        return Err(Error::invalid(
            "priority",
            format!(
                "must be between {} and {}",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        ));
    }
    if let Some(w) = &req.webhook {
        check_webhook(state, w).await?;
    }
    if let Some(k) = &req.idempotency_key {
        if k.is_empty() || k.len() > 255 {
            return Err(Error::invalid(
                "Idempotency-Key",
                "must be 1 to 255 characters",
            ));
        }
    }
    // The model the request names, and the one that runs it (its base, for a composition).
    let model = match &req.model {
        None if input.generation().is_some() => {
            let m = default_model(state, task).await?;
            Some((m.clone(), m))
        }
        None => None,
        Some(name) => {
            let m = match find_model(state, Some(who), name).await? {
                Some(m) => Some(m),
                // Perhaps just copied into the models folder.
                None if rescan_on_miss(state, Some(name)).await? => {
                    find_model(state, Some(who), name).await?
                }
                None => None,
            }
            .ok_or_else(|| {
                Error::invalid(
                    "model",
                    format!(
                        "no model named `{name}` (models are registered from <data-dir>/models/ \
                         at start and when it changes, or with `easel models add`)"
                    ),
                )
            })?;
            if m.is_lora() {
                return Err(Error::invalid(
                    "model",
                    format!("`{}` is a LoRA; name it in `input.loras`", m.name),
                ));
            }
            let base = runs_on(state, &m).await?;
            if !base.tasks.is_empty() && !base.tasks.iter().any(|t| t == task) {
                return Err(Error::invalid(
                    "model",
                    format!(
                        "the model `{}` cannot do `{}`; it does: {}",
                        m.name,
                        task,
                        base.tasks.join(", ")
                    ),
                ));
            }
            easel_providers::check_runnable(&base)?;
            Some((m, base))
        }
    };
    if let Some(g) = input.generation_mut() {
        let (m, _) = model.as_ref().expect("generation tasks resolve a model");
        let preset = match &req.preset {
            Some(p) => Some(
                easel_store::models::preset(&state.store.db, &m.id, p)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid("preset", format!("the model has no preset `{p}`"))
                    })?,
            ),
            None => default_preset(state, &m.id).await?,
        };
        if let Some(p) = preset {
            p.params.fill(task, g);
        }
        if !m.loras.is_empty() {
            let mut loras = m.loras.clone();
            loras.append(&mut g.loras);
            g.loras = loras;
            if g.loras.len() > 8 {
                return Err(Error::invalid(
                    "input.loras",
                    format!(
                        "the model applies {} LoRAs of its own: at most {} more",
                        m.loras.len(),
                        8 - m.loras.len().min(8)
                    ),
                ));
            }
        }
        input.check(&state.limits)?;
    } else if req.preset.is_some() {
        return Err(Error::invalid("preset", "only generations take a preset"));
    }
    if let Some(p) = &req.inline.parent_id {
        caller_asset(state, who, "inline.parent_id", p).await?;
    }
    let mut sizes = Vec::new();
    for (field, slot) in input.images_mut() {
        let field = format!("input.{field}");
        let asset = match ImageRef::parse(slot).map_err(|e| e.with_field(&field))? {
            ImageRef::Asset(id) => caller_asset(state, who, &field, &id).await?,
            ImageRef::Data { bytes, .. } if stage == Stage::Quote => {
                // The checks `store_upload` makes, without decoding or storing.
                let info = easel_imageops::probe(&bytes)
                    .map_err(|e| Error::invalid(&field, format!("not a supported image: {e}")))?;
                if bytes.is_empty() {
                    return Err(Error::invalid(&field, "the image is empty"));
                }
                check_size(&field, info.width, info.height, &state.limits)?;
                sizes.push((info.width, info.height));
                continue;
            }
            ImageRef::Data { bytes, .. } => {
                let inline = &req.inline;
                store_upload_into(
                    state,
                    who,
                    Bytes::from(bytes),
                    serde_json::json!({}),
                    inline.parent_id.as_deref(),
                    &[],
                    inline.hidden,
                )
                .await
                .map_err(|e| {
                    if e.field.is_none() {
                        e.with_field(&field)
                    } else {
                        e
                    }
                })?
            }
        };
        if !asset.mime_type.starts_with("image/") {
            return Err(Error::invalid(&field, "the asset is not an image"));
        }
        *slot = asset.id.clone();
        if let (Some(w), Some(h)) = (asset.width, asset.height) {
            sizes.push((w, h));
        }
    }
    if let Some(g) = input.generation_mut() {
        let (m, base) = model.as_ref().expect("generation tasks resolve a model");
        // A composition's LoRAs (first) are those its owner may use; the request's own,
        // those of whoever sends it. The job names each as the worker finds it.
        let owner = as_user(m.owner_id.as_deref(), who);
        for (i, l) in g.loras.iter_mut().enumerate() {
            let viewer = if i < m.loras.len() { &owner } else { who };
            let found = find_lora(state, viewer, &l.model).await?.ok_or_else(|| {
                Error::invalid(
                    format!("input.loras[{i}].model"),
                    format!("no LoRA named `{}`", l.model),
                )
            })?;
            l.model = found.job_name().to_string();
        }
        let seed = rand::random::<u32>() as u64;
        g.fill_defaults(
            task,
            &easel_providers::family::defaults(&base.family),
            &m.defaults.over(&base.defaults),
            sizes.first().copied(),
            seed,
        );
        g.check_limits(&state.limits, &m.limits.within(&base.limits))
            .map_err(|e| e.under("input"))?;
    } else {
        for &(w, h) in &sizes {
            input
                .check_output_size(w, h, &state.limits)
                .map_err(|e| e.with_field("input"))?;
        }
    }
    let units = input
        .generation()
        .map(easel_core::usage::generation_units)
        .or_else(|| {
            let (w, h) = sizes.first()?;
            Some(easel_core::usage::image_units(&[input.output_size(*w, *h)]))
        })
        .unwrap_or(0.0);
    let resource =
        easel_core::job::Resource::of(task, model.as_ref().map(|(_, b)| b.provider.as_str()));
    let model = model.map(|(m, _)| m.job_name().to_string());
    let new = NewJob {
        owner_id: who.user_id.clone(),
        task: task.to_string(),
        model,
        input: input.to_value(),
        priority,
        webhook: req.webhook,
        max_attempts: 0,
        idempotency_key: req.idempotency_key,
        request: req.request,
        external_id: req.external_id,
        resource,
        hide_outputs: req.hide_outputs,
    };
    Ok((new, units))
}

/// A webhook's URL, as submit checks it: http(s), not too long, and a receiver this server
/// may reach (`QueueConfig::webhook_policy`: public addresses, plus `--webhook-allow`).
/// The dispatcher checks again at every delivery, since names can be re-pointed.
pub async fn check_webhook(state: &AppState, w: &Webhook) -> Result<()> {
    w.validate()?;
    if let Some(f) = &w.format {
        if crate::dialect::webhook_format(f).is_none() {
            let names: Vec<&str> = crate::dialect::WEBHOOK_FORMATS
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return Err(Error::invalid(
                "webhook.format",
                format!(
                    "unknown format `{f}`: leave it out for Easel's envelope, or one of {}",
                    names.join(", ")
                ),
            ));
        }
    }
    let url = reqwest::Url::parse(&w.url)
        .map_err(|e| Error::invalid("webhook.url", format!("not a URL: {e}")))?;
    state
        .queue
        .config
        .webhook_policy
        .resolve(&url)
        .await
        .map_err(|e| {
            let why = e.explained("an operator can allow internal receivers with --webhook-allow");
            Error::invalid("webhook.url", why)
        })?;
    Ok(())
}

/// The LoRA `name` names (by name or alias for the server's, by id for a user's) when
/// `who` may use it (`Model::visible_to`).
pub async fn find_lora(
    state: &AppState,
    who: &Principal,
    name: &str,
) -> Result<Option<easel_core::model::Model>> {
    Ok(find_model(state, Some(who), name)
        .await?
        .filter(Model::is_lora))
}

/// Whose view bounds what a model uses: its owner's (a user's model, whoever writes or runs
/// it), else `who`'s.
fn as_user(owner: Option<&str>, who: &Principal) -> Principal {
    match owner {
        // A user's model sees as a user does, an admin's own included.
        Some(o) => Principal {
            user_id: o.to_string(),
            role: easel_core::auth::Role::User,
            key_id: String::new(),
        },
        None => who.clone(),
    }
}

/// The model `who` names by id, name or alias, if they may see it (`Model::visible_to`;
/// `None`: a caller without a key). Whole: views strip what non-admins may not see.
pub async fn find_model(
    state: &AppState,
    who: Option<&Principal>,
    name: &str,
) -> Result<Option<easel_core::model::Model>> {
    Ok(easel_store::models::resolve(&state.store.db, name)
        .await?
        .filter(|m| m.visible_to(who)))
}

/// A model spec as it is stored, written by `who` for a model `owner` owns (`None`: the
/// server's). A composition's `base_model`, named by id, name or alias, must be a model
/// `who` may see and not a LoRA; a composition of a composition becomes one of the first's
/// base, with the first's LoRAs before its own and its own defaults and limits over the
/// first's. The base is stored by id and lends the spec its `family` and `tasks`. Each
/// LoRA must be one the owner may use (a server's model: a LoRA of the server's), stored as
/// a job names it; each example an asset the owner owns (a server's model: the writer's, a
/// public or unlisted one, or one of the examples the model has, `before`'s). Defaults pass
/// the checks a request's fields get. A user's model keeps the `source` it has (`before`'s;
/// a new one: none): only an upload gives one a file.
pub async fn settle_spec(
    state: &AppState,
    who: &Principal,
    owner: Option<&str>,
    before: Option<&Model>,
    mut spec: easel_core::model::ModelSpec,
) -> Result<easel_core::model::ModelSpec> {
    let shown_before = before.map(|m| m.examples.as_slice()).unwrap_or_default();
    if owner.is_some() && spec.source.as_deref() != before.and_then(|m| m.source.as_deref()) {
        return Err(Error::invalid(
            "source",
            "a user's model has no file of its own (a LoRA's is set by its upload)",
        ));
    }
    // What the owner may see bounds what their model runs, whoever writes it (an admin
    // editing a user's model included).
    let owner_view = as_user(owner, who);
    let d = &spec.defaults;
    let probe = easel_core::generate::GenerateInput {
        prompt: "defaults".into(),
        width: d.width,
        height: d.height,
        steps: d.steps,
        guidance: d.guidance,
        scheduler: d.scheduler.clone(),
        ..Default::default()
    };
    probe
        .validate("txt2img", &state.limits)
        .and_then(|()| probe.check_limits(&state.limits, &Default::default()))
        .map_err(|e| e.under("defaults"))?;
    if let Some(name) = spec.base_model.clone() {
        let named = find_model(state, Some(&owner_view), &name)
            .await?
            .ok_or_else(|| Error::invalid("base_model", format!("no model named `{name}`")))?;
        if named.is_lora() {
            return Err(Error::invalid(
                "base_model",
                format!("`{name}` is a LoRA: name it in `loras`"),
            ));
        }
        let base = runs_on(state, &named)
            .await
            .map_err(|e| e.with_field("base_model"))?;
        if named.base_model.is_some() {
            let mut loras = named.loras.clone();
            loras.append(&mut spec.loras);
            spec.loras = loras;
            spec.defaults = spec.defaults.over(&named.defaults);
            spec.limits = spec.limits.within(&named.limits);
        }
        if base.owner_id.is_some() || base.base_model.is_some() {
            return Err(Error::invalid(
                "base_model",
                "a composition runs a model of the server's",
            ));
        }
        spec.base_model = Some(base.id.clone());
        spec.family = base.family.clone();
        spec.tasks = base.tasks.clone();
        for (i, l) in spec.loras.iter_mut().enumerate() {
            let found = find_lora(state, &owner_view, &l.model)
                .await?
                .filter(|m| owner.is_some() || m.owner_id.is_none())
                .ok_or_else(|| {
                    Error::invalid(
                        format!("loras[{i}].model"),
                        format!("no LoRA named `{}`", l.model),
                    )
                })?;
            l.model = found.job_name().to_string();
        }
    }
    // A user's model shows its owner's assets; a server's model its writer's, or public
    // and unlisted ones (and those it already shows, another admin's included).
    for (i, id) in spec.examples.iter().enumerate() {
        let ok = easel_store::assets::get(&state.store.db, id)
            .await?
            .is_some_and(|a| match owner {
                Some(o) => a.owner_id == o,
                None => {
                    a.owner_id == who.user_id
                        || a.privacy != easel_core::asset::Privacy::Private
                        || shown_before.contains(id)
                }
            });
        if !ok {
            return Err(Error::invalid(
                format!("examples[{i}]"),
                format!("asset {id} not found among the model owner's assets"),
            ));
        }
    }
    Ok(spec)
}

/// A model `who` may see (`None`: a caller without a key) by id, name or alias, or 404 (as
/// if absent).
pub async fn visible_model(state: &AppState, who: Option<&Principal>, id: &str) -> Result<Model> {
    find_model(state, who, id)
        .await?
        .ok_or_else(|| Error::not_found("model"))
}

/// A model `who` may change (its owner; admins any): 404 for one they cannot see, 403 for
/// one they see but do not own.
pub async fn editable_model(state: &AppState, who: &Principal, id: &str) -> Result<Model> {
    let m = visible_model(state, Some(who), id).await?;
    if !m.editable_by(who) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            if m.owner_id.is_none() {
                "only admins change the server's models"
            } else {
                "only its owner changes a user's model"
            },
        ));
    }
    Ok(m)
}

/// A model's default preset, if it has one.
pub async fn default_preset(
    state: &AppState,
    model_id: &str,
) -> Result<Option<easel_core::preset::Preset>> {
    Ok(easel_store::models::presets(&state.store.db, model_id)
        .await?
        .into_iter()
        .find(|p| p.is_default))
}

/// Delete a model (`easel_store::models::delete`: its names, presets and a user's LoRA's
/// blob) and this process's copy of its file; false when it was gone already.
pub async fn delete_model(state: &AppState, m: &Model) -> Result<bool> {
    let deleted = easel_store::models::delete(&state.store, &m.id).await?;
    if m.blob_key().is_some() {
        state.engine.forget_lora(&m.id).await;
    }
    Ok(deleted)
}

/// Apply a patch to a model `who` may edit (the checks of a create).
pub async fn save_model(
    state: &AppState,
    who: &Principal,
    m: &Model,
    patch: ModelPatch,
) -> Result<Model> {
    let keep_examples = patch.examples.is_none();
    let set_privacy = patch.privacy.is_some();
    let mut spec: ModelSpec = m.spec().patched(patch);
    if !set_privacy {
        // As it is when the update commits, not as it was read.
        spec.privacy = None;
    }
    if keep_examples {
        // Examples whose assets were deleted since, or are no longer the owner's, drop out.
        let mut kept = Vec::new();
        for a in spec.examples.drain(..) {
            if easel_store::assets::get(&state.store.db, &a)
                .await?
                .is_some_and(|x| m.owner_id.as_ref().is_none_or(|o| x.owner_id == *o))
            {
                kept.push(a);
            }
        }
        spec.examples = kept;
    }
    if m.owner_id.is_none() {
        spec.check_paths(state.engine.model_roots())?;
    }
    let spec = settle_spec(state, who, m.owner_id.as_deref(), Some(m), spec).await?;
    easel_store::models::update_from(&state.store.db, m, &spec).await
}

#[derive(serde::Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CopyModel {
    /// The copy's name (default: the model's).
    #[serde(default)]
    pub name: Option<String>,
    /// Default `private`.
    #[serde(default)]
    pub privacy: Option<Privacy>,
    /// Keep the model's example assets (they must be the caller's own). Default false.
    #[serde(default)]
    pub copy_examples: bool,
}

/// Copy `m` into a model of `who`'s own.
pub async fn copy_model(
    state: &AppState,
    who: &Principal,
    m: &Model,
    req: CopyModel,
) -> Result<Model> {
    if m.is_lora() {
        return Err(Error::invalid(
            "id",
            "a LoRA is applied, not copied into a model",
        ));
    }
    let mut spec = ModelSpec {
        name: req.name.unwrap_or_else(|| m.name.clone()),
        base_model: Some(m.base_model.clone().unwrap_or_else(|| m.id.clone())),
        loras: m.loras.clone(),
        defaults: m.defaults.clone(),
        limits: m.limits.clone(),
        description: m.description.clone(),
        short_description: m.short_description.clone(),
        tags: m.tags.clone(),
        icon: m.icon.clone(),
        examples: if req.copy_examples {
            m.examples.clone()
        } else {
            vec![]
        },
        privacy: Some(req.privacy.unwrap_or_default()),
        ..ModelSpec::new("")
    };
    easel_core::model::check_title("name", &spec.name)?;
    spec = settle_spec(state, who, Some(&who.user_id), None, spec).await?;
    easel_store::models::copy(&state.store.db, &m.id, &spec, &who.user_id).await
}

/// Give `m` to the user `to` names (an id or a name); `field` names `to` in errors.
pub async fn transfer_model(state: &AppState, m: &Model, field: &str, to: &str) -> Result<Model> {
    if m.owner_id.is_none() {
        return Err(Error::invalid(
            field,
            "the server's models belong to no user: copy it instead",
        ));
    }
    let db = &state.store.db;
    let user = match easel_store::users::get_user(db, to).await? {
        Some(u) => Some(u),
        None => easel_store::users::user_by_name(db, to).await?,
    }
    .ok_or_else(|| Error::invalid(field, format!("no user `{to}`")))?;
    // Examples are their owner's assets: those that are not the new owner's stay behind.
    let mut keep = Vec::new();
    for a in &m.examples {
        if easel_store::assets::get(db, a)
            .await?
            .is_some_and(|a| a.owner_id == user.id)
        {
            keep.push(a.clone());
        }
    }
    if keep != m.examples {
        let mut spec = m.spec();
        spec.examples = keep;
        spec.privacy = None;
        easel_store::models::update_from(db, m, &spec).await?;
    }
    easel_store::models::transfer(db, &m.id, &user.id).await
}

/// The model that runs `m`: its base for a composition, else `m`.
pub async fn runs_on(
    state: &AppState,
    m: &easel_core::model::Model,
) -> Result<easel_core::model::Model> {
    match &m.base_model {
        None => Ok(m.clone()),
        Some(base) => easel_store::models::get(&state.store.db, base)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "model",
                    format!(
                        "the model `{}` runs a model that was removed ({base})",
                        m.name
                    ),
                )
            }),
    }
}

/// How `prompt` fits the text encoder of a model `who` sees (a composition: its base's),
/// from the model's tokenizer alone (`easel_providers::diffusion::prompt_check`). A prompt
/// over the server's length limit is 422 naming `prompt`; a model without local weights 422
/// naming `model`.
pub async fn prompt_check(
    state: &AppState,
    who: &Principal,
    model: &str,
    prompt: &str,
) -> Result<(Model, easel_core::model::PromptCheck)> {
    let m = visible_model(state, Some(who), model).await?;
    if m.is_lora() {
        return Err(Error::invalid(
            "model",
            "a LoRA has no text encoder of its own: check the prompt against the model it is \
             applied to",
        ));
    }
    if prompt.chars().count() > state.limits.max_prompt_chars {
        return Err(Error::invalid(
            "prompt",
            format!("at most {} characters", state.limits.max_prompt_chars),
        ));
    }
    let runs = runs_on(state, &m).await?;
    let roots = state.engine.model_roots().to_vec();
    let prompt = prompt.to_string();
    let check = tokio::task::spawn_blocking(move || {
        easel_providers::diffusion::prompt_check(&runs, &roots, &prompt)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    Ok((m, check))
}

/// The server's models (paged through): what runs when a request names no model.
pub async fn all_models(state: &AppState) -> Result<Vec<easel_core::model::Model>> {
    models_of(state, easel_store::models::Scope::Server).await
}

/// Every model of a scope (paged through).
pub async fn models_of(
    state: &AppState,
    scope: easel_store::models::Scope<'_>,
) -> Result<Vec<easel_core::model::Model>> {
    const PAGE: u32 = 1000;
    let mut out = Vec::new();
    let mut skip = 0;
    loop {
        let (page, total) = easel_store::models::list(&state.store.db, scope, skip, PAGE).await?;
        let n = page.len() as u32;
        out.extend(page);
        skip += n;
        if n < PAGE || u64::from(skip) >= total {
            return Ok(out);
        }
    }
}

/// The model a request that names none runs: one that does `task` (not a LoRA) and can run
/// here, of `families` when given (earlier families first), recommended first, then by name.
pub async fn pick_model(
    state: &AppState,
    task: &str,
    families: Option<&[&str]>,
) -> Result<Option<easel_core::model::Model>> {
    use easel_core::model::Model;
    let rank = |m: &Model| {
        families
            .map(|f| f.iter().position(|x| *x == m.family).unwrap_or(usize::MAX))
            .unwrap_or(0)
    };
    let mut fit: Vec<Model> = all_models(state)
        .await?
        .into_iter()
        .filter(|m| !m.is_lora() && m.tasks.iter().any(|t| t == task))
        .filter(|m| rank(m) != usize::MAX && easel_providers::check_runnable(m).is_ok())
        .collect();
    fit.sort_by(|a, b| {
        b.recommended
            .cmp(&a.recommended)
            .then(rank(a).cmp(&rank(b)))
            .then(a.name.cmp(&b.name))
    });
    Ok(fit.into_iter().next())
}

/// The model a generation task uses when the request names none (`pick_model`), or a 422
/// on `model` saying how to install one.
pub async fn default_model(state: &AppState, task: &str) -> Result<easel_core::model::Model> {
    let mut found = pick_model(state, task, None).await?;
    if found.is_none() && rescan_on_miss(state, None).await? {
        found = pick_model(state, task, None).await?;
    }
    found.ok_or_else(|| {
        Error::invalid(
            "model",
            format!(
                "no model for `{task}` is installed: put a diffusers folder or a .safetensors \
                 checkpoint in <data-dir>/models/, or run `easel models pull <repo>`"
            ),
        )
    })
}

/// Register what is in `<data-dir>/models/` (`discover::scan`), one scan at a time, and
/// remember the folder's modification time it saw. Returns the number found.
pub async fn rescan(state: &AppState) -> Result<usize> {
    let mut seen = state.models_seen.lock().await;
    let modified = models_dir_modified(state);
    let n = easel_providers::discover::scan(&state.store.db, &state.models_dir).await?;
    // Only after a scan that worked: a failed one is tried again by the next miss.
    *seen = modified;
    Ok(n)
}

fn models_dir_modified(state: &AppState) -> Option<std::time::SystemTime> {
    std::fs::metadata(&state.models_dir)
        .and_then(|m| m.modified())
        .ok()
}

/// On a request that names a model the registry lacks (`name`), or needs one and finds
/// none: scan again when the models folder changed since the last scan (adding or removing
/// an entry changes its time), or when an entry of that name is there (a folder still being
/// copied at the last scan). Nothing when the server does not scan (`--scan-models` off).
/// Returns whether it scanned.
pub async fn rescan_on_miss(state: &AppState, name: Option<&str>) -> Result<bool> {
    if !state.scan_models {
        return Ok(false);
    }
    let named_entry = name.is_some_and(|n| {
        easel_core::model::check_name("model", n).is_ok()
            && [n.to_string(), format!("{n}.safetensors")]
                .iter()
                .any(|e| state.models_dir.join(e).exists())
    });
    let changed = {
        let seen = state.models_seen.lock().await;
        let now = models_dir_modified(state);
        now.is_some() && *seen != now
    };
    if !(changed || named_entry) {
        return Ok(false);
    }
    let n = rescan(state).await?;
    tracing::info!(found = n, dir = %state.models_dir.display(), "scanned the models folder for a model a request named");
    Ok(true)
}

/// Validate image bytes (decoded in full, within the pixel limit) and store them as an
/// upload asset (derived from `parent_id`, when given): blob first, then the row.
pub async fn store_upload(
    state: &AppState,
    who: &Principal,
    bytes: Bytes,
    metadata: serde_json::Value,
    parent_id: Option<&str>,
) -> Result<Asset> {
    store_upload_into(state, who, bytes, metadata, parent_id, &[], false).await
}

/// `store_upload`, the row added to `collections` (the caller's, checked by the caller) in
/// its transaction, and `hidden` from its owner's lists when asked.
pub async fn store_upload_into(
    state: &AppState,
    who: &Principal,
    bytes: Bytes,
    metadata: serde_json::Value,
    parent_id: Option<&str>,
    collections: &[String],
    hidden: bool,
) -> Result<Asset> {
    let mut asset = image_asset(state, &who.user_id, &bytes, metadata, parent_id).await?;
    asset.hidden = hidden;
    let key = blob_key(&asset.owner_id, &asset.id);
    easel_store::intents::put(&state.store, &asset.id, &key, bytes).await?;
    asset.root_id = easel_store::assets::insert_into(&state.store.db, &asset, collections).await?;
    Ok(asset)
}

/// The record of an uploaded image, validated (decoded in full, within the pixel limit;
/// errors name `file`), with a new id; nothing is written.
pub async fn image_asset(
    state: &AppState,
    owner_id: &str,
    bytes: &Bytes,
    metadata: serde_json::Value,
    parent_id: Option<&str>,
) -> Result<Asset> {
    if bytes.is_empty() {
        return Err(Error::invalid("file", "the upload is empty"));
    }
    let max_pixels = state.limits.max_pixels;
    let data = bytes.clone();
    let info = tokio::task::spawn_blocking(move || {
        let info = easel_imageops::probe(&data)?;
        easel_imageops::decode(&data, max_pixels)?;
        Ok::<_, easel_imageops::OpsError>(info)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| match e {
        easel_imageops::OpsError::TooLarge { .. } => {
            Error::new(ErrorKind::PayloadTooLarge, e.to_string()).with_field("file")
        }
        e => Error::invalid(
            "file",
            format!("not a supported image (PNG, JPEG, WebP, GIF, BMP): {e}"),
        ),
    })?;
    check_size("file", info.width, info.height, &state.limits)?;
    let now = time::now();
    Ok(Asset {
        id: easel_core::id::new(easel_core::id::ASSET),
        owner_id: owner_id.to_string(),
        job_id: None,
        output_index: None,
        kind: AssetKind::Upload,
        mime_type: info.format.mime().to_string(),
        width: Some(info.width),
        height: Some(info.height),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        // A name the client gave (Scenario's uploads) is the record's name.
        name: metadata
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string),
        description: None,
        privacy: Default::default(),
        hidden: false,
        metadata,
        parent_id: parent_id.map(str::to_string),
        root_id: None,
        created_at: now,
        updated_at: now,
    })
}

/// Absolute, signed URL of an asset's content.
pub fn asset_url(state: &AppState, asset_id: &str) -> String {
    let now = chrono::Utc::now();
    let expires = now.timestamp() + state.signed_url_ttl.as_secs() as i64;
    format!(
        "{}/v1/assets/{asset_id}/content?{}",
        state.public_url,
        state
            .signer
            .query(asset_id, now.timestamp_millis(), expires)
    )
}

/// Add and remove tags of one of the caller's assets, as every API does: tags checked
/// (`check_tags`, errors naming `add`/`delete`), then `easel_store::tags::change`.
pub async fn change_tags(
    state: &AppState,
    who: &Principal,
    asset_id: &str,
    add: &[String],
    delete: &[String],
    strict: bool,
) -> Result<easel_store::tags::Changed> {
    let a = owned_asset(state, who, asset_id).await?;
    let check = easel_core::asset::check_tags;
    let (add, delete) = (check("add", add)?, check("delete", delete)?);
    easel_store::tags::change(&state.store.db, &a.owner_id, &a.id, &add, &delete, strict).await
}

/// The caller's collection, or 404 (admins see every one).
pub async fn owned_collection(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<easel_core::asset::Collection> {
    easel_store::collections::get(&state.store.db, id)
        .await?
        .filter(|c| c.owner_id == who.user_id || who.is_admin())
        .ok_or_else(|| Error::not_found("collection"))
}

/// Check a change of a collection's items of one kind, as every API does, before any is
/// applied: at most `MAX_COLLECTION_CHANGE` per list (422 on the list's field); added assets
/// must be the caller's, added models ones the caller sees (errors name `field[i]`).
/// Returns the ids to add and to remove (models by registry id); removing what is not there
/// changes nothing.
pub async fn collection_items(
    state: &AppState,
    who: &Principal,
    kind: easel_store::collections::Kind,
    (add, add_field): (&[String], &str),
    (remove, remove_field): (&[String], &str),
) -> Result<(Vec<String>, Vec<String>)> {
    use easel_core::asset::MAX_COLLECTION_CHANGE;
    use easel_store::collections::Kind;
    for (field, list) in [(add_field, add), (remove_field, remove)] {
        if list.len() > MAX_COLLECTION_CHANGE {
            return Err(Error::invalid(
                field,
                format!("at most {MAX_COLLECTION_CHANGE} at once"),
            ));
        }
    }
    let db = &state.store.db;
    Ok(match kind {
        Kind::Asset => {
            for (i, a) in add.iter().enumerate() {
                owned_asset(state, who, a)
                    .await
                    .map_err(|e| e.with_field(format!("{add_field}[{i}]")))?;
            }
            (add.to_vec(), remove.to_vec())
        }
        Kind::Model => {
            let mut ids = Vec::new();
            for (i, m) in add.iter().enumerate() {
                let found = find_model(state, Some(who), m).await?.ok_or_else(|| {
                    Error::invalid(format!("{add_field}[{i}]"), format!("no model `{m}`"))
                })?;
                ids.push(found.id);
            }
            let mut gone = Vec::new();
            for m in remove {
                gone.push(match easel_store::models::resolve(db, m).await? {
                    Some(found) => found.id,
                    None => m.clone(),
                });
            }
            (ids, gone)
        }
    })
}

/// An asset anyone may read without a key: public or unlisted, and not hidden (a private
/// or hidden one is "not found", as if absent).
pub async fn public_asset(state: &AppState, id: &str) -> Result<Asset> {
    easel_store::assets::get(&state.store.db, id)
        .await?
        .filter(|a| a.privacy != easel_core::asset::Privacy::Private && !a.hidden)
        .ok_or_else(|| Error::not_found("asset"))
}

/// Whose records a list shows: the caller's own when `owner` is absent; admins may name
/// `all` (`None`: everyone's) or a user id; anyone else naming an owner is refused.
pub fn owner_scope(who: &Principal, owner: Option<&str>) -> Result<Option<String>> {
    match owner {
        None => Ok(Some(who.user_id.clone())),
        Some(o) if o == who.user_id => Ok(Some(o.to_string())),
        Some(_) if !who.is_admin() => Err(Error::new(
            easel_core::ErrorKind::Forbidden,
            "only admins can see other users' records (`owner`)",
        )),
        Some("all") => Ok(None),
        Some(id) => Ok(Some(id.to_string())),
    }
}

/// A job of the caller (admins see every job); others' jobs are "not found".
pub async fn owned_job(state: &AppState, who: &Principal, id: &str) -> Result<Job> {
    easel_store::jobs::get(&state.store.db, id)
        .await?
        .filter(|j| who.is_admin() || j.owner_id == who.user_id)
        .ok_or_else(|| Error::not_found("job"))
}

/// An asset of the caller (admins see every asset).
pub async fn owned_asset(state: &AppState, who: &Principal, id: &str) -> Result<Asset> {
    easel_store::assets::get(&state.store.db, id)
        .await?
        .filter(|a| who.is_admin() || a.owner_id == who.user_id)
        .ok_or_else(|| Error::not_found("asset"))
}

/// One of the caller's own assets, named in a request's `field` (admins included: what is
/// made from it will be theirs); another's or a missing one is 422 naming `field`, the same
/// answer for both.
pub async fn caller_asset(
    state: &AppState,
    who: &Principal,
    field: &str,
    id: &str,
) -> Result<Asset> {
    easel_store::assets::get(&state.store.db, id)
        .await?
        .filter(|a| a.owner_id == who.user_id)
        .ok_or_else(|| Error::invalid(field, format!("asset {id} not found")))
}

/// Wait up to `timeout` for a job to end (the queue's long-poll); returns it as it is then.
pub async fn wait_job(state: &AppState, job: Job, timeout: Duration) -> Result<Job> {
    if job.status.is_terminal() || timeout.is_zero() {
        return Ok(job);
    }
    Ok(state
        .queue
        .wait_terminal(&job.id, timeout)
        .await?
        .unwrap_or(job))
}

/// One output image of a job, ready for a dialect's response.
pub struct OutputImage {
    pub asset: Asset,
    /// Signed URL of the content (no key needed until it expires).
    pub url: String,
    /// The content, base64-encoded (when asked for).
    pub base64: Option<String>,
}

/// A job's outputs, in output order, with signed URLs and, when `base64`, their content.
pub async fn job_outputs(state: &AppState, job: &Job, base64: bool) -> Result<Vec<OutputImage>> {
    let mut out = Vec::with_capacity(job.outputs.len());
    for id in &job.outputs {
        // An output deleted since the job was read is absent, as it is from the job itself.
        let Some(asset) = easel_store::assets::get(&state.store.db, id).await? else {
            continue;
        };
        let base64 = if base64 {
            let bytes = match state
                .store
                .blobs
                .get(&blob_key(&asset.owner_id, &asset.id))
                .await
            {
                Ok(b) => b,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            Some(base64::engine::general_purpose::STANDARD.encode(&bytes))
        } else {
            None
        };
        out.push(OutputImage {
            url: asset_url(state, &asset.id),
            asset,
            base64,
        });
    }
    Ok(out)
}

/// Where an input image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An asset id (the caller's: checked when it is used).
    Asset(String),
    /// Bytes sent with the request (a `data:` URL or a file part).
    Bytes(Bytes),
    /// An http(s) URL elsewhere, fetched when it is used (`FetchImages` allowing).
    Url(String),
}

/// Which image URLs requests may name for the server to fetch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FetchImages {
    /// None: `data:` URLs, asset ids and this server's asset URLs only.
    Off,
    /// http(s) URLs whose host resolves only to public addresses (not loopback, private,
    /// link-local, unique-local or otherwise special), connected to the address checked, so
    /// a name cannot be re-pointed between the check and the fetch. Redirects (at most 3)
    /// are checked the same way.
    #[default]
    Public,
    /// Any http(s) URL (a trusted network, tests).
    Any,
}

impl FetchImages {
    pub fn parse(s: &str) -> Option<FetchImages> {
        match s {
            "off" => Some(FetchImages::Off),
            "public" => Some(FetchImages::Public),
            "any" => Some(FetchImages::Any),
            _ => None,
        }
    }
}

/// Longest wait for a remote image.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetch a remote image under the server's policy and limits: http(s) only, at most
/// `max_body_bytes`, within 30 s, redirects followed (at most 3) under the same checks.
pub async fn fetch_image(state: &AppState, field: &str, url: &str) -> Result<Bytes> {
    fetch_url(
        state,
        field,
        url,
        "image",
        state.limits.max_body_bytes as u64,
        FETCH_TIMEOUT,
    )
    .await
}

/// Fetch what `url` points at under the server's fetch policy (`--fetch-images`; redirects
/// followed and each checked, at most 3): at most `max` bytes (413 naming `field` beyond),
/// within `timeout`; other errors are 422 naming `field`.
async fn fetch_url(
    state: &AppState,
    field: &str,
    url: &str,
    what: &str,
    max: u64,
    timeout: Duration,
) -> Result<Bytes> {
    let bad = |msg: String| Error::invalid(field, msg);
    if state.fetch_images == FetchImages::Off {
        return Err(bad(format!(
            "this server does not fetch URLs (--fetch-images off); send the {what} itself"
        )));
    }
    let policy = match state.fetch_images {
        FetchImages::Any => easel_net::Policy::any(),
        _ => easel_net::Policy::public(),
    };
    let mut url = url.to_string();
    for _ in 0..4 {
        let parsed = reqwest::Url::parse(&url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let target = policy
            .resolve(&parsed)
            .await
            .map_err(|e| bad(e.explained("--fetch-images any allows others")))?;
        let client = target
            .client()
            .timeout(timeout)
            .user_agent(concat!("easel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let resp = client
            .get(parsed.clone())
            .send()
            .await
            .map_err(|e| bad(format!("fetching {url}: {e}")))?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| parsed.join(l).ok())
                .ok_or_else(|| bad(format!("{url} redirects nowhere")))?;
            url = next.to_string();
            continue;
        }
        if !resp.status().is_success() {
            return Err(bad(format!(
                "fetching {url}: HTTP {}",
                resp.status().as_u16()
            )));
        }
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("the {what} at {url} is over {max} bytes"),
            )
            .with_field(field));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| bad(format!("fetching {url}: {e}")))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > max {
                return Err(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!("the {what} at {url} is over {max} bytes"),
                )
                .with_field(field));
            }
        }
        return Ok(Bytes::from(body));
    }
    Err(bad(format!("{url}: more than 3 redirects")))
}

/// Read an image reference as dialects send it: an asset id, a `data:` URL, or a URL of one
/// of this server's assets (`<public-url>/v1/assets/{id}` or `…/{id}/content`, signed or
/// not). Other URLs are refused with a clear error: this server does not fetch remote images.
pub fn image_source(state: &AppState, field: &str, s: &str) -> Result<ImageSource> {
    let s = s.trim();
    if s.starts_with("http://") || s.starts_with("https://") {
        let ours = s
            .strip_prefix(state.public_url.as_str())
            .and_then(|rest| rest.strip_prefix("/v1/assets/"))
            .map(|rest| rest.split(['?', '#']).next().unwrap_or(""))
            .map(|path| path.strip_suffix("/content").unwrap_or(path))
            .filter(|id| easel_core::id::is_valid(easel_core::id::ASSET, id));
        return match ours {
            Some(id) => Ok(ImageSource::Asset(id.to_string())),
            None if state.fetch_images != FetchImages::Off => Ok(ImageSource::Url(s.to_string())),
            None => Err(Error::invalid(
                field,
                format!(
                    "remote image URLs are not fetched by this server (--fetch-images off); \
                     send a data: URL, an asset id, or the URL of an asset of this server \
                     ({}/v1/assets/…; upload with POST /v1/assets)",
                    state.public_url
                ),
            )),
        };
    }
    match ImageRef::parse(s).map_err(|e| e.with_field(field))? {
        ImageRef::Asset(id) => Ok(ImageSource::Asset(id)),
        ImageRef::Data { bytes, .. } => Ok(ImageSource::Bytes(Bytes::from(bytes))),
    }
}

/// A URL source fetched (once), so later uses read its bytes; other sources as they are.
pub async fn fetched(state: &AppState, field: &str, src: ImageSource) -> Result<ImageSource> {
    match src {
        ImageSource::Url(u) => Ok(ImageSource::Bytes(fetch_image(state, field, &u).await?)),
        other => Ok(other),
    }
}

/// The bytes of an image source; an asset must be the caller's.
pub async fn source_bytes(
    state: &AppState,
    who: &Principal,
    field: &str,
    src: &ImageSource,
) -> Result<Bytes> {
    match src {
        ImageSource::Bytes(b) => Ok(b.clone()),
        ImageSource::Url(u) => fetch_image(state, field, u).await,
        ImageSource::Asset(id) => {
            let a = caller_asset(state, who, field, id).await?;
            asset_content(&state.store, &a).await
        }
    }
}

/// An image source as an asset id for a task's input: bytes are validated and stored as an
/// upload of the caller (errors name `field`); an asset id is passed on (`submit` checks it
/// is the caller's).
pub async fn source_asset(
    state: &AppState,
    who: &Principal,
    field: &str,
    src: ImageSource,
) -> Result<String> {
    let (bytes, source) = match src {
        ImageSource::Asset(id) => return Ok(id),
        ImageSource::Bytes(b) => (b, serde_json::json!({})),
        ImageSource::Url(u) => (
            fetch_image(state, field, &u).await?,
            serde_json::json!({ "source_url": u }),
        ),
    };
    Ok(store_upload(state, who, bytes, source, None)
        .await
        .map_err(|e| refield(e, "file", field))?
        .id)
}

/// An inpainting mask (white = repaint) from an image whose transparent pixels mark the
/// area to edit, stored as an upload of the caller; `None` when no pixel is transparent.
pub async fn mask_from_transparency(
    state: &AppState,
    who: &Principal,
    field: &str,
    bytes: Bytes,
) -> Result<Option<Asset>> {
    let max_pixels = state.limits.max_pixels;
    let f = field.to_string();
    let png = tokio::task::spawn_blocking(move || {
        let img = easel_imageops::decode(&bytes, max_pixels).map_err(|e| match e {
            easel_imageops::OpsError::TooLarge { .. } => {
                Error::new(ErrorKind::PayloadTooLarge, e.to_string()).with_field(&f)
            }
            e => Error::invalid(&f, format!("not a supported image: {e}")),
        })?;
        match easel_imageops::mask_from_alpha(&img) {
            None => Ok(None),
            Some(mask) => easel_imageops::encode(
                &easel_imageops::image::DynamicImage::ImageLuma8(mask),
                &easel_imageops::Encoding::Png,
                &[],
            )
            .map(Some)
            .map_err(|e| Error::internal(format!("encoding the mask: {e}"))),
        }
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    match png {
        None => Ok(None),
        Some(png) => Ok(Some(
            store_upload(
                state,
                who,
                Bytes::from(png),
                serde_json::json!({"derived": "mask_from_alpha"}),
                None,
            )
            .await
            .map_err(|e| refield(e, "file", field))?,
        )),
    }
}

/// Delete an asset of the caller: the row (with an intent for its blob), then the blob; a
/// canvas with its thumbnail. A canvas under a live lock stays (409 naming the holder).
pub async fn delete_asset(state: &AppState, a: &Asset) -> Result<()> {
    if easel_store::assets::delete(&state.store.db, &a.id).await? {
        let blob = [(a.id.clone(), blob_key(&a.owner_id, &a.id))];
        easel_store::intents::remove(&state.store, &blob).await?;
    }
    // A canvas's thumbnails go with it: every image made as one of its thumbnails (the
    // current one, and any a racing save left behind).
    if a.kind == AssetKind::Canvas {
        let children = easel_store::assets::list(
            &state.store.db,
            &easel_store::assets::AssetFilter {
                owner_id: a.owner_id.clone(),
                parent_id: Some(a.id.clone()),
                limit: 1000,
                ..Default::default()
            },
        )
        .await?;
        for t in children
            .iter()
            .filter(|t| t.metadata["thumbnail_of"].as_str() == Some(a.id.as_str()))
        {
            Box::pin(delete_asset(state, t)).await?;
        }
    }
    Ok(())
}

/// The same error, naming `to` where it named `from`.
pub fn refield(e: Error, from: &str, to: &str) -> Error {
    if e.field.as_deref() == Some(from) {
        e.with_field(to)
    } else {
        e
    }
}

/// A part's upload URL (signed: it needs no key) and when it stops working.
pub struct PartUrl {
    pub number: u32,
    pub url: String,
    pub expires: time::Timestamp,
}

/// What a part URL signs: its purpose, the upload and the part's number (an asset's URL
/// signs the bare asset id, an archive's `archive:` and the download: no URL opens another
/// kind of thing).
fn part_subject(upload_id: &str, number: u32) -> String {
    format!("part:{upload_id}/{number}")
}

fn archive_subject(download_id: &str) -> String {
    format!("archive:{download_id}")
}

fn bad_signature() -> Error {
    Error::new(
        ErrorKind::Unauthorized,
        "the signed URL is invalid, expired or revoked",
    )
}

/// A signed URL's signature of `subject` holds and has not expired (401 otherwise).
pub fn check_signature(
    state: &AppState,
    subject: &str,
    expires: i64,
    issued_ms: i64,
    sig: &str,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    if state.signer.verify(subject, expires, issued_ms, sig, now) {
        Ok(())
    } else {
        Err(bad_signature())
    }
}

/// A signed URL issued at `issued_ms` for something of `owner_id` was not revoked with the
/// owner's keys (401 otherwise).
pub async fn check_unrevoked(state: &AppState, owner_id: &str, issued_ms: i64) -> Result<()> {
    let revoked = easel_store::users::keys_revoked_at(&state.store.db, owner_id).await?;
    if revoked.is_some_and(|r| issued_ms <= r) {
        return Err(bad_signature());
    }
    Ok(())
}

/// Check an announced upload (`UploadSpec::validate`; the parent and the collections must be
/// the caller's, else 422 naming `parent_id` / `collection_ids[i]`) and record it.
pub async fn create_upload(
    state: &AppState,
    who: &Principal,
    spec: easel_core::upload::UploadSpec,
) -> Result<easel_core::upload::Upload> {
    spec.validate(&state.limits)?;
    check_upload_options(state, who, &spec.options).await?;
    check_open_uploads(state, who).await?;
    let upload = easel_core::upload::Upload::new(&who.user_id, spec);
    easel_store::uploads::create(&state.store.db, &upload).await?;
    Ok(upload)
}

/// At most `MAX_OPEN_UPLOADS` of a user's uploads open (in parts or imports): 429 beyond.
async fn check_open_uploads(state: &AppState, who: &Principal) -> Result<()> {
    use easel_core::upload::MAX_OPEN_UPLOADS;
    if easel_store::uploads::open_count(&state.store.db, &who.user_id).await? >= MAX_OPEN_UPLOADS {
        return Err(Error::new(
            ErrorKind::RateLimited,
            format!(
                "at most {MAX_OPEN_UPLOADS} uploads may be open at once: complete or delete some"
            ),
        ));
    }
    Ok(())
}

async fn check_upload_options(
    state: &AppState,
    who: &Principal,
    o: &easel_core::upload::UploadOptions,
) -> Result<()> {
    // The uploader's own, admins included: the asset will be theirs.
    if let Some(p) = &o.parent_id {
        caller_asset(state, who, "parent_id", p).await?;
    }
    check_own_collections(state, who, &o.collection_ids).await
}

/// Collections a new asset of the caller goes into: each the caller's own (admins too: the
/// asset will be theirs); errors name `collection_ids[i]`.
pub async fn check_own_collections(
    state: &AppState,
    who: &Principal,
    collection_ids: &[String],
) -> Result<()> {
    for (i, c) in collection_ids.iter().enumerate() {
        easel_store::collections::get(&state.store.db, c)
            .await?
            .filter(|c| c.owner_id == who.user_id)
            .ok_or_else(|| {
                Error::invalid(
                    format!("collection_ids[{i}]"),
                    format!("collection {c} not found"),
                )
            })?;
    }
    Ok(())
}

/// One of the caller's uploads (an admin's: any); 404 otherwise.
pub async fn owned_upload(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<easel_core::upload::Upload> {
    easel_store::uploads::get(&state.store.db, id)
        .await?
        .filter(|u| u.owner_id == who.user_id || who.is_admin())
        .ok_or_else(|| Error::not_found("upload"))
}

/// The signed URLs of a pending upload's parts (none once completion began), valid until it
/// expires.
pub fn part_urls(state: &AppState, u: &easel_core::upload::Upload) -> Vec<PartUrl> {
    if u.status != easel_core::upload::UploadStatus::Pending {
        return Vec::new();
    }
    let issued = chrono::Utc::now().timestamp_millis();
    let expires = u.expires_at.timestamp();
    (1..=u.parts_count)
        .map(|n| PartUrl {
            number: n,
            url: format!(
                "{}/v1/uploads/{}/parts/{n}?{}",
                state.public_url,
                u.id,
                state.signer.query(&part_subject(&u.id, n), issued, expires)
            ),
            expires: u.expires_at,
        })
        .collect()
}

/// The upload a part URL names, when its signature holds (not expired, issued after the
/// owner's last key revocation); 401 otherwise.
pub async fn signed_upload(
    state: &AppState,
    id: &str,
    number: u32,
    expires: i64,
    issued_ms: i64,
    sig: &str,
) -> Result<easel_core::upload::Upload> {
    check_signature(state, &part_subject(id, number), expires, issued_ms, sig)?;
    let u = easel_store::uploads::get(&state.store.db, id)
        .await?
        .ok_or_else(|| Error::not_found("upload"))?;
    check_unrevoked(state, &u.owner_id, issued_ms).await?;
    Ok(u)
}

/// Receive part `number` of an open upload.
pub async fn put_upload_part(
    state: &AppState,
    u: &easel_core::upload::Upload,
    number: u32,
    data: Bytes,
) -> Result<easel_core::upload::UploadPart> {
    u.check_part(number, data.len() as u64)?;
    easel_store::uploads::put_part(&state.store, u, number, data).await
}

/// Complete an upload: the parts must make the announced file (else 422 naming `parts`, and
/// it stays open); joined, validated as an image (a bad file fails the upload: 422 naming
/// `file`, its parts deleted) and stored as the caller's asset with the upload's options,
/// atomically with the upload's completion. Once completion begins no part changes;
/// completing a complete upload, or one another request is completing, answers it as it
/// stands. Two completions run at once in a process (each holds the file in memory).
pub async fn complete_upload(
    state: &AppState,
    u: easel_core::upload::Upload,
) -> Result<easel_core::upload::Upload> {
    use easel_core::upload::UploadStatus;
    static COMPLETIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    match u.status {
        UploadStatus::Complete => return Ok(u),
        UploadStatus::Failed => return closed_upload(state, &u.id).await,
        UploadStatus::Pending | UploadStatus::Validating => {}
    }
    if u.source_url.is_some() {
        return Err(Error::new(
            ErrorKind::Conflict,
            "the upload is an import being fetched: it completes by itself (poll it)",
        ));
    }
    let db = &state.store.db;
    let parts = easel_store::uploads::parts(db, &u.id).await?;
    u.check_complete(&parts)?;
    let _permit = COMPLETIONS
        .acquire()
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    if !easel_store::uploads::begin_validating(db, &u.id).await? {
        return closed_upload(state, &u.id).await;
    }
    // The parts cannot change now: check them again, as they are.
    let parts = easel_store::uploads::parts(db, &u.id).await?;
    if let Err(e) = u.check_complete(&parts) {
        easel_store::uploads::fail(&state.store, &u.id, &e.message).await?;
        return Err(e);
    }
    let data = easel_store::uploads::read_joined(&state.store, &u.id, u.file_size).await?;
    finish_upload(state, &u, data).await
}

/// Store `data` as what the upload makes — an image asset (`easel_store::uploads::finish`)
/// or a LoRA model (`finish_lora`) — or fail the upload when the file is not one.
async fn finish_upload(
    state: &AppState,
    u: &easel_core::upload::Upload,
    data: Bytes,
) -> Result<easel_core::upload::Upload> {
    if u.kind == easel_core::upload::UploadKind::Lora {
        return finish_lora(state, u, data).await;
    }
    let metadata = serde_json::json!({ "name": u.asset_name(), "upload_id": u.id });
    let parent = u.options.parent_id.as_deref();
    let asset = match image_asset(state, &u.owner_id, &data, metadata, parent).await {
        Ok(a) => Asset {
            hidden: u.options.hidden,
            ..a
        },
        Err(e) if matches!(e.kind, ErrorKind::Invalid | ErrorKind::PayloadTooLarge) => {
            easel_store::uploads::fail(&state.store, &u.id, &e.message).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let key = blob_key(&asset.owner_id, &asset.id);
    easel_store::intents::put(&state.store, &asset.id, &key, data).await?;
    // Collections deleted since the upload was announced are left out.
    let mut collections = Vec::new();
    for c in &u.options.collection_ids {
        if easel_store::collections::get(&state.store.db, c)
            .await?
            .is_some_and(|c| c.owner_id == u.owner_id)
        {
            collections.push(c.clone());
        }
    }
    match easel_store::uploads::finish(&state.store, &u.id, &asset, &collections).await {
        Ok((done, _)) => Ok(done),
        Err(e) if e.kind == ErrorKind::Conflict => {
            easel_store::intents::remove(&state.store, &[(asset.id.clone(), key)]).await?;
            closed_upload(state, &u.id).await
        }
        Err(e) => Err(e),
    }
}

/// Store `data` as the uploader's LoRA: a whole safetensors file of LoRA weights the engine
/// merges (`safetensors::check_lora`; else the upload fails, 422 naming `file`), its blob
/// written under an intent as
/// `models/<model id>.safetensors`, then the model (private, tagged `lora`, `source`
/// `blob:<key>`) and the upload's completion in one transaction.
async fn finish_lora(
    state: &AppState,
    u: &easel_core::upload::Upload,
    data: Bytes,
) -> Result<easel_core::upload::Upload> {
    // A header may be 100 MB of JSON: parsed off the runtime's threads.
    let bytes = data.clone();
    let checked = tokio::task::spawn_blocking(move || {
        easel_core::safetensors::check(&bytes)
            .and_then(|t| easel_core::safetensors::check_lora(&t))
            .map(|_| ())
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?;
    let model_id = easel_core::id::new(easel_core::id::MODEL);
    let key = easel_core::model::lora_blob_key(&model_id);
    let spec = ModelSpec::user_lora(u.model_name(), &key);
    if let Err(e) = checked.and_then(|()| spec.validate_as(true)) {
        easel_store::uploads::fail(&state.store, &u.id, &e.message).await?;
        return Err(e);
    }
    let size = data.len() as u64;
    easel_store::intents::put(&state.store, &model_id, &key, data).await?;
    match easel_store::uploads::finish_model(&state.store, &u.id, &model_id, &spec, size).await {
        Ok(done) => Ok(done),
        Err(e) if e.kind == ErrorKind::Conflict => {
            easel_store::intents::remove(&state.store, &[(model_id, key)]).await?;
            closed_upload(state, &u.id).await
        }
        // The blob stays under its intent: the collector deletes it unless the row
        // committed after all.
        Err(e) => Err(e),
    }
}

/// An upload another request completed, is completing or failed meanwhile: the first two
/// as they stand, a failure as a conflict saying why.
async fn closed_upload(state: &AppState, id: &str) -> Result<easel_core::upload::Upload> {
    use easel_core::upload::UploadStatus;
    let u = easel_store::uploads::get(&state.store.db, id)
        .await?
        .ok_or_else(|| Error::not_found("upload"))?;
    match u.status {
        UploadStatus::Complete | UploadStatus::Validating => Ok(u),
        _ => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "the upload is {}{}",
                u.status.as_str(),
                u.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Where an import comes from.
#[derive(Debug, Clone)]
pub enum ImportFrom {
    /// A URL, fetched under the server's fetch policy (`--fetch-images`).
    Url(String),
    /// A file of a repository of the Hugging Face hub (or the mirror `HF_ENDPOINT` names),
    /// through the binary's hub code: LoRAs only.
    Hub {
        repo: String,
        revision: Option<String>,
        file: Option<String>,
    },
}

/// Longest wait for a model file fetched from a URL.
const FETCH_FILE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Import a file as an upload; errors name `field` (the source: `url`, `hub`, …).
/// An image (by URL only, within the request body limit) is fetched at once and the upload
/// answered complete (or the error). A LoRA (by URL or from the hub, within the upload
/// limit) is fetched in the background: the upload is answered `validating` and becomes
/// `complete` naming its model, or `failed` saying why — poll it. It counts among the
/// caller's open uploads meanwhile (at most `MAX_IMPORTS` at once), may be deleted (the
/// fetch stops), and is touched every minute: one a stopped server left is failed by the
/// collector once untouched for `VALIDATING_STALE`, with nothing stored (the model's blob
/// is written only once the whole file is checked).
pub async fn import_upload(
    state: &AppState,
    who: &Principal,
    field: &str,
    from: ImportFrom,
    kind: easel_core::upload::UploadKind,
    options: easel_core::upload::UploadOptions,
) -> Result<easel_core::upload::Upload> {
    use easel_core::upload::UploadKind;
    options.validate(kind)?;
    check_upload_options(state, who, &options).await?;
    match (kind, from) {
        (UploadKind::Image, ImportFrom::Url(url)) => {
            import_image(state, who, field, &url, options).await
        }
        (UploadKind::Image, ImportFrom::Hub { .. }) => Err(Error::invalid(
            field,
            "the hub holds models: a hub import makes a LoRA (kind lora)",
        )),
        (UploadKind::Lora, from) => import_lora(state, who, field, from, options).await,
    }
}

async fn import_image(
    state: &AppState,
    who: &Principal,
    field: &str,
    url: &str,
    options: easel_core::upload::UploadOptions,
) -> Result<easel_core::upload::Upload> {
    let data = fetch_image(state, field, url).await?;
    let mut u = easel_core::upload::Upload::new(
        &who.user_id,
        easel_core::upload::UploadSpec {
            file_name: url_file_name(url).unwrap_or_else(|| "image".to_string()),
            content_type: "application/octet-stream".into(),
            file_size: data.len() as u64,
            parts: 1,
            kind: easel_core::upload::UploadKind::Image,
            options,
        },
    );
    u.source_url = Some(url.to_string());
    easel_store::uploads::create(&state.store.db, &u).await?;
    match finish_upload(state, &u, data).await {
        Ok(done) => Ok(done),
        Err(e) => {
            // A bad file failed it already; anything else fails it too (no pending row left).
            easel_store::uploads::fail(&state.store, &u.id, &e.message).await?;
            Err(refield(e, "file", field))
        }
    }
}

/// The last segment of a URL's path, decoded, when it makes a file name.
fn url_file_name(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments().and_then(|mut s| {
                s.next_back().map(|n| {
                    percent_encoding::percent_decode_str(n)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        })
        .filter(|n| {
            !n.trim().is_empty()
                && !n.chars().any(char::is_control)
                && n.chars().count() <= easel_core::upload::MAX_NAME_CHARS
        })
}

async fn import_lora(
    state: &AppState,
    who: &Principal,
    field: &str,
    from: ImportFrom,
    options: easel_core::upload::UploadOptions,
) -> Result<easel_core::upload::Upload> {
    use easel_core::upload::{UploadKind, UploadSpec, HUB_SOURCE, MAX_IMPORTS};
    let max = state.limits.max_upload_bytes;
    // What can be refused without the network, first.
    let (file_name, source, fetch): (String, String, BoxFuture<'static, Result<Bytes>>) =
        match from {
            ImportFrom::Url(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|e| Error::invalid(field, format!("not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(Error::invalid(field, "an http:// or https:// URL"));
                }
                if state.fetch_images == FetchImages::Off {
                    return Err(Error::invalid(
                        field,
                        "this server does not fetch URLs (--fetch-images off): upload the \
                         LoRA's file in parts",
                    ));
                }
                let name = url_file_name(&url).unwrap_or_else(|| "lora.safetensors".into());
                let (st, f, u) = (state.clone(), field.to_string(), url.clone());
                let fetch = Box::pin(async move {
                    fetch_url(&st, &f, &u, "file", max, FETCH_FILE_TIMEOUT).await
                });
                (name, url, fetch)
            }
            ImportFrom::Hub {
                repo,
                revision,
                file,
            } => {
                let Some(hub) = state.puller.as_ref().and_then(|p| p.lora.clone()) else {
                    return Err(Error::new(
                        ErrorKind::NotImplemented,
                        "this server was started without hub access: upload the LoRA's file \
                         in parts",
                    )
                    .with_field(field));
                };
                let scratch = hub_scratch(&state.models_dir);
                let req = crate::native::pulls::HubLora {
                    repo: repo.clone(),
                    revision: revision.clone(),
                    file: file.clone(),
                    max_bytes: max,
                };
                // The hub code's checks name `repo`, `revision` or `file`: of `field`.
                let download = hub(req, scratch).map_err(|e| match e.field.clone() {
                    Some(f) => e.with_field(format!("{field}.{f}")),
                    None => e.with_field(field),
                })?;
                let source = format!(
                    "{HUB_SOURCE}{repo}{}{}",
                    revision.map(|r| format!("@{r}")).unwrap_or_default(),
                    file.as_deref().map(|f| format!("/{f}")).unwrap_or_default()
                );
                let name = match &file {
                    Some(f) => f.rsplit('/').next().unwrap_or(f).to_string(),
                    None => format!("{}.safetensors", repo.rsplit('/').next().unwrap_or(&repo)),
                };
                let fetch = Box::pin(async move { download.await.map(Bytes::from) });
                (name, source, fetch)
            }
        };
    check_open_uploads(state, who).await?;
    let mut u = easel_core::upload::Upload::new(
        &who.user_id,
        UploadSpec {
            file_name,
            content_type: "application/octet-stream".into(),
            file_size: 0,
            parts: 1,
            kind: UploadKind::Lora,
            options,
        },
    );
    u.source_url = Some(source);
    u.status = easel_core::upload::UploadStatus::Validating;
    easel_store::uploads::create_import(&state.store.db, &u, MAX_IMPORTS).await?;
    tokio::spawn(run_import(state.clone(), u.clone(), fetch));
    Ok(u)
}

/// Where hub imports download (`<data-dir>/cache/hub`, beside the models folder), each
/// through a temporary folder of its own (`.easel-lora-…`; the collector removes those a
/// stopped process left).
pub fn hub_scratch(models_dir: &std::path::Path) -> std::path::PathBuf {
    models_dir
        .parent()
        .map(|d| d.join("cache").join("hub"))
        .unwrap_or_else(std::env::temp_dir)
}

/// LoRA imports fetched and checked at once by this process (each holds its file in memory).
static IMPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// How often an import in hand is touched (`uploads::touch`), well within
/// `VALIDATING_STALE`, after which the collector fails it as stopped.
const IMPORT_BEAT: Duration = Duration::from_secs(60);

/// An import's background work: its turn (`IMPORTS`), the fetch (within
/// `FETCH_FILE_TIMEOUT`), then the LoRA stored as any upload's (`finish_lora`) — or the
/// upload failed saying why. Touched every minute meanwhile; dropped (the fetch cancelled)
/// once the upload is no longer `validating` (deleted by its owner, or failed as stopped).
async fn run_import(
    state: AppState,
    u: easel_core::upload::Upload,
    fetch: BoxFuture<'static, Result<Bytes>>,
) {
    let work = async {
        let _turn = IMPORTS
            .acquire()
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let data = tokio::time::timeout(FETCH_FILE_TIMEOUT, fetch)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the file did not arrive within {} minutes",
                        FETCH_FILE_TIMEOUT.as_secs() / 60
                    ),
                )
            })??;
        finish_lora(&state, &u, data).await.map(|_| ())
    };
    // Polled beside the work, never in its way: a touch waiting on the database must not
    // pause the work inside a transaction of its own.
    let heartbeat = async {
        let mut beat = tokio::time::interval(IMPORT_BEAT);
        beat.tick().await;
        loop {
            beat.tick().await;
            match easel_store::uploads::touch(&state.store.db, &u.id).await {
                Ok(true) => {}
                // Deleted or failed meanwhile: nothing to finish.
                Ok(false) => return,
                Err(e) => tracing::warn!(upload = %u.id, error = %e, "touching an import"),
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        () = heartbeat => return,
    };
    if let Err(e) = result {
        // A file that is not a LoRA failed it already (no-op then).
        if let Err(f) = easel_store::uploads::fail(&state.store, &u.id, &e.message).await {
            tracing::warn!(upload = %u.id, error = %f, "recording a failed import");
        }
    }
}

/// What a bulk download names, as each API sends it: errors name `fields` (the asset ids',
/// the job ids', the models' fields of the dialect).
pub struct DownloadRequest {
    pub asset_ids: Vec<String>,
    pub job_ids: Vec<String>,
    pub models: Vec<String>,
    pub options: easel_core::download::ArchiveOptions,
}

/// Resolve and record a bulk download: the caller's assets named, the outputs of the
/// caller's jobs named, the caller's outputs of the models named (each must be one the
/// caller sees); 1 to 1,000 in all, each once, in that order. An id that is not the
/// caller's is 422 naming `asset_ids[i]` / `job_ids[i]` / `models[i]`.
pub async fn create_download(
    state: &AppState,
    who: &Principal,
    req: DownloadRequest,
) -> Result<easel_core::download::Download> {
    use easel_core::download::{check_count, Download, MAX_ARCHIVE_ASSETS};
    req.options.validate()?;
    let mut ids: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |id: String, ids: &mut Vec<String>| {
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    };
    for (i, id) in req.asset_ids.iter().enumerate() {
        let a = owned_asset(state, who, id).await.map_err(|_| {
            Error::invalid(format!("asset_ids[{i}]"), format!("asset {id} not found"))
        })?;
        add(a.id, &mut ids);
    }
    for (i, id) in req.job_ids.iter().enumerate() {
        let j = owned_job(state, who, id)
            .await
            .map_err(|_| Error::invalid(format!("job_ids[{i}]"), format!("job {id} not found")))?;
        for o in j.outputs {
            add(o, &mut ids);
        }
    }
    for (i, name) in req.models.iter().enumerate() {
        let m = find_model(state, Some(who), name).await?.ok_or_else(|| {
            Error::invalid(format!("models[{i}]"), format!("model {name} not found"))
        })?;
        let filter = easel_store::assets::AssetFilter {
            owner_id: who.user_id.clone(),
            model: Some(m.job_name().to_string()),
            limit: MAX_ARCHIVE_ASSETS as u32 + 1,
            ..Default::default()
        };
        for a in easel_store::assets::list(&state.store.db, &filter).await? {
            add(a.id, &mut ids);
        }
    }
    check_count("asset_ids", ids.len())?;
    let d = Download::new(&who.user_id, ids, req.options);
    easel_store::downloads::create(&state.store.db, &d).await?;
    Ok(d)
}

/// One of the caller's downloads, not expired (an admin's: any); 404 otherwise.
pub async fn owned_download(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<easel_core::download::Download> {
    easel_store::downloads::get(&state.store.db, id, time::now())
        .await?
        .filter(|d| d.owner_id == who.user_id || who.is_admin())
        .ok_or_else(|| Error::not_found("download"))
}

/// The signed URL of a download's archive (valid until the download expires).
pub fn download_url(state: &AppState, d: &easel_core::download::Download) -> String {
    let issued = chrono::Utc::now().timestamp_millis();
    format!(
        "{}/v1/downloads/{}/archive?{}",
        state.public_url,
        d.id,
        state
            .signer
            .query(&archive_subject(&d.id), issued, d.expires_at.timestamp())
    )
}

/// The download a signed archive URL names, when its signature holds (not expired, issued
/// after the owner's last key revocation); 401 otherwise.
pub async fn signed_download(
    state: &AppState,
    id: &str,
    expires: i64,
    issued_ms: i64,
    sig: &str,
) -> Result<easel_core::download::Download> {
    check_signature(state, &archive_subject(id), expires, issued_ms, sig)?;
    let d = easel_store::downloads::get(&state.store.db, id, time::now())
        .await?
        .ok_or_else(|| Error::not_found("download"))?;
    check_unrevoked(state, &d.owner_id, issued_ms).await?;
    Ok(d)
}

/// Record a download of the model `m` that `who` may change (its owner; admins any): a
/// user's model only — the server's weights stay on the server.
pub async fn create_model_download(
    state: &AppState,
    who: &Principal,
    m: &Model,
) -> Result<easel_core::download::Download> {
    if m.owner_id.is_none() {
        return Err(Error::invalid(
            "id",
            "the server's models stay on the server: only a user's own model is downloaded",
        ));
    }
    if !m.editable_by(who) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "only its owner downloads a user's model",
        ));
    }
    let d = easel_core::download::Download::of_model(&who.user_id, &m.id, Default::default());
    easel_store::downloads::create(&state.store.db, &d).await?;
    Ok(d)
}

/// What a model's archive holds: `model.json` (the model as its owner sees it, with its
/// presets) and the LoRA files the model's owner uploaded — the model's own file when it is
/// one, and its composition's LoRAs that are theirs — as (name, blob key), read when the
/// archive is: a model deleted since, or no longer the downloader's (given to another user;
/// admins download any), is 404.
async fn model_archive(
    state: &AppState,
    d: &easel_core::download::Download,
    model_id: &str,
) -> Result<(Bytes, Vec<(String, String)>)> {
    let db = &state.store.db;
    let m = easel_store::models::get(db, model_id)
        .await?
        .ok_or_else(|| Error::not_found("model"))?;
    if m.owner_id.as_deref() != Some(d.owner_id.as_str()) {
        let admin = easel_store::users::get_user(db, &d.owner_id)
            .await?
            .is_some_and(|u| u.role == easel_core::auth::Role::Admin);
        if !admin {
            return Err(Error::not_found("model"));
        }
    }
    let presets = easel_store::models::presets(db, &m.id).await?;
    let mut files: Vec<(String, String)> = Vec::new();
    if let Some(key) = m.blob_key() {
        files.push((m.name.clone(), key.to_string()));
    }
    for l in &m.loras {
        if let Some(lora) = easel_store::models::resolve(db, &l.model).await? {
            if let (Some(key), true) = (lora.blob_key(), lora.owner_id == m.owner_id) {
                if !files.iter().any(|(_, k)| k == key) {
                    files.push((lora.name.clone(), key.to_string()));
                }
            }
        }
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let names = easel_core::download::lora_file_names(&names);
    let record = serde_json::to_vec_pretty(&serde_json::json!({
        "model": m.without_locations(),
        "presets": presets,
        "files": names,
    }))
    .map_err(|e| Error::internal(e.to_string()))?;
    Ok((
        Bytes::from(record),
        names
            .into_iter()
            .zip(files)
            .map(|(n, (_, k))| (n, k))
            .collect(),
    ))
}

/// A download's archive as a stream of bytes: the assets that still exist, in order, named
/// by the download's options, one blob in memory at a time (`crate::zip`); a model's
/// download, its record and its owner's LoRA files (`model_archive`).
pub async fn archive_stream(
    state: &AppState,
    d: &easel_core::download::Download,
) -> Result<impl futures::Stream<Item = std::result::Result<Bytes, std::io::Error>>> {
    let model = match &d.model_id {
        Some(id) => Some(model_archive(state, d, id).await?),
        None => None,
    };
    let mut assets = Vec::with_capacity(d.asset_ids.len());
    for chunk in d.asset_ids.chunks(200) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let mut found: std::collections::HashMap<String, Asset> =
            easel_store::assets::get_many(&state.store.db, &refs)
                .await?
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect();
        assets.extend(chunk.iter().filter_map(|id| found.remove(id)));
    }
    let names = easel_core::download::entry_names(&assets, &d.options);
    let store = state.store.clone();
    let created = d.created_at;
    Ok(async_stream::try_stream! {
        let mut zip = crate::zip::ZipStream::new();
        if let Some((record, files)) = model {
            yield Bytes::from(zip.entry("model.json", &record, &created));
            yield record;
            for (name, key) in files {
                let data = match store.blobs.get(&key).await {
                    Ok(d) => d,
                    // Deleted since the archive began: left out.
                    Err(e) if e.kind == ErrorKind::NotFound => continue,
                    Err(e) => Err(std::io::Error::other(e.message))?,
                };
                yield Bytes::from(zip.entry(&name, &data, &created));
                yield data;
            }
        }
        for (a, name) in assets.iter().zip(names) {
            let data = match asset_content(&store, a).await {
                Ok(d) => d,
                // Deleted since the archive began: left out.
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => Err(std::io::Error::other(e.message))?,
            };
            yield Bytes::from(zip.entry(&name, &data, &a.created_at));
            yield data;
        }
        yield Bytes::from(zip.finish());
    })
}

#[cfg(test)]
mod fetch_tests {
    use super::*;

    #[test]
    fn fetch_policies_parse() {
        assert_eq!(FetchImages::parse("any"), Some(FetchImages::Any));
        assert_eq!(FetchImages::parse("nope"), None);
    }
}
