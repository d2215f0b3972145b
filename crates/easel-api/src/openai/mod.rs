//! The OpenAI-compatible dialect, mounted at `/openai/v1`: the OpenAI images API and
//! `../shared/specs/aimagicx.openapi.json` (an OpenAI-compatible API with jobs). Client code
//! written for them works by changing only the base URL and the key
//! (`OpenAI(base_url="http://host:7878/openai/v1", api_key=<Easel key>)`).
//!
//! This module only translates: wire request → `service::TaskRequest` → `service::submit`
//! (which validates through the core: field rules, limits, models) → queue → `Job` → wire
//! response. Shared pieces live in the core (`generate::parse_size`, `style::OPENAI`,
//! `job::STATUS`, `Job::failure`, `usage::estimate_units`/`credits`) and in
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
//!   usage}`. Status by `STATUS`: queued → `pending`, running → `processing`,
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
use easel_core::generate::GenerateInput;
use easel_core::job::StatusNames;
use easel_core::task::{OutputFormat, TaskInput};
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

/// How OpenAI-compatible jobs (`/openai/v1/jobs`) name the job states. Their enum has no
/// cancel state: a canceled job is `failed`, and its error message says it was canceled.
pub const STATUS: StatusNames = StatusNames {
    queued: "pending",
    running: "processing",
    succeeded: "completed",
    failed: "failed",
    canceled: "failed",
};

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

mod embeddings;
mod error;
mod images;
mod input;
mod models;
mod relay;
mod styles;
mod wire;

pub use embeddings::*;
pub use error::*;
pub use images::*;
use input::*;
pub use models::*;
use relay::*;
pub use wire::*;

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

    /// The one table works both ways, and every request field is either in it or read
    /// apart (a new field must be placed in one or the other).
    #[test]
    fn the_field_table_builds_inputs_and_names_errors() {
        for (wire, core) in FIELDS {
            assert_eq!(wire_field(&format!("input.{core}")).as_deref(), Some(*wire));
        }
        assert_eq!(wire_field("input.width").as_deref(), Some("size"));
        let req: ImageRequest = serde_json::from_value(json!({"prompt": "p"})).unwrap();
        let apart = [
            "prompt",
            "model",
            "size",
            "response_format",
            "negative_prompt",
            "style",
            "upscale",
            "quality",
            "user",
            "moderation",
            "safety_identifier",
            "background",
            "stream",
            "image",
            "mask",
            "input_fidelity",
        ];
        for key in serde_json::to_value(&req)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
        {
            assert!(
                apart.contains(&key.as_str()) || FIELDS.iter().any(|(w, _)| w == key),
                "{key} is neither in FIELDS nor read apart"
            );
        }
        let req: ImageRequest = serde_json::from_value(json!({
            "prompt": "p", "n": 2, "seed": 3, "steps": 4, "guidance": 5.0, "scheduler": "euler",
            "strength": 0.5, "output_format": "webp", "output_compression": 80, "size": "64x32"
        }))
        .unwrap();
        let (input, _) = core_input(&req).unwrap();
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"prompt": "p", "count": 2, "seed": 3, "steps": 4, "guidance": 5.0,
                "scheduler": "euler", "strength": 0.5, "format": "webp", "quality": 80,
                "width": 64, "height": 32})
        );
    }

    #[test]
    fn status_names_cover_every_state() {
        assert_eq!(
            easel_core::JobStatus::ALL.map(|s| STATUS.name(s)),
            ["pending", "processing", "completed", "failed", "failed"]
        );
    }

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
        let natural = easel_core::style::find(styles::STYLES, "natural").unwrap();
        assert_eq!(prompt, natural.apply("a fox", None).0);
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
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
