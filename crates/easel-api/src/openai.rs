//! The OpenAI-compatible dialect, mounted at `/openai/v1`: the OpenAI images API and
//! `../shared/specs/aimagicx.openapi.json` (an OpenAI-compatible API with jobs). Client code
//! written for them works by changing only the base URL and the key
//! (`OpenAI(base_url="http://host:7878/openai/v1", api_key=<Easel key>)`).
//!
//! This module only translates: wire request → `service::TaskRequest` → `service::submit`
//! (which validates through the core: field rules, limits, models) → queue → `Job` → wire
//! response. Shared pieces live in the core (`generate::parse_size`, `style::OPENAI`,
//! `job::StatusNames::OPENAI`, `Job::failure`, `usage::estimate_units`/`credits`) and in
//! `service` (waiting for a job, outputs as URLs or base64, image references, masks from
//! transparency).
//!
//! # Endpoints
//!
//! | endpoint | does |
//! |---|---|
//! | `POST /images/generations` | `txt2img`; synchronous unless `?async=true` |
//! | `POST /images/edits` | `img2img` (no mask) or `inpaint` (a mask, or a transparent image); JSON (the spec's) or multipart (OpenAI's); `?async=true` too |
//! | `GET /jobs/{id}` | any job of the caller; `?poll=true` waits up to 30 s for it to end |
//! | `GET /models`, `GET /models/{id}` | the models registry |
//! | `POST /embeddings` | text embeddings from a local model's CLIP text encoder (pooled, L2-normalised; 768/1024/1280 values for SD 1.x/2.x/XL); `input` a string or up to 256 strings, `encoding_format` `float` or `base64`, `dimensions` must match; `model` absent: the default `txt2img` model |
//! | `POST /chat/completions`, `/completions`, `/audio/speech`, `/audio/transcriptions`, `/audio/translations`, `/videos/generations`, `/music/generations`, `/images/variations` | relayed to the upstream OpenAI-compatible provider registered for the request's `model` (a model whose `provider` or `fallback_provider` is `openai`; JSON or multipart, answers streamed back, SSE included; the fallback when the first is unreachable or answers 429/5xx); without one, 501 naming what is missing |
//!
//! Auth: `Authorization: Bearer <Easel key>` (the shared authenticator and rate limit).
//!
//! # Requests: what each field becomes
//!
//! | field | core input | notes |
//! |---|---|---|
//! | `prompt` (required) | `prompt` | at most the server's prompt limit (4000 characters) |
//! | `model` | the job's model | a registry name, alias or id. Absent: the default model for the task (`service::submit`: a recommended model first). Unknown: **404** `model_not_found` (OpenAI's convention); a LoRA, or a model that cannot do the task: 400. Clients that hard-code `dall-e-3`/`gpt-image-1` work once an admin adds that name as an alias of a model. |
//! | `n` | `count` | the server's `--max-images` (default 8) applies, not the spec's 10 |
//! | `size` | `width`, `height` | any `WxH` the core allows (multiples of 8, 64 and up, the pixel limits), not only the spec's enum; absent or `auto`: the model's default size (512, 1024 for SDXL, or the model's registry defaults), not the spec's 1024x1024; edits default to the input image's size |
//! | `response_format` | (response) | `url` (default: a signed URL of the asset, valid for `signed_url_ttl`) or `b64_json` |
//! | `seed` | `seed` | image i uses `seed + i`; drawn at random when absent |
//! | `negative_prompt` | `negative_prompt` | |
//! | `style` | prompt template | `vivid`/`natural` wrap the prompt and extend the negative prompt by `easel_core::style::OPENAI`; absent: the prompt is used as given (the spec's default `vivid` is not applied). The prompt that ran is `revised_prompt`. |
//! | `upscale` | `upscale` | `2x`/`4x`: the job upscales each output (Lanczos3) once it is generated, so the images are 2 or 4 times `size`; synchronous and `?async=true` alike, one job |
//! | `output_format`, `output_compression` | `format`, `quality` | `png` (default), `jpeg`, `webp`; 1–100 |
//! | `quality`, `user`, `moderation`, `safety_identifier`, `input_fidelity` | — | accepted and ignored: steps decide quality here (see `steps`) |
//! | `background` | — | `auto`/`opaque` accepted; `transparent` refused (outputs are opaque) |
//! | `stream` | — | `false` accepted; `true` refused (no streaming of partial images) |
//! | `image`, `mask` | `image`, `mask` | edits only; see below |
//! | Easel extensions: `steps`, `guidance`, `scheduler`, `strength` (edits) | same | as in the native API; absent: the model's registry defaults |
//!
//! Unknown fields are refused (400, naming the field), so a typo does not pass silently.
//!
//! # Edits: images and masks
//!
//! `image` and `mask` are, in JSON, an Easel asset id (`ast_…`), a `data:` URL, a URL of
//! an asset of this server (`<public-url>/v1/assets/{id}[/content]`, e.g. a `url` this
//! dialect returned), or any other http(s) URL, which the server fetches (`--fetch-images`:
//! public addresses only by default; at most the body limit, 30 s, 3 redirects) and stores
//! as an upload. In multipart they are file parts (`image` or `image[]`, one
//! image; `mask`). OpenAI's masks mark the area to edit with transparent pixels (alpha 0);
//! Easel's masks are white where to repaint. A mask with transparent pixels is converted
//! (`255 - alpha`: transparent → repaint, opaque → keep, partial → blended) and stored as an
//! upload; a mask without transparency is taken as an Easel mask (white = repaint). Without a
//! mask, an image with transparent pixels is inpainted there (as OpenAI does); an opaque one
//! runs `img2img`.
//!
//! # Responses
//!
//! * Synchronous (default): the request waits for the job (the queue's long-poll) up to
//!   `--sync-timeout` (default 300 s), then answers `{created, data: [{url | b64_json,
//!   revised_prompt, width, height}], model, usage}`. `model_tier` is left out (no tiers).
//!   A job still running at the deadline is **504** `timeout`, naming the job to poll (it
//!   keeps running); a failed job is the failure (400 for input the task refused, 500
//!   otherwise, code = the job's error code); a canceled job is 409. These answers carry
//!   `x-should-retry: false`, so the OpenAI SDKs do not resubmit the work.
//! * `?async=true`: `{id, status, created, model, estimated_credits}` at once.
//! * Jobs: `{id, status, progress (0–100), created, completed, model, outputData, errorMessage,
//!   usage}`. Status by `StatusNames::OPENAI`: queued → `pending`, running → `processing`,
//!   succeeded → `completed`, failed and canceled → `failed` (the spec's enum has no cancel
//!   state; `errorMessage` says the job was canceled). `outputData` is `{data: [...]}`
//!   with the items a synchronous answer would have had (URLs), `null` until completed.
//! * Credits: `usage.credits_used` and `estimated_credits` are the job's usage units (output
//!   megapixels, at least 0.01 per image) rounded up to whole credits; `credits_breakdown`
//!   splits them by task (`txt2img`, `img2img`, `inpaint`); an upscaled output counts its
//!   upscaled megapixels.
//! * Models: `{object: "list", data: [{id: name, object: "model", created, owned_by: "easel",
//!   category, capabilities: tasks}]}`; `category` is `image`, or the first task of an upstream's
//!   model that does no image task (`chat`). LoRAs are left out (they are not models one
//!   can run; they are applied through the native API's `loras`).
//! * An `Idempotency-Key` header works as in the native API (same key and owner within 24 h:
//!   the same job).
//!
//! # Errors
//!
//! `{"error": {"message", "type", "param", "code"}}` for every failure, auth and malformed
//! bodies included (the shared extractors reject in this shape through `dialect`). The spec
//! lists `message`, `type` and `code`; `param` is OpenAI's own field, which its SDKs read. `param`
//! names the wire field (core fields are renamed back: `input.count` → `n`,
//! `input.width`/`height` → `size`, `input.format` → `output_format`) and the message starts
//! with it. Status: as the core error's kind, except invalid fields, which are **400** (the
//! spec's and OpenAI's `BadRequest`) instead of 422. Types: 400/404/405/409/413 →
//! `invalid_request_error`, 401 → `authentication_error`, 403 → `permission_error`, 429 →
//! `rate_limit_error` (with `Retry-After`), 501 → `not_implemented_error`, 504 →
//! `timeout_error`, other 5xx → `server_error`.
//!
//! # OpenAPI
//!
//! The paths are in the server's document (`/openapi.json`, tag `openai`) through
//! [`ApiDoc`].

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use easel_core::auth::Principal;
use easel_core::job::StatusNames;
use easel_core::task::OutputFormat;
use easel_core::{Error, ErrorKind, Job};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::dialect::{self, Dialect, DialectState};
use crate::error::{error_headers, ApiError};
use crate::extract::{Form, Json, Query};
use crate::service::{self, ImageSource, TaskRequest};
use crate::AppState;

/// Where the dialect is mounted.
pub const BASE: &str = "/openai/v1";

/// Longest wait of `GET /jobs/{id}?poll=true` (the spec's 30 s).
pub const POLL_WAIT: Duration = Duration::from_secs(30);

/// The dialect: its errors are [`OpenAiError`]s.
pub struct OpenAi;

impl Dialect for OpenAi {
    type Error = OpenAiError;
}

type St = DialectState<OpenAi>;
type Result<T, E = OpenAiError> = std::result::Result<T, E>;

pub fn routes(state: &AppState) -> Router<AppState> {
    let api: Router<St> = Router::new()
        .route("/images/generations", post(generations))
        .route("/images/edits", post(edits))
        .route("/jobs/{id}", get(job))
        .route("/models", get(models))
        .route("/models/{id}", get(model))
        .route("/embeddings", post(embeddings))
        .route("/chat/completions", post(upstream))
        .route("/completions", post(upstream))
        .route("/audio/speech", post(upstream))
        .route("/audio/transcriptions", post(upstream))
        .route("/audio/translations", post(upstream))
        .route("/videos/generations", post(upstream))
        .route("/music/generations", post(upstream))
        .route("/images/variations", post(upstream));
    Router::new().nest(BASE, dialect::mount(api, state))
}

// ---------------------------------------------------------------------------------------
// Errors

/// A core error in OpenAI's shape, with an optional code of its own (a failed job's code)
/// and whether the SDKs may retry the request.
#[derive(Debug)]
pub struct OpenAiError {
    pub error: Error,
    pub code: Option<Box<str>>,
    pub retry: bool,
    /// The wire field, where the core field path does not say it (`input` of
    /// `/embeddings` is a wire field, not the core's task input).
    pub param: Option<Box<str>>,
}

impl From<Error> for OpenAiError {
    fn from(error: Error) -> Self {
        OpenAiError {
            error,
            code: None,
            retry: true,
            param: None,
        }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        e.0.into()
    }
}

impl OpenAiError {
    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }
    fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into().into_boxed_str());
        self
    }
    /// The work was done (or is still running): a retry would submit it again.
    fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

/// `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorBody)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorObject)]
pub struct ErrorObject {
    /// Starts with the field (`n: must be between 1 and 8`) when there is one.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error`, `not_implemented_error`, `timeout_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, by its wire name.
    pub param: Option<String>,
    /// `invalid_value`, `missing_required_parameter`, `invalid_api_key`, `model_not_found`,
    /// `rate_limit_exceeded`, `timeout`, a failed job's code, …
    pub code: String,
}

/// A core field path by its name on this dialect's wire: core input fields (`input.…`) are
/// renamed back; wire fields are already named so.
fn wire_field(field: &str) -> Option<String> {
    let Some(f) = field.strip_prefix("input.") else {
        return match field {
            "" | "input" => None,
            f => Some(f.to_string()),
        };
    };
    Some(
        match f {
            "count" => "n",
            "width" | "height" => "size",
            "format" => "output_format",
            "quality" => "output_compression",
            other => other,
        }
        .to_string(),
    )
}

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::NotImplemented => "not_implemented_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Internal | ErrorKind::Unavailable => "server_error",
        ErrorKind::BadRequest
        | ErrorKind::Invalid
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge => "invalid_request_error",
    }
}

impl OpenAiError {
    fn body(&self) -> (StatusCode, ErrorBody) {
        let e = &self.error;
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            k => crate::error::status_of(k),
        };
        let param = self
            .param
            .as_deref()
            .map(str::to_string)
            .or_else(|| e.field.as_deref().and_then(wire_field));
        let message = match &param {
            Some(p) => format!("{p}: {}", e.message),
            None => e.message.clone(),
        };
        let code = self.code.as_deref().map(str::to_string).unwrap_or_else(|| {
            match e.kind {
                ErrorKind::Invalid if e.message.starts_with("missing field") => {
                    "missing_required_parameter"
                }
                ErrorKind::Invalid => "invalid_value",
                ErrorKind::Unauthorized => "invalid_api_key",
                ErrorKind::RateLimited => "rate_limit_exceeded",
                k => k.as_str(),
            }
            .to_string()
        });
        let body = ErrorBody {
            error: ErrorObject {
                message,
                kind: error_type(e.kind).to_string(),
                param,
                code,
            },
        };
        (status, body)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut resp = (status, axum::Json(body)).into_response();
        error_headers(&self.error, &mut resp);
        if !self.retry {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// `response_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = OpenAiResponseFormat)]
pub enum ResponseFormat {
    /// A signed URL of the image (default).
    #[default]
    Url,
    /// The image bytes, base64-encoded.
    B64Json,
}

/// `upscale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[schema(as = OpenAiUpscale)]
pub enum Upscale {
    #[serde(rename = "2x")]
    X2,
    #[serde(rename = "4x")]
    X4,
}

impl Upscale {
    fn factor(self) -> u32 {
        match self {
            Upscale::X2 => 2,
            Upscale::X4 => 4,
        }
    }
}

/// The body of `/images/generations` and `/images/edits` (JSON; edits also take OpenAI's
/// multipart form with the same fields, `image`/`mask` as files). `image`, `mask` and
/// `strength` are for edits only. See the module documentation for what each field does.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OpenAiImageRequest)]
pub struct ImageRequest {
    /// What to draw (edits: what the edited image shows).
    pub prompt: String,
    /// A model name, alias or id of the registry; absent: the default model for the task.
    #[serde(default)]
    pub model: Option<String>,
    /// Images to make (1 to the server's `--max-images`, default 8).
    #[serde(default)]
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT` (multiples of 8, at least 64) or `auto`; absent: the model's default
    /// (edits: the input image's size).
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// `vivid` or `natural` (prompt templates); absent: the prompt as given.
    #[serde(default)]
    pub style: Option<String>,
    /// Upscale every output (Lanczos) by this factor once it is generated.
    #[serde(default)]
    pub upscale: Option<Upscale>,
    /// `png` (default), `jpeg` or `webp`.
    #[serde(default)]
    pub output_format: Option<OutputFormat>,
    /// 1–100 for JPEG and WebP (100: lossless WebP).
    #[serde(default)]
    pub output_compression: Option<u8>,
    /// Accepted and ignored (use `steps`).
    #[serde(default)]
    pub quality: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub moderation: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub safety_identifier: Option<String>,
    /// `auto` or `opaque`; `transparent` is refused.
    #[serde(default)]
    pub background: Option<String>,
    /// Only `false`: no streaming.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Edits: the image (an asset id, a `data:` URL or an asset URL of this server).
    #[serde(default)]
    pub image: Option<String>,
    /// Edits: the mask (transparent = edit; or white = repaint when opaque).
    #[serde(default)]
    pub mask: Option<String>,
    /// Edits: accepted and ignored.
    #[serde(default)]
    pub input_fidelity: Option<String>,
    /// Easel extension: denoising steps (default: the model's).
    #[serde(default)]
    pub steps: Option<u32>,
    /// Easel extension: guidance scale (default: the model's).
    #[serde(default)]
    pub guidance: Option<f32>,
    /// Easel extension: scheduler (`euler_a`, `dpmpp_2m_karras`, …).
    #[serde(default)]
    pub scheduler: Option<String>,
    /// Easel extension, edits: how much to repaint, above 0 up to 1.
    #[serde(default)]
    pub strength: Option<f32>,
}

#[derive(Deserialize, IntoParams)]
pub struct AsyncParams {
    /// Answer at once with a job to poll instead of waiting for the images.
    #[serde(rename = "async", default)]
    pub asynchronous: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
pub struct PollParams {
    /// Wait up to 30 s for the job to end.
    #[serde(default)]
    pub poll: Option<bool>,
}

/// The core input of a generation: the request's fields under the core's names (the core
/// validates them when the task is submitted). Returns the input and the prompt that runs.
fn core_input(req: &ImageRequest) -> Result<(Map<String, Value>, String)> {
    if req.stream == Some(true) {
        return Err(Error::invalid(
            "stream",
            "streaming is not supported; leave it unset or false",
        )
        .into());
    }
    if let Some(b) = &req.background {
        if !["auto", "opaque"].contains(&b.as_str()) {
            return Err(Error::invalid(
                "background",
                "only `auto` and `opaque`: outputs have no transparency",
            )
            .into());
        }
    }
    let (prompt, negative) = match &req.style {
        None => (req.prompt.clone(), req.negative_prompt.clone()),
        Some(name) => {
            let table = easel_core::style::OPENAI;
            let style = easel_core::style::find(table, name).ok_or_else(|| {
                Error::invalid(
                    "style",
                    format!(
                        "unknown style `{name}`; one of {}",
                        easel_core::style::names(table).join(", ")
                    ),
                )
            })?;
            style.apply(&req.prompt, req.negative_prompt.as_deref())
        }
    };
    let mut input = Map::new();
    input.insert("prompt".into(), json!(prompt));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            input.insert(k.into(), v);
        }
    };
    put("negative_prompt", negative.map(Value::from));
    if let Some(size) = &req.size {
        if let Some((w, h)) = easel_core::generate::parse_size("size", size)? {
            put("width", Some(json!(w)));
            put("height", Some(json!(h)));
        }
    }
    put("count", req.n.map(Value::from));
    put("seed", req.seed.map(Value::from));
    put("steps", req.steps.map(Value::from));
    put("guidance", req.guidance.map(Value::from));
    put("scheduler", req.scheduler.clone().map(Value::from));
    put("strength", req.strength.map(Value::from));
    put(
        "format",
        req.output_format
            .map(|f| serde_json::to_value(f).unwrap_or_default()),
    );
    put("quality", req.output_compression.map(Value::from));
    put("upscale", req.upscale.map(|u| json!(u.factor())));
    Ok((input, prompt))
}

/// An unknown model is 404 `model_not_found` (OpenAI's convention); the rest of the model's
/// checks (a LoRA, a model that cannot do the task) are `service::submit`'s.
async fn check_model(state: &AppState, model: Option<&str>) -> Result<()> {
    if let Some(name) = model {
        if easel_store::models::resolve(&state.store.db, name)
            .await?
            .is_none()
        {
            return Err(OpenAiError::from(
                Error::new(
                    ErrorKind::NotFound,
                    format!("no model named `{name}`; GET {BASE}/models lists them"),
                )
                .with_field("model"),
            )
            .code("model_not_found"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Responses

/// One image of an answer.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiImage)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// The prompt that ran (after `style`); absent for tools' outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiUsage)]
pub struct Usage {
    /// Whole credits: usage units (output megapixels) rounded up.
    pub credits_used: u64,
    /// Credits by task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_breakdown: Option<std::collections::BTreeMap<String, u64>>,
}

/// The synchronous answer of `/images/generations` and `/images/edits`.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiImagesResponse)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: i64,
    pub data: Vec<ImageData>,
    pub model: Option<String>,
    pub usage: Usage,
}

/// What `/images/generations` and `/images/edits` answer (status 200): the images, or with
/// `?async=true` the job.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiImagesAnswer)]
#[serde(untagged)]
pub enum ImagesAnswer {
    Images(ImagesResponse),
    Job(AsyncJob),
}

/// The answer of `?async=true`.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiAsyncJob)]
pub struct AsyncJob {
    /// Poll it with `GET /openai/v1/jobs/{id}`.
    pub id: String,
    /// `pending`, `processing`, `completed` or `failed`.
    pub status: &'static str,
    pub created: i64,
    pub model: Option<String>,
    pub estimated_credits: u64,
}

/// `GET /jobs/{id}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OpenAiJob)]
pub struct JobStatusView {
    pub id: String,
    /// `pending`, `processing`, `completed` or `failed` (canceled jobs too).
    pub status: &'static str,
    /// 0–100.
    pub progress: u32,
    pub created: i64,
    pub completed: Option<i64>,
    pub model: Option<String>,
    /// `{data: [{url, revised_prompt, width, height}]}` once completed.
    #[schema(value_type = Option<Object>)]
    pub output_data: Option<Value>,
    pub error_message: Option<String>,
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiModel)]
pub struct ModelObject {
    /// The model's name (what `model` takes).
    pub id: String,
    /// `model`.
    pub object: &'static str,
    pub created: i64,
    /// `easel`.
    pub owned_by: &'static str,
    /// `image`, or for a model of an upstream that does no image task, its first task
    /// (`chat`, …).
    pub category: String,
    /// The tasks it does (`txt2img`, `img2img`, `inpaint`, …).
    pub capabilities: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiModelList)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

fn status_name(job: &Job) -> &'static str {
    StatusNames::OPENAI.name(job.status)
}

fn credits_of(job: &Job) -> Usage {
    let credits = easel_core::usage::credits(job.usage_units);
    Usage {
        credits_used: credits,
        credits_breakdown: Some([(job.task.clone(), credits)].into_iter().collect()),
    }
}

/// The items of an answer for a finished job (one per output image).
async fn image_data(
    state: &AppState,
    job: &Job,
    format: ResponseFormat,
    prompt: Option<&str>,
) -> Result<Vec<ImageData>> {
    let b64 = format == ResponseFormat::B64Json;
    Ok(service::job_outputs(state, job, b64)
        .await?
        .into_iter()
        .map(|o| ImageData {
            url: (!b64).then_some(o.url),
            b64_json: o.base64,
            revised_prompt: prompt.map(str::to_string),
            width: o.asset.width,
            height: o.asset.height,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Handlers

/// What a generation or edit submits and how it answers.
struct Submission {
    task: &'static str,
    model: Option<String>,
    input: Map<String, Value>,
    prompt: String,
    format: ResponseFormat,
    asynchronous: bool,
}

async fn run(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    s: Submission,
) -> Result<Response> {
    let deadline = tokio::time::Instant::now() + state.sync_timeout;
    let idempotency_key = service::idempotency_key(headers)?;
    let (job, _) = service::submit(
        state,
        who,
        TaskRequest {
            task: s.task.to_string(),
            model: s.model,
            input: Value::Object(s.input),
            priority: None,
            webhook: None,
            idempotency_key,
            request: None,
            external_id: None,
        },
    )
    .await?;
    if s.asynchronous {
        let units = easel_core::usage::estimate_units(&job.task, &job.input).unwrap_or(0.0);
        return Ok(axum::Json(ImagesAnswer::Job(AsyncJob {
            status: status_name(&job),
            created: job.created_at.timestamp(),
            estimated_credits: easel_core::usage::credits(units),
            model: job.model.clone(),
            id: job.id,
        }))
        .into_response());
    }
    let job = finished(state, job, deadline).await?;
    let data = image_data(state, &job, s.format, Some(&s.prompt)).await?;
    Ok(axum::Json(ImagesAnswer::Images(ImagesResponse {
        created: job.created_at.timestamp(),
        data,
        model: job.model.clone(),
        usage: credits_of(&job),
    }))
    .into_response())
}

/// Wait for a job until `deadline`; its failure, or a job still running then, is the
/// answer's error.
async fn finished(state: &AppState, job: Job, deadline: tokio::time::Instant) -> Result<Job> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let job = service::wait_job(state, job, left).await?;
    if !job.status.is_terminal() {
        return Err(OpenAiError::from(Error::new(
            ErrorKind::Timeout,
            format!(
                "the job {id} did not finish within {}s; it keeps running: poll GET \
                 {BASE}/jobs/{id} (or send ?async=true)",
                state.sync_timeout.as_secs_f64(),
                id = job.id
            ),
        ))
        .no_retry());
    }
    if let Some(e) = job.failure() {
        let code = job
            .error
            .as_ref()
            .map(|e| e.code.clone())
            .unwrap_or_else(|| e.kind.as_str().to_string());
        return Err(OpenAiError::from(e).code(code).no_retry());
    }
    Ok(job)
}

/// Create images from a prompt (`txt2img`).
#[utoipa::path(post, path = "/openai/v1/images/generations", tag = "openai", request_body = ImageRequest, params(AsyncParams),
    responses((status = 200, body = ImagesAnswer, description = "The images; with ?async=true, the job"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "Unknown model"),
        (status = 429, body = ErrorBody), (status = 504, body = ErrorBody, description = "Still running at --sync-timeout")),
    security(("bearer" = [])))]
pub async fn generations(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Query(q): Query<AsyncParams>,
    Json(req): Json<ImageRequest>,
) -> Result<Response> {
    for (field, set) in [
        ("image", req.image.is_some()),
        ("mask", req.mask.is_some()),
        ("strength", req.strength.is_some()),
    ] {
        if set {
            return Err(Error::invalid(field, "only for /images/edits").into());
        }
    }
    let (input, prompt) = core_input(&req)?;
    check_model(&state, req.model.as_deref()).await?;
    run(
        &state,
        &who,
        &headers,
        Submission {
            task: "txt2img",
            model: req.model,
            input,
            prompt,
            format: req.response_format.unwrap_or_default(),
            asynchronous: q.asynchronous.unwrap_or(false),
        },
    )
    .await
}

/// Fields of OpenAI's multipart form that are not text.
const FORM_NUMBERS: &[&str] = &[
    "n",
    "seed",
    "steps",
    "guidance",
    "strength",
    "output_compression",
];
const FORM_BOOLS: &[&str] = &["stream"];

/// OpenAI's multipart form as the JSON body's fields, and its image and mask files.
fn read_form(
    parts: Vec<crate::extract::FormPart>,
) -> Result<(ImageRequest, Option<ImageSource>, Option<ImageSource>)> {
    let mut fields = Map::new();
    let (mut image, mut mask) = (None, None);
    for p in parts {
        let name = p.name.trim_end_matches("[]").to_string();
        if p.file_name.is_some() && (name == "image" || name == "mask") {
            let slot = if name == "image" {
                &mut image
            } else {
                &mut mask
            };
            if slot.is_some() {
                return Err(Error::invalid(
                    name,
                    "one file only: Easel edits one image (with one mask)",
                )
                .into());
            }
            *slot = Some(ImageSource::Bytes(p.data));
            continue;
        }
        let text = p.text()?.to_string();
        let value = if FORM_NUMBERS.contains(&name.as_str()) || FORM_BOOLS.contains(&name.as_str())
        {
            // Numbers and booleans as JSON; anything else stays text, and the field's type
            // check names it.
            serde_json::from_str::<Value>(text.trim())
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        if fields.insert(name.clone(), value).is_some() {
            return Err(Error::invalid(name, "given more than once").into());
        }
    }
    let req: ImageRequest = easel_core::error::from_json(Value::Object(fields))?;
    Ok((req, image, mask))
}

/// Edit an image: `img2img`, or `inpaint` with a mask (or where the image is transparent).
#[utoipa::path(post, path = "/openai/v1/images/edits", tag = "openai", params(AsyncParams),
    request_body(content(
        (ImageRequest = "application/json"),
        (ImageRequest = "multipart/form-data")),
        description = "JSON with `image`/`mask` as asset ids, data: URLs or asset URLs of this server; or OpenAI's multipart form with `image` (or `image[]`) and `mask` files"),
    responses((status = 200, body = ImagesAnswer, description = "The images; with ?async=true, the job"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn edits(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Query(q): Query<AsyncParams>,
    req: Request,
) -> Result<Response> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (body, image_file, mask_file) = if multipart {
        let Form(parts) = Form::from_request(req, &state).await?;
        read_form(parts)?
    } else {
        let Json(body) = Json::<ImageRequest>::from_request(req, &state).await?;
        (body, None, None)
    };
    let source = |file: Option<ImageSource>, text: &Option<String>, field: &str| match (file, text)
    {
        (Some(_), Some(_)) => Err(OpenAiError::from(Error::invalid(
            field,
            "give it as a file or as a URL, not both",
        ))),
        (Some(f), None) => Ok(Some(f)),
        (None, Some(s)) => Ok(Some(service::image_source(&state, field, s)?)),
        (None, None) => Ok(None),
    };
    let image = source(image_file, &body.image, "image")?
        .ok_or_else(|| Error::invalid("image", "required: the image to edit"))?;
    let mask = source(mask_file, &body.mask, "mask")?;
    let (mut input, prompt) = core_input(&body)?;
    check_model(&state, body.model.as_deref()).await?;
    // Every field is checked (by the core) before any image is stored.
    let mut probe = input.clone();
    for field in ["image", "mask"] {
        probe.insert(field.into(), json!("ast_00000000000000000000000000"));
    }
    easel_core::task::TaskInput::parse("inpaint", Value::Object(probe), &state.limits)?;

    // Remote URLs are fetched once, now that every field passed.
    let image = service::fetched(&state, "image", image).await?;
    let mask = match mask {
        Some(m) => Some(service::fetched(&state, "mask", m).await?),
        None => None,
    };
    // OpenAI's masks: transparent = edit. Converted to Easel's white = repaint.
    let mask_id = match mask {
        Some(m) => {
            let bytes = service::source_bytes(&state, &who, "mask", &m).await?;
            match service::mask_from_transparency(&state, &who, "mask", bytes).await? {
                Some(converted) => Some(converted.id),
                None => Some(service::source_asset(&state, &who, "mask", m).await?),
            }
        }
        None => {
            let bytes = service::source_bytes(&state, &who, "image", &image).await?;
            service::mask_from_transparency(&state, &who, "image", bytes)
                .await?
                .map(|a| a.id)
        }
    };
    let image_id = service::source_asset(&state, &who, "image", image).await?;
    input.insert("image".into(), json!(image_id));
    let task = match mask_id {
        Some(m) => {
            input.insert("mask".into(), json!(m));
            "inpaint"
        }
        None => "img2img",
    };
    run(
        &state,
        &who,
        &headers,
        Submission {
            task,
            model: body.model,
            input,
            prompt,
            format: body.response_format.unwrap_or_default(),
            asynchronous: q.asynchronous.unwrap_or(false),
        },
    )
    .await
}

/// A job of the caller; `?poll=true` waits up to 30 s for it to end.
#[utoipa::path(get, path = "/openai/v1/jobs/{id}", tag = "openai", params(("id" = String, Path), PollParams),
    responses((status = 200, body = JobStatusView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
    Query(q): Query<PollParams>,
) -> Result<axum::Json<JobStatusView>> {
    let Ok(Path(id)) = id else {
        return Err(Error::not_found("job").into());
    };
    let mut job = service::owned_job(&state, &who, &id).await?;
    if q.poll.unwrap_or(false) {
        job = service::wait_job(&state, job, POLL_WAIT).await?;
    }
    let output_data = match job.status {
        easel_core::JobStatus::Succeeded => {
            let prompt = job.input["prompt"].as_str();
            let data = image_data(&state, &job, ResponseFormat::Url, prompt).await?;
            Some(json!({ "data": data }))
        }
        _ => None,
    };
    let progress = if job.status == easel_core::JobStatus::Succeeded {
        100
    } else {
        (job.progress.clamp(0.0, 1.0) * 100.0).floor() as u32
    };
    Ok(axum::Json(JobStatusView {
        status: status_name(&job),
        progress,
        created: job.created_at.timestamp(),
        completed: job.completed_at.map(|t| t.timestamp()),
        model: job.model.clone(),
        output_data,
        error_message: job.failure().map(|e| e.message),
        usage: Usage {
            credits_used: easel_core::usage::credits(job.usage_units),
            credits_breakdown: None,
        },
        id: job.id,
    }))
}

/// `image` for models that do image tasks (or say nothing); else the first task a model
/// registered for an upstream says it does (`chat`, `audio`, …).
fn category(tasks: &[String]) -> String {
    match tasks.first() {
        Some(t)
            if !tasks
                .iter()
                .any(|t| easel_core::task::TASKS.contains(&t.as_str())) =>
        {
            t.clone()
        }
        _ => "image".to_string(),
    }
}

fn model_object(m: easel_core::model::Model) -> ModelObject {
    ModelObject {
        id: m.name,
        object: "model",
        created: m.created_at.timestamp(),
        owned_by: "easel",
        category: category(&m.tasks),
        capabilities: m.tasks,
    }
}

/// The models one can name as `model` (LoRAs are left out).
#[utoipa::path(get, path = "/openai/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn models(State(state): State<AppState>, _: Auth) -> Result<axum::Json<ModelList>> {
    let data = service::all_models(&state)
        .await?
        .into_iter()
        .filter(|m| !service::is_lora(m))
        .map(model_object)
        .collect();
    Ok(axum::Json(ModelList {
        object: "list",
        data,
    }))
}

/// One model, by name, alias or id.
#[utoipa::path(get, path = "/openai/v1/models/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = ModelObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn model(
    State(state): State<AppState>,
    _: Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<ModelObject>> {
    let id = id.map(|Path(id)| id).unwrap_or_default();
    match easel_store::models::resolve(&state.store.db, &id).await? {
        Some(m) if !service::is_lora(&m) => Ok(axum::Json(model_object(m))),
        _ => Err(OpenAiError::from(
            Error::new(
                ErrorKind::NotFound,
                format!("the model `{id}` does not exist"),
            )
            .with_field("model"),
        )
        .code("model_not_found")),
    }
}

/// Most texts in one `/embeddings` request.
pub const MAX_EMBEDDING_INPUTS: usize = 256;

/// The body of `/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OpenAiEmbeddingRequest)]
pub struct EmbeddingRequest {
    /// A text or a list of texts (token arrays are not taken).
    #[schema(value_type = Object)]
    pub input: Value,
    /// A local model (name, alias or id) whose text encoder embeds; absent: the default model
    /// for `txt2img`.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32s).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's embedding size when given (no truncation).
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbedding)]
pub struct Embedding {
    /// `embedding`.
    pub object: &'static str,
    pub index: usize,
    /// The vector (`float`) or its little-endian f32 bytes in base64 (`base64`).
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingUsage)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingList)]
pub struct EmbeddingList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// Text embeddings from a local model's CLIP text encoder: the pooled output of its last
/// text encoder, L2-normalised (768 values for SD 1.x, 1024 for SD 2.x, 1280 for SDXL), at
/// most 77 tokens per text (longer texts are truncated, as CLIP's context is). Runs in this
/// process on the engine (sharing its pipeline cache and device lock with generations).
#[utoipa::path(post, path = "/openai/v1/embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Unknown model")),
    security(("bearer" = [])))]
pub async fn embeddings(
    State(state): State<AppState>,
    _: Auth,
    Json(req): Json<EmbeddingRequest>,
) -> Result<axum::Json<EmbeddingList>> {
    let texts: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid(
                        format!("input[{i}]"),
                        "must be a string (token arrays are not taken)",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(OpenAiError::from(Error::invalid(
                "input",
                "must be a string or a non-empty list of strings",
            ))
            .param("input"))
        }
    };
    if texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(OpenAiError::from(Error::invalid(
            "input",
            format!("at most {MAX_EMBEDDING_INPUTS} texts per request"),
        ))
        .param("input"));
    }
    for (i, t) in texts.iter().enumerate() {
        let field = if texts.len() == 1 && req.input.is_string() {
            "input".to_string()
        } else {
            format!("input[{i}]")
        };
        let bad = |msg: String| Err(OpenAiError::from(Error::invalid(&field, msg)).param(&field));
        if t.is_empty() {
            return bad("must not be empty".into());
        }
        if t.chars().count() > state.limits.max_prompt_chars {
            return bad(format!(
                "at most {} characters",
                state.limits.max_prompt_chars
            ));
        }
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(Error::invalid("encoding_format", "`float` or `base64`").into()),
    };
    check_model(&state, req.model.as_deref()).await?;
    let model = match &req.model {
        Some(name) => easel_store::models::resolve(&state.store.db, name)
            .await?
            .ok_or_else(|| Error::not_found("model"))?,
        None => service::default_model(&state, "txt2img").await?,
    };
    if service::is_lora(&model) {
        return Err(Error::invalid("model", format!("`{}` is a LoRA", model.name)).into());
    }
    let (vectors, tokens) = easel_providers::diffusion::embed(&state.engine, &model, texts).await?;
    if let Some(d) = req.dimensions {
        let n = vectors.first().map_or(0, Vec::len);
        if d as usize != n {
            return Err(Error::invalid(
                "dimensions",
                format!(
                    "the model `{}` makes {n}-dimensional embeddings",
                    model.name
                ),
            )
            .into());
        }
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes
                ))
            } else {
                json!(v)
            },
        })
        .collect();
    let total: usize = tokens.iter().sum();
    Ok(axum::Json(EmbeddingList {
        object: "list",
        data,
        model: model.name,
        usage: EmbeddingUsage {
            prompt_tokens: total,
            total_tokens: total,
        },
    }))
}

/// What the relayed endpoints send upstream.
enum Relay {
    Json(Value),
    Form(Vec<crate::extract::FormPart>),
}

/// Chat, completions, audio, video, music and image variations: relayed to the upstream
/// OpenAI-compatible provider of the requested `model` (a registry model whose `provider`,
/// or else `fallback_provider`, is `openai`; `model` is rewritten to the config's `model`),
/// the answer streamed back as it comes (`stream: true` server-sent events included). The
/// fallback is tried when the first cannot be reached or answers 429 or 5xx. Without such a
/// model: 501, naming what is missing.
async fn upstream(
    State(state): State<AppState>,
    _: Auth,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    req: Request,
) -> Result<Response> {
    let path = uri.path().to_string();
    let what = path.strip_prefix(BASE).unwrap_or(&path).to_string();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (name, relay) = if multipart {
        let Form(parts) = Form::from_request(req, &state).await?;
        let name = parts
            .iter()
            .find(|p| p.name == "model")
            .map(|p| p.text().map(str::to_string))
            .transpose()?;
        (name, Relay::Form(parts))
    } else {
        let Json(body) = Json::<Value>::from_request(req, &state).await?;
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
        (name, Relay::Json(body))
    };
    let hint = if what == "/images/variations" {
        "; make variations with POST /images/edits (an image without a mask runs img2img)"
    } else {
        ""
    };
    let missing = |why: String| -> OpenAiError {
        OpenAiError::from(Error::new(
            ErrorKind::NotImplemented,
            format!(
                "POST {what} is not served here: Easel generates images, and {why}; an admin \
                 registers an upstream with POST /v1/models {{\"name\": …, \"provider\": \
                 \"openai\", \"provider_config\": {{\"base_url\": …, \"api_key_env\": …}}}}{hint}"
            ),
        ))
    };
    let Some(name) = name else {
        return Err(missing(
            "the request names no `model` to find an upstream provider by".into(),
        ));
    };
    let model = easel_store::models::resolve(&state.store.db, &name).await?;
    let Some(model) = model else {
        return Err(missing(format!("no model `{name}` is registered")));
    };
    let mut upstreams = Vec::new();
    if model.provider == "openai" {
        upstreams.push((model.provider_config.clone(), "provider_config"));
    }
    if model.fallback_provider.as_deref() == Some("openai") {
        let c = model.fallback_provider_config.clone().unwrap_or_default();
        upstreams.push((c, "fallback_provider_config"));
    }
    if upstreams.is_empty() {
        return Err(missing(format!(
            "the model `{}` runs on the `{}` provider, not an OpenAI-compatible upstream",
            model.name, model.provider
        )));
    }
    // The query goes along (`?async=true` of video and music requests).
    let target = match uri.query() {
        Some(q) => format!("{what}?{q}"),
        None => what.clone(),
    };
    let mut last = None;
    for (config, field) in upstreams {
        let remote = easel_providers::remote::Remote::from_config("openai", &config, field)?;
        let upstream_model = remote.model.clone().unwrap_or_else(|| name.clone());
        // `timeout_s` bounds connecting and each wait for data, not the whole answer: a
        // streamed answer (SSE) may go on for as long as the upstream keeps sending.
        let client = reqwest::Client::builder()
            .connect_timeout(remote.timeout.min(std::time::Duration::from_secs(30)))
            .read_timeout(remote.timeout)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let r = remote.request(&client, reqwest::Method::POST, &target);
        let r = match &relay {
            Relay::Json(body) => {
                let mut body = body.clone();
                body["model"] = json!(upstream_model);
                r.json(&body)
            }
            Relay::Form(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for p in parts {
                    let data = if p.name == "model" {
                        bytes::Bytes::from(upstream_model.clone())
                    } else {
                        p.data.clone()
                    };
                    let mut part = reqwest::multipart::Part::stream(data);
                    if let Some(f) = &p.file_name {
                        part = part.file_name(f.clone());
                    }
                    if let Some(ct) = &p.content_type {
                        part = part.mime_str(ct).map_err(|_| {
                            Error::invalid(&p.name, format!("bad content type `{ct}`"))
                        })?;
                    }
                    form = form.part(p.name.clone(), part);
                }
                r.multipart(form)
            }
        };
        match r.send().await {
            Ok(resp) if !(resp.status().is_server_error() || resp.status().as_u16() == 429) => {
                let status =
                    StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut out = Response::builder().status(status);
                for (h, v) in resp.headers() {
                    if relayed_header(h.as_str()) {
                        if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                            out = out.header(h.as_str(), v);
                        }
                    }
                }
                return out
                    .body(axum::body::Body::from_stream(resp.bytes_stream()))
                    .map_err(|e| Error::internal(e.to_string()).into());
            }
            Ok(resp) => {
                last = Some(format!("HTTP {}", resp.status().as_u16()));
                tracing::warn!(model = %model.name, upstream = %remote.base_url, status = %resp.status(), "the upstream failed");
            }
            Err(e) => {
                tracing::warn!(model = %model.name, upstream = %remote.base_url, error = %e, "the upstream cannot be reached");
                // The answer names no upstream address (`base_url` is for admins).
                last = Some(e.without_url().to_string());
            }
        }
    }
    Err(Error::unavailable(format!(
        "the upstream of `{}` failed: {}",
        model.name,
        last.unwrap_or_default()
    ))
    .into())
}

/// The upstream's answer headers passed back to the client: the body's type, caching, and
/// what OpenAI's SDKs read (request ids, rate limits, `retry-after`).
fn relayed_header(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "cache-control" | "retry-after" | "x-request-id"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("openai-")
}

/// The dialect's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(generations, edits, job, models, model, embeddings),
    components(schemas(
        ImageRequest, ResponseFormat, Upscale, ImagesAnswer, ImagesResponse, ImageData, Usage, AsyncJob,
        EmbeddingRequest, Embedding, EmbeddingList, EmbeddingUsage,
        JobStatusView, ModelList, ModelObject, ErrorBody, ErrorObject
    )),
    tags((name = "openai", description = "OpenAI-compatible images API at /openai/v1 (the AI Magicx dialect): \
        generations, edits, jobs, models. Errors are {\"error\": {\"message\", \"type\", \"param\", \"code\"}}."))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_fields_are_named_by_their_wire_names() {
        assert_eq!(wire_field("input.count").as_deref(), Some("n"));
        assert_eq!(wire_field("input.width").as_deref(), Some("size"));
        assert_eq!(wire_field("input.height").as_deref(), Some("size"));
        assert_eq!(wire_field("input.seed").as_deref(), Some("seed"));
        assert_eq!(wire_field("input.format").as_deref(), Some("output_format"));
        assert_eq!(wire_field("quality").as_deref(), Some("quality"));
        assert_eq!(wire_field("model").as_deref(), Some("model"));
        assert_eq!(wire_field("input"), None);
    }

    #[test]
    fn errors_render_in_openai_shape() {
        let e = OpenAiError::from(Error::invalid("input.count", "must be between 1 and 8"));
        let (status, body) = e.body();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.error.param.as_deref(), Some("n"));
        assert_eq!(body.error.message, "n: must be between 1 and 8");
        assert_eq!(body.error.kind, "invalid_request_error");
        assert_eq!(body.error.code, "invalid_value");
        let (status, body) =
            OpenAiError::from(Error::new(ErrorKind::Unauthorized, "no key")).body();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            (body.error.kind.as_str(), body.error.code.as_str()),
            ("authentication_error", "invalid_api_key")
        );
    }

    #[test]
    fn requests_translate_to_core_inputs() {
        let req: ImageRequest = serde_json::from_value(json!({
            "prompt": "a fox", "n": 2, "size": "96x64", "seed": 7, "style": "natural",
            "negative_prompt": "blur", "output_format": "webp", "output_compression": 80,
            "steps": 3, "user": "u1", "quality": "hd"
        }))
        .unwrap();
        let (input, prompt) = core_input(&req).unwrap();
        let natural = easel_core::style::find(easel_core::style::OPENAI, "natural").unwrap();
        assert_eq!(prompt, natural.apply("a fox", None).0);
        assert_eq!(
            Value::Object(input),
            json!({"prompt": prompt, "negative_prompt": format!("blur, {}", natural.negative),
                "width": 96, "height": 64, "count": 2, "seed": 7, "steps": 3,
                "format": "webp", "quality": 80})
        );
        let bad: ImageRequest =
            serde_json::from_value(json!({"prompt": "x", "size": "big"})).unwrap();
        assert_eq!(
            core_input(&bad).unwrap_err().error.field.as_deref(),
            Some("size")
        );
        let bad: ImageRequest =
            serde_json::from_value(json!({"prompt": "x", "style": "pastel"})).unwrap();
        assert_eq!(
            core_input(&bad).unwrap_err().error.field.as_deref(),
            Some("style")
        );
    }
}
