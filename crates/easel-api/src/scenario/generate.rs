//! The diffusion endpoints: `/generate/txt2img`, `/generate/img2img`, `/generate/inpaint`.
//! The body is checked against the endpoint's fields, read as [`Diffusion`], made the core's
//! task input through the one table `FIELDS`, and submitted (or priced: `?dryRun`).

use easel_core::generate::{GenerateInput, LoraRef};
use easel_core::task::TaskInput;

use super::*;

/// The fields every diffusion endpoint takes.
const BASE_FIELDS: &[&str] = &[
    "modelId",
    "prompt",
    "negativePrompt",
    "numSamples",
    "numInferenceSteps",
    "guidance",
    "width",
    "height",
    "scheduler",
    "seed",
    "concepts",
    "intermediateImages",
    "modelEpoch",
    "hideResults",
    "aspectRatio",
    "negativePromptStrength",
    "baseModelId",
];

/// The image fields of img2img and inpaint.
const IMAGE_FIELDS: &[&str] = &["image", "imageId", "strength", "imageParentId", "imageHide"];
/// The mask fields of inpaint.
const MASK_FIELDS: &[&str] = &["mask", "maskId", "disableMerging"];

/// Each endpoint: its path under `/generate`, the core task, the field groups it takes.
pub(super) const ENDPOINTS: &[(&str, &str, &[&[&str]])] = &[
    ("txt2img", "txt2img", &[BASE_FIELDS]),
    ("img2img", "img2img", &[BASE_FIELDS, IMAGE_FIELDS]),
    (
        "inpaint",
        "inpaint",
        &[BASE_FIELDS, IMAGE_FIELDS, MASK_FIELDS],
    ),
];

/// Fields accepted (type-checked) and recorded, but not applied: Easel has no model epochs,
/// aspect-ratio presets (FLUX 1.1 pro ultra), negative-prompt strength
/// (FLUX dev), base-model switching for LoRAs, or an inpaint merge switch (the unmasked
/// area is always kept).
pub(super) const NOT_APPLIED: &[&str] = &[
    "modelEpoch",
    "aspectRatio",
    "negativePromptStrength",
    "baseModelId",
    "disableMerging",
];

/// The spec's ranges, checked before the core's own rules (which may be tighter).
const RANGES: &[(&str, f64, f64)] = &[
    ("numSamples", 1.0, 128.0),
    ("numInferenceSteps", 1.0, 150.0),
    ("guidance", 0.0, 20.0),
    ("width", 64.0, 2048.0),
    ("height", 64.0, 2048.0),
    ("strength", 0.01, 1.0),
    ("negativePromptStrength", 0.0, 10.0),
];

/// `numSamples` when the request gives none (the spec's default).
const DEFAULT_SAMPLES: u32 = 4;
/// `intermediateImages: true` asks for a preview every this many steps.
const PREVIEW_EVERY: u32 = 5;

#[derive(Deserialize)]
pub(super) struct GenerateQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
    #[serde(rename = "originalAssets")]
    _original_assets: Option<String>,
}

impl GenerateQuery {
    /// `?dryRun` with any value but `false` or `0` (the spec: "any value").
    pub(super) fn is_dry_run(&self) -> bool {
        self.dry_run
            .as_deref()
            .is_some_and(|v| !matches!(v.trim(), "false" | "0"))
    }
}

/// An image field's value for the core: `asset_…` as Easel's `ast_…`; `data:` URLs and
/// Easel ids as they are (`service::submit` reads both).
fn image_ref(s: &str) -> String {
    ids::asset_in(s.trim()).unwrap_or_else(|| s.trim().to_string())
}

/// The core task input of a request, and the fields it sent that are not applied. The typed
/// request is checked against the endpoint's fields and the spec's ranges, then made the
/// core's typed input field by field as `FIELDS` pairs them (a test holds the two together).
pub(super) fn core_input(
    task: &str,
    body: &Map<String, Value>,
) -> Result<(TaskInput, Vec<String>), Error> {
    let (_, _, groups) = ENDPOINTS
        .iter()
        .find(|(_, t, _)| *t == task)
        .ok_or_else(|| Error::internal(format!("no Scenario endpoint runs {task}")))?;
    let not_applied = check_fields(
        task,
        body,
        |k| groups.iter().any(|g| g.contains(&k)),
        NOT_APPLIED,
    )?;
    for (field, lo, hi) in RANGES {
        if let Some(v) = body.get(*field).and_then(Value::as_f64) {
            if !(*lo..=*hi).contains(&v) {
                return Err(Error::invalid(
                    *field,
                    format!("must be between {lo} and {hi}"),
                ));
            }
        }
    }
    let d: Diffusion = easel_core::error::from_json(Value::Object(body.clone()))?;
    for (field, v) in [("width", d.width), ("height", d.height)] {
        if v.is_some_and(|v| v % 8 != 0) {
            return Err(Error::invalid(field, "must be a multiple of 8"));
        }
    }
    let mut loras = Vec::new();
    for (i, c) in d.concepts.iter().flatten().enumerate() {
        if !(-2.0..=2.0).contains(&c.scale) {
            return Err(Error::invalid(
                format!("concepts[{i}].scale"),
                "must be between -2 and 2",
            ));
        }
        loras.push(LoraRef {
            model: ids::model_ref(&c.model_id),
            scale: c.scale,
        });
    }
    let g = GenerateInput {
        prompt: d.prompt,
        negative_prompt: d.negative_prompt,
        width: d.width,
        height: d.height,
        steps: d.num_inference_steps,
        guidance: d.guidance,
        count: Some(d.num_samples.unwrap_or(DEFAULT_SAMPLES)),
        scheduler: d.scheduler,
        strength: d.strength,
        image: d.image.or(d.image_id).map(|s| image_ref(&s)),
        mask: d.mask.or(d.mask_id).map(|s| image_ref(&s)),
        seed: d.seed,
        loras,
        preview_every: (d.intermediate_images == Some(true)).then_some(PREVIEW_EVERY),
        ..Default::default()
    };
    Ok((TaskInput::generation_of(task, g)?, not_applied))
}

/// Every key of the body must be a field of `/generate/{endpoint}` (a 400 naming the first
/// that is not); returns the fields of `not_applied` that were sent.
pub(super) fn check_fields(
    endpoint: &str,
    body: &Map<String, Value>,
    is_field: impl Fn(&str) -> bool,
    not_applied: &[&str],
) -> Result<Vec<String>, Error> {
    if let Some(k) = body.keys().find(|k| !is_field(k)) {
        return Err(Error::invalid(
            k.as_str(),
            format!("is not a field of /generate/{endpoint}"),
        ));
    }
    Ok(not_applied
        .iter()
        .filter(|f| body.get(**f).is_some_and(|v| !v.is_null()))
        .map(|f| f.to_string())
        .collect())
}

/// `POST /generate/{txt2img,img2img,inpaint}`.
pub(super) async fn generate(
    state: &AppState,
    who: &Principal,
    task: &'static str,
    q: GenerateQuery,
    body: Map<String, Value>,
) -> Result<Response, Failure> {
    let (mut input, not_applied) = core_input(task, &body)?;
    let model = body
        .get("modelId")
        .and_then(Value::as_str)
        .map(ids::model_ref);
    if body.get("numSamples").is_none_or(Value::is_null) {
        if let (Some(g), Some(count)) = (
            input.generation_mut(),
            preset_count(state, who, model.as_deref()).await?,
        ) {
            g.count = Some(count);
        }
    }
    let request = TaskRequest {
        preset: None,
        model,
        input,
        priority: None,
        webhook: None,
        idempotency_key: None,
        request: Some(json!({"scenario": {
            "endpoint": format!("/generate/{task}"),
            "body": body,
            "notApplied": not_applied,
        }})),
        external_id: None,
        // `hideResults`: the outputs are stored hidden from the owner's lists.
        hide_outputs: body
            .get("hideResults")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // `imageHide`, `imageParentId`: what becomes of an image sent as a `data:` URL.
        inline: service::InlineImages {
            hidden: body
                .get("imageHide")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            parent_id: match body.get("imageParentId").and_then(Value::as_str) {
                None => None,
                Some(p) => Some(ids::asset_in(p).ok_or_else(|| {
                    Error::invalid("imageParentId", format!("asset {p} not found"))
                })?),
            },
        },
    };
    if q.is_dry_run() {
        return priced(state, who, request).await.map_err(inline_field);
    }
    let (job, _) = service::submit(state, who, request)
        .await
        .map_err(inline_field)?;
    let inference = view::inference(&job);
    let history = easel_store::jobs::history(&state.store.db, &job.id).await?;
    let job = view::job(job, &history);
    Ok(axum::Json(InferenceResponse {
        creative_units_cost: job.billing.cu_cost,
        creative_units_discount: 0.0,
        inference,
        job,
    })
    .into_response())
}

/// The core's name of the inline image's parent, as Scenario's.
fn inline_field(f: impl Into<Failure>) -> Failure {
    let Failure(e, status) = f.into();
    let e = match e.field.as_deref() {
        Some("inline.parent_id") => e.with_field("imageParentId"),
        _ => e,
    };
    Failure(e, status)
}

/// The `numSamples` of the default preset of the model a request names, if it sets one: it
/// wins over the spec's default of 4 when the request leaves `numSamples` out (the core
/// applies the preset's other parameters, which Scenario gives no default of its own).
async fn preset_count(
    state: &AppState,
    who: &Principal,
    model: Option<&str>,
) -> Result<Option<u32>, Error> {
    let Some(m) = model else { return Ok(None) };
    let Some(m) = service::find_model(state, Some(who), m).await? else {
        return Ok(None);
    };
    Ok(service::default_preset(state, &m.id)
        .await?
        .and_then(|p| p.params.count))
}

/// A dry run's answer: the request validated as a submit would, priced, nothing queued or
/// stored; HTTP 269 `{creativeUnitsCost, creativeUnitsDiscount}`.
pub(super) async fn priced(
    state: &AppState,
    who: &Principal,
    request: TaskRequest,
) -> Result<Response, Failure> {
    let units = service::quote(state, who, request).await?;
    let body = DryRun {
        creative_units_cost: easel_core::usage::credits(units) as f64,
        creative_units_discount: 0.0,
    };
    Ok((dry_run_status(), axum::Json(body)).into_response())
}

/// HTTP 269, the spec's status of a dry run.
pub(super) fn dry_run_status() -> StatusCode {
    StatusCode::from_u16(269).expect("269 is a valid status code")
}
