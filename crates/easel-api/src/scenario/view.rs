//! Core objects as Scenario's: jobs (with the inference they ran), assets, models.

use std::collections::HashMap;

use super::*;

/// Scenario's `jobType` of a task: generations are `inference`; the tools their own names.
pub(super) fn job_type(task: &str) -> &'static str {
    match task {
        "txt2img" | "img2img" | "inpaint" => "inference",
        "upscale" => "upscale",
        "pixelate" => "pixelate",
        _ => "custom",
    }
}

/// The tasks a `jobType` filter selects (unknown types select none).
pub(super) fn tasks_of_job_type(t: &str) -> Vec<String> {
    easel_core::task::TASKS
        .iter()
        .filter(|task| job_type(task) == t)
        .map(|t| t.to_string())
        .collect()
}

/// Scenario's asset type (`metadata.type`, and the `type` filter of lists) of an asset made
/// by `task` (`None`: an upload).
pub(super) fn asset_type(task: Option<&str>) -> &'static str {
    match task {
        None => "uploaded",
        Some("txt2img") => "inference-txt2img",
        Some("img2img") => "inference-img2img",
        Some("inpaint") => "inference-inpaint",
        Some("upscale") => "upscale",
        Some("pixelate") => "pixelization",
        Some(_) => "unknown",
    }
}

/// Scenario's asset `source`: the spec spells the generation types differently there
/// (`inference-txt`, `inference-img`, `inference-in-paint`) than in `metadata.type`.
pub(super) fn source(task: Option<&str>) -> &'static str {
    match task {
        Some("txt2img") => "inference-txt",
        Some("img2img") => "inference-img",
        Some("inpaint") => "inference-in-paint",
        t => asset_type(t),
    }
}

/// The tasks of the asset types a filter names (`uploaded` stands for uploads); `None` when
/// a type is not one Easel makes (the list is then empty).
pub(super) fn tasks_of_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "uploaded" => "uploaded",
        "inference-txt2img" => "txt2img",
        "inference-img2img" => "img2img",
        "inference-inpaint" => "inpaint",
        "upscale" => "upscale",
        "pixelization" => "pixelate",
        "canvas" => "canvas",
        _ => return None,
    })
}

/// The inference a generation job ran, in Scenario's names: the request as sent, then what
/// ran (defaults filled in) through the one table `FIELDS`, the seed as a string, and the
/// inference `type`. Images are shown as asset ids.
pub(super) fn inference(job: &Job) -> Value {
    let mut out = match scenario_request(job).and_then(|r| r.get("body")) {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for (wire, core) in FIELDS {
        if let Some(v) = job.input.get(*core).filter(|v| !v.is_null()) {
            let v = match (*core, v.as_str()) {
                ("image" | "mask", Some(id)) => json!(ids::asset(id)),
                _ => v.clone(),
            };
            out.insert(wire.to_string(), v);
        }
    }
    out.remove("imageId");
    out.remove("maskId");
    if let Some(seed) = job.input.get("seed").and_then(Value::as_u64) {
        out.insert("seed".into(), json!(seed.to_string()));
    }
    out.insert("type".into(), json!(job.task));
    if let Some(ignored) = scenario_request(job)
        .and_then(|r| r.get("notApplied"))
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    {
        out.insert("easelNotApplied".into(), ignored.clone());
    }
    Value::Object(out)
}

/// What this dialect kept of the request that made a job (`Job::request`:
/// `{"scenario": {"endpoint", "body", "notApplied"}}`); `None` for jobs made elsewhere.
pub(super) fn scenario_request(job: &Job) -> Option<&Value> {
    job.request.as_ref()?.get("scenario")
}

/// Creative units of a job: its recorded usage once it succeeded, else what it will use.
pub(super) fn creative_units(job: &Job) -> f64 {
    let units = if job.status == JobStatus::Succeeded {
        job.usage_units
    } else {
        easel_core::usage::estimate_units(&job.task, &job.input).unwrap_or(job.usage_units)
    };
    easel_core::usage::credits(units) as f64
}

/// A job as Scenario shows it, with its status history (from the job's event log).
pub(super) fn job(job: Job, history: &[StatusChange]) -> JobView {
    let updated = job
        .completed_at
        .or(job.started_at)
        .unwrap_or(job.created_at);
    let output = match &job.error {
        Some(e) if matches!(job.status, JobStatus::Failed | JobStatus::Canceled) => {
            json!({"error": {"code": e.code, "message": e.message}})
        }
        _ if job.status == JobStatus::Canceled => {
            json!({"error": {"code": "canceled", "message": "the job was canceled"}})
        }
        _ => json!({}),
    };
    let input = if job_type(&job.task) == "inference" {
        inference(&job)
    } else {
        match scenario_request(&job).and_then(|r| r.get("body")) {
            // Images as the asset ids they were stored as (not the `data:` URLs sent).
            Some(Value::Object(body)) => {
                let mut body = body.clone();
                for f in ["image", "mask"] {
                    if let Some(id) = job.input.get(f).and_then(Value::as_str) {
                        if body.contains_key(f) {
                            body.insert(f.into(), json!(ids::asset(id)));
                        }
                    }
                }
                Value::Object(body)
            }
            _ => job.input.clone(),
        }
    };
    let progress = if job.status == JobStatus::Succeeded {
        1.0
    } else {
        job.progress.clamp(0.0, 1.0)
    };
    JobView {
        job_type: job_type(&job.task),
        status: STATUS.name(job.status),
        status_history: history
            .iter()
            .map(|c| StatusEntry {
                status: STATUS.name(c.status),
                date: ids::time(&c.at),
            })
            .collect(),
        progress,
        billing: Billing {
            cu_cost: creative_units(&job),
            cu_discount: 0.0,
        },
        metadata: JobMetadata {
            input,
            output,
            asset_ids: job.outputs.iter().map(|a| ids::asset(a)).collect(),
        },
        owner_id: job.owner_id.clone(),
        author_id: job.owner_id.clone(),
        created_at: ids::time(&job.created_at),
        updated_at: ids::time(&updated),
        job_id: job.id,
    }
}

/// A download as the job Scenario reads it (`GET /jobs/{jobId}`): `assets-download` or
/// `model-download`, a success from the start (the archive is written as its `url` is
/// read), the URL in `metadata.output`.
pub(super) fn download_job(d: &easel_core::download::Download, url: String) -> JobView {
    let at = ids::time(&d.created_at);
    JobView {
        job_type: if d.model_id.is_some() {
            "model-download"
        } else {
            "assets-download"
        },
        status: STATUS.succeeded,
        status_history: vec![StatusEntry {
            status: STATUS.succeeded,
            date: at.clone(),
        }],
        progress: 1.0,
        metadata: JobMetadata {
            input: match &d.model_id {
                Some(m) => json!({"modelId": ids::model(m)}),
                None => {
                    json!({"assetIds": d.asset_ids.iter().map(|a| ids::asset(a)).collect::<Vec<_>>()})
                }
            },
            output: json!({"url": url, "expiresAt": ids::time(&d.expires_at)}),
            asset_ids: Vec::new(),
        },
        billing: Billing {
            cu_cost: 0.0,
            cu_discount: 0.0,
        },
        owner_id: d.owner_id.clone(),
        author_id: d.owner_id.clone(),
        created_at: at.clone(),
        updated_at: at,
        job_id: d.id.clone(),
    }
}

/// Jobs with their status histories, read in one query.
pub(super) async fn jobs(state: &AppState, jobs: Vec<Job>) -> Result<Vec<JobView>, Error> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let mut by_job: HashMap<String, Vec<StatusChange>> = HashMap::new();
    for e in easel_store::jobs::events_of_kind(&state.store.db, &ids, "status").await? {
        if let Some(status) = e.data["status"].as_str().and_then(JobStatus::parse) {
            by_job
                .entry(e.job_id)
                .or_default()
                .push(StatusChange { status, at: e.at });
        }
    }
    Ok(jobs
        .into_iter()
        .map(|j| {
            let h = by_job.remove(&j.id).unwrap_or_default();
            job(j, &h)
        })
        .collect())
}

/// Scenario's edit operations this server runs on an image asset (the others answer 501:
/// `unbuilt::OPERATIONS`).
const EDIT_CAPABILITIES: &[&str] = &["GENERATIVE_FILL", "PIXELATE", "UPSCALE"];

/// An asset, with the generation parameters of the job that made it (`jobs` holds the jobs
/// of a page, read once).
pub(super) fn asset(
    state: &AppState,
    a: Asset,
    made_by: Option<&Job>,
    tags: Vec<String>,
) -> AssetView {
    let task = made_by.map(|j| j.task.as_str());
    let canvas = a.kind == AssetKind::Canvas;
    let mut metadata = Map::new();
    let (kind, asset_type, source) = if canvas {
        ("json", "canvas", "canvas")
    } else {
        ("image", asset_type(task), source(task))
    };
    metadata.insert("type".into(), json!(asset_type));
    metadata.insert("kind".into(), json!(kind));
    if let Some(j) = made_by {
        if let Value::Object(inf) = inference(j) {
            // Not `numInferenceSteps`, `width`, `height`: the spec types them in an asset's
            // metadata with another tool's ranges (steps 5–50, width ≥ 1024). The sizes are
            // in `properties`, the steps in the job's inference.
            for k in [
                "prompt",
                "negativePrompt",
                "guidance",
                "scheduler",
                "seed",
                "strength",
            ] {
                if let Some(v) = inf.get(k) {
                    metadata.insert(k.into(), v.clone());
                }
            }
        }
        if let Some(m) = &j.model {
            // A user's model is named by its id in the job (`mdl_…`): Scenario's form.
            metadata.insert("modelId".into(), json!(ids::model(m)));
        }
        metadata.insert("inferenceId".into(), json!(j.id));
        metadata.insert("parentJobId".into(), json!(j.id));
    }
    if let Some(p) = &a.parent_id {
        metadata.insert("parentId".into(), json!(ids::asset(p)));
    }
    if let Some(r) = &a.root_id {
        metadata.insert("rootParentId".into(), json!(ids::asset(r)));
    }
    if let Some(i) = a.output_index {
        metadata.insert("outputIndex".into(), json!(i));
    }
    if let Some(name) = &a.name {
        metadata.insert("name".into(), json!(name));
    }
    let created = ids::time(&a.created_at);
    AssetView {
        id: ids::asset(&a.id),
        url: service::asset_url(state, &a.id),
        owner_id: a.owner_id.clone(),
        author_id: a.owner_id,
        kind,
        mime_type: a.mime_type,
        status: "success",
        privacy: a.privacy.as_str(),
        description: a.description,
        source,
        edit_capabilities: if canvas {
            Vec::new()
        } else {
            EDIT_CAPABILITIES.to_vec()
        },
        tags,
        collection_ids: Vec::new(),
        updated_at: ids::time(&a.updated_at),
        created_at: created,
        properties: AssetProperties {
            size: a.bytes,
            width: a.width,
            height: a.height,
        },
        metadata: Value::Object(metadata),
        is_hidden: a.hidden,
        output_index: a.output_index,
        thumbnail: None,
    }
}

/// What a canvas adds to its asset's view: its thumbnail (to its owner: the thumbnail is a
/// private image of theirs, whatever the canvas's privacy), and its lock's end
/// (`metadata.lockExpiresAt`) while one is held.
pub(super) fn canvas(state: &AppState, v: &mut AssetView, c: &Canvas, mine: bool) {
    v.thumbnail = c.thumbnail_id.as_ref().filter(|_| mine).map(|t| AssetLink {
        asset_id: ids::asset(t),
        url: service::asset_url(state, t),
    });
    if let (Some(l), Value::Object(m)) = (&c.lock, &mut v.metadata) {
        m.insert("lockExpiresAt".into(), json!(ids::time(&l.expires_at)));
    }
}

/// Assets with the jobs that made them, their tags and, for the assets `viewer` owns, the
/// owner's collections holding them (a query each).
pub(super) async fn assets(
    state: &AppState,
    viewer: Option<&str>,
    list: Vec<Asset>,
) -> Result<Vec<AssetView>, Error> {
    let mut ids: Vec<&str> = list.iter().filter_map(|a| a.job_id.as_deref()).collect();
    ids.sort_unstable();
    ids.dedup();
    let jobs: HashMap<String, Job> = easel_store::jobs::get_many(&state.store.db, &ids)
        .await?
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    let asset_ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    let mut tags = easel_store::tags::of_assets(&state.store.db, &asset_ids).await?;
    let mut collections =
        easel_store::collections::of_own_assets(&state.store.db, &asset_ids).await?;
    let canvas_ids: Vec<&str> = list
        .iter()
        .filter(|a| a.kind == AssetKind::Canvas)
        .map(|a| a.id.as_str())
        .collect();
    let canvases =
        easel_store::canvases::get_many(&state.store.db, &canvas_ids, easel_core::time::now())
            .await?;
    Ok(list
        .into_iter()
        .map(|a| {
            let j = a.job_id.as_ref().and_then(|id| jobs.get(id));
            let t = tags.remove(&a.id).unwrap_or_default();
            let c = collections.remove(&a.id).unwrap_or_default();
            let mine = viewer == Some(a.owner_id.as_str());
            let cv = canvases.get(&a.id);
            let mut v = asset(state, a, j, t);
            if let Some(cv) = cv {
                canvas(state, &mut v, cv, mine);
            }
            if mine {
                v.collection_ids = c.iter().map(|id| ids::collection(id)).collect();
            }
            v
        })
        .collect())
}

/// Scenario's model `type` of an Easel family (LoRAs: the `-lora` type of their base;
/// `custom` when their base is not known, as for a discovered LoRA file). A composition (a
/// user's model over a server's one: `base_model`) is its base family's `-composition`
/// type; its `family` is its base's.
pub(super) fn model_type(m: &Model) -> &'static str {
    let kind = if m.base_model.is_some() {
        Kind::Composition
    } else if m.is_lora() {
        Kind::Lora
    } else {
        Kind::Base
    };
    type_of(&m.family, kind)
}

/// The `type` of a composition over a model of `family`.
pub(super) fn composition_type(family: &str) -> &'static str {
    type_of(family, Kind::Composition)
}

fn type_of(family: &str, kind: Kind) -> &'static str {
    match (family, kind) {
        (family::SD15 | family::SD15_INPAINT, Kind::Base) => "sd-1_5",
        (family::SD15 | family::SD15_INPAINT, Kind::Lora) => "sd-1_5-lora",
        (family::SD15 | family::SD15_INPAINT, Kind::Composition) => "sd-1_5-composition",
        (family::SDXL, Kind::Base) => "sd-xl",
        (family::SDXL, Kind::Lora) => "sd-xl-lora",
        (family::SDXL, Kind::Composition) => "sd-xl-composition",
        _ => "custom",
    }
}

/// What a model is, for its `type`.
enum Kind {
    Base,
    Lora,
    Composition,
}

/// Scenario's capabilities of a model's tasks.
pub(super) fn capabilities(m: &Model) -> Vec<&'static str> {
    ["txt2img", "img2img", "inpaint"]
        .into_iter()
        .filter(|t| m.tasks.iter().any(|mt| mt == t))
        .collect()
}

/// A model's `privacy` as Scenario shows it: a model of the server is every user's to run,
/// so `public` to them (keyless reads still follow its stored privacy); a user's model its
/// own.
pub(super) fn model_privacy(m: &Model) -> &'static str {
    if m.owner_id.is_none() {
        "public"
    } else {
        m.privacy.as_str()
    }
}

/// What a model's view takes from outside the model: the registry ids of the LoRAs its
/// `concepts` name (stored by name), and which of the caller's collections hold it.
#[derive(Default)]
pub(super) struct ModelContext {
    pub(super) lora_ids: HashMap<String, String>,
    pub(super) collections: HashMap<String, Vec<String>>,
}

/// A model: ready to run, so `trained`. A user's model shows its owner (as `ownerId` and
/// `authorId`), its base as `parentModelId`, its LoRAs as `concepts`, its example assets;
/// the server's models have no owner. `custom` stays `false`: in Scenario it marks models
/// run only through `/generate/custom/{modelId}`, and compositions run through the
/// diffusion endpoints.
pub(super) fn model(m: Model, cx: &ModelContext) -> ModelView {
    let composition = m.base_model.is_some();
    let concepts = composition.then(|| {
        m.loras
            .iter()
            .map(|l| Concept {
                model_id: ids::model(cx.lora_ids.get(&l.model).unwrap_or(&l.model)),
                scale: l.scale,
                model_epoch: None,
            })
            .collect()
    });
    ModelView {
        id: ids::model(&m.id),
        kind: model_type(&m),
        status: "trained",
        capabilities: capabilities(&m),
        custom: false,
        privacy: model_privacy(&m),
        source: "other",
        tags: m.tags.clone(),
        collection_ids: cx
            .collections
            .get(&m.id)
            .map(|c| c.iter().map(|id| ids::collection(id)).collect())
            .unwrap_or_default(),
        example_asset_ids: m.examples.iter().map(|a| ids::asset(a)).collect(),
        training_images_number: 0,
        created_at: ids::time(&m.created_at),
        updated_at: ids::time(&m.updated_at),
        short_description: m.short_description.clone(),
        owner_id: m.owner_id.clone(),
        author_id: m.owner_id.clone(),
        parent_model_id: m.base_model.as_deref().map(ids::model),
        concepts,
        name: m.name,
    }
}
