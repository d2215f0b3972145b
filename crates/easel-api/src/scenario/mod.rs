//! The Scenario dialect, mounted at `/scenario/v1`: `../shared/specs/scenario.openapi.json`
//! (108 operations). A client written for `https://api.cloud.scenario.com/v1` (the official
//! `scenario-sdk` among them) generates images, polls jobs and reads assets against Easel by
//! changing its base URL and credentials. Every other operation of the spec is mounted and,
//! once the credential is checked, answers 501 in Scenario's shape, naming what it waits
//! for (`unbuilt::OPERATIONS`).
//!
//! This module only translates: wire request → `service::TaskRequest` → `service::submit`
//! (the core's rules, limits and models) → queue → `Job` → wire objects. Its tables are its
//! own: `STATUS`, `FIELDS`, `generate::ENDPOINTS` (which fields each endpoint takes),
//! `generate::NOT_APPLIED`, `view::job_type`/`source`/`model_type`.
//!
//! # Auth
//!
//! `Authorization: Basic base64(api_key:api_secret)`, as the SDK sends it, where an Easel
//! key `esk_<key id>_<secret>` is the pair (`api_key` = the key id `key_…`, `api_secret` =
//! the secret; `POST /v1/keys` and `easel keys create` show both), or `Authorization: Bearer
//! <Easel key>`. A missing, wrong or revoked credential is 401. The public reads
//! (`GetPublicAssets…`, `GetPublicModels…`, `GetPublicOscuPrices`) take no credential.
//!
//! # Ids
//!
//! Reversible, no lookup table (`ids`): an asset `ast_<ulid>` is `asset_<ulid>`, a model
//! `mdl_<ulid>` is `model_<ulid>`, a job keeps its id `job_<ulid>`. An inference has no id of
//! its own: `inferenceId` is the job's id. Requests may also send Easel's forms; a
//! `modelId` may also be a registry name or alias (so `flux.1-dev`-style ids reach installed
//! models through aliases); a user's model is named by its id only (its name is a title). A
//! preset keeps Easel's id `prs_<ulid>`. Easel has no projects or teams: a user is the
//! owner (`ownerId`, a model's transfer destination).
//!
//! # Operations served
//!
//! | operation | does |
//! |---|---|
//! | `GetJobs` | the caller's jobs (admins: everyone's), newest first; `type`/`types` (`inference`, `upscale`, `pixelate`), `status` (Scenario's names), `authorId` (another user's: admins only, else 403) |
//! | `GetJobId` | one job; a download's `jobId` (`PostDownloadAssets`, `PostDownloadModel`) reads as an `assets-download`/`model-download` job that succeeded, its archive's signed URL in `metadata.output.url` |
//! | `PostJobActionByJobId` | `{"action": "cancel"}` through the queue: a queued job ends `canceled` at once, a running one at its next step; a finished one is 400 |
//! | `PostTxt2imgInferences`, `PostImg2imgInferences`, `PostInpaintInferences` | submit the task; `{creativeUnitsCost, creativeUnitsDiscount, inference, job}` |
//! | `PostPixelateInferences` | the `pixelate` tool: `pixelGridSize` (16, 32, 64, 128, 256), `removeNoise`, `colorPalette` (`[[r,g,b]]`) or `colorPaletteSize` (2–256); waits for the job and answers `{…, job, asset}`; `removeBackground: true` is a 400 (no segmentation model) |
//! | `PostUpscaleInferences` | the local upscaler (classical resampling): `scalingFactor` (the spec's 1–16; the upscaler takes up to 8) or `targetWidth` (wins; 1024–16000), default ×2; the creative fields (`preset`, `style`, `creativity`, `prompt`, …) are accepted and recorded as not applied; `{…, job}` |
//! | `PostGenerativeFillInferences` | `inpaint` on the server's default model: `mask` (or `maskId`; required here), `prompt` (default empty), `negativePrompt`, `seed` (a number here), `numInferenceSteps` (5–50), `promptFidelity` (1–15) as the guidance, one image; `targetWidth`/`targetHeight` accepted, not applied (the output keeps the image's size); `{…, job}` |
//! | `GetAssets` | the caller's assets, newest first; `type`/`types`, `modelId`, `inferenceId`, `parentAssetId`, `rootAssetId` (the assets whose lineage root is this one), `privacy`, `tags` (any of them; comma-separated or repeated), `collectionId` (the caller's; others' 404), `createdAfter`/`createdBefore`/`updatedAfter`/`updatedBefore`, `authorId` (the caller, or nothing: assets are their owner's work); `metadata.rootParentId` shows the lineage's root |
//! | `GetCollections`, `PostCollection`, `GetCollectionsByCollectionId`, `PutCollectionsByCollectionId`, `DeleteCollectionsByCollectionId` | the caller's collections (`collection_<ulid>`), newest first, with `assetCount`, `modelCount`, `itemCount`; `name` 1–200 characters; a `thumbnail` other than `null` is a 400 (not kept); deleting keeps the items; others' collections 404 |
//! | `PutAssetsByCollectionId`, `DeleteAssetsByCollectionId`, `PutModelsByCollectionId`, `DeleteModelsByCollectionId` | `assetIds`/`modelIds`, at most 49 at once; added assets must be the caller's (others 404 naming `assetIds[i]`), added models ones the registry has; adding what is there and removing what is not change nothing; `{collection}` |
//! | `GetPublicAssets`, `GetPublicAssetsByAssetId` | without a key: every user's public assets, newest first, `tags` narrowing (`pageSize`, `paginationToken`); by id a public or unlisted asset (a private one 404). Privacy is set with the native `PATCH /v1/assets/{id}` |
//! | `PostAsset` | `image` in base64 (or a `data:` URL) stored as an upload; `name` kept; `parentId` sets its lineage; `collectionIds` (the caller's; others' a 400 naming `collectionIds[i]`) get it; `hide` hides it from lists (`isHidden: true`, read by id). Without `image`, `canvas` (stringified JSON, an object or array, at most 2 MiB) makes a canvas: `kind: json`, `source: canvas`, `mimeType: application/json`, its content (the signed `url`) its current document; `thumbnail` (base64) stored as an image derived from it and shown as `thumbnail`; `collectionIds` (the caller's) get it; a first snapshot is taken |
//! | `LockAssetByAssetId`, `UnlockAssetByAssetId` | a canvas's lock: `lockExpiresAt` (RFC 3339, ahead, at most 24 hours) → `{lockId, asset}` with `metadata.lockExpiresAt`; a live lock, whoever holds it, is a 409 naming the holder (user name and id) and its end; unlock with its `lockId` or `forceUnlock` (the owner and admins, who alone reach a canvas, may end any lock); an expired lock counts as none; a locked canvas is not deleted (409) |
//! | `GetCanvasAssetSnapshots` | the canvas's saved versions, newest first: `{takenAt (unix ms), rawData, authorId, hash (SHA-256)}`, `pageSize` 10–100 (default 10), `paginationToken`; a save identical to the latest snapshot takes none; the 100 newest are kept |
//! | `GetAssetsByAssetId`, `PostAssetGetBulk` (≤200) | assets of the caller (others' read as absent) |
//! | `DeleteAsset` | `{assetIds}` (≤100): all of the caller's, or none deleted (404 naming the first that is not) |
//! | `CopyAssetByAssetId` | a new upload with the same image, derived from the original (`parentId`), `name` kept, `copiedAt` set; a canvas's copy is a canvas with its current document (unlocked, one snapshot); the caller's own assets only (admins too) |
//! | `PostDownloadAsset` | `{url}` signed: `targetFormat` `png`, `jpeg`/`jpg`, `webp` through the `convert` tool (a job the answer waits for; the result is an asset derived from the original), or the asset itself when already in that format or none is given; a later download in the same format reuses the conversion; the caller's own assets only; other formats 400 |
//! | `PutAssetByAssetId` | `name` and `description` of the asset's record (`""` clears; at most 200 and 5,000 characters), `updatedAt` moves; of a canvas also `canvas` (its new document; a snapshot is taken unless `disableSnapshot`), `thumbnail` (base64; the one it replaces is deleted) and `lockExpiresAt` (extends the lock held with `lockId`); while a canvas is locked every change needs the lock's `lockId` (409 naming the holder and the lock's end otherwise); the canvas fields on an image are a 400 naming the field; `{asset}`; the caller's own assets (others' 404). Every asset view shows the record's `privacy` (`private` unless edited over the native API), `description` and `updatedAt` |
//! | `PutAssetsTagsByAssetId` | `add` and `delete` (tags of 1–64 characters, no commas; at most 50 on an asset), `strict` by default as the spec says: a tag already there or missing is a 400 `conflict` naming `add`/`delete` and changes nothing; `strict: false` skips those; `{added, deleted}`; the caller's own assets (others' 404). Tags show in every asset's `tags` |
//! | `PostSearchAssets` | the caller's assets (`public: true`: also everyone's public ones) by the database's text search over name, description, prompt and tags (`query`: every word, each as a word or its start) and `filter` (clauses joined by `AND`, `attribute = value` or `attribute IN [..]` over `privacy`, `tags`, `collectionIds`, `type`, `modelId`, `parentAssetId`, `inferenceId`; other syntax is a 400 naming `filter`); `offset`/`limit` or `page`/`hitsPerPage` (1–100), `sortBy` one of `createdAt`/`updatedAt` `:asc`/`:desc`; `totalHits`; `image`, `images` and semantic ratios above 0 are a 400 (no embeddings here) |
//! | `PostSearchModels` | the server's models and the caller's own (`public: true`: also everyone's public ones) by the same text search over names, aliases, family, tasks, tags and descriptions; `filter` over `privacy` (as each model shows it), `tags`, `type`, `capabilities`; the same paging; `sortBy` `name` (default), `createdAt` or `updatedAt` |
//! | `GetTags` | the caller's tags that some asset carries, by name, with `itemCount`, `ownerId` and first/last use; one page (`pageSize`, `paginationToken` accepted) |
//! | `GetModels` | the server's models and the caller's own, by id; `privacy` narrows by the privacy each shows (`public` also lists everyone's public models; `private`/`unlisted` the caller's of that privacy), `type`/`types`, `status` (`trained`: all), `tags` (all of them), `collectionId` (the caller's; others' 404) |
//! | `GetModelsByModelId`, `PostModelsGetBulk` (≤500) | a model the caller sees: the server's, their own, another's `public` or `unlisted` one (`Model::visible_to`); another's private model is 404 (left out of a bulk read), everywhere a model is named |
//! | `GetPublicModels`, `GetPublicModelsByModelId` | without a key: every public model by id (`type`/`types`, `tags`; `pageSize` 50/500); by id a public or unlisted one (a private one 404) |
//! | `GetModelsScoresPromptByModelId` | `prompt` against the model's tokenizer (`service::prompt_check`): `score` the share of its tokens the text encoder sees; `details`: `tokenCount`, `tokenLimit`, `truncatedTokens`, `chunks`, `promptsSimilarity` (Dice–Sørensen over character bigrams, min/median/mean) against the prompts of the model's example images; `status: incomplete` with the spec's required `captionsSimilarity` and `embeddingSimilarity` at 0, since Easel's models carry no training captions; a weight outside 0–2 is the `syntaxError` |
//! | `PostModels` | a model of the caller's own, `private`: a composition (`baseModelId`, required: a server's model the caller sees, not a LoRA; training is not offered) with `concepts` as its LoRAs (scale −2…2), `name` (a title, 1–200 characters; default the base's), `shortDescription`; `type`, when given, must be the composition's (`sd-1_5-composition`, `sd-xl-composition`, else `custom`); `collectionIds` (the caller's collections; others' 404 naming `collectionIds[i]`) get it; `classSlug` other than `null` is a 400 (not kept). Privacy is set with the native `PATCH /v1/models/{id}` (`mdl_…`); `{model}` |
//! | `PutModelsByModelId` | `name`, `shortDescription` (`""` clears), `concepts` (all the LoRAs); `type` must be the model's; `classSlug`, `thumbnail`, `promptEmbedding`, `negativePromptEmbedding`, `epoch`, `parameters` other than `null` are a 400 naming the field; `{model}` |
//! | `DeleteModelsByModelId` | the model, its presets, its place in collections; `{}` |
//! | `PostModelsCopyByModelId` | a `private` model of the caller's from one they see, with its presets (a server's model becomes a composition over it); `copyExamples` (default: true for the caller's own model, false for another's, whose examples the caller cannot own: `true` there is a 400); `copyAsTrained` read, nothing to copy |
//! | `PostDownloadModel` | a user's model (the caller's; admins any) zipped: `model.json` (the model and its presets) and the LoRA files its owner uploaded; `jobId` read with `GetJobId` or `GetDownloadAssets`; `modelEpoch` a 400 (no training here); the server's models a 400 |
//! | `PostModelsTransferByModelId` | no projects here: `destinationProjectId` names the user (id or name) who gets the model and its presets; `destinationTeamId` read, not used; the server's models are a 400 naming `destinationProjectId` (copy them) |
//! | `GetModelsDescriptionByModelId`, `PutModelsDescriptionByModelId` | the markdown `description` (`null` or `""` removes it; at most 20,000 characters): `{description: {value, models, assets}}`, the models and assets its `{model:<id>}` and `{asset:<id>}` tags name that the caller sees on their own (their own, public or unlisted assets: a tag, free text, grants nothing) |
//! | `GetModelsExamplesByModelId`, `PutModelsExamplesByModelId` | the examples, all at once in order (`assetIds`, at most 50, assets of the model's owner; others a 400 naming `assetIds[i]`): `{examples: [{modelId, asset, inferenceId, inferenceParameters, job}]}` (`modelId` the model that made the asset; the job only for its owner) |
//! | `DeleteModelsImagesByModelId` | no training images here: the assets `ids` names leave the model's examples (the assets stay); `{}` |
//! | `PutModelsTagsByModelId` | as `PutAssetsTagsByAssetId`, on the model's tags: `{added, deleted}` |
//! | `GetModelPresetsByModelId`, `PostModelPresetByModelId`, `PutModelPresetByModelIdAndPresetId`, `DeleteModelPresetByModelIdAndPresetId` | presets (read by whoever sees the model): `inferenceId` names one of the caller's generation jobs (others' 404, other tasks 400), whose parameters as it ran become the preset (not its prompt, images or LoRAs; for img2img and inpaint not its size, which follows each request's image; its seed only if the request chose one), named `Preset from <job id>`; `isDefault` makes it the model's default, which a generation on the model takes for what its request leaves out (`numSamples` included); `{preset}` with `parameters` in `FIELDS` names, `type` the task, `prompt: ""`; delete `{}` |
//! | `GetUsages` | one point per day (`granularity: 1d`): `usages` by usage name (`images-generation` and `upscale`/`pixelate` count output images; `creative-unit-cost` credits) from the usage records; `modelUsages` (credits and jobs per model and day), `entities.models` and `activity` (succeeded jobs, newest first, 100 from `activityOffset`) from the jobs; `consumption` (credits per user). The caller's own (admins: everyone's, or `userId`/`userIds`'; a user naming another is 403). Range: `startDate` + `endDate` (ISO dates, at most 120 days), else `timeRange` (`24h`, `7d`, `4w`, …), else 30 days. `type` picks sections (`usages`, `modelUsages`, `activity`, `consumption`; none known: all). `projectId` is `""` (no projects here) |
//! | `GetPublicOscuPrices` | public: the operator's `--credit-prices` as `{creativeUnits, unitAmount, currency}`; `[]` when none are set |
//! | `GetRecommendationsModels` | the caller's runnable models (the server's and their own; no LoRAs), recommended first, then by name; `capabilities`, `type`, `excludeTypes`, `excludeModelIds`, `tags`; `limit` 1–30 (10), `nextToken` an offset |
//!
//! Each tool has its own table of (Scenario's name, the core's) in `tools` that builds its
//! input and names its errors back. A tool's `creativeUnitsCost` at submit is 0 until the
//! job has run (its output size is known then; a dry run prices it from the input image).
//!
//! # Generation requests
//!
//! The fields map through `FIELDS` (Scenario's name, the core's), the one table that builds
//! the core input and names errors back. `modelId` (required) names the model; `prompt` is
//! required. `numSamples` defaults to 4 (the spec's), `numInferenceSteps`, `guidance`,
//! `width`, `height` and `scheduler` to the model's registry defaults (not the spec's fixed
//! 30 steps and 512²: an SDXL model runs at its natural size). The spec's ranges are
//! checked first (`numSamples` 1–128, steps 1–150, guidance 0–20, sides 64–2048 and
//! multiples of 8, `strength` 0.01–1), then the core's and the server's limits. `seed` is a
//! string of digits (the spec's type; a number is read too); image *i* uses `seed + i`.
//! `concepts[{modelId, scale}]` are LoRAs (scale −2…2). `image`/`imageId` and `mask`/`maskId`
//! take an asset id or a `data:` URL (`image` wins over `imageId`); the mask is white where
//! to repaint. `intermediateImages: true` sends a preview every 5 steps on the job's event
//! stream (`/v1/jobs/{id}/events`). `hideResults: true` stores the outputs hidden (left
//! out of lists and search, `isHidden: true`, still the job's `assetIds`). Accepted,
//! type-checked and recorded but not applied (`generate::NOT_APPLIED`, shown as
//! `inference.easelNotApplied`): `modelEpoch`, `aspectRatio`, `negativePromptStrength`,
//! `baseModelId`, `disableMerging` (`imageHide` and `imageParentId` apply to an image sent as a `data:` URL, stored as the caller's upload). A field the endpoint does not take is 400 naming it.
//!
//! `?dryRun=<anything>` validates the request as a submit would (model, images, limits)
//! and answers **269** `{creativeUnitsCost, creativeUnitsDiscount}` without queuing or
//! storing anything. Creative units are the core's one estimate (`usage::estimate_units`,
//! output megapixels) in whole credits (`usage::credits`), as Leonardo's `cost` and OpenAI's
//! `estimated_credits`; the discount is always 0.
//!
//! # Objects
//!
//! * Job: `jobId, jobType` (`inference` for generations), `status` by `STATUS` (queued →
//!   `queued`, running → `in-progress`, succeeded → `success`, failed → `failure`, canceled
//!   → `canceled`), `statusHistory[{status, date}]` from the job's event log, `progress`
//!   0–1, `metadata{input, output, assetIds}` (`input`: the inference, defaults filled in;
//!   `output`: `{}`, or for a failed or canceled job `{error: {code, message}}` — the spec
//!   has no error field, so a failure is told there), `billing{cuCost, cuDiscount}`,
//!   `ownerId`, `authorId` (the user), `createdAt`, `updatedAt`.
//! * Inference (next to `job`): the request as sent, then what runs (`FIELDS` back), `seed`
//!   as a string, `type` (the task).
//! * Asset: `id, ownerId, authorId, kind: image, mimeType, url` (signed, valid for the
//!   server's `signed_url_ttl`), `status: success`, `privacy` and `description` from the asset's record, `source`
//!   (`inference-txt`, `inference-img`, `inference-in-paint`, `uploaded`, `upscale`,
//!   `pixelization`: the spec's `source` values) and `metadata.type` (`inference-txt2img`,
//!   `inference-img2img`, `inference-inpaint`, …: its asset types, which the `type` filter
//!   of lists takes),
//!   `editCapabilities: [GENERATIVE_FILL, PIXELATE, UPSCALE]` (the edits served here), `tags: [],
//!   collectionIds: []`, `properties{size, width, height}`, `metadata{type, kind, prompt,
//!   negativePrompt, seed, modelId, inferenceId, parentJobId, parentId, outputIndex,
//!   guidance, scheduler, strength, name, copiedAt}`, `isHidden` (a hidden asset is left out
//!   of lists and search, and read by id).
//! * Model: `id, name, type` (`sd-1_5`, `sd-xl`, their `-lora` and `-composition` forms,
//!   else `custom`), `status: trained, capabilities` (of `txt2img`, `img2img`, `inpaint`;
//!   a composition its base's), `custom: false` (Scenario's `custom` marks models run only
//!   through `/generate/custom`; compositions run through the diffusion endpoints),
//!   `privacy` (the server's models `public`: every user runs them; a user's model its own),
//!   `source: other, tags, collectionIds` (the caller's collections holding it),
//!   `exampleAssetIds, trainingImagesNumber: 0`, `shortDescription`; a user's model also
//!   `ownerId`, `authorId` (its owner), `parentModelId` (its base) and `concepts` (its
//!   LoRAs, `[{modelId, scale}]`). A generation with a user's model's `modelId` runs its base
//!   with its LoRAs, defaults and default preset; its assets' `metadata.modelId` names it.
//!
//! # Lists
//!
//! `pageSize` (a string of digits: jobs default 10, at most 200; assets 50/100; models
//! 100/500) and `paginationToken` → `nextPaginationToken`, absent on the last page. Array
//! parameters arrive comma-joined (`types=a,b`).
//!
//! # Errors
//!
//! `{apiError, createdAt, error, id, infos, updatedAt}` (the spec's
//! `InternalServerErrorResponse`) for every status but 429, which is `{reason, name,
//! details}` with `Retry-After`. `infos.field` names the field at fault by its wire name
//! (`error::wire_field`: core `input.count` → `numSamples`, `input.loras[0].model` →
//! `concepts[0].modelId`, `model` → `modelId`), and the message starts with it. Invalid
//! input and a cancel of a finished job are 400 (Scenario has no 422 or 409); an unknown
//! credential 401 (`WWW-Authenticate: Basic`), someone else's list 403, an unknown id or
//! route 404, an unbuilt operation 501, a body over the limit 413.
//!
//! # Where the spec contradicts itself
//!
//! * `seed` is a string in the diffusion family and a number in the tools: both are read
//!   everywhere; answers write it as a string in inferences.
//! * Numbers the spec types `number` but means as counts (`numSamples`, sides, steps) must
//!   be whole (`30.0` is read as 30).
//! * `modality` (controlnet and detect): the enum lists single modalities while the
//!   description also allows weighted combinations (`depth:0.5,pose:1`) and presets. The
//!   endpoints that take it answer 501 here, so no reading is chosen yet; the one that lands
//!   with them must take both forms.
//! * The spec declares only 200 (and 269) answers; errors use its one error schema.
//! * An asset's `source` spells generations `inference-txt`/`-img`/`-in-paint`, its
//!   `metadata.type` `inference-txt2img`/`-img2img`/`-inpaint`: each field gets its own
//!   enum's value.
//! * An asset's `metadata.width` (≥ 1024) and `metadata.numInferenceSteps` (5–50) carry other
//!   tools' ranges: they are left out; the size is in `properties`, the steps in the job.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::Router;
use easel_core::asset::{Asset, AssetKind};
use easel_core::auth::Principal;
use easel_core::canvas::Canvas;
use easel_core::job::{StatusChange, StatusNames};
use easel_core::model::Model;
use easel_core::{Error, ErrorKind, Job, JobStatus};
use easel_providers::family;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::dialect::{self, Dialect, DialectState};
use crate::extract::Json;
use crate::service::{self, TaskRequest};
use crate::AppState;

/// Where the dialect is mounted.
pub const BASE: &str = "/scenario/v1";

/// How Scenario's jobs name the job states.
pub const STATUS: StatusNames = StatusNames {
    queued: "queued",
    running: "in-progress",
    succeeded: "success",
    failed: "failure",
    canceled: "canceled",
};

/// The generation fields that map onto the core's input, as (Scenario's name, the core's):
/// how `generate::core_input` fills the core's typed input (a test holds the two
/// together), and the table that echoes what ran (`view::inference`) and names core errors
/// back (`error::wire_field`). `seed` (a string
/// here), `concepts`, `intermediateImages` and the legacy `imageId`/`maskId` are read apart.
pub const FIELDS: &[(&str, &str)] = &[
    ("prompt", "prompt"),
    ("negativePrompt", "negative_prompt"),
    ("width", "width"),
    ("height", "height"),
    ("numInferenceSteps", "steps"),
    ("guidance", "guidance"),
    ("numSamples", "count"),
    ("scheduler", "scheduler"),
    ("strength", "strength"),
    ("image", "image"),
    ("mask", "mask"),
];

/// The dialect: its errors are [`Failure`]s.
pub struct Scenario;

impl Dialect for Scenario {
    type Error = Failure;
}

type St = DialectState<Scenario>;

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut api: Router<St> = Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/{jobId}", get(jobs::read))
        .route("/jobs/{jobId}/action", post(jobs::action))
        .route("/generate/txt2img", post(txt2img))
        .route("/generate/img2img", post(img2img))
        .route("/generate/inpaint", post(inpaint))
        .route("/generate/pixelate", post(tools::pixelate))
        .route("/generate/upscale", post(tools::upscale))
        .route("/generate/generative-fill", post(tools::generative_fill))
        .route(
            "/assets",
            get(assets::list)
                .post(assets::upload)
                .delete(assets::delete),
        )
        .route("/assets/{assetId}", get(assets::read).put(assets::put))
        .route("/assets/public", get(assets::list_public))
        .route("/assets/public/{assetId}", get(assets::read_public))
        .route("/assets/get-bulk", post(assets::bulk))
        .route("/assets/{assetId}/copy", post(assets::copy))
        .route("/assets/{assetId}/download", post(assets::download))
        .route("/assets/{assetId}/lock", axum::routing::put(canvases::lock))
        .route(
            "/assets/{assetId}/unlock",
            axum::routing::put(canvases::unlock),
        )
        .route("/assets/{assetId}/snapshots", get(canvases::snapshots))
        .route(
            "/assets/{assetId}/tags",
            axum::routing::put(assets::put_tags),
        )
        .route("/tags", get(assets::tags))
        .route("/search/assets", post(search::assets))
        .route("/search/models", post(search::models))
        .route(
            "/collections",
            get(collections::list).post(collections::create),
        )
        .route(
            "/collections/{collectionId}",
            get(collections::read)
                .put(collections::update)
                .delete(collections::delete),
        )
        .route(
            "/collections/{collectionId}/assets",
            axum::routing::put(collections::add_assets).delete(collections::remove_assets),
        )
        .route(
            "/collections/{collectionId}/models",
            axum::routing::put(collections::add_models).delete(collections::remove_models),
        )
        .route("/recommendations/models", get(models::recommendations))
        .route("/usages", get(usage::usages))
        .route("/oscu/prices", get(usage::prices))
        .route("/assets/download", post(downloads::create))
        .route("/assets/download/{jobId}", get(downloads::read))
        .route("/uploads", post(uploads::create))
        .route("/uploads/{uploadId}", get(uploads::read))
        .route("/uploads/{uploadId}/action", post(uploads::action))
        .route("/models", get(models::list).post(owned::create))
        .route("/models/get-bulk", post(models::bulk))
        .route("/models/public", get(models::list_public))
        .route("/models/public/{modelId}", get(models::read_public))
        .route(
            "/models/{modelId}",
            get(models::read).put(owned::update).delete(owned::delete),
        )
        .route("/models/{modelId}/copy", post(owned::copy))
        .route("/models/{modelId}/scores/prompt", get(models::prompt_score))
        .route("/models/{modelId}/transfer", post(owned::transfer))
        .route("/models/{modelId}/download", post(owned::download))
        .route(
            "/models/{modelId}/description",
            get(owned::description).put(owned::put_description),
        )
        .route(
            "/models/{modelId}/examples",
            get(owned::examples).put(owned::put_examples),
        )
        .route(
            "/models/{modelId}/images",
            axum::routing::delete(owned::delete_images),
        )
        .route(
            "/models/{modelId}/tags",
            axum::routing::put(owned::put_tags),
        )
        .route(
            "/models/{modelId}/presets",
            get(presets::list).post(presets::create),
        )
        .route(
            "/models/{modelId}/presets/{presetId}",
            axum::routing::put(presets::update).delete(presets::delete),
        );
    for &(method, path, op, why) in unbuilt::OPERATIONS {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            _ => MethodFilter::DELETE,
        };
        api = api.route(
            path,
            on(filter, move |_: Auth| async move {
                unbuilt::answer(method, path, op, why)
            }),
        );
    }
    Router::new().nest(BASE, dialect::mount(api, state))
}

/// `POST /generate/txt2img`.
#[utoipa::path(post, path = "/scenario/v1/generate/txt2img", tag = "scenario",
    params(("dryRun" = Option<String>, Query, description = "Price the request: 269 with the cost, nothing queued")),
    request_body = Diffusion,
    responses((status = 200, body = InferenceResponse), (status = 269, body = DryRun),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn txt2img(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    generate::generate(&state, &who, "txt2img", q, body).await
}

/// `POST /generate/img2img`.
#[utoipa::path(post, path = "/scenario/v1/generate/img2img", tag = "scenario",
    params(("dryRun" = Option<String>, Query, description = "Price the request: 269 with the cost, nothing queued")),
    request_body = Diffusion,
    responses((status = 200, body = InferenceResponse), (status = 269, body = DryRun),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn img2img(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    generate::generate(&state, &who, "img2img", q, body).await
}

/// `POST /generate/inpaint`.
#[utoipa::path(post, path = "/scenario/v1/generate/inpaint", tag = "scenario",
    params(("dryRun" = Option<String>, Query, description = "Price the request: 269 with the cost, nothing queued")),
    request_body = Diffusion,
    responses((status = 200, body = InferenceResponse), (status = 269, body = DryRun),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn inpaint(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<generate::GenerateQuery>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, Failure> {
    generate::generate(&state, &who, "inpaint", q, body).await
}

mod assets;
mod canvases;
mod collections;
mod downloads;
mod error;
mod generate;
mod ids;
mod jobs;
mod models;
mod owned;
mod presets;
mod query;
mod search;
mod tools;
mod unbuilt;
mod uploads;
mod usage;
mod view;
mod wire;

pub use error::*;
use query::ListQuery;
pub use wire::*;

/// The dialect's part of the OpenAPI document: every operation it serves (a test checks it);
/// the spec's own document, `../shared/specs/scenario.openapi.json`, has the rest.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(txt2img, img2img, inpaint, jobs::list, jobs::read, jobs::action, assets::list, assets::upload, assets::read, assets::bulk, assets::delete, assets::copy, assets::download, assets::put_tags, assets::tags, assets::put, assets::list_public, assets::read_public, canvases::lock, canvases::unlock, canvases::snapshots, collections::list, collections::create, collections::read, collections::update, collections::delete, collections::add_assets, collections::remove_assets, collections::add_models, collections::remove_models, search::assets, search::models, models::list, models::read, models::bulk, models::recommendations, models::list_public, models::read_public, models::prompt_score, owned::create, owned::update, owned::delete, owned::copy, owned::transfer, owned::download, owned::description, owned::put_description, owned::examples, owned::put_examples, owned::delete_images, owned::put_tags, presets::list, presets::create, presets::update, presets::delete, tools::pixelate, tools::upscale, tools::generative_fill, uploads::create, uploads::read, uploads::action, downloads::create, downloads::read, usage::usages, usage::prices),
    components(schemas(Diffusion, Concept, InferenceResponse, DryRun, JobView, StatusEntry,
        JobMetadata, Billing, JobsPage, JobOne, AssetView, AssetProperties, AssetsPage, AssetOne,
        ModelView, ModelsPage, ModelOne, AssetUpload, AssetIds, ModelIds, JobAction, ErrorBody,
        TooManyBody)),
    tags((name = "scenario", description = "Scenario-compatible API at /scenario/v1: generation \
        (txt2img, img2img, inpaint, generative-fill, pixelate, upscale, with ?dryRun → 269), jobs \
        (list, get, cancel), assets (list, upload, get, get-bulk, delete, copy, download), models \
        (list, get, get-bulk, recommendations, public reads, the prompt check against a model's tokenizer; users' own compositions and LoRAs: create, edit, delete, copy, transfer, download, description, examples, tags, presets), uploads in parts (create, get, complete; images, and LoRAs with kind model) and from a URL, zip downloads of assets; every other operation of the spec answers 501. Auth: Basic base64(key id:secret) or Bearer <key>. Errors: \
        {apiError, createdAt, error, id, infos, updatedAt}; 429 {reason, name, details}."))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_cover_every_state() {
        assert_eq!(
            easel_core::JobStatus::ALL.map(|s| STATUS.name(s)),
            ["queued", "in-progress", "success", "failure", "canceled"]
        );
    }

    /// The one table works both ways: every field it puts in the core input is named back
    /// by it, and what `core_input` builds is named back to the field that was sent.
    #[test]
    fn the_field_table_builds_inputs_and_names_errors() {
        for (wire, core) in FIELDS {
            assert_eq!(error::wire_field(&format!("input.{core}")), *wire, "{core}");
        }
        assert_eq!(
            error::wire_field("input.loras[1].model"),
            "concepts[1].modelId"
        );
        assert_eq!(
            error::wire_field("input.loras[0].scale"),
            "concepts[0].scale"
        );
        assert_eq!(error::wire_field("input.seed"), "seed");
        assert_eq!(error::wire_field("model"), "modelId");
        assert_eq!(error::wire_field("pageSize"), "pageSize");
        let body = json!({
            "modelId": "m", "prompt": "a fox", "negativePrompt": "blur", "width": 256,
            "height": 128.0, "numInferenceSteps": 12, "guidance": 6.5, "numSamples": 2,
            "scheduler": "EulerDiscreteScheduler", "strength": 0.5, "seed": "42",
            "image": "ast_01jb0000000000000000000001", "mask": "ast_01jb0000000000000000000002",
            "concepts": [{"modelId": "model_01jb0000000000000000000000", "scale": 0.5}],
            "intermediateImages": true, "hideResults": true, "aspectRatio": "16:9"
        });
        let (typed, not_applied) =
            generate::core_input("inpaint", body.as_object().unwrap()).unwrap();
        assert_eq!(typed.task(), "inpaint");
        let input = typed.to_value();
        for (wire, core) in FIELDS {
            assert_eq!(
                input.get(*core),
                body.get(*wire)
                    .map(|v| match v.as_f64() {
                        Some(f) if f.fract() == 0.0 && *wire == "height" => json!(f as u64),
                        _ => v.clone(),
                    })
                    .as_ref(),
                "{wire}"
            );
        }
        assert_eq!(input["seed"], 42);
        assert_eq!(input["preview_every"], 5);
        assert_eq!(input["loras"][0]["model"], "mdl_01jb0000000000000000000000");
        assert_eq!(not_applied, ["aspectRatio"]);
        let legacy = json!({"modelId": "m", "prompt": "p",
            "imageId": "asset_01jb0000000000000000000001", "maskId": "asset_01jb0000000000000000000002"});
        let (legacy, _) = generate::core_input("inpaint", legacy.as_object().unwrap()).unwrap();
        let legacy = legacy.to_value();
        assert_eq!(
            legacy["image"], "ast_01jb0000000000000000000001",
            "Scenario's ids become Easel's"
        );
        assert_eq!(legacy["mask"], "ast_01jb0000000000000000000002");
        // The core accepts what was built.
        let checked = typed.check(&easel_core::limits::Limits::default());
        assert!(checked.is_ok(), "{checked:?}");
    }

    #[test]
    fn endpoints_refuse_fields_they_do_not_take() {
        let body = json!({"modelId": "m", "prompt": "p", "strength": 0.5});
        let e = generate::core_input("txt2img", body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("strength"));
        let body = json!({"modelId": "m", "prompt": "p", "numSamples": 2.5});
        let e = generate::core_input("txt2img", body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("numSamples"), "{e:?}");
        let body = json!({"modelId": "m", "prompt": "p", "width": 100});
        let e = generate::core_input("txt2img", body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("width"));
        let body = json!({"modelId": "m", "prompt": "p", "seed": "x"});
        let e = generate::core_input("txt2img", body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("seed"));
    }

    /// Every operation of the spec is served or answers 501: the two lists together are the
    /// spec's operations, once each.
    #[test]
    fn every_operation_of_the_spec_is_mounted() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/specs/scenario.openapi.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("the Scenario spec must be beside the checkout ({path}): {e}")
        });
        let spec: Value = serde_json::from_str(&text).unwrap();
        let mut want = Vec::new();
        for (p, ops) in spec["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                    want.push((m.to_uppercase(), p.clone(), id.to_string()));
                }
            }
        }
        let served = [
            ("GET", "/jobs", "GetJobs"),
            ("GET", "/jobs/{jobId}", "GetJobId"),
            ("POST", "/jobs/{jobId}/action", "PostJobActionByJobId"),
            ("POST", "/generate/txt2img", "PostTxt2imgInferences"),
            ("POST", "/generate/img2img", "PostImg2imgInferences"),
            ("POST", "/generate/inpaint", "PostInpaintInferences"),
            ("POST", "/generate/pixelate", "PostPixelateInferences"),
            ("POST", "/generate/upscale", "PostUpscaleInferences"),
            (
                "POST",
                "/generate/generative-fill",
                "PostGenerativeFillInferences",
            ),
            ("GET", "/assets", "GetAssets"),
            ("POST", "/assets", "PostAsset"),
            ("DELETE", "/assets", "DeleteAsset"),
            ("GET", "/assets/{assetId}", "GetAssetsByAssetId"),
            ("POST", "/assets/get-bulk", "PostAssetGetBulk"),
            ("POST", "/assets/{assetId}/copy", "CopyAssetByAssetId"),
            ("POST", "/assets/{assetId}/download", "PostDownloadAsset"),
            ("PUT", "/assets/{assetId}/tags", "PutAssetsTagsByAssetId"),
            ("PUT", "/assets/{assetId}", "PutAssetByAssetId"),
            ("GET", "/assets/public", "GetPublicAssets"),
            ("POST", "/search/assets", "PostSearchAssets"),
            ("POST", "/search/models", "PostSearchModels"),
            ("GET", "/collections", "GetCollections"),
            ("POST", "/collections", "PostCollection"),
            (
                "GET",
                "/collections/{collectionId}",
                "GetCollectionsByCollectionId",
            ),
            (
                "PUT",
                "/collections/{collectionId}",
                "PutCollectionsByCollectionId",
            ),
            (
                "DELETE",
                "/collections/{collectionId}",
                "DeleteCollectionsByCollectionId",
            ),
            (
                "PUT",
                "/collections/{collectionId}/assets",
                "PutAssetsByCollectionId",
            ),
            (
                "DELETE",
                "/collections/{collectionId}/assets",
                "DeleteAssetsByCollectionId",
            ),
            (
                "PUT",
                "/collections/{collectionId}/models",
                "PutModelsByCollectionId",
            ),
            (
                "DELETE",
                "/collections/{collectionId}/models",
                "DeleteModelsByCollectionId",
            ),
            (
                "GET",
                "/assets/public/{assetId}",
                "GetPublicAssetsByAssetId",
            ),
            ("GET", "/tags", "GetTags"),
            ("GET", "/recommendations/models", "GetRecommendationsModels"),
            ("GET", "/usages", "GetUsages"),
            ("GET", "/oscu/prices", "GetPublicOscuPrices"),
            ("GET", "/models", "GetModels"),
            ("GET", "/models/{modelId}", "GetModelsByModelId"),
            ("POST", "/models/get-bulk", "PostModelsGetBulk"),
            ("POST", "/models", "PostModels"),
            ("GET", "/models/public", "GetPublicModels"),
            (
                "GET",
                "/models/public/{modelId}",
                "GetPublicModelsByModelId",
            ),
            ("PUT", "/models/{modelId}", "PutModelsByModelId"),
            ("DELETE", "/models/{modelId}", "DeleteModelsByModelId"),
            ("POST", "/models/{modelId}/copy", "PostModelsCopyByModelId"),
            (
                "POST",
                "/models/{modelId}/transfer",
                "PostModelsTransferByModelId",
            ),
            ("POST", "/models/{modelId}/download", "PostDownloadModel"),
            (
                "GET",
                "/models/{modelId}/description",
                "GetModelsDescriptionByModelId",
            ),
            (
                "PUT",
                "/models/{modelId}/description",
                "PutModelsDescriptionByModelId",
            ),
            (
                "GET",
                "/models/{modelId}/examples",
                "GetModelsExamplesByModelId",
            ),
            (
                "PUT",
                "/models/{modelId}/examples",
                "PutModelsExamplesByModelId",
            ),
            (
                "DELETE",
                "/models/{modelId}/images",
                "DeleteModelsImagesByModelId",
            ),
            ("PUT", "/models/{modelId}/tags", "PutModelsTagsByModelId"),
            (
                "GET",
                "/models/{modelId}/presets",
                "GetModelPresetsByModelId",
            ),
            (
                "POST",
                "/models/{modelId}/presets",
                "PostModelPresetByModelId",
            ),
            (
                "PUT",
                "/models/{modelId}/presets/{presetId}",
                "PutModelPresetByModelIdAndPresetId",
            ),
            (
                "DELETE",
                "/models/{modelId}/presets/{presetId}",
                "DeleteModelPresetByModelIdAndPresetId",
            ),
            (
                "GET",
                "/models/{modelId}/scores/prompt",
                "GetModelsScoresPromptByModelId",
            ),
            ("POST", "/uploads", "PostUploads"),
            ("GET", "/uploads/{uploadId}", "GetUploads"),
            ("POST", "/uploads/{uploadId}/action", "PostUploadsAction"),
            ("POST", "/assets/download", "PostDownloadAssets"),
            ("GET", "/assets/download/{jobId}", "GetDownloadAssets"),
            ("PUT", "/assets/{assetId}/lock", "LockAssetByAssetId"),
            ("PUT", "/assets/{assetId}/unlock", "UnlockAssetByAssetId"),
            (
                "GET",
                "/assets/{assetId}/snapshots",
                "GetCanvasAssetSnapshots",
            ),
        ];
        let triple = |m: &str, p: &str, o: &str| (m.to_string(), p.to_string(), o.to_string());
        let mut have: Vec<(String, String, String)> = served
            .iter()
            .map(|(m, p, o)| triple(m, p, o))
            .chain(
                unbuilt::OPERATIONS
                    .iter()
                    .map(|(m, p, o, _)| triple(m, p, o)),
            )
            .collect();
        // Every served operation is in Easel's OpenAPI document.
        let doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
        for (m, p, op) in &served {
            let documented = &doc["paths"][format!("{BASE}{p}")][m.to_lowercase()];
            assert!(documented.is_object(), "{op} ({m} {p}) is documented");
        }
        want.sort();
        have.sort();
        assert_eq!(have, want);
        assert_eq!(want.len(), 108);
    }
}
