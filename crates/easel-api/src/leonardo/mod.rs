//! The Leonardo.AI dialect, mounted at `/leonardo/v1`: the generation lifecycle of
//! `../shared/specs/leonardo-generations.openapi.json` (create, get, delete, list by user),
//! plus a minimal `GET /me` so a client can learn its user id. A client written for
//! `https://cloud.leonardo.ai/api/rest/v1` works by changing the base URL and the key.
//!
//! This module only translates: wire request → `service::TaskRequest` → `service::submit`
//! (which validates through the core: field rules, limits, models) → queue → `Job` → wire
//! response. The tables it translates through are its own: `styles::STYLES` (preset
//! styles), `tables::SCHEDULERS` (schedulers), `tables::SD_VERSIONS` (`sd_version` →
//! family), `STATUS`; Leonardo's UUIDv4 ids are external ids
//! (`easel_store::external_ids`, namespaces `leonardo.generation`, `leonardo.image`,
//! `leonardo.user`), each scoped to its owner.
//!
//! # Endpoints
//!
//! | endpoint | does |
//! |---|---|
//! | `POST /generations` | validates, submits `txt2img`, `img2img` or `inpaint`, answers at once with `{sdGenerationJob: {generationId, apiCreditCost, cost}}` |
//! | `GET /generations/{id}` | `{generations_by_pk: Generation}`; `null` when the caller has no generation with that id |
//! | `DELETE /generations/{id}` | cancels it if it is still queued or running, deletes it with its images; `{delete_generations_by_pk: {id}}`, `null` when there is none |
//! | `GET /generations/user/{userId}?offset&limit` | the caller's generations made through this dialect, newest first: `{generations: [...]}` |
//! | `GET /me` | `{user_details: [{user: {id, username}}]}`: the caller's Leonardo user id and name |
//!
//! Auth: `Authorization: Bearer <Easel key>` (the shared authenticator and rate limit). An
//! `Idempotency-Key` header on `POST /generations` works as in the native API.
//!
//! # Requests: what each field becomes
//!
//! | field | core input | notes |
//! |---|---|---|
//! | `prompt` (required) | `prompt` | after `presetStyle`'s template |
//! | `negative_prompt` | `negative_prompt` | extended by `presetStyle`'s negative terms |
//! | `modelId` | the job's model | a registry name, alias or id (`mdl_…`), the model's Leonardo id (a UUIDv4, as Generations show it), or its id as the Sartiq view's UUID. Unknown or a LoRA: 400 on `modelId`. Given, it wins over `sd_version` (which is then only echoed). |
//! | `sd_version` | the job's model | without `modelId`: an installed model of the version's family (`tables::SD_VERSIONS`: `v1_5` → sd15 (then sd15-inpaint), `v2` → sd2, `SDXL_0_8`/`SDXL_0_9`/`SDXL_1_0`/`SDXL_LIGHTNING` → sdxl) that does the task, recommended first, then by name. `v3`, `PHOENIX`, `FLUX`, `FLUX_DEV`, `KINO_2_0` have no local family: 400 on `sd_version` unless `modelId` is given. Neither given: the server's default model for the task (recommended first), not necessarily SD 1.5 (the spec's default). |
//! | `width`, `height` | `width`, `height` | 32–1536 and multiples of 8 (the spec's rule, checked here), then the core's own rules and the server's and model's limits: a side below 64 (32 to 56 pass the spec's rule) is refused by the core, 400 on that side (`width: must be a multiple of 8 from 64 to <the server's largest side> (got 32)`). Absent: the model's default size (512, 1024 for SDXL, or its registry defaults; img2img: the init image's size), not the spec's 1024x768. |
//! | `num_images` | `count` | 1–8, and 1–4 when the side that runs (given or default) is above 768; default 4 (the spec's) |
//! | `num_inference_steps` | `steps` | 10–60; absent: the model's registry default, else 30 (not the spec's 15) |
//! | `guidance_scale` | `guidance` | 1–20; absent: the model's default |
//! | `seed` | `seed` | 0–9999999998 (the spec's bound); image i uses `seed + i`; drawn at random when absent and shown in the Generation |
//! | `scheduler` | `scheduler` | Leonardo's enum only, through `tables::SCHEDULERS` (`LEONARDO` runs Euler ancestral). Absent: the model's registry default scheduler, else `EULER_DISCRETE` (the spec's default). |
//! | `presetStyle` | prompt template | `styles::STYLES`, one template per enum value. The default `DYNAMIC`, and `NONE`, `UNPROCESSED`, leave the prompt as given; the others wrap it and add negative terms. The prompt that ran is `easel_prompt` in the Generation and `prompt` in the job's core input. |
//! | `init_image_id` or `init_generation_image_id` | `image` (task `img2img`) | an Easel asset id of the caller (`ast_…`, e.g. uploaded with `POST /v1/assets`) or the UUID of one of the caller's generated images (either field takes either) |
//! | `init_strength` | `strength` = 1 − `init_strength` | 0.1–0.9. Leonardo's value is how strongly the output keeps the init image; Easel's `strength` is how much to repaint, so 0.9 keeps the most. Absent: the core's default (img2img repaints 0.75, inpaint 1.0). Only with an init image. |
//! | `canvasRequestType: INPAINT` + `canvasInitId` + `canvasMaskId` | `image`, `mask` (task `inpaint`) | ids as for `init_image_id`. The mask is an Easel mask as is: **white = repaint, black = keep** (the spec does not say; invert masks drawn the other way). `canvasRequest: true` may be sent or not: the type decides. |
//! | `canvasRequestType: IMG2IMG` + `canvasInitId` | `image` (task `img2img`) | |
//! | `canvasRequestType: OUTPAINT`, `SKETCH2IMG` | — | 400 `not-supported` on `canvasRequestType` |
//! | `elements[{akUUID, weight=1}]` | `loras[{model, scale}]` | `akUUID` names a LoRA of the registry (name, alias, id, Leonardo id or Sartiq UUID); anything else is 400 on `elements[i].akUUID`. `weight` is the scale (−4 to 4). |
//! | `userElements[{userLoraId, weight=1}]` | `loras` (after `elements`) | `userLoraId` (a number) names a LoRA by that number as a registry name or alias (give a LoRA the alias `"42"`) |
//! | `controlnets` (non-empty), `controlNet: true`, `imagePrompts` (non-empty), `unzoom: true`, `transparency: foreground_only`, `tiling: true` | — | 400 `not-supported`, naming the field (no ControlNet, image prompts, unzoom, transparent output or seamless tiling here). Their off values (`[]`, `false`, `disabled`) are accepted. |
//!
//! **Vendor switches accepted but not applied** (type-checked, and range-checked where the
//! spec states a range or set, then listed as ignored): `alchemy`, `contrast` (one of 1, 1.3,
//! 1.8, 2.5, 3, 3.5, 4, 4.5), `contrastRatio` (0–1), `enhancePrompt`,
//! `enhancePromptInstruction`, `expandedDomain`, `fantasyAvatar`, `highContrast`,
//! `highResolution`, `photoReal`, `photoRealStrength` (0.55, 0.5 or 0.45), `photoRealVersion`
//! (`v1`, `v2`), `promptMagic`, `promptMagicStrength` (0.1–1), `promptMagicVersion` (`v2`,
//! `v3`), `public`, `ultra`, `upscaleRatio`, and the companions of unsupported features when
//! sent on their own: `unzoomAmount`, `imagePromptWeight`, `controlNetType`, `weighting`.
//! Each one present with a non-null value, whatever the value, is listed in the stored
//! request (`Job::request`, the body as received plus `"ignored": [...]`) and in the
//! Generation as `easel_ignored`. Nothing is public here and none of these features ran, so
//! the Generation's `public`, `photoReal`, `promptMagic` and `ultra` are `false`.
//!
//! Unknown fields are refused (400 `validation-failed` naming the field), so a typo does not
//! pass silently. `null` is the same as absent for every field but `prompt`.
//!
//! # Responses
//!
//! * Create: `generationId` is a fresh UUIDv4 recorded with the job (an idempotent replay
//!   answers the first job's id). `apiCreditCost` and `cost.amount` (a string, `unit:
//!   CREDITS`) are the job's usage units (output megapixels, at least 0.01 per image) rounded
//!   up to whole credits, known at submit from the filled-in input.
//! * Generation: `{id, createdAt (RFC 3339, UTC), status, prompt, negativePrompt, modelId,
//!   sdVersion, scheduler, presetStyle, seed, imageWidth, imageHeight, inferenceSteps,
//!   guidanceScale, initStrength, public, photoReal, photoRealStrength, promptMagic,
//!   promptMagicStrength, promptMagicVersion, ultra, generation_elements, generated_images}`.
//!   `prompt`/`negativePrompt` are the client's; seed, sizes, steps and guidance are what ran
//!   (defaults filled in). `modelId` is the model's Leonardo id: a UUIDv4 given to each
//!   registry model the first time one is shown (external ids, namespace `leonardo.model`),
//!   which requests may then send as `modelId` (the spec's `modelId` is a v4 UUID);
//!   `sdVersion` echoes the request's, else the model family's (`v1_5`, `v2`, `SDXL_1_0`, or
//!   null); `scheduler` echoes the request's, else the Leonardo name of what ran (null when
//!   that has none); `presetStyle` is the one applied (`DYNAMIC` by default); `initStrength`
//!   is Leonardo's (1 − strength), null for txt2img. Status by `STATUS`:
//!   queued and running → `PENDING`, succeeded → `COMPLETE`, failed and canceled → `FAILED`.
//!   `generated_images` (once `COMPLETE`): `{id (UUIDv4, stable per image), url (signed,
//!   valid for `signed_url_ttl`), nsfw: false, likeCount: 0,
//!   generated_image_variation_generics: []}`; an image deleted since through the native
//!   API is left out. `generation_elements`: `{lora: {akUUID (the LoRA's Leonardo id, a
//!   UUIDv4 as for `modelId`), name (the registry's)}, weightApplied}`.
//!   Easel's additions: `easel_job_id`, `easel_model` (registry name), `easel_prompt` and
//!   `easel_negative_prompt` (what ran, after the preset), `easel_ignored`, `easel_error`
//!   (`{code, message}` of a failed or canceled job, else null).
//! * Lists: `offset` (default 0) and `limit` (default 10; at most 50, a larger value is
//!   served as 50; 0 gives an empty list). Only jobs created through this dialect (those with
//!   a Leonardo generation id) are listed. `userId` must be the caller's own Leonardo user id
//!   (`GET /me`); any other well-formed id is **403** `access-denied` (also for admins: the
//!   dialect's ids are per user).
//! * Delete: a queued job is canceled, a running one is asked to stop at its next step; then
//!   the job is deleted with its event log, its output images (rows, files and image ids; a
//!   URL given out before stops working) and its ids. Usage already recorded stays. Jobs that
//!   used one of its images as an init image keep their own outputs.
//! * Ids in paths must match the spec's UUIDv4 pattern (lowercase hex): anything else is 400
//!   `validation-failed` on `id`/`userId`. A well-formed id the caller does not own reads as
//!   none (`null`).
//!
//! # Errors
//!
//! Every failure, auth and malformed bodies included (the shared extractors reject in this
//! shape through `dialect`), is the spec's otherwise unused `ApiError`: `{"message", "path",
//! "locations", "extensions": {"code"}}`. `path` is the offending field's wire path split at
//! dots and brackets (`["elements", "0", "akUUID"]`; `[]` when no field), core fields named
//! back (`input.count` → `num_images`, `input.steps` → `num_inference_steps`,
//! `input.guidance` → `guidance_scale`, `input.strength` → `init_strength`, `input.image` →
//! the image field sent, `input.mask` → `canvasMaskId`, `input.loras[i]` → the element sent,
//! `model` → `modelId`/`sd_version`); the message starts with the field. `locations` holds
//! the line and column of malformed JSON, else `[]`. Codes and statuses:
//! `validation-failed` 400 (invalid fields, unknown fields), `not-supported` 400 (a feature
//! Easel does not run) or 501, `parse-failed` 400 (malformed body), `unauthorized` 401
//! (with `WWW-Authenticate: Bearer`), `access-denied` 403, `not-found` 404 (unknown route),
//! `method-not-allowed` 405, `conflict` 409, `payload-too-large` 413, `rate-limited` 429
//! (with `Retry-After`), `timeout` 504, `unavailable` 503, `unexpected` 500.
//!
//! # OpenAPI
//!
//! The paths are in the server's document (`/openapi.json`, tag `leonardo`) through
//! [`ApiDoc`].

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use easel_core::asset::{blob_key, Asset};
use easel_core::auth::Principal;
use easel_core::job::{ExternalId, StatusNames};
use easel_core::model::Model;
use easel_core::{Error, ErrorKind, Job, JobStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::dialect::{self, Dialect, DialectState};
use crate::error::{error_headers, status_of, ApiError};
use crate::extract::{Json, Query};
use crate::service::{self, TaskRequest};
use crate::AppState;

/// Where the dialect is mounted.
pub const BASE: &str = "/leonardo/v1";

/// How Leonardo generations name the job states (no running or cancel state of their own).
pub const STATUS: StatusNames = StatusNames {
    queued: "PENDING",
    running: "PENDING",
    succeeded: "COMPLETE",
    failed: "FAILED",
    canceled: "FAILED",
};

/// Default and largest `limit` of `GET /generations/user/{userId}`.
pub const LIST_DEFAULT: u32 = 10;
pub const LIST_MAX: u32 = 50;

/// The dialect: its errors are [`LeonardoError`]s.
pub struct Leonardo;

impl Dialect for Leonardo {
    type Error = LeonardoError;
}

type St = DialectState<Leonardo>;
type Result<T, E = LeonardoError> = std::result::Result<T, E>;

pub fn routes(state: &AppState) -> Router<AppState> {
    let api: Router<St> = Router::new()
        .route("/generations", post(create))
        .route("/generations/{id}", get(read).delete(delete))
        .route("/generations/user/{user_id}", get(by_user))
        .route("/me", get(me));
    Router::new().nest(BASE, dialect::mount(api, state))
}

mod check;
mod error;
mod handlers;
mod ids;
mod plan;
mod styles;
mod tables;
mod view;
mod wire;

pub use check::*;
pub use error::*;
pub use handlers::*;
pub use ids::*;
use plan::*;
use view::*;
pub use wire::*;

/// The dialect's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, read, delete, by_user, me),
    components(schemas(
        GenerationRequest, ElementInput, UserElementInput, ControlnetInput, CreateAnswer,
        SdGenerationJob, Cost, GenerationAnswer, Generation, GeneratedImage, GenerationElement,
        LoraView, JobErrorView, GenerationList, DeleteAnswer, DeletedRef, MeAnswer, UserDetails,
        UserRef, ApiErrorBody, ErrorLocation, ErrorExtensions
    )),
    tags((name = "leonardo", description = "Leonardo.AI-compatible generations at /leonardo/v1: create, \
        get, delete, list by user, and /me. Errors are the spec's ApiError {\"message\", \"path\", \
        \"locations\", \"extensions\": {\"code\"}}."))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_cover_every_state() {
        assert_eq!(
            easel_core::JobStatus::ALL.map(|s| STATUS.name(s)),
            ["PENDING", "PENDING", "COMPLETE", "FAILED", "FAILED"]
        );
    }

    /// The one table works both ways: every field it maps into the core input is named back
    /// by it, and each of its wire names is a field of the request.
    #[test]
    fn the_field_table_builds_inputs_and_names_errors() {
        let names = WireNames::default();
        let schema =
            serde_json::to_value(<GenerationRequest as utoipa::PartialSchema>::schema()).unwrap();
        let fields = schema["properties"].as_object().unwrap();
        for (wire, core) in FIELDS {
            assert_eq!(names.wire(&format!("input.{core}")).as_deref(), Some(*wire));
            assert!(fields.contains_key(*wire), "{wire} is a request field");
        }
        assert_eq!(names.wire("input.loras").as_deref(), Some("elements"));
        assert_eq!(names.wire("input.mask").as_deref(), Some("canvasMaskId"));
    }

    #[test]
    fn uuids_follow_the_spec_pattern() {
        for _ in 0..100 {
            let u = new_uuid_v4();
            assert!(is_uuid_v4(&u), "{u}");
        }
        assert!(is_uuid_v4("a1b2c3d4-e5f6-4890-abcd-ef1234567890"));
        assert!(is_uuid_v4("a1b2c3d4-e5f6-4890-Bbcd-ef1234567890"));
        assert!(
            !is_uuid_v4("a1b2c3d4-e5f6-7890-abcd-ef1234567890"),
            "not v4"
        );
        assert!(
            !is_uuid_v4("A1B2C3D4-E5F6-4890-ABCD-EF1234567890"),
            "upper case"
        );
        assert!(
            !is_uuid_v4("a1b2c3d4-e5f6-4890-cbcd-ef1234567890"),
            "variant"
        );
        assert!(!is_uuid_v4("job_01"));
    }

    #[test]
    fn core_fields_are_named_by_their_wire_names() {
        let names = WireNames {
            image: Some("canvasInitId"),
            model: "sd_version",
            loras: vec![
                ("elements[0]".into(), "akUUID", "weight"),
                ("userElements[0]".into(), "userLoraId", "weight"),
            ],
        };
        let w = |f: &str| names.wire(f);
        assert_eq!(w("input.count").as_deref(), Some("num_images"));
        assert_eq!(w("input.steps").as_deref(), Some("num_inference_steps"));
        assert_eq!(w("input.guidance").as_deref(), Some("guidance_scale"));
        assert_eq!(w("input.width").as_deref(), Some("width"));
        assert_eq!(w("input.image").as_deref(), Some("canvasInitId"));
        assert_eq!(w("input.mask").as_deref(), Some("canvasMaskId"));
        assert_eq!(w("input.strength").as_deref(), Some("init_strength"));
        assert_eq!(
            w("input.loras[1].model").as_deref(),
            Some("userElements[0].userLoraId")
        );
        assert_eq!(
            w("input.loras[0].scale").as_deref(),
            Some("elements[0].weight")
        );
        assert_eq!(w("input.loras").as_deref(), Some("elements"));
        assert_eq!(w("model").as_deref(), Some("sd_version"));
        assert_eq!(w("input"), None);
        assert_eq!(w("Idempotency-Key").as_deref(), Some("Idempotency-Key"));
    }

    #[test]
    fn errors_render_in_the_spec_shape() {
        let (status, body) =
            LeonardoError::from(Error::invalid("elements[0].akUUID", "no LoRA named `x`")).body();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.path, ["elements", "0", "akUUID"]);
        assert_eq!(body.message, "elements[0].akUUID: no LoRA named `x`");
        assert_eq!(body.extensions.code, "validation-failed");
        let (status, body) = LeonardoError::from(Error::bad_request(
            "malformed JSON: Failed to parse the request body as JSON: expected value at line 1 column 7",
        ))
        .body();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.extensions.code, "parse-failed");
        assert_eq!((body.locations[0].line, body.locations[0].column), (1, 7));
        let (status, body) = unsupported("tiling", "no").body();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.extensions.code, "not-supported");
        let (status, body) =
            LeonardoError::from(Error::new(ErrorKind::Unauthorized, "no key")).body();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.path.is_empty());
        assert_eq!(body.extensions.code, "unauthorized");
    }

    #[test]
    fn vendor_switches_are_listed_when_set() {
        let body = json!({"prompt": "x", "alchemy": false, "photoReal": true, "ultra": null,
            "contrast": 3.5, "width": 64});
        assert_eq!(ignored_in(&body), ["alchemy", "contrast", "photoReal"]);
    }
}
