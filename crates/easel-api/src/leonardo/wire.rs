//! Leonardo's wire shapes: the generation request, its elements and controlnets; generations,
//! images, costs, the user.

use super::*;

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
