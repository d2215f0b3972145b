//! Replicate/Cog predictions, mounted at `/replicate/v1`, following
//! `../shared/specs/sana-predictions.openapi.yaml` (an api.market Sana model served the
//! Replicate way) and the Replicate HTTP API that the official clients speak. Client code
//! works by changing the base URL and the key:
//! `replicate.Client(api_token=<Easel key>, base_url="http://host:7878/replicate")`.
//!
//! This module only translates: wire request → `service::TaskRequest` (`txt2img`,
//! `img2img` with `image`, `inpaint` with `image` + `mask`) → queue → `Job` → prediction.
//! Validation, limits, defaults and model lookup are the core's and `service`'s; the status
//! names are `StatusNames::REPLICATE`; errors are FastAPI's shapes (`fastapi`), as a Cog
//! server answers.
//!
//! # Endpoints
//!
//! | endpoint | does |
//! |---|---|
//! | `POST /predictions` | create → **201**; `Prefer: wait` waits (below) |
//! | `PUT /predictions/{id}` | create with a client-chosen id (Cog's idempotent create): the same id again answers the first prediction (**200**) and runs nothing |
//! | `POST /models/{owner}/{name}/predictions` | create for a model named by the path |
//! | `GET /predictions/{id}` | one prediction of the caller |
//! | `GET /predictions?cursor=` | the caller's predictions, newest first, 100 a page: `{previous, next, results}` |
//! | `POST /predictions/{id}/cancel` | cancel (a finished prediction is answered unchanged) |
//! | `GET /models/{owner}/{name}`, `GET /models/{owner}/{name}/versions/{id}` | the model and its one version, for clients that look them up (`replicate.run("owner/name:version")` does) |
//!
//! Auth: `Authorization: Bearer <key>` or `Token <key>`, or the spec's `x-api-market-key`
//! header (the shared authenticator and rate limit).
//!
//! # Models: `owner/name`, `version`, `input.model_variant`
//!
//! Each resolves through the registry (`easel_store::models::resolve`: names, aliases, ids),
//! the most specific first: `input.model_variant`, then the path's `owner/name` (the whole
//! `owner/name` as an alias, then `name` alone, so `easel/tiny` and `nvidia/sana` work once
//! `sana` is installed or aliased), then `version` (a model id, name or alias: alias the
//! spec's `c6b5d2…52fa6` to a model and Sana clients run unchanged). Nothing named: the
//! server's default model for the task. The spec marks `version` required; like a Cog
//! server (one model, no version), Easel runs the default model without one. An unknown
//! name is a 422 at the field that named it (`["body", "version"]`, `["body", "input",
//! "model_variant"]`); an unknown path model is 404.
//!
//! # Input (the Sana schema, plus the fields Replicate's diffusion models use)
//!
//! | field | core input | notes |
//! |---|---|---|
//! | `prompt` | `prompt` | the spec's default (`a cyberpunk cat with a neon sign that says "Sana"`) when absent |
//! | `negative_prompt` | `negative_prompt` | `""` is none |
//! | `width`, `height` | `width`, `height` | absent: the model's default size (512 for SD 1.5, 1024 for SDXL), not the spec's 1024 |
//! | `num_inference_steps` | `steps` | ≥ 1 and the server's `--max-steps`; absent: the model's default, not the spec's 18 |
//! | `guidance_scale` | `guidance` | 1–20 (the spec's range); absent: the model's default |
//! | `pag_guidance_scale` | `pag_guidance` | 1–20. A model on a `replicate` provider passes it upstream; the local engine has no perturbed-attention guidance, so once the prediction ran its `logs` say whether the provider that served it applied it |
//! | `seed` | `seed` | image i uses `seed + i`; drawn at random when absent, and logged |
//! | `model_variant` | the model | see above |
//! | `num_outputs` | `count` | 1 to `--max-images` (default 1) |
//! | `scheduler` | `scheduler` | Easel's names (`euler_a`, `dpmpp_2m_karras`, …) |
//! | `image`, `mask`, `prompt_strength` | `image`, `mask`, `strength` | `image` makes it `img2img`, with `mask` `inpaint` (white = repaint); an asset id, a `data:` URL, a URL of an asset of this server, or an http(s) URL the server fetches (`--fetch-images`: public addresses by default) and stores as an upload |
//! | `output_format`, `output_quality` | `format`, `quality` | `png` (default), `jpeg`, `webp`; 1–100 |
//!
//! Unknown input fields are refused (422 at `["body", "input", field]`), so a typo does not
//! pass silently. The request's other fields: `webhook`, `webhook_events_filter`,
//! `webhook_completed` (the Python client's: a webhook for `completed` only), `stream`
//! (only `false`: no streaming), `id` and `created_at` (the spec's `PredictionRequest`;
//! ignored in the body, use `PUT` to choose the id), `output_file_prefix` (accepted, not
//! applied: outputs are Easel assets; the logs say so).
//!
//! # Predictions
//!
//! `{id, model, version, input, logs, output, error, status, created_at, started_at,
//! completed_at, urls: {get, cancel}, metrics}`:
//! * `id`: the job's ULID in lowercase (26 characters, like Replicate's ids), or the id a
//!   `PUT` chose. Both address it; `GET /v1/jobs/job_<id>` is the same job natively.
//! * `input`: the input as sent; `model`: `owner/name` as addressed (`easel/<name>`
//!   otherwise); `version`: the `version` sent, else the model's id.
//! * `status` (`StatusNames::REPLICATE`): `starting`, `processing`, `succeeded`, `failed`,
//!   `canceled`. A `Prefer: wait` answer whose wait ran out says `starting` even when the
//!   job runs, as Replicate's does: the official clients treat any other status there as
//!   final and only poll after `starting`.
//! * `output`: a signed URL of the image (valid for `signed_url_ttl`) when there is one
//!   image, as the spec says; a list of URLs when `num_outputs` > 1; `null` until it
//!   succeeds.
//! * `logs`: what ran (model, seed, size, steps), the fields not applied, what the provider
//!   reported (a retry, a fallback to another provider; not in webhook deliveries, which
//!   are rendered without reading the job's events), then one tqdm-style line per
//!   denoising step done (`50%|#####     | 1/2`), which the clients'
//!   `prediction.progress` parses.
//! * `metrics`: `predict_time` (started → completed, seconds) and `total_time` (created →
//!   completed) once finished, and `image_count`.
//!
//! `Prefer: wait` or `wait=N` (1–60) waits up to N seconds (60 without N) for the prediction
//! to finish before answering (still 201).
//!
//! # Webhooks
//!
//! `webhook` receives the prediction itself as the body (as Replicate sends it), signed with
//! the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`,
//! under the owner's secret: `GET /v1/webhooks/secret`), and retried with backoff.
//! `webhook_events_filter` (default all four): `start` → when it starts; `logs` → as steps
//! complete (throttled); `output` and `completed` → when it finishes (outputs exist only
//! then).
//!
//! # Errors (FastAPI's, as a Cog server answers)
//!
//! Invalid fields: **422** `{"detail": [{"loc": ["body", "input", "width"], "msg", "type"}]}`
//! with Replicate's field names (`input.steps` → `num_inference_steps`, …); the spec declares
//! 400 for these but its own `HTTPValidationError` component is FastAPI's 422, which is what
//! Cog sends. Everything else: the status with `{"detail": "<message>"}`: 401 (no or bad
//! key), 404 (unknown prediction, model or route), 405, 409, 413, 429 (with `Retry-After`).

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use easel_core::auth::Principal;
use easel_core::job::{namespaces, ExternalId, StatusNames};
use easel_core::model::Model;
use easel_core::{Error, Job, JobStatus, Webhook, WebhookEvent, WebhookFormat};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::dialect::{self, Dialect, DialectState};
use crate::extract::Json;
use crate::fastapi::{self, WireNames};
use crate::service::{self, ImageSource, TaskRequest};
use crate::AppState;

/// Where the dialect is mounted.
pub const BASE: &str = "/replicate/v1";

/// Longest `Prefer: wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Predictions per page of `GET /predictions`.
const PAGE: u32 = 100;

/// The spec's default prompt.
pub const DEFAULT_PROMPT: &str = "a cyberpunk cat with a neon sign that says \"Sana\"";

/// The dialect: its errors are FastAPI's, under Replicate's field names.
pub struct Replicate;

impl Dialect for Replicate {
    type Error = Failure;
}

/// Replicate's names of the core's input fields.
pub struct ReplicateNames;

impl WireNames for ReplicateNames {
    fn wire(core: &str) -> Option<&'static str> {
        Some(match core {
            "input.steps" => "input.num_inference_steps",
            "input.pag_guidance" => "input.pag_guidance_scale",
            "input.guidance" => "input.guidance_scale",
            "input.count" => "input.num_outputs",
            "input.strength" => "input.prompt_strength",
            "input.format" => "input.output_format",
            "input.quality" => "input.output_quality",
            "model" => "version",
            _ => return None,
        })
    }
}

/// A failure in FastAPI's shapes with Replicate's field names.
pub type Failure = fastapi::Failure<ReplicateNames>;

type St = DialectState<Replicate>;
type Result<T, E = Failure> = std::result::Result<T, E>;

pub fn routes(state: &AppState) -> Router<AppState> {
    let api: Router<St> = Router::new()
        .route("/predictions", post(create).get(list))
        .route("/predictions/{id}", get(read).put(create_with_id))
        .route("/predictions/{id}/cancel", post(cancel))
        .route("/models/{owner}/{name}/predictions", post(create_for_model))
        .route("/models/{owner}/{name}", get(model))
        .route("/models/{owner}/{name}/versions/{id}", get(version));
    Router::new().nest(BASE, dialect::mount(api, state))
}

// ---------------------------------------------------------------------------------------
// Requests

/// The body of a create (the spec's `PredictionRequest`, plus `version` and the Python
/// client's `webhook_completed` and `stream`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplicatePredictionRequest)]
pub struct PredictionRequest {
    /// A model id, name or alias of the registry; absent: the path's model, or the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub input: Input,
    /// Receives the prediction as it changes (see `webhook_events_filter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// `start`, `output`, `logs`, `completed`; all four by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events_filter: Option<Vec<EventName>>,
    /// A webhook for `completed` only (the Python client's parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_completed: Option<String>,
    /// Only `false`: no streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Accepted and ignored (choose ids with `PUT /predictions/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Accepted, not applied (outputs are Easel assets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_prefix: Option<String>,
}

/// `webhook_events_filter` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReplicateWebhookEvent)]
pub enum EventName {
    Start,
    Output,
    Logs,
    Completed,
}

/// A prediction's input: the spec's Sana fields and the usual Replicate diffusion fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplicateInput)]
pub struct Input {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// A model name or alias of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u32>,
    /// 1–20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f32>,
    /// 1–20; kept, not applied (no PAG pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pag_guidance_scale: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_outputs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Makes it `img2img` (`inpaint` with `mask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// White = repaint; needs `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// How much of `image` to repaint, above 0 up to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_strength: Option<f32>,
    /// `png`, `jpeg` or `webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// 1–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_quality: Option<u8>,
}

fn in_range(field: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), Error> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(Error::invalid(
            format!("input.{field}"),
            format!("must be between {lo} and {hi}"),
        )),
        _ => Ok(()),
    }
}

/// The task and core input of a prediction's input. Image references are made asset ids
/// where they are URLs of this server (`submit` reads ids and `data:` URLs).
/// Remote image URLs of an input, fetched once the rest is checked.
type Remote = Vec<(&'static str, ImageSource)>;

fn core_input(
    state: &AppState,
    i: &Input,
) -> Result<(&'static str, Map<String, Value>, Remote), Error> {
    in_range("guidance_scale", i.guidance_scale, 1.0, 20.0)?;
    in_range("pag_guidance_scale", i.pag_guidance_scale, 1.0, 20.0)?;
    if i.num_inference_steps == Some(0) {
        return Err(Error::invalid(
            "input.num_inference_steps",
            "must be at least 1",
        ));
    }
    let mut input = Map::new();
    input.insert(
        "prompt".into(),
        json!(i.prompt.as_deref().unwrap_or(DEFAULT_PROMPT)),
    );
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            input.insert(k.into(), v);
        }
    };
    put(
        "negative_prompt",
        i.negative_prompt
            .as_ref()
            .filter(|n| !n.is_empty())
            .map(|n| json!(n)),
    );
    put("width", i.width.map(Value::from));
    put("height", i.height.map(Value::from));
    put("steps", i.num_inference_steps.map(Value::from));
    put("guidance", i.guidance_scale.map(Value::from));
    put("pag_guidance", i.pag_guidance_scale.map(Value::from));
    put("seed", i.seed.map(Value::from));
    put("count", i.num_outputs.map(Value::from));
    put("scheduler", i.scheduler.clone().map(Value::from));
    put("strength", i.prompt_strength.map(Value::from));
    put("format", i.output_format.clone().map(Value::from));
    put("quality", i.output_quality.map(Value::from));
    // Asset ids and data: URLs go as they are (`submit` reads them); this server's asset
    // URLs become ids; other URLs are fetched in `submit`, after every field is checked.
    let mut remote = Vec::new();
    let mut image_ref = |field: &'static str, s: &str| -> Result<Value, Error> {
        let f = format!("input.{field}");
        Ok(match service::image_source(state, &f, s)? {
            ImageSource::Asset(id) => json!(id),
            ImageSource::Bytes(_) => json!(s.trim()),
            src @ ImageSource::Url(_) => {
                remote.push((field, src));
                Value::Null
            }
        })
    };
    let task = match (&i.image, &i.mask) {
        (None, Some(_)) => return Err(Error::invalid("input.mask", "needs `image`")),
        (None, None) => {
            if i.prompt_strength.is_some() {
                return Err(Error::invalid("input.prompt_strength", "needs `image`"));
            }
            "txt2img"
        }
        (Some(img), mask) => {
            input.insert("image".into(), image_ref("image", img)?);
            match mask {
                Some(m) => {
                    input.insert("mask".into(), image_ref("mask", m)?);
                    "inpaint"
                }
                None => "img2img",
            }
        }
    };
    Ok((task, input, remote))
}

/// A registry model by a wire field's value; unknown: 422 at `field`.
async fn named_model(state: &AppState, field: &str, name: &str) -> Result<Model, Error> {
    easel_store::models::resolve(&state.store.db, name)
        .await?
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "no model, alias or id `{name}` in the registry (GET /v1/models lists them; \
                     an admin adds an alias with PATCH /v1/models/{{name}})"
                ),
            )
        })
}

/// The model a path's `owner/name` names: the whole as a name or alias, then `name`.
async fn path_model(state: &AppState, owner: &str, name: &str) -> Result<Model, Error> {
    let db = &state.store.db;
    if let Some(m) = easel_store::models::resolve(db, &format!("{owner}/{name}")).await? {
        return Ok(m);
    }
    easel_store::models::resolve(db, name)
        .await?
        .ok_or_else(|| Error::not_found(&format!("model {owner}/{name}")))
}

/// The webhook of a request, if any.
fn webhook_of(req: &PredictionRequest) -> Result<Option<Webhook>, Error> {
    let events = |names: &[EventName]| {
        let mut events = Vec::new();
        for n in names {
            let e = match n {
                EventName::Start => WebhookEvent::Start,
                EventName::Logs => WebhookEvent::Progress,
                EventName::Output | EventName::Completed => WebhookEvent::Completed,
            };
            if !events.contains(&e) {
                events.push(e);
            }
        }
        events
    };
    let hook = match (&req.webhook, &req.webhook_completed) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "webhook_completed",
                "one webhook per prediction: give `webhook` (with `webhook_events_filter`) or \
                 `webhook_completed`",
            ))
        }
        (Some(url), None) => Webhook {
            url: url.clone(),
            events: events(req.webhook_events_filter.as_deref().unwrap_or(&[
                EventName::Start,
                EventName::Output,
                EventName::Logs,
                EventName::Completed,
            ])),
            format: WebhookFormat::Replicate,
        },
        (None, Some(url)) => Webhook {
            url: url.clone(),
            events: vec![WebhookEvent::Completed],
            format: WebhookFormat::Replicate,
        },
        (None, None) => {
            if req.webhook_events_filter.is_some() {
                return Err(Error::invalid("webhook_events_filter", "needs `webhook`"));
            }
            return Ok(None);
        }
    };
    hook.validate()
        .map_err(|e| Error::invalid("webhook", e.message))?;
    Ok(Some(hook))
}

/// How long `Prefer` asks to wait: `wait` → 60 s, `wait=N` → N s (1–60).
/// A bad value is a 422 at `["header", "prefer"]`, as FastAPI reports header parameters.
fn prefer_wait(headers: &HeaderMap) -> Result<Option<Duration>> {
    let Some(v) = headers.get("prefer") else {
        return Ok(None);
    };
    let bad = || {
        Failure::Invalid(vec![fastapi::Detail::new(
            vec![json!("header"), json!("prefer")],
            "value_error",
            "use `wait` or `wait=N` with N from 1 to 60",
        )])
    };
    let v = v.to_str().map_err(|_| bad())?;
    for pref in v.split([',', ';']).map(str::trim) {
        if pref.eq_ignore_ascii_case("wait") {
            return Ok(Some(MAX_WAIT));
        }
        if let Some(n) = pref
            .split_once('=')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("wait"))
        {
            let secs: u64 = n.1.trim().parse().map_err(|_| bad())?;
            if !(1..=60).contains(&secs) {
                return Err(bad());
            }
            return Ok(Some(Duration::from_secs(secs)));
        }
    }
    Ok(None)
}

/// Where a create came from.
struct Create {
    /// The body as sent (kept, and echoed as `input`).
    raw: Value,
    /// `owner/name` of the path, if any.
    path: Option<(String, String)>,
    /// The id a `PUT` chose.
    id: Option<String>,
}

async fn submit(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    c: Create,
) -> Result<Response> {
    let wait = prefer_wait(headers)?;
    let request: PredictionRequest = easel_core::error::from_json(c.raw.clone())?;
    let req = &request;
    if req.stream == Some(true) {
        return Err(Error::invalid(
            "stream",
            "streaming is not supported; leave it unset or false",
        )
        .into());
    }
    let (task, mut input, remote) = core_input(state, &req.input)?;
    let webhook = webhook_of(req)?;
    let model = if let Some(v) = &req.input.model_variant {
        Some(named_model(state, "input.model_variant", v).await?)
    } else if let Some((owner, name)) = &c.path {
        Some(path_model(state, owner, name).await?)
    } else if let Some(v) = &req.version {
        Some(named_model(state, "version", v).await?)
    } else if req.input.pag_guidance_scale.is_some() {
        // The model that will run, to say now whether it can apply PAG.
        Some(service::default_model(state, task).await?)
    } else {
        None
    };
    if let Some(id) = &c.id {
        if id.is_empty() || id.len() > 255 || id.contains('/') {
            return Err(Error::invalid("id", "must be 1 to 255 characters, without `/`").into());
        }
    }
    if !remote.is_empty() {
        // Every other field must pass first: probe the core's checks with placeholders.
        let mut probe = input.clone();
        for (field, _) in &remote {
            probe.insert((*field).into(), json!("ast_00000000000000000000000000"));
        }
        easel_core::task::TaskInput::parse(task, Value::Object(probe), &state.limits)?;
        for (field, src) in remote {
            let id = service::source_asset(state, who, &format!("input.{field}"), src).await?;
            input.insert(field.into(), json!(id));
        }
    }
    let model_ref = match (&c.path, &model) {
        (Some((o, n)), _) => Some(format!("{o}/{n}")),
        _ => None,
    };
    let mut record = c.raw;
    if record.get("input").is_none() {
        record["input"] = json!({});
    }
    record["dialect"] = json!("replicate");
    if let Some(m) = model_ref {
        record["model"] = json!(m);
    }
    if let Some(id) = &c.id {
        record["id"] = json!(id);
    }
    // A model none of whose providers applies perturbed-attention guidance is known not to,
    // before it runs.
    if req.input.pag_guidance_scale.is_some() && !model.as_ref().is_some_and(Model::may_apply_pag) {
        record["pag_not_applied"] = json!(true);
    }
    let (job, created) = service::submit(
        state,
        who,
        TaskRequest {
            task: task.to_string(),
            model: model.map(|m| m.name),
            input: Value::Object(input),
            priority: None,
            webhook,
            idempotency_key: service::idempotency_key(headers)?,
            request: Some(record),
            external_id: c.id.map(|id| ExternalId {
                namespace: namespaces::REPLICATE_PREDICTION,
                id,
            }),
        },
    )
    .await
    .map_err(|e| match e.field.as_deref() {
        // The receiver's address is checked at submit: name the request's own field.
        Some("webhook.url") => {
            let field = if req.webhook.is_some() {
                "webhook"
            } else {
                "webhook_completed"
            };
            e.with_field(field)
        }
        _ => e,
    })?;
    answer(state, job, created, wait).await
}

/// The answer to a create: the prediction (after waiting up to `wait`), 201 when it was
/// created now, 200 when the request named one that exists.
async fn answer(
    state: &AppState,
    job: Job,
    created: bool,
    wait: Option<Duration>,
) -> Result<Response> {
    let (job, waited_out) = match wait {
        Some(d) => {
            let j = service::wait_job(state, job, d).await?;
            let out = !j.status.is_terminal();
            (j, out)
        }
        None => (job, false),
    };
    let mut p = read_prediction(state, &job).await?;
    if waited_out {
        p.status = "starting";
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(p)).into_response())
}

/// Create a prediction.
#[utoipa::path(post, path = "/replicate/v1/predictions", tag = "replicate", request_body = PredictionRequest,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` (1–60 s): answer when it finishes, or after N seconds")),
    responses((status = 201, body = Prediction), (status = 401, body = DetailBody), (status = 422, body = ValidationBody), (status = 429, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let c = Create {
        raw,
        path: None,
        id: None,
    };
    submit(&state, &who, &headers, c).await
}

/// Create a prediction with a client-chosen id; the same id again answers the first.
#[utoipa::path(put, path = "/replicate/v1/predictions/{id}", tag = "replicate", request_body = PredictionRequest,
    params(("id" = String, Path), ("Prefer" = Option<String>, Header)),
    responses((status = 201, body = Prediction, description = "Created"), (status = 200, body = Prediction, description = "Already created with this id"),
        (status = 401, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create_with_id(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let id = id.map(|Path(id)| id).unwrap_or_default();
    // An id that already names one of the caller's predictions (one a PUT chose, or the id
    // of one created with POST) answers it: a PUT never shadows a prediction.
    if let Ok(job) = find(&state, &who, Ok(Path(id.clone()))).await {
        return answer(&state, job, false, prefer_wait(&headers)?).await;
    }
    let c = Create {
        raw,
        path: None,
        id: Some(id),
    };
    submit(&state, &who, &headers, c).await
}

/// Create a prediction of the model the path names.
#[utoipa::path(post, path = "/replicate/v1/models/{owner}/{name}/predictions", tag = "replicate", request_body = PredictionRequest,
    params(("owner" = String, Path), ("name" = String, Path), ("Prefer" = Option<String>, Header)),
    responses((status = 201, body = Prediction), (status = 404, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create_for_model(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let Ok(Path((owner, name))) = path else {
        return Err(Error::not_found("model").into());
    };
    let c = Create {
        raw,
        path: Some((owner, name)),
        id: None,
    };
    submit(&state, &who, &headers, c).await
}

// ---------------------------------------------------------------------------------------
// Responses

/// `urls`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplicateUrls)]
pub struct Urls {
    pub get: String,
    pub cancel: String,
}

/// A prediction (the spec's `PredictionResponse`, with Replicate's `model` and `urls`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplicatePrediction)]
pub struct Prediction {
    pub id: String,
    /// `owner/name`.
    pub model: String,
    pub version: String,
    /// The input as sent.
    #[schema(value_type = Object)]
    pub input: Value,
    pub logs: String,
    /// One URL (one image), a list of URLs (several), or null.
    #[schema(value_type = Option<Object>)]
    pub output: Value,
    pub error: Option<String>,
    /// `starting`, `processing`, `succeeded`, `failed` or `canceled`.
    pub status: &'static str,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub urls: Urls,
    #[schema(value_type = Object)]
    pub metrics: Value,
}

/// `{"detail": "..."}`.
#[derive(Serialize, ToSchema)]
#[schema(as = ReplicateDetail)]
pub struct DetailBody {
    pub detail: String,
}

/// FastAPI's 422: `{"detail": [{"loc", "msg", "type"}]}`.
#[derive(Serialize, ToSchema)]
#[schema(as = ReplicateValidationError)]
pub struct ValidationBody {
    #[schema(value_type = Vec<Object>)]
    pub detail: Vec<Value>,
}

fn rfc3339(t: easel_core::time::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The id a prediction is known by: the one a `PUT` chose, else the job's ULID.
pub fn prediction_id(job: &Job) -> String {
    job.request
        .as_ref()
        .filter(|r| r["dialect"] == "replicate")
        .and_then(|r| r["id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| job.id.strip_prefix("job_").unwrap_or(&job.id).to_string())
}

/// One tqdm-style progress line (what Replicate's clients parse as progress).
fn progress_line(done: u32, total: u32) -> String {
    let pct = (u64::from(done) * 100 / u64::from(total.max(1))) as u32;
    let filled = (pct / 10) as usize;
    format!(
        "{pct:>3}%|{}{}| {done}/{total}",
        "#".repeat(filled),
        " ".repeat(10 - filled.min(10))
    )
}

/// The logs of a prediction: what runs, what was not applied, one line per step done.
fn logs(job: &Job, request: Option<&Value>, provider_log: &[String]) -> String {
    let mut lines = Vec::new();
    let i = &job.input;
    if job.input.get("prompt").is_some() {
        let scheduler = match i["scheduler"].as_str() {
            Some(name) => format!("scheduler {name}"),
            None => "the model's scheduler".to_string(),
        };
        lines.push(format!(
            "Running {} with {}: {}x{}, {} steps, guidance {}, {scheduler}, seed {}",
            job.task,
            job.model.as_deref().unwrap_or("the default model"),
            i["width"],
            i["height"],
            i["steps"],
            i["guidance"],
            i["seed"],
        ));
    }
    // Once it ran, whether the provider that served applied perturbed-attention guidance.
    match (i["pag_guidance"].as_f64(), job.provider.as_deref()) {
        (Some(pag), Some(p)) if easel_core::model::provider_applies_pag(p) => lines.push(format!(
            "pag_guidance_scale {pag} was passed to the {p} provider"
        )),
        (Some(pag), Some(p)) => lines.push(format!(
            "pag_guidance_scale {pag} was not applied: the {p} provider that ran this model \
             has no perturbed-attention guidance; the image uses guidance_scale only"
        )),
        (Some(pag), None) if request.is_some_and(|r| r["pag_not_applied"] == true) => {
            lines.push(format!(
                "pag_guidance_scale {pag} was not applied: this model's providers have no \
                 perturbed-attention guidance; the image uses guidance_scale only"
            ))
        }
        _ => {}
    }
    if request.is_some_and(|r| r.get("output_file_prefix").is_some()) {
        lines.push("output_file_prefix was not applied: outputs are stored as Easel assets".into());
    }
    lines.extend(provider_log.iter().cloned());
    if let Some(total) = job.total_steps.filter(|t| *t > 0) {
        let done = if job.status == JobStatus::Succeeded {
            total
        } else {
            job.step.unwrap_or(0).min(total)
        };
        lines.extend((1..=done).map(|d| progress_line(d, total)));
    }
    if let Some(e) = &job.error {
        lines.push(format!("error: {}", e.message));
    }
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Jobs as predictions, with what their providers reported (one query for all their `log`
/// events).
async fn predictions(state: &AppState, jobs: &[Job]) -> Result<Vec<Prediction>> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let mut logs = easel_store::jobs::log_lines(&state.store.db, &ids).await?;
    Ok(jobs
        .iter()
        .map(|j| prediction(state, j, &logs.remove(&j.id).unwrap_or_default()))
        .collect())
}

/// One job as a prediction, with what its provider reported.
async fn read_prediction(state: &AppState, job: &Job) -> Result<Prediction> {
    let mut p = predictions(state, std::slice::from_ref(job)).await?;
    Ok(p.remove(0))
}

/// A job as a prediction (no I/O: webhook deliveries render it too). `provider_log` is what
/// its provider reported (`easel_store::jobs::log_lines`: retries, a fallback).
pub fn prediction(state: &AppState, job: &Job, provider_log: &[String]) -> Prediction {
    let request = job.request.as_ref().filter(|r| r["dialect"] == "replicate");
    let id = prediction_id(job);
    let base = format!("{}{BASE}/predictions/{id}", state.public_url);
    let model = request
        .and_then(|r| r["model"].as_str())
        .map(str::to_string)
        .or_else(|| {
            job.model.as_ref().map(|m| match m.contains('/') {
                true => m.clone(),
                false => format!("easel/{m}"),
            })
        })
        .unwrap_or_else(|| format!("easel/{}", job.task));
    let version = request
        .and_then(|r| r["version"].as_str())
        .map(str::to_string)
        .or_else(|| job.model.clone())
        .unwrap_or_else(|| job.task.clone());
    let urls: Vec<String> = job
        .outputs
        .iter()
        .map(|a| service::asset_url(state, a))
        .collect();
    let output = match (job.status, urls.len()) {
        (JobStatus::Succeeded, 1) => json!(urls[0]),
        (JobStatus::Succeeded, _) => json!(urls),
        _ => Value::Null,
    };
    let mut metrics = Map::new();
    if let (Some(s), Some(c)) = (job.started_at, job.completed_at) {
        metrics.insert(
            "predict_time".into(),
            json!((c - s).num_milliseconds() as f64 / 1000.0),
        );
    }
    if let Some(c) = job.completed_at {
        metrics.insert(
            "total_time".into(),
            json!((c - job.created_at).num_milliseconds() as f64 / 1000.0),
        );
    }
    if job.status == JobStatus::Succeeded {
        metrics.insert("image_count".into(), json!(job.outputs.len()));
    }
    Prediction {
        model,
        version,
        input: request
            .map(|r| r["input"].clone())
            .unwrap_or_else(|| job.input.clone()),
        logs: logs(job, request, provider_log),
        output,
        error: job.failure().map(|e| e.message),
        status: StatusNames::REPLICATE.name(job.status),
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        completed_at: job.completed_at.map(rfc3339),
        urls: Urls {
            cancel: format!("{base}/cancel"),
            get: base,
        },
        metrics: Value::Object(metrics),
        id,
    }
}

/// A webhook delivery's body: the prediction.
pub fn webhook_body(state: &AppState, job: &Job) -> Value {
    // Rendered at send time without I/O: the provider's own lines are in the prediction as
    // read (`GET /predictions/{id}`), not in deliveries.
    serde_json::to_value(prediction(state, job, &[])).unwrap_or_default()
}

/// A prediction of the caller by the id it is known by.
async fn find(
    state: &AppState,
    who: &Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Job> {
    let not_found = || Failure::from(Error::not_found("prediction"));
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    let chosen = easel_store::external_ids::find(
        &state.store.db,
        namespaces::REPLICATE_PREDICTION,
        &who.user_id,
        &id,
    )
    .await?;
    let job_id = match chosen {
        Some(j) => j,
        None => format!("job_{id}"),
    };
    if !easel_core::id::is_valid(easel_core::id::JOB, &job_id) {
        return Err(not_found());
    }
    service::owned_job(state, who, &job_id)
        .await
        .map_err(|_| not_found())
}

/// One prediction.
#[utoipa::path(get, path = "/replicate/v1/predictions/{id}", tag = "replicate", params(("id" = String, Path)),
    responses((status = 200, body = Prediction), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Prediction>> {
    let job = find(&state, &who, id).await?;
    Ok(axum::Json(read_prediction(&state, &job).await?))
}

/// Cancel a prediction; a finished one is answered as it is.
#[utoipa::path(post, path = "/replicate/v1/predictions/{id}/cancel", tag = "replicate", params(("id" = String, Path)),
    responses((status = 200, body = Prediction), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Prediction>> {
    let job = find(&state, &who, id).await?;
    let job = if job.status.is_terminal() {
        job
    } else {
        state.queue.cancel(&job.id, None).await?
    };
    Ok(axum::Json(read_prediction(&state, &job).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct ListParams {
    /// The `next` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A page of predictions.
#[derive(Serialize, ToSchema)]
#[schema(as = ReplicatePredictionPage)]
pub struct Page {
    pub previous: Option<String>,
    pub next: Option<String>,
    pub results: Vec<Prediction>,
}

/// The caller's predictions, newest first (every job of the caller, whichever API made it).
#[utoipa::path(get, path = "/replicate/v1/predictions", tag = "replicate", params(ListParams),
    responses((status = 200, body = Page), (status = 401, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ListParams>,
) -> Result<axum::Json<Page>> {
    let before = match q.cursor {
        Some(c) if easel_core::id::is_valid(easel_core::id::JOB, &c) => Some(c),
        Some(_) => {
            return Err(fastapi::Failure::Invalid(vec![fastapi::Detail::new(
                vec![json!("query"), json!("cursor")],
                "value_error",
                "not a cursor of this list (use the `next` URL as given)",
            )]))
        }
        None => None,
    };
    let filter = easel_store::jobs::JobFilter {
        owner_id: Some(who.user_id.clone()),
        before,
        limit: PAGE + 1,
        ..Default::default()
    };
    let mut jobs = easel_store::jobs::list(&state.store.db, &filter).await?;
    let next = (jobs.len() > PAGE as usize).then(|| {
        jobs.truncate(PAGE as usize);
        let last = &jobs[jobs.len() - 1].id;
        format!("{}{BASE}/predictions?cursor={last}", state.public_url)
    });
    Ok(axum::Json(Page {
        previous: None,
        next,
        results: predictions(&state, &jobs).await?,
    }))
}

/// A model's one version (Replicate's `Version`).
#[derive(Serialize, ToSchema)]
#[schema(as = ReplicateVersion)]
pub struct Version {
    pub id: String,
    pub created_at: String,
    /// `easel-<version>`.
    pub cog_version: String,
    /// The input and output schemas (Sana's `Input`, a URI `Output`).
    #[schema(value_type = Object)]
    pub openapi_schema: Value,
}

/// A model (Replicate's `Model`).
#[derive(Serialize, ToSchema)]
#[schema(as = ReplicateModel)]
pub struct ModelView {
    pub url: String,
    pub owner: String,
    pub name: String,
    pub description: Option<String>,
    /// `private`: a model of this server.
    pub visibility: &'static str,
    pub github_url: Option<String>,
    pub paper_url: Option<String>,
    pub license_url: Option<String>,
    pub run_count: u64,
    pub cover_image_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub default_example: Option<Value>,
    pub latest_version: Version,
}

fn version_of(m: &Model, id: &str) -> Version {
    Version {
        id: id.to_string(),
        created_at: rfc3339(m.created_at),
        cog_version: concat!("easel-", env!("CARGO_PKG_VERSION")).to_string(),
        openapi_schema: json!({
            "openapi": "3.0.2",
            "info": {"title": m.name, "version": id},
            "components": {"schemas": {
                "Input": {"type": "object", "title": "Input"},
                "Output": {"type": "string", "format": "uri", "title": "Output"}
            }}
        }),
    }
}

/// A model by `owner/name`.
#[utoipa::path(get, path = "/replicate/v1/models/{owner}/{name}", tag = "replicate",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ModelView), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn model(
    State(state): State<AppState>,
    _: Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<axum::Json<ModelView>> {
    let Ok(Path((owner, name))) = path else {
        return Err(Error::not_found("model").into());
    };
    let m = path_model(&state, &owner, &name).await?;
    Ok(axum::Json(ModelView {
        url: format!("{}{BASE}/models/{owner}/{name}", state.public_url),
        description: Some(format!("{} ({}): {}", m.name, m.family, m.tasks.join(", "))),
        visibility: "private",
        github_url: None,
        paper_url: None,
        license_url: None,
        run_count: 0,
        cover_image_url: None,
        default_example: None,
        latest_version: version_of(&m, &m.id),
        owner,
        name,
    }))
}

/// A version of a model: its id, or any name or alias of the same model.
#[utoipa::path(get, path = "/replicate/v1/models/{owner}/{name}/versions/{id}", tag = "replicate",
    params(("owner" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Version), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn version(
    State(state): State<AppState>,
    _: Auth,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<axum::Json<Version>> {
    let Ok(Path((owner, name, id))) = path else {
        return Err(Error::not_found("version").into());
    };
    let m = path_model(&state, &owner, &name).await?;
    let v = easel_store::models::resolve(&state.store.db, &id).await?;
    match v {
        Some(v) if v.id == m.id => Ok(axum::Json(version_of(&m, &id))),
        _ => Err(Error::not_found(&format!("version {id} of {owner}/{name}")).into()),
    }
}

/// The dialect's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, create_with_id, create_for_model, read, cancel, list, model, version),
    components(schemas(PredictionRequest, Input, EventName, Prediction, Urls, Page, ModelView, Version,
        DetailBody, ValidationBody)),
    tags((name = "replicate", description = "Replicate/Cog predictions at /replicate/v1 (the Sana spec): create \
        (POST, PUT with an id, by model), get, list, cancel; Prefer: wait; webhooks with the prediction as body. \
        Errors are FastAPI's: 422 {\"detail\": [{loc, msg, type}]}, else {\"detail\": \"...\"}."))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse_as_tqdm() {
        assert_eq!(progress_line(1, 2), " 50%|#####     | 1/2");
        assert_eq!(progress_line(2, 2), "100%|##########| 2/2");
        assert_eq!(progress_line(0, 3), "  0%|          | 0/3");
    }

    #[test]
    fn prefer_wait_takes_wait_and_seconds() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("prefer", v.parse().unwrap());
            m
        };
        assert_eq!(prefer_wait(&HeaderMap::new()).unwrap(), None);
        assert_eq!(prefer_wait(&h("wait")).unwrap(), Some(MAX_WAIT));
        assert_eq!(
            prefer_wait(&h("wait=5")).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(prefer_wait(&h("respond-async")).unwrap(), None);
        for bad in ["wait=0", "wait=61", "wait=soon"] {
            assert!(prefer_wait(&h(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn core_fields_are_named_by_replicate_names() {
        assert_eq!(
            fastapi::body_loc::<ReplicateNames>("input.steps"),
            [json!("body"), json!("input"), json!("num_inference_steps")]
        );
        assert_eq!(
            fastapi::body_loc::<ReplicateNames>("input.width"),
            [json!("body"), json!("input"), json!("width")]
        );
        assert_eq!(
            fastapi::body_loc::<ReplicateNames>("model"),
            [json!("body"), json!("version")]
        );
    }

    #[test]
    fn event_filters_map_onto_job_events() {
        let req: PredictionRequest = serde_json::from_value(json!({
            "input": {}, "webhook": "https://x.test/h", "webhook_events_filter": ["output", "completed"]
        }))
        .unwrap();
        let w = webhook_of(&req).unwrap().unwrap();
        assert_eq!(w.events, [WebhookEvent::Completed]);
        assert_eq!(w.format, WebhookFormat::Replicate);
        let req: PredictionRequest = serde_json::from_value(json!({
            "input": {}, "webhook": "https://x.test/h"
        }))
        .unwrap();
        assert_eq!(
            webhook_of(&req).unwrap().unwrap().events,
            [
                WebhookEvent::Start,
                WebhookEvent::Completed,
                WebhookEvent::Progress
            ]
        );
        let req: PredictionRequest = serde_json::from_value(json!({
            "input": {}, "webhook_completed": "https://x.test/done"
        }))
        .unwrap();
        assert_eq!(
            webhook_of(&req).unwrap().unwrap().events,
            [WebhookEvent::Completed]
        );
    }
}
