//! Replicate/Cog predictions, mounted at `/replicate/v1`, following
//! `../shared/specs/sana-predictions.openapi.yaml` (an api.market Sana model served the
//! Replicate way) and the Replicate HTTP API that the official clients speak. Client code
//! works by changing the base URL and the key:
//! `replicate.Client(api_token=<Easel key>, base_url="http://host:7878/replicate")`.
//!
//! This module only translates: wire request → `service::TaskRequest` (`txt2img`,
//! `img2img` with `image`, `inpaint` with `image` + `mask`) → queue → `Job` → prediction.
//! Validation, limits, defaults and model lookup are the core's and `service`'s; the status
//! names are `STATUS`; errors are FastAPI's shapes (`fastapi`), as a Cog
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
//! spec's `c6b5d2…52fa6` to a model and Sana clients run unchanged). The spec's
//! `model_variant` values (`1600M-1024px`, `600M-512px-multilang`, …) name installed Sana
//! models the same way: give each installed Sana folder the variant it is as an alias
//! (`easel models add --alias 600M-512px-multilang …`, or `PATCH /v1/models/{name}`). Nothing named: the
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
//! | `num_inference_steps` | `steps` | ≥ 1 and the server's `--max-steps`; absent: the spec's 18 on a Sana model, else the model's default |
//! | `guidance_scale` | `guidance` | 1–20 (the spec's range); absent: the spec's 5 on a Sana model, else the model's default |
//! | `pag_guidance_scale` | `pag_guidance` | 1–20; absent: the spec's 2 on a Sana model. The local engine applies it to Sana models (PAG above 0, as diffusers; the layers are the model's, see `easel_diffusion::sana::pipeline`); a model on a `replicate` provider passes it upstream; other models do not apply it. Once the prediction ran, its `logs` say whether the provider that served it applied it |
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
//! * `status` (`STATUS`): `starting`, `processing`, `succeeded`, `failed`,
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
use easel_core::generate::GenerateInput;
use easel_core::job::{ExternalId, StatusNames};
use easel_core::model::Model;
use easel_core::task::{OutputFormat, TaskInput};
use easel_core::{Error, Job, JobStatus, Webhook, WebhookEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::dialect::{self, Dialect, DialectState};
use crate::extract::Json;
use crate::fastapi::{self, WireNames};
use crate::service::{self, ImageSource, TaskRequest};
use crate::AppState;

/// The namespace of the prediction ids clients choose (`PUT /predictions/{id}`) → job ids
/// (`easel_store::external_ids`).
pub const PREDICTION_IDS: &str = "replicate.prediction";

/// The name of the webhook body this dialect sends (the prediction itself), as jobs record
/// it (`Webhook::format`; `dialect::WEBHOOK_FORMATS` renders it).
pub const WEBHOOK_FORMAT: &str = "replicate";

/// Where the dialect is mounted.
pub const BASE: &str = "/replicate/v1";

/// How Replicate/Cog predictions name the job states.
pub const STATUS: StatusNames = StatusNames {
    queued: "starting",
    running: "processing",
    succeeded: "succeeded",
    failed: "failed",
    canceled: "canceled",
};

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
    fn wire(core: &str) -> Option<String> {
        if core == "model" {
            return Some("version".into());
        }
        let field = core.strip_prefix("input.")?;
        let (wire, _) = FIELDS.iter().find(|(w, c)| *c == field && w != c)?;
        Some(format!("input.{wire}"))
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

mod create;
mod input;
mod models;
mod predictions;
mod wire;

pub use create::*;
use input::*;
pub use models::*;
pub use predictions::*;
pub use wire::*;

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
    fn status_names_cover_every_state() {
        assert_eq!(
            easel_core::JobStatus::ALL.map(|s| STATUS.name(s)),
            ["starting", "processing", "succeeded", "failed", "canceled"]
        );
    }

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

    /// The one table works both ways: every field it maps into the core input is named
    /// back by it, and every input field that is not resolved apart is in it.
    #[test]
    fn the_field_table_builds_inputs_and_names_errors() {
        for (wire, core) in FIELDS {
            let back = ReplicateNames::wire(&format!("input.{core}"));
            let want = (wire != core).then(|| format!("input.{wire}"));
            assert_eq!(back, want, "{core}");
        }
        let all = serde_json::to_value(Input {
            prompt: Some("p".into()),
            negative_prompt: Some("n".into()),
            model_variant: Some("m".into()),
            width: Some(64),
            height: Some(64),
            num_inference_steps: Some(2),
            guidance_scale: Some(2.0),
            pag_guidance_scale: Some(2.0),
            seed: Some(1),
            num_outputs: Some(1),
            scheduler: Some("s".into()),
            image: Some("i".into()),
            mask: Some("m".into()),
            prompt_strength: Some(0.5),
            output_format: Some("png".into()),
            output_quality: Some(90),
        })
        .unwrap();
        // What `generation` builds is the table's pairing, field by field.
        let input: Input = serde_json::from_value(all.clone()).unwrap();
        let core = serde_json::to_value(generation(&input, Some(OutputFormat::Png))).unwrap();
        for (wire, c) in FIELDS {
            assert_eq!(core[*c], all[*wire], "{wire} → {c}");
        }
        let apart = ["image", "mask", "model_variant"];
        for key in all.as_object().unwrap().keys() {
            assert!(
                apart.contains(&key.as_str()) || FIELDS.iter().any(|(w, _)| w == key),
                "{key} is neither in FIELDS nor read apart"
            );
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
        assert_eq!(w.format.as_deref(), Some(WEBHOOK_FORMAT));
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
