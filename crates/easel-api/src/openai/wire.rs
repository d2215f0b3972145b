//! OpenAI's wire shapes of the images API: requests, answers, jobs and models.

use super::*;

/// `response_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(as = OpenAiUpscale)]
pub enum Upscale {
    #[serde(rename = "2x")]
    X2,
    #[serde(rename = "4x")]
    X4,
}

impl Upscale {
    pub(super) fn factor(self) -> u32 {
        match self {
            Upscale::X2 => 2,
            Upscale::X4 => 4,
        }
    }
}

/// The body of `/images/generations` and `/images/edits` (JSON; edits also take OpenAI's
/// multipart form with the same fields, `image`/`mask` as files). `image`, `mask` and
/// `strength` are for edits only. See the module documentation for what each field does.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
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
