//! Replicate's wire shapes: the create request and its input, a prediction, a page, models and
//! versions, errors.

use super::*;

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
    /// 1–20 (default 2 on Sana models): perturbed-attention guidance, applied by the local
    /// engine on Sana models and passed to `replicate` upstreams.
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
