//! The Leonardo.AI dialect, mounted at `/leonardo/v1`: the generation lifecycle of
//! `../shared/specs/leonardo-generations.openapi.json` (create, get, delete, list by user),
//! plus a minimal `GET /me` so a client can learn its user id. A client written for
//! `https://cloud.leonardo.ai/api/rest/v1` works by changing the base URL and the key.
//!
//! This module only translates: wire request → `service::TaskRequest` → `service::submit`
//! (which validates through the core: field rules, limits, models) → queue → `Job` → wire
//! response. The tables it translates through live in the core: `style::LEONARDO` (preset
//! styles), `scheduler::LEONARDO` (schedulers), `model::LEONARDO_SD_VERSIONS` (`sd_version` →
//! family), `job::StatusNames::LEONARDO`; Leonardo's UUIDv4 ids are external ids
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
//! | `sd_version` | the job's model | without `modelId`: an installed model of the version's family (`model::LEONARDO_SD_VERSIONS`: `v1_5` → sd15 (then sd15-inpaint), `v2` → sd2, `SDXL_0_8`/`SDXL_0_9`/`SDXL_1_0`/`SDXL_LIGHTNING` → sdxl) that does the task, recommended first, then by name. `v3`, `PHOENIX`, `FLUX`, `FLUX_DEV`, `KINO_2_0` have no local family: 400 on `sd_version` unless `modelId` is given. Neither given: the server's default model for the task (recommended first), not necessarily SD 1.5 (the spec's default). |
//! | `width`, `height` | `width`, `height` | 32–1536 and multiples of 8 (the spec's rule, checked here), then the core's own rules and the server's and model's limits: a side below 64 (32 to 56 pass the spec's rule) is refused by the core, 400 on that side (`width: must be a multiple of 8 from 64 to <the server's largest side> (got 32)`). Absent: the model's default size (512, 1024 for SDXL, or its registry defaults; img2img: the init image's size), not the spec's 1024x768. |
//! | `num_images` | `count` | 1–8, and 1–4 when the side that runs (given or default) is above 768; default 4 (the spec's) |
//! | `num_inference_steps` | `steps` | 10–60; absent: the model's registry default, else 30 (not the spec's 15) |
//! | `guidance_scale` | `guidance` | 1–20; absent: the model's default |
//! | `seed` | `seed` | 0–9999999998 (the spec's bound); image i uses `seed + i`; drawn at random when absent and shown in the Generation |
//! | `scheduler` | `scheduler` | Leonardo's enum only, through `scheduler::LEONARDO` (`LEONARDO` runs Euler ancestral). Absent: the model's registry default scheduler, else `EULER_DISCRETE` (the spec's default). |
//! | `presetStyle` | prompt template | `style::LEONARDO`, one template per enum value. The default `DYNAMIC`, and `NONE`, `UNPROCESSED`, leave the prompt as given; the others wrap it and add negative terms. The prompt that ran is `easel_prompt` in the Generation and `prompt` in the job's core input. |
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
//!   is Leonardo's (1 − strength), null for txt2img. Status by `StatusNames::LEONARDO`:
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
use easel_core::job::{namespaces, ExternalId, StatusNames};
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

// ---------------------------------------------------------------------------------------
// Errors

/// A core error in the spec's `ApiError` shape, with an optional code of its own.
#[derive(Debug)]
pub struct LeonardoError {
    pub error: Error,
    pub code: Option<&'static str>,
}

impl From<Error> for LeonardoError {
    fn from(error: Error) -> Self {
        LeonardoError { error, code: None }
    }
}

impl From<ApiError> for LeonardoError {
    fn from(e: ApiError) -> Self {
        e.0.into()
    }
}

/// A feature of the spec this server does not run: 400 `not-supported` on `field`.
fn unsupported(field: &str, message: impl Into<String>) -> LeonardoError {
    LeonardoError {
        error: Error::invalid(field, message),
        code: Some("not-supported"),
    }
}

/// The spec's `ApiError`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoApiError)]
pub struct ApiErrorBody {
    /// Starts with the field (`width: must be a multiple of 8`) when there is one.
    pub message: String,
    /// The offending field's wire path (`["elements", "0", "akUUID"]`); empty when none.
    pub path: Vec<String>,
    /// Line and column of malformed JSON; empty otherwise.
    pub locations: Vec<ErrorLocation>,
    pub extensions: ErrorExtensions,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoErrorLocation)]
pub struct ErrorLocation {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoErrorExtensions)]
pub struct ErrorExtensions {
    /// `validation-failed`, `not-supported`, `parse-failed`, `unauthorized`,
    /// `access-denied`, `not-found`, `method-not-allowed`, `conflict`, `payload-too-large`,
    /// `rate-limited`, `timeout`, `unavailable`, `unexpected`.
    pub code: String,
}

fn code_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "validation-failed",
        ErrorKind::BadRequest => "parse-failed",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "access-denied",
        ErrorKind::NotFound => "not-found",
        ErrorKind::MethodNotAllowed => "method-not-allowed",
        ErrorKind::Conflict => "conflict",
        ErrorKind::PayloadTooLarge => "payload-too-large",
        ErrorKind::RateLimited => "rate-limited",
        ErrorKind::NotImplemented => "not-supported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "unexpected",
    }
}

/// `elements[0].akUUID` → `["elements", "0", "akUUID"]`.
fn split_path(field: &str) -> Vec<String> {
    field
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// `… at line 1 column 7` in a JSON parser's message.
fn json_location(message: &str) -> Option<ErrorLocation> {
    let (_, rest) = message.rsplit_once("line ")?;
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(ErrorLocation {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

impl LeonardoError {
    fn body(&self) -> (StatusCode, ApiErrorBody) {
        let e = &self.error;
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            k => status_of(k),
        };
        let field = e.field.as_deref().filter(|f| !f.is_empty());
        let mut message = e.message.clone();
        // serde lists every field it knows after an unknown one: too long to be useful.
        if message.starts_with("unknown field") {
            if let Some((head, _)) = message.split_once(", expected") {
                message = format!(
                    "{head}: not a field of this request (see {BASE}/generations in /openapi.json)"
                );
            }
        }
        let message = match field {
            Some(f) => format!("{f}: {message}"),
            None => message,
        };
        let locations = match e.kind {
            ErrorKind::BadRequest => json_location(&e.message).into_iter().collect(),
            _ => vec![],
        };
        let body = ApiErrorBody {
            message,
            path: field.map(split_path).unwrap_or_default(),
            locations,
            extensions: ErrorExtensions {
                code: self.code.unwrap_or_else(|| code_of(e.kind)).to_string(),
            },
        };
        (status, body)
    }
}

impl IntoResponse for LeonardoError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut resp = (status, axum::Json(body)).into_response();
        error_headers(&self.error, &mut resp);
        resp
    }
}

// ---------------------------------------------------------------------------------------
// Ids

/// The spec's id pattern, `[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89aAbB][a-f0-9]{3}-[a-f0-9]{12}`,
/// matched in full.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'A' | b'b' | b'B'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// A random UUIDv4, lowercase.
pub fn new_uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn check_uuid(field: &str, s: &str) -> Result<()> {
    if is_uuid_v4(s) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "`{s}` is not a UUIDv4 (lowercase `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`)"
            ),
        )
        .into())
    }
}

/// The caller's Leonardo user id (assigned on first use).
async fn user_uuid(state: &AppState, who: &Principal) -> Result<String> {
    Ok(easel_store::external_ids::get_or_assign(
        &state.store.db,
        namespaces::LEONARDO_USER,
        &who.user_id,
        &who.user_id,
        new_uuid_v4,
    )
    .await?)
}

// ---------------------------------------------------------------------------------------
// Requests

/// `elements[]`: a LoRA of the registry.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LeonardoElementInput)]
pub struct ElementInput {
    /// A LoRA's registry name, alias, id, or id as a UUID.
    #[serde(rename = "akUUID")]
    pub ak_uuid: String,
    /// Its scale, −4 to 4 (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// `userElements[]`: a LoRA named by a number (a registry name or alias).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LeonardoUserElementInput)]
pub struct UserElementInput {
    #[serde(rename = "userLoraId", default)]
    pub user_lora_id: Option<f64>,
    #[serde(default)]
    pub weight: Option<f64>,
}

/// `controlnets[]` (type-checked; a non-empty list is refused).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LeonardoControlnetInput)]
pub struct ControlnetInput {
    #[serde(rename = "initImageId", default)]
    pub init_image_id: Option<String>,
    #[serde(rename = "initImageType", default)]
    pub init_image_type: Option<String>,
    #[serde(rename = "preprocessorId", default)]
    pub preprocessor_id: Option<f64>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(rename = "strengthType", default)]
    pub strength_type: Option<String>,
}

/// The body of `POST /generations`. Only `prompt` is required; `null` is absent. See the
/// module documentation for what each field becomes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LeonardoGenerationRequest)]
#[allow(non_snake_case)]
pub struct GenerationRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// A registry model (name, alias, id, or id as a UUID).
    #[serde(default)]
    pub modelId: Option<String>,
    /// `v1_5`, `v2`, `v3`, `SDXL_0_8`, `SDXL_0_9`, `SDXL_1_0`, `SDXL_LIGHTNING`, `PHOENIX`,
    /// `FLUX`, `FLUX_DEV`, `KINO_2_0` (the last five: only with `modelId`).
    #[serde(default)]
    pub sd_version: Option<String>,
    /// 32–1536, a multiple of 8 (and at least 64 for the core); default: the model's.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// 1–8 (1–4 when a side is above 768); default 4.
    #[serde(default)]
    pub num_images: Option<u32>,
    /// 10–60; default: the model's.
    #[serde(default)]
    pub num_inference_steps: Option<u32>,
    /// 1–20; default: the model's.
    #[serde(default)]
    pub guidance_scale: Option<f64>,
    /// 0–9999999998; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// `KLMS`, `EULER_ANCESTRAL_DISCRETE`, `EULER_DISCRETE`, `DDIM`, `DPM_SOLVER`, `PNDM`,
    /// `LEONARDO`.
    #[serde(default)]
    pub scheduler: Option<String>,
    /// One of the spec's `sd_generation_style` values; default `DYNAMIC` (the prompt as given).
    #[serde(default)]
    pub presetStyle: Option<String>,
    /// An asset id (`ast_…`) or a generated image's UUID: runs img2img.
    #[serde(default)]
    pub init_image_id: Option<String>,
    /// As `init_image_id`.
    #[serde(default)]
    pub init_generation_image_id: Option<String>,
    /// 0.1–0.9: how much of the init image to keep (Easel's strength is 1 − this).
    #[serde(default)]
    pub init_strength: Option<f64>,
    #[serde(default)]
    pub canvasRequest: Option<bool>,
    /// `INPAINT` or `IMG2IMG` (`OUTPAINT`, `SKETCH2IMG`: not supported).
    #[serde(default)]
    pub canvasRequestType: Option<String>,
    #[serde(default)]
    pub canvasInitId: Option<String>,
    /// White = repaint.
    #[serde(default)]
    pub canvasMaskId: Option<String>,
    #[serde(default)]
    pub elements: Option<Vec<ElementInput>>,
    #[serde(default)]
    pub userElements: Option<Vec<UserElementInput>>,
    /// Not supported (only `[]`).
    #[serde(default)]
    pub controlnets: Option<Vec<ControlnetInput>>,
    /// Not supported (only `[]`).
    #[serde(default)]
    pub imagePrompts: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub imagePromptWeight: Option<f64>,
    /// Not supported (only `false`).
    #[serde(default)]
    pub unzoom: Option<bool>,
    #[serde(default)]
    pub unzoomAmount: Option<f64>,
    /// `disabled` (`foreground_only`: not supported).
    #[serde(default)]
    pub transparency: Option<String>,
    /// Not supported (only `false`).
    #[serde(default)]
    pub tiling: Option<bool>,
    /// Deprecated by the spec; not supported (only `false`).
    #[serde(default)]
    pub controlNet: Option<bool>,
    #[serde(default)]
    pub controlNetType: Option<String>,
    #[serde(default)]
    pub weighting: Option<f64>,
    // Vendor switches: accepted, not applied, listed as ignored.
    #[serde(default)]
    pub alchemy: Option<bool>,
    #[serde(default)]
    pub contrast: Option<f64>,
    #[serde(default)]
    pub contrastRatio: Option<f64>,
    #[serde(default)]
    pub enhancePrompt: Option<bool>,
    #[serde(default)]
    pub enhancePromptInstruction: Option<String>,
    #[serde(default)]
    pub expandedDomain: Option<bool>,
    #[serde(default)]
    pub fantasyAvatar: Option<bool>,
    #[serde(default)]
    pub highContrast: Option<bool>,
    #[serde(default)]
    pub highResolution: Option<bool>,
    #[serde(default)]
    pub photoReal: Option<bool>,
    #[serde(default)]
    pub photoRealStrength: Option<f64>,
    #[serde(default)]
    pub photoRealVersion: Option<String>,
    #[serde(default)]
    pub promptMagic: Option<bool>,
    #[serde(default)]
    pub promptMagicStrength: Option<f64>,
    #[serde(default)]
    pub promptMagicVersion: Option<String>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub ultra: Option<bool>,
    #[serde(default)]
    pub upscaleRatio: Option<f64>,
}

/// The vendor switches accepted and not applied (the module documentation's list), as they
/// are spelled on the wire.
pub const IGNORED: &[&str] = &[
    "alchemy",
    "contrast",
    "contrastRatio",
    "enhancePrompt",
    "enhancePromptInstruction",
    "expandedDomain",
    "fantasyAvatar",
    "highContrast",
    "highResolution",
    "photoReal",
    "photoRealStrength",
    "photoRealVersion",
    "promptMagic",
    "promptMagicStrength",
    "promptMagicVersion",
    "public",
    "ultra",
    "upscaleRatio",
    "unzoomAmount",
    "imagePromptWeight",
    "controlNetType",
    "weighting",
];

/// The ignored switches a body sets (present and not null), in `IGNORED`'s order.
fn ignored_in(body: &Value) -> Vec<String> {
    IGNORED
        .iter()
        .filter(|k| body.get(**k).is_some_and(|v| !v.is_null()))
        .map(|k| k.to_string())
        .collect()
}

fn in_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("must be between {lo} and {hi}")).into())
    }
}

fn one_of_f(field: &str, v: f64, set: &[f64]) -> Result<()> {
    if set.iter().any(|s| (s - v).abs() < 1e-9) {
        Ok(())
    } else {
        let list: Vec<String> = set.iter().map(f64::to_string).collect();
        Err(Error::invalid(field, format!("must be one of {}", list.join(", "))).into())
    }
}

fn one_of_s(field: &str, v: &str, set: &[&str]) -> Result<()> {
    if set.contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("`{v}` is not one of {}", set.join(", "))).into())
    }
}

/// The spec's rules on the wire fields (the core checks its own after).
fn check_fields(r: &GenerationRequest) -> Result<()> {
    for (field, side) in [("width", r.width), ("height", r.height)] {
        if let Some(v) = side {
            if !(32..=1536).contains(&v) {
                return Err(Error::invalid(field, "must be between 32 and 1536").into());
            }
            if v % 8 != 0 {
                return Err(Error::invalid(field, "must be a multiple of 8").into());
            }
        }
    }
    if let Some(n) = r.num_images {
        if !(1..=8).contains(&n) {
            return Err(Error::invalid("num_images", "must be between 1 and 8").into());
        }
    }
    if let Some(s) = r.num_inference_steps {
        if !(10..=60).contains(&s) {
            return Err(Error::invalid("num_inference_steps", "must be between 10 and 60").into());
        }
    }
    if let Some(g) = r.guidance_scale {
        in_range("guidance_scale", g, 1.0, 20.0)?;
    }
    if let Some(s) = r.seed {
        if s > 9_999_999_998 {
            return Err(Error::invalid("seed", "must be between 0 and 9999999998").into());
        }
    }
    if let Some(s) = r.init_strength {
        in_range("init_strength", s, 0.1, 0.9)?;
    }
    if let Some(s) = &r.scheduler {
        if easel_core::scheduler::leonardo(s).is_none() {
            let names: Vec<&str> = easel_core::scheduler::LEONARDO
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return Err(Error::invalid(
                "scheduler",
                format!("unknown scheduler `{s}`; one of {}", names.join(", ")),
            )
            .into());
        }
    }
    if let Some(p) = &r.presetStyle {
        let table = easel_core::style::LEONARDO;
        if easel_core::style::find(table, p).is_none() {
            return Err(Error::invalid(
                "presetStyle",
                format!(
                    "unknown preset style `{p}`; one of {}",
                    easel_core::style::names(table).join(", ")
                ),
            )
            .into());
        }
    }
    if let Some(v) = &r.sd_version {
        if easel_core::model::leonardo_sd_version(v).is_none() {
            let names: Vec<&str> = easel_core::model::LEONARDO_SD_VERSIONS
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return Err(Error::invalid(
                "sd_version",
                format!("unknown sd_version `{v}`; one of {}", names.join(", ")),
            )
            .into());
        }
    }
    // Features Easel does not run.
    if r.controlnets.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(unsupported(
            "controlnets",
            "ControlNet is not supported by this server; send [] or leave it out",
        ));
    }
    if r.controlNet == Some(true) {
        return Err(unsupported(
            "controlNet",
            "ControlNet is not supported by this server; send false or leave it out",
        ));
    }
    if let Some(t) = &r.controlNetType {
        one_of_s("controlNetType", t, &["POSE", "CANNY", "DEPTH"])?;
    }
    if r.imagePrompts
        .as_ref()
        .is_some_and(|p| p.iter().any(Option::is_some))
    {
        return Err(unsupported(
            "imagePrompts",
            "image prompts are not supported by this server; use init_image_id (img2img)",
        ));
    }
    if r.unzoom == Some(true) {
        return Err(unsupported(
            "unzoom",
            "unzoom (outpainting around an image) is not supported by this server",
        ));
    }
    if let Some(t) = &r.transparency {
        one_of_s("transparency", t, &["disabled", "foreground_only"])?;
        if t == "foreground_only" {
            return Err(unsupported(
                "transparency",
                "transparent output is not supported by this server (outputs are opaque); \
                 send `disabled` or leave it out",
            ));
        }
    }
    if r.tiling == Some(true) {
        return Err(unsupported(
            "tiling",
            "seamless tiling is not supported by this server; send false or leave it out",
        ));
    }
    // Vendor switches: checked as the spec states them, then ignored.
    if let Some(c) = r.contrast {
        one_of_f("contrast", c, &[1.0, 1.3, 1.8, 2.5, 3.0, 3.5, 4.0, 4.5])?;
    }
    if let Some(c) = r.contrastRatio {
        in_range("contrastRatio", c, 0.0, 1.0)?;
    }
    if let Some(s) = r.photoRealStrength {
        one_of_f("photoRealStrength", s, &[0.55, 0.5, 0.45])?;
    }
    if let Some(v) = &r.photoRealVersion {
        one_of_s("photoRealVersion", v, &["v1", "v2"])?;
    }
    if let Some(s) = r.promptMagicStrength {
        in_range("promptMagicStrength", s, 0.1, 1.0)?;
    }
    if let Some(v) = &r.promptMagicVersion {
        one_of_s("promptMagicVersion", v, &["v2", "v3"])?;
    }
    for (field, v) in [
        ("imagePromptWeight", r.imagePromptWeight),
        ("unzoomAmount", r.unzoomAmount),
        ("weighting", r.weighting),
        ("upscaleRatio", r.upscaleRatio),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(Error::invalid(field, "must be a finite number").into());
        }
    }
    Ok(())
}

/// Which wire fields the core's fields came from, to name core errors back.
#[derive(Debug, Default)]
struct WireNames {
    /// The field the init image came from.
    image: Option<&'static str>,
    /// `modelId` or `sd_version` (how the model was chosen).
    model: &'static str,
    /// `elements[i]` / `userElements[j]` for each core LoRA, in order.
    loras: Vec<(String, &'static str, &'static str)>,
}

impl WireNames {
    /// A core field path (`input.count`, `model`, `input.loras[1].scale`) by its wire name.
    fn wire(&self, field: &str) -> Option<String> {
        if field == "model" {
            return Some(self.model.to_string());
        }
        let f = field
            .strip_prefix("input.")
            .or_else(|| (field == "input").then_some(""));
        let Some(f) = f else {
            return Some(field.to_string());
        };
        if f.is_empty() {
            return None;
        }
        if let Some(rest) = f.strip_prefix("loras[") {
            let (i, tail) = rest.split_once(']').unwrap_or((rest, ""));
            let Some((base, id_field, _)) = i.parse::<usize>().ok().and_then(|i| self.loras.get(i))
            else {
                return Some("elements".into());
            };
            return Some(match tail {
                ".scale" => format!("{base}.weight"),
                _ => format!("{base}.{id_field}"),
            });
        }
        Some(
            match f {
                "loras" => "elements",
                "count" => "num_images",
                "steps" => "num_inference_steps",
                "guidance" => "guidance_scale",
                "strength" => "init_strength",
                "image" => self.image.unwrap_or("init_image_id"),
                "mask" => "canvasMaskId",
                other => other,
            }
            .to_string(),
        )
    }

    fn rename(&self, mut e: Error) -> Error {
        e.field = e.field.as_deref().and_then(|f| self.wire(f));
        e
    }
}

/// A model of the registry by name, alias, id, or id as a UUID.
async fn find_model(state: &AppState, name: &str) -> Result<Option<Model>> {
    let db = &state.store.db;
    if let Some(m) = easel_store::models::resolve(db, name).await? {
        return Ok(Some(m));
    }
    if is_uuid_v4(name) {
        let id = easel_store::external_ids::find(db, namespaces::LEONARDO_MODEL, "", name).await?;
        if let Some(id) = id {
            return Ok(easel_store::models::resolve(db, &id).await?);
        }
    }
    match easel_core::id::from_uuid(easel_core::id::MODEL, name) {
        Some(id) => Ok(easel_store::models::resolve(db, &id).await?),
        None => Ok(None),
    }
}

/// A model's Leonardo id: a UUIDv4 given to it the first time a Generation shows it (the
/// spec's `modelId` and `akUUID` are v4 UUIDs); requests may name a model by it.
async fn model_uuid(state: &AppState, m: &Model) -> Result<String> {
    Ok(easel_store::external_ids::get_or_assign(
        &state.store.db,
        namespaces::LEONARDO_MODEL,
        "",
        &m.id,
        new_uuid_v4,
    )
    .await?)
}

/// An image a request names: an asset id of the caller, or a generated image's UUID.
async fn image_asset(state: &AppState, who: &Principal, field: &str, id: &str) -> Result<Asset> {
    let db = &state.store.db;
    let asset_id = if easel_core::id::is_valid(easel_core::id::ASSET, id) {
        Some(id.to_string())
    } else if is_uuid_v4(id) {
        easel_store::external_ids::find(db, namespaces::LEONARDO_IMAGE, &who.user_id, id).await?
    } else {
        return Err(Error::invalid(
            field,
            format!(
                "`{id}` is neither an asset id (ast_…, upload with POST /v1/assets) nor the id \
                 of one of your generated images"
            ),
        )
        .into());
    };
    let asset = match asset_id {
        Some(a) => easel_store::assets::get(db, &a)
            .await?
            .filter(|a| a.owner_id == who.user_id),
        None => None,
    };
    let asset = asset.ok_or_else(|| Error::invalid(field, format!("no image `{id}` of yours")))?;
    if !asset.mime_type.starts_with("image/") {
        return Err(Error::invalid(field, "the asset is not an image").into());
    }
    Ok(asset)
}

/// A LoRA an element names.
async fn lora(state: &AppState, field: &str, name: &str) -> Result<Model> {
    match find_model(state, name).await? {
        Some(m) if service::is_lora(&m) => Ok(m),
        Some(m) => Err(Error::invalid(
            field,
            format!("`{}` is a model, not a LoRA; name it in modelId", m.name),
        )
        .into()),
        None => Err(Error::invalid(field, format!("no LoRA named `{name}`")).into()),
    }
}

/// `12.0` → `"12"`.
fn number_name(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// What a request becomes.
struct Plan {
    task: &'static str,
    model: Model,
    input: Map<String, Value>,
    names: WireNames,
}

/// Translate and check a request (everything but the submit).
async fn plan(state: &AppState, who: &Principal, r: &GenerationRequest) -> Result<Plan> {
    check_fields(r)?;
    let mut names = WireNames {
        model: "modelId",
        ..Default::default()
    };

    // The task and its images.
    let canvas = match (&r.canvasRequestType, r.canvasRequest) {
        (Some(t), _) => Some(t.as_str()),
        (None, Some(true)) => {
            return Err(Error::invalid(
                "canvasRequestType",
                "required when canvasRequest is true (INPAINT or IMG2IMG)",
            )
            .into())
        }
        (None, _) => None,
    };
    let (task, image, mask): (
        &'static str,
        Option<(&'static str, &String)>,
        Option<&String>,
    ) = match canvas {
        Some(t) => {
            one_of_s(
                "canvasRequestType",
                t,
                &["INPAINT", "OUTPAINT", "SKETCH2IMG", "IMG2IMG"],
            )?;
            if t == "OUTPAINT" || t == "SKETCH2IMG" {
                return Err(unsupported(
                    "canvasRequestType",
                    format!("`{t}` is not supported by this server; INPAINT and IMG2IMG are"),
                ));
            }
            for (field, v) in [
                ("init_image_id", &r.init_image_id),
                ("init_generation_image_id", &r.init_generation_image_id),
            ] {
                if v.is_some() {
                    return Err(Error::invalid(
                        field,
                        "not with a canvas request: its image is canvasInitId",
                    )
                    .into());
                }
            }
            let init = r.canvasInitId.as_ref().ok_or_else(|| {
                Error::invalid("canvasInitId", format!("required for a {t} canvas request"))
            })?;
            if t == "INPAINT" {
                let m = r.canvasMaskId.as_ref().ok_or_else(|| {
                    Error::invalid(
                        "canvasMaskId",
                        "required for an INPAINT canvas request (white = repaint)",
                    )
                })?;
                ("inpaint", Some(("canvasInitId", init)), Some(m))
            } else {
                if r.canvasMaskId.is_some() {
                    return Err(
                        Error::invalid("canvasMaskId", "only for INPAINT canvas requests").into(),
                    );
                }
                ("img2img", Some(("canvasInitId", init)), None)
            }
        }
        None => {
            for (field, v) in [
                ("canvasInitId", &r.canvasInitId),
                ("canvasMaskId", &r.canvasMaskId),
            ] {
                if v.is_some() {
                    return Err(Error::invalid(
                        field,
                        "needs canvasRequestType (INPAINT or IMG2IMG)",
                    )
                    .into());
                }
            }
            match (&r.init_image_id, &r.init_generation_image_id) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        "init_generation_image_id",
                        "give one of init_image_id and init_generation_image_id",
                    )
                    .into())
                }
                (Some(i), None) => ("img2img", Some(("init_image_id", i)), None),
                (None, Some(i)) => ("img2img", Some(("init_generation_image_id", i)), None),
                (None, None) => ("txt2img", None, None),
            }
        }
    };
    if task == "txt2img" && r.init_strength.is_some() {
        return Err(Error::invalid(
            "init_strength",
            "only with an init image (init_image_id, init_generation_image_id or a canvas request)",
        )
        .into());
    }
    let image = match image {
        Some((field, id)) => {
            names.image = Some(field);
            Some(image_asset(state, who, field, id).await?)
        }
        None => None,
    };
    let mask = match mask {
        Some(id) => Some(image_asset(state, who, "canvasMaskId", id).await?),
        None => None,
    };

    // The model.
    let model = match (&r.modelId, &r.sd_version) {
        (Some(id), _) => {
            let m = find_model(state, id).await?.ok_or_else(|| {
                Error::invalid(
                    "modelId",
                    format!("no model `{id}`; GET /v1/models lists the installed ones"),
                )
            })?;
            if service::is_lora(&m) {
                return Err(Error::invalid(
                    "modelId",
                    format!("`{}` is a LoRA; name it in elements", m.name),
                )
                .into());
            }
            m
        }
        (None, Some(v)) => {
            names.model = "sd_version";
            let families = easel_core::model::leonardo_sd_version(v).unwrap_or(&[]);
            if families.is_empty() {
                return Err(Error::invalid(
                    "sd_version",
                    format!(
                        "`{v}` has no local model family on this server; name an installed \
                         model in modelId"
                    ),
                )
                .into());
            }
            service::pick_model(state, task, Some(families))
                .await?
                .ok_or_else(|| {
                    Error::invalid(
                        "sd_version",
                        format!(
                            "no installed model of `{v}` (family {}) does {task}; install one \
                             or name a model in modelId",
                            families.join(" or ")
                        ),
                    )
                })?
        }
        (None, None) => service::pick_model(state, task, None)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "modelId",
                    format!(
                        "no model for `{task}` is installed: put a diffusers folder or a \
                     .safetensors checkpoint in <data-dir>/models/, or run `easel models pull \
                     <repo>`"
                    ),
                )
            })?,
    };

    // LoRAs.
    let mut loras = Vec::new();
    for (i, e) in r.elements.iter().flatten().enumerate() {
        let base = format!("elements[{i}]");
        let m = lora(state, &format!("{base}.akUUID"), &e.ak_uuid).await?;
        loras.push(json!({"model": m.name, "scale": e.weight.unwrap_or(1.0)}));
        names.loras.push((base, "akUUID", "weight"));
    }
    for (i, e) in r.userElements.iter().flatten().enumerate() {
        let base = format!("userElements[{i}]");
        let field = format!("{base}.userLoraId");
        let id = e
            .user_lora_id
            .ok_or_else(|| Error::invalid(&field, "required"))?;
        let m = lora(state, &field, &number_name(id)).await?;
        loras.push(json!({"model": m.name, "scale": e.weight.unwrap_or(1.0)}));
        names.loras.push((base, "userLoraId", "weight"));
    }

    // The core input.
    let style_name = r.presetStyle.as_deref().unwrap_or("DYNAMIC");
    let style = easel_core::style::find(easel_core::style::LEONARDO, style_name)
        .expect("checked by check_fields");
    let (prompt, negative) = style.apply(&r.prompt, r.negative_prompt.as_deref());
    let mut input = Map::new();
    input.insert("prompt".into(), json!(prompt));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            input.insert(k.into(), v);
        }
    };
    put("negative_prompt", negative.map(Value::from));
    put("width", r.width.map(Value::from));
    put("height", r.height.map(Value::from));
    put("count", Some(json!(r.num_images.unwrap_or(4))));
    put("steps", r.num_inference_steps.map(Value::from));
    put("guidance", r.guidance_scale.map(Value::from));
    put("seed", r.seed.map(Value::from));
    let scheduler = match (&r.scheduler, &model.defaults.scheduler) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(_)) => None,
        (None, None) => Some("EULER_DISCRETE".to_string()),
    };
    put("scheduler", scheduler.map(Value::from));
    put("image", image.as_ref().map(|a| json!(a.id)));
    put("mask", mask.as_ref().map(|a| json!(a.id)));
    put(
        "strength",
        r.init_strength
            .map(|s| json!(((1.0 - s) * 1e6).round() / 1e6)),
    );
    if !loras.is_empty() {
        put("loras", Some(Value::Array(loras)));
    }

    // What the core will run, with its defaults: the core's own rules, and the spec's count
    // rule on the sides that run.
    let mut probe =
        easel_core::task::TaskInput::parse(task, Value::Object(input.clone()), &state.limits)
            .map_err(|e| names.rename(e))?;
    if let Some(g) = probe.generation_mut() {
        let size = image.as_ref().and_then(|a| a.width.zip(a.height));
        g.fill_defaults(task, &model.family, &model.defaults, size, 0);
        let run = g.resolved();
        if (run.width > 768 || run.height > 768) && run.count > 4 {
            return Err(Error::invalid(
                "num_images",
                format!(
                    "must be between 1 and 4 when width or height is above 768 (this \
                     generation is {}x{})",
                    run.width, run.height
                ),
            )
            .into());
        }
    }
    Ok(Plan {
        task,
        model,
        input,
        names,
    })
}

// ---------------------------------------------------------------------------------------
// Responses

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoCost)]
pub struct Cost {
    /// Whole credits, as a string.
    pub amount: String,
    /// `CREDITS`.
    pub unit: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LeonardoSdGenerationJob)]
pub struct SdGenerationJob {
    /// A UUIDv4: read it with `GET /generations/{id}`.
    pub generation_id: String,
    /// Whole credits (deprecated by the spec; the same as `cost.amount`).
    pub api_credit_cost: u64,
    pub cost: Cost,
}

/// The answer of `POST /generations`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LeonardoCreateAnswer)]
pub struct CreateAnswer {
    pub sd_generation_job: SdGenerationJob,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoGeneratedImage)]
pub struct GeneratedImage {
    /// A UUIDv4, stable for the image (usable as `init_image_id`).
    pub id: String,
    /// A signed URL of the image.
    pub url: String,
    /// Always false.
    pub nsfw: bool,
    /// Always 0.
    #[serde(rename = "likeCount")]
    pub like_count: u32,
    /// Always empty (no variations here).
    #[schema(value_type = Vec<Object>)]
    pub generated_image_variation_generics: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoLora)]
pub struct LoraView {
    /// As the request named it (a `userLoraId` as text).
    #[serde(rename = "akUUID")]
    pub ak_uuid: Option<String>,
    /// The LoRA's registry name.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoGenerationElement)]
pub struct GenerationElement {
    pub lora: LoraView,
    #[serde(rename = "weightApplied")]
    pub weight_applied: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoJobError)]
pub struct JobErrorView {
    pub code: String,
    pub message: String,
}

/// A generation (the spec's `generations` object, with Easel's `easel_*` additions).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LeonardoGeneration)]
pub struct Generation {
    pub id: String,
    pub created_at: String,
    /// `PENDING`, `COMPLETE` or `FAILED`.
    pub status: &'static str,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub model_id: Option<String>,
    pub sd_version: Option<String>,
    pub scheduler: Option<String>,
    pub preset_style: Option<String>,
    pub seed: Option<u64>,
    pub image_width: Option<u32>,
    pub image_height: Option<u32>,
    pub inference_steps: Option<u32>,
    pub guidance_scale: Option<f64>,
    pub init_strength: Option<f64>,
    pub public: bool,
    pub photo_real: bool,
    pub photo_real_strength: Option<f64>,
    pub prompt_magic: bool,
    pub prompt_magic_strength: Option<f64>,
    pub prompt_magic_version: Option<String>,
    pub ultra: bool,
    #[serde(rename = "generation_elements")]
    pub generation_elements: Vec<GenerationElement>,
    #[serde(rename = "generated_images")]
    pub generated_images: Vec<GeneratedImage>,
    #[serde(rename = "easel_job_id")]
    pub easel_job_id: String,
    #[serde(rename = "easel_model")]
    pub easel_model: Option<String>,
    #[serde(rename = "easel_prompt")]
    pub easel_prompt: Option<String>,
    #[serde(rename = "easel_negative_prompt")]
    pub easel_negative_prompt: Option<String>,
    #[serde(rename = "easel_ignored")]
    pub easel_ignored: Vec<String>,
    #[serde(rename = "easel_error")]
    pub easel_error: Option<JobErrorView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoGenerationAnswer)]
pub struct GenerationAnswer {
    pub generations_by_pk: Option<Generation>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoGenerationList)]
pub struct GenerationList {
    pub generations: Vec<Generation>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoDeletedRef)]
pub struct DeletedRef {
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoDeleteAnswer)]
pub struct DeleteAnswer {
    pub delete_generations_by_pk: Option<DeletedRef>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoUser)]
pub struct UserRef {
    /// The caller's Leonardo user id (a UUIDv4, what `/generations/user/{userId}` takes).
    pub id: String,
    pub username: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoUserDetails)]
pub struct UserDetails {
    pub user: UserRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoMe)]
pub struct MeAnswer {
    pub user_details: Vec<UserDetails>,
}

/// A number the core keeps as an `f32`, at its shortest decimal (`0.8`, not
/// `0.800000011920929`).
fn short(v: f64) -> f64 {
    (v as f32).to_string().parse().unwrap_or(v)
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A job as a Generation with id `id`.
async fn generation(state: &AppState, job: &Job, id: String) -> Result<Generation> {
    let req = job.request.clone().unwrap_or_else(|| json!({}));
    let input = &job.input;
    let model = match &job.model {
        Some(name) => easel_store::models::resolve(&state.store.db, name).await?,
        None => None,
    };
    let model_id = match &model {
        Some(m) => Some(model_uuid(state, m).await?),
        None => None,
    };
    let sd_version = str_of(&req, "sd_version").or_else(|| {
        model
            .as_ref()
            .and_then(|m| easel_core::model::leonardo_sd_version_of(&m.family))
            .map(str::to_string)
    });
    let scheduler = str_of(&req, "scheduler").or_else(|| {
        input
            .get("scheduler")
            .and_then(Value::as_str)
            .and_then(easel_core::scheduler::leonardo_name)
            .map(str::to_string)
    });
    let preset = str_of(&req, "presetStyle").unwrap_or_else(|| "DYNAMIC".into());
    let preset = easel_core::style::find(easel_core::style::LEONARDO, &preset)
        .map(|s| s.name.to_string())
        .unwrap_or(preset);
    let init_strength = req
        .get("init_strength")
        .and_then(Value::as_f64)
        .or_else(|| {
            input
                .get("strength")
                .and_then(Value::as_f64)
                .map(|s| short(1.0 - short(s)))
        });
    let num = |k: &str| input.get(k).and_then(Value::as_u64);
    let core_loras = input
        .get("loras")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut generation_elements = Vec::new();
    for l in &core_loras {
        let name = str_of(l, "model");
        let found = match &name {
            Some(n) => easel_store::models::resolve(&state.store.db, n).await?,
            None => None,
        };
        let ak_uuid = match &found {
            Some(m) => Some(model_uuid(state, m).await?),
            None => None,
        };
        generation_elements.push(GenerationElement {
            lora: LoraView { ak_uuid, name },
            weight_applied: l.get("scale").and_then(Value::as_f64).map(short),
        });
    }
    let mut generated_images = Vec::new();
    if job.status == JobStatus::Succeeded {
        // An output deleted since (`DELETE /v1/assets/{id}`) is left out.
        for asset_id in &job.outputs {
            if easel_store::assets::get(&state.store.db, asset_id)
                .await?
                .is_none()
            {
                continue;
            }
            let image_id = easel_store::external_ids::get_or_assign(
                &state.store.db,
                namespaces::LEONARDO_IMAGE,
                &job.owner_id,
                asset_id,
                new_uuid_v4,
            )
            .await?;
            generated_images.push(GeneratedImage {
                id: image_id,
                url: service::asset_url(state, asset_id),
                nsfw: false,
                like_count: 0,
                generated_image_variation_generics: vec![],
            });
        }
    }
    let easel_error = match job.status {
        JobStatus::Failed | JobStatus::Canceled => Some(match &job.error {
            Some(e) => JobErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            },
            None => JobErrorView {
                code: job.status.as_str().to_string(),
                message: job.failure().map(|e| e.message).unwrap_or_default(),
            },
        }),
        _ => None,
    };
    Ok(Generation {
        id,
        created_at: job
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        status: StatusNames::LEONARDO.name(job.status),
        prompt: str_of(&req, "prompt")
            .or_else(|| str_of(input, "prompt"))
            .unwrap_or_default(),
        negative_prompt: str_of(&req, "negative_prompt"),
        model_id,
        sd_version,
        scheduler,
        preset_style: Some(preset),
        seed: num("seed"),
        image_width: num("width").map(|v| v as u32),
        image_height: num("height").map(|v| v as u32),
        inference_steps: num("steps").map(|v| v as u32),
        guidance_scale: input.get("guidance").and_then(Value::as_f64).map(short),
        init_strength,
        public: false,
        photo_real: false,
        photo_real_strength: None,
        prompt_magic: false,
        prompt_magic_strength: None,
        prompt_magic_version: None,
        ultra: false,
        generation_elements,
        generated_images,
        easel_job_id: job.id.clone(),
        easel_model: job.model.clone(),
        easel_prompt: str_of(input, "prompt"),
        easel_negative_prompt: str_of(input, "negative_prompt"),
        easel_ignored: req
            .get("ignored")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        easel_error,
    })
}

/// The caller's job with the Leonardo generation id `id`, if any.
async fn owned_generation(state: &AppState, who: &Principal, id: &str) -> Result<Option<Job>> {
    let db = &state.store.db;
    let Some(job_id) =
        easel_store::external_ids::find(db, namespaces::LEONARDO_GENERATION, &who.user_id, id)
            .await?
    else {
        return Ok(None);
    };
    Ok(easel_store::jobs::get(db, &job_id)
        .await?
        .filter(|j| j.owner_id == who.user_id))
}

fn path_id(field: &str, p: Result<Path<String>, PathRejection>) -> Result<String> {
    let id = p.map(|Path(id)| id).unwrap_or_default();
    check_uuid(field, &id)?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Create a generation: `txt2img`, `img2img` (`init_image_id`, canvas `IMG2IMG`) or
/// `inpaint` (canvas `INPAINT`). Answers at once; poll `GET /generations/{id}`.
#[utoipa::path(post, path = "/leonardo/v1/generations", tag = "leonardo",
    request_body = GenerationRequest,
    responses((status = 200, body = CreateAnswer),
        (status = 400, body = ApiErrorBody, description = "Invalid or unsupported field"),
        (status = 401, body = ApiErrorBody), (status = 413, body = ApiErrorBody),
        (status = 429, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<axum::Json<CreateAnswer>> {
    let req: GenerationRequest = easel_core::error::from_json(body.clone())?;
    let plan = plan(&state, &who, &req).await?;
    let mut stored = match body {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let ignored = ignored_in(&Value::Object(stored.clone()));
    stored.insert("ignored".into(), json!(ignored));
    let generation_id = new_uuid_v4();
    let (job, created) = service::submit(
        &state,
        &who,
        TaskRequest {
            task: plan.task.to_string(),
            model: Some(plan.model.name.clone()),
            input: Value::Object(plan.input),
            priority: None,
            webhook: None,
            idempotency_key: service::idempotency_key(&headers)?,
            request: Some(Value::Object(stored)),
            external_id: Some(ExternalId {
                namespace: namespaces::LEONARDO_GENERATION,
                id: generation_id.clone(),
            }),
        },
    )
    .await
    .map_err(|e| plan.names.rename(e))?;
    let generation_id = if created {
        generation_id
    } else {
        // An idempotent replay: the first job's id.
        easel_store::external_ids::get_or_assign(
            &state.store.db,
            namespaces::LEONARDO_GENERATION,
            &who.user_id,
            &job.id,
            new_uuid_v4,
        )
        .await?
    };
    let units = easel_core::usage::estimate_units(&job.task, &job.input).unwrap_or(0.0);
    let credits = easel_core::usage::credits(units);
    Ok(axum::Json(CreateAnswer {
        sd_generation_job: SdGenerationJob {
            generation_id,
            api_credit_cost: credits,
            cost: Cost {
                amount: credits.to_string(),
                unit: "CREDITS",
            },
        },
    }))
}

/// One generation of the caller (`null` when it has none with this id).
#[utoipa::path(get, path = "/leonardo/v1/generations/{id}", tag = "leonardo",
    params(("id" = String, Path, description = "A generation id (UUIDv4)")),
    responses((status = 200, body = GenerationAnswer), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<GenerationAnswer>> {
    let id = path_id("id", id)?;
    let found = match owned_generation(&state, &who, &id).await? {
        Some(job) => Some(generation(&state, &job, id).await?),
        None => None,
    };
    Ok(axum::Json(GenerationAnswer {
        generations_by_pk: found,
    }))
}

/// Delete a generation of the caller: cancel it if it is still running, then delete it with
/// its images (`null` when it has none with this id).
#[utoipa::path(delete, path = "/leonardo/v1/generations/{id}", tag = "leonardo",
    params(("id" = String, Path, description = "A generation id (UUIDv4)")),
    responses((status = 200, body = DeleteAnswer), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeleteAnswer>> {
    let id = path_id("id", id)?;
    let Some(job) = owned_generation(&state, &who, &id).await? else {
        return Ok(axum::Json(DeleteAnswer {
            delete_generations_by_pk: None,
        }));
    };
    let db = &state.store.db;
    if !job.status.is_terminal() {
        // Stop the work at its next step; a job that ended meanwhile is deleted as it is.
        match state.queue.cancel(&job.id, Some(&job.owner_id)).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Conflict || e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(gone) = easel_store::jobs::delete(db, &job.id).await? {
        let blobs: Vec<_> = gone
            .assets
            .iter()
            .map(|a| (a.clone(), blob_key(&gone.job.owner_id, a)))
            .collect();
        easel_store::intents::remove(&state.store, &blobs).await?;
    }
    Ok(axum::Json(DeleteAnswer {
        delete_generations_by_pk: Some(DeletedRef { id }),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Generations to skip (default 0).
    #[serde(default)]
    pub offset: Option<u32>,
    /// At most this many (default 10, at most 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The caller's generations, newest first. `userId` must be the caller's own Leonardo user
/// id (`GET /me`); another is 403.
#[utoipa::path(get, path = "/leonardo/v1/generations/user/{userId}", tag = "leonardo",
    params(("userId" = String, Path, description = "The caller's Leonardo user id (UUIDv4)"), ListParams),
    responses((status = 200, body = GenerationList), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn by_user(
    State(state): State<AppState>,
    Auth(who): Auth,
    user_id: Result<Path<String>, PathRejection>,
    Query(q): Query<ListParams>,
) -> Result<axum::Json<GenerationList>> {
    let user_id = path_id("userId", user_id)?;
    if user_id != user_uuid(&state, &who).await? {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!("not your user id; GET {BASE}/me gives yours"),
        )
        .with_field("userId")
        .into());
    }
    let limit = q.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
    if limit == 0 {
        return Ok(axum::Json(GenerationList {
            generations: vec![],
        }));
    }
    let db = &state.store.db;
    let jobs = easel_store::jobs::list(
        db,
        &easel_store::jobs::JobFilter {
            owner_id: Some(who.user_id.clone()),
            namespace: Some(namespaces::LEONARDO_GENERATION),
            offset: q.offset.unwrap_or(0),
            limit,
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut gen_ids =
        easel_store::external_ids::of(db, namespaces::LEONARDO_GENERATION, &ids).await?;
    let mut generations = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if let Some(g) = gen_ids.remove(&job.id) {
            generations.push(generation(&state, job, g).await?);
        }
    }
    Ok(axum::Json(GenerationList { generations }))
}

/// The caller: its Leonardo user id and name.
#[utoipa::path(get, path = "/leonardo/v1/me", tag = "leonardo",
    responses((status = 200, body = MeAnswer), (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, Auth(who): Auth) -> Result<axum::Json<MeAnswer>> {
    let id = user_uuid(&state, &who).await?;
    let username = easel_store::users::get_user(&state.store.db, &who.user_id)
        .await?
        .map(|u| u.name)
        .unwrap_or_default();
    Ok(axum::Json(MeAnswer {
        user_details: vec![UserDetails {
            user: UserRef { id, username },
        }],
    }))
}

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
