//! The image tools and the fill: `/generate/pixelate` (the `pixelate` tool; answers with the
//! job and its asset once done), `/generate/upscale` (the local upscaler; the creative
//! fields are accepted and listed as not applied), `/generate/generative-fill` (inpaint on the
//! server's default model, `promptFidelity` as guidance). Each reads a typed request and
//! makes the core's typed input; its table of (Scenario's name, the core's) names the
//! core's errors back (`named`).

use easel_core::generate::GenerateInput;
use easel_core::task::{PixelateInput, TaskInput, UpscaleInput};

use super::*;

/// `/generate/pixelate`'s body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PixelateRequest {
    image: String,
    pixel_grid_size: f64,
    remove_noise: bool,
    #[serde(default)]
    remove_background: Option<bool>,
    #[serde(default)]
    color_palette: Option<Value>,
}

/// `/generate/upscale`'s body: the fields that apply (`check_fields` takes the others).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpscaleRequest {
    image: String,
    #[serde(default)]
    scaling_factor: Option<f64>,
    #[serde(default)]
    target_width: Option<f64>,
}

/// `/generate/generative-fill`'s body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FillRequest {
    image: String,
    #[serde(default)]
    mask: Option<String>,
    #[serde(default)]
    mask_id: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    seed: Option<Value>,
    #[serde(default)]
    prompt_fidelity: Option<f32>,
}

/// `pixelate`'s fields: (Scenario's, the core's).
const PIXELATE: &[(&str, &str)] = &[
    ("image", "image"),
    ("pixelGridSize", "grid_size"),
    ("removeNoise", "remove_noise"),
    ("colorPaletteSize", "palette_size"),
    ("colorPalette", "palette"),
];

/// `upscale`'s fields that apply.
const UPSCALE: &[(&str, &str)] = &[
    ("image", "image"),
    ("scalingFactor", "factor"),
    ("targetWidth", "width"),
];

/// `upscale`'s creative fields: accepted and recorded, not applied (the local upscaler is
/// classical resampling, no diffusion pass).
const UPSCALE_NOT_APPLIED: &[&str] = &[
    "creativityDecay",
    "tileStyle",
    "seed",
    "styleImages",
    "preset",
    "styleImagesFidelity",
    "detailsLevel",
    "fractality",
    "negativePrompt",
    "overrideEmbeddings",
    "promptFidelity",
    "style",
    "refinementSteps",
    "creativity",
    "imageFidelity",
    "imageType",
    "prompt",
];

/// `generative-fill`'s fields: (Scenario's, the core inpaint input's).
const FILL: &[(&str, &str)] = &[
    ("image", "image"),
    ("mask", "mask"),
    ("prompt", "prompt"),
    ("negativePrompt", "negative_prompt"),
    ("seed", "seed"),
    ("numInferenceSteps", "steps"),
    ("promptFidelity", "guidance"),
];

/// `generative-fill`'s fields accepted and not applied: the output keeps the image's size.
const FILL_NOT_APPLIED: &[&str] = &["targetWidth", "targetHeight"];

/// The prompt of a fill that gives none: the fill follows the image around the mask.
const FILL_PROMPT: &str = "";

/// A core error named by a tool's table: `input.<core>` becomes the wire name; an error of
/// the whole input (an output over the size limits) names `whole`.
fn named(e: Error, table: &[(&str, &str)], whole: &str) -> Error {
    if e.field.as_deref() == Some("input") {
        return e.with_field(whole);
    }
    let wire = e
        .field
        .as_deref()
        .and_then(|f| f.strip_prefix("input."))
        .and_then(|rest| error::by_table(rest, table));
    match wire {
        Some(field) => e.with_field(field),
        None => e,
    }
}

/// The body's keys checked against a tool's fields: its table's and `not_applied`.
fn check_fields(
    endpoint: &str,
    body: &Map<String, Value>,
    table: &[(&str, &str)],
    not_applied: &[&str],
) -> Result<Vec<String>, Error> {
    let is_field = |k: &str| table.iter().any(|(w, _)| *w == k) || not_applied.contains(&k);
    generate::check_fields(endpoint, body, is_field, not_applied)
}

/// The body as a typed request (type errors and missing fields name the wire field).
fn typed<T: serde::de::DeserializeOwned>(body: &Map<String, Value>) -> Result<T, Error> {
    easel_core::error::from_json(Value::Object(body.clone()))
}

/// A whole number within `lo..=hi`, when given.
fn whole_in(
    body: &Map<String, Value>,
    field: &str,
    lo: f64,
    hi: f64,
) -> Result<Option<u32>, Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) && x.fract() == 0.0 => Ok(Some(x as u32)),
            _ => Err(Error::invalid(
                field,
                format!("must be a whole number from {lo} to {hi}"),
            )),
        },
    }
}

fn number_in(body: &Map<String, Value>, field: &str, lo: f64, hi: f64) -> Result<(), Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(Error::invalid(
                field,
                format!("must be a number from {lo} to {hi}"),
            )),
        },
    }
}

/// An image field as the core reads it (`asset_…` as `ast_…`).
fn image_ref(s: &str) -> String {
    ids::asset_in(s.trim()).unwrap_or_else(|| s.trim().to_string())
}

/// A tool's request, kept with its job as Scenario's (`view::scenario_request`).
fn task_request(
    endpoint: &str,
    input: TaskInput,
    body: Map<String, Value>,
    not_applied: Vec<String>,
) -> TaskRequest {
    TaskRequest {
        preset: None,
        model: None,
        input,
        priority: None,
        webhook: None,
        idempotency_key: None,
        request: Some(json!({"scenario": {
            "endpoint": format!("/generate/{endpoint}"),
            "body": body,
            "notApplied": not_applied,
        }})),
        external_id: None,
        hide_outputs: false,
        inline: Default::default(),
    }
}

/// `POST /generate/pixelate`: waits for the job (up to the server's sync timeout) and
/// answers `{creativeUnitsCost, creativeUnitsDiscount, job, asset}`.
#[utoipa::path(post, path = "/scenario/v1/generate/pixelate", tag = "scenario", params(("dryRun" = Option<String>, Query)), request_body(content = Object, description = "`{image, pixelGridSize, removeNoise, colorPalette | colorPaletteSize, removeBackground}`"), responses((status = 200, description = "`{creativeUnitsCost, creativeUnitsDiscount, job, asset}`"), (status = 269, body = DryRun), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn pixelate(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    check_fields("pixelate", &body, PIXELATE, &["removeBackground"])?;
    let r: PixelateRequest = typed(&body)?;
    if r.remove_background == Some(true) {
        return Err(Error::invalid(
            "removeBackground",
            "background removal needs a segmentation model, which this server does not run",
        )
        .into());
    }
    if ![16.0, 32.0, 64.0, 128.0, 256.0].contains(&r.pixel_grid_size) {
        return Err(Error::invalid("pixelGridSize", "must be 16, 32, 64, 128 or 256").into());
    }
    let input = TaskInput::Pixelate(PixelateInput {
        image: image_ref(&r.image),
        grid_size: r.pixel_grid_size as u32,
        palette_size: whole_in(&body, "colorPaletteSize", 2.0, 256.0)?.map(|n| n as u16),
        palette: match r.color_palette.as_ref().filter(|v| !v.is_null()) {
            Some(p) => Some(palette(p)?),
            None => None,
        },
        remove_noise: r.remove_noise,
        format: None,
        quality: None,
    });
    let req = task_request("pixelate", input, body, Vec::new());
    if q.is_dry_run() {
        return generate::priced(&state, &who, req)
            .await
            .map_err(|Failure(e, s)| Failure(named(e, PIXELATE, "image"), s));
    }
    let (job, _) = service::submit(&state, &who, req)
        .await
        .map_err(|e| named(e, PIXELATE, "image"))?;
    let job = service::wait_job(&state, job, state.sync_timeout).await?;
    if !job.status.is_terminal() {
        return Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "the job {} did not finish within {}s; poll GET /jobs/{}",
                job.id,
                state.sync_timeout.as_secs(),
                job.id
            ),
        )
        .into());
    }
    if let Some(e) = job.failure() {
        return Err(e.into());
    }
    let asset_id = job
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| Error::internal("no output"))?;
    let asset = easel_store::assets::get(&state.store.db, &asset_id)
        .await?
        .ok_or_else(|| Error::not_found(&format!("asset {asset_id}")))?;
    let history = easel_store::jobs::history(&state.store.db, &job.id).await?;
    let asset = view::asset(&state, asset, Some(&job), Vec::new());
    let job = view::job(job, &history);
    Ok(axum::Json(json!({
        "creativeUnitsCost": job.billing.cu_cost,
        "creativeUnitsDiscount": 0.0,
        "job": job,
        "asset": asset,
    }))
    .into_response())
}

/// `[[r, g, b], …]` as the core's `#rrggbb` colours.
fn palette(v: &Value) -> Result<Vec<String>, Error> {
    let bad = |i: usize| {
        Error::invalid(
            format!("colorPalette[{i}]"),
            "must be [r, g, b] with whole numbers from 0 to 255",
        )
    };
    let items = v
        .as_array()
        .ok_or_else(|| Error::invalid("colorPalette", "must be a list of [r, g, b]"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let rgb: Vec<u8> = c
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or_else(|| bad(i))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=255.0).contains(f))
                        .map(|f| f as u8)
                        .ok_or_else(|| bad(i))
                })
                .collect::<Result<_, _>>()?;
            Ok(format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]))
        })
        .collect()
}

/// `POST /generate/upscale`: the local upscaler by `scalingFactor` (1–16; the upscaler
/// takes up to 8) or `targetWidth`; answers `{creativeUnitsCost, creativeUnitsDiscount, job}`.
#[utoipa::path(post, path = "/scenario/v1/generate/upscale", tag = "scenario", params(("dryRun" = Option<String>, Query)), request_body(content = Object, description = "`{image, scalingFactor | targetWidth}` and creative fields (not applied)"), responses((status = 200, description = "`{creativeUnitsCost, creativeUnitsDiscount, job}`"), (status = 269, body = DryRun), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn upscale(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    let not_applied = check_fields("upscale", &body, UPSCALE, UPSCALE_NOT_APPLIED)?;
    let r: UpscaleRequest = typed(&body)?;
    number_in(&body, "scalingFactor", 1.0, 16.0)?;
    number_in(&body, "targetWidth", 1024.0, 16000.0)?;
    // The target wins over the factor (the spec's rule); neither: ×2.
    let (factor, width, whole) = match (r.target_width, r.scaling_factor) {
        (Some(w), _) => (None, Some(w as u32), "targetWidth"),
        (None, f) => (Some(f.unwrap_or(2.0) as f32), None, "scalingFactor"),
    };
    let input = TaskInput::Upscale(UpscaleInput {
        image: image_ref(&r.image),
        factor,
        width,
        height: None,
        format: None,
        quality: None,
    });
    let req = task_request("upscale", input, body, not_applied);
    job_answer(&state, &who, &q, req, UPSCALE, whole).await
}

/// `POST /generate/generative-fill`: inpaint the white of `mask`/`maskId` on the server's
/// default inpainting model; `promptFidelity` is the guidance.
#[utoipa::path(post, path = "/scenario/v1/generate/generative-fill", tag = "scenario", params(("dryRun" = Option<String>, Query)), request_body(content = Object, description = "`{image, mask | maskId, prompt, negativePrompt, seed, numInferenceSteps, promptFidelity}`"), responses((status = 200, description = "`{creativeUnitsCost, creativeUnitsDiscount, job}`"), (status = 269, body = DryRun), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn generative_fill(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    let not_applied = check_fields("generative-fill", &body, FILL, FILL_NOT_APPLIED)?;
    let r: FillRequest = typed(&body)?;
    // `maskId` is the legacy spelling; `mask` wins.
    let mask = r
        .mask
        .or(r.mask_id)
        .ok_or_else(|| Error::invalid("mask", "give the area to fill as `mask` or `maskId`"))?;
    let steps = whole_in(&body, "numInferenceSteps", 5.0, 50.0)?;
    number_in(&body, "promptFidelity", 1.0, 15.0)?;
    number_in(&body, "targetWidth", 0.0, 2048.0)?;
    number_in(&body, "targetHeight", 0.0, 2048.0)?;
    // A number here (the tools' type), a string of digits in the diffusion endpoints: both.
    let seed = match r.seed.as_ref().filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(
            match v {
                Value::String(s) => s.trim().parse::<u64>().ok(),
                v => v.as_u64(),
            }
            .ok_or_else(|| {
                Error::invalid("seed", "must be a whole number, as a number or a string")
            })?,
        ),
    };
    let input = TaskInput::Inpaint(GenerateInput {
        prompt: r.prompt.unwrap_or_else(|| FILL_PROMPT.to_string()),
        negative_prompt: r.negative_prompt,
        image: Some(image_ref(&r.image)),
        mask: Some(image_ref(&mask)),
        steps,
        guidance: r.prompt_fidelity,
        seed,
        count: Some(1),
        ..Default::default()
    });
    let req = task_request("generative-fill", input, body, not_applied);
    job_answer(&state, &who, &q, req, FILL, "image").await
}

/// Submit (or price) a request answered with its job only.
async fn job_answer(
    state: &AppState,
    who: &Principal,
    q: &generate::GenerateQuery,
    req: TaskRequest,
    table: &[(&str, &str)],
    whole: &str,
) -> Result<Response, Failure> {
    if q.is_dry_run() {
        return generate::priced(state, who, req)
            .await
            .map_err(|Failure(e, s)| Failure(named(e, table, whole), s));
    }
    let (job, _) = service::submit(state, who, req)
        .await
        .map_err(|e| named(e, table, whole))?;
    let history = easel_store::jobs::history(&state.store.db, &job.id).await?;
    let job = view::job(job, &history);
    Ok(axum::Json(json!({
        "creativeUnitsCost": job.billing.cu_cost,
        "creativeUnitsDiscount": 0.0,
        "job": job,
    }))
    .into_response())
}
