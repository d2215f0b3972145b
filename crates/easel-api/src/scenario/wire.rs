//! Scenario's wire types: the requests this dialect reads and the objects it answers with
//! (the spec's field names, camelCase).

use super::*;

/// A whole number sent as a JSON number (`30` or `30.0`; Scenario's numbers are `number`).
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(v) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "must be a whole number (got {v})"
        )));
    }
    Ok(Some(v as u32))
}

/// The seed: a string of digits in the diffusion endpoints (`"42"`), a number in the tools;
/// both are read.
fn seed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let bad = || {
        serde::de::Error::custom("must be a whole number from 0 to 2^53, as a string or a number")
    };
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// The body of the diffusion endpoints (`/generate/txt2img`, `img2img`, `inpaint`): every
/// field any of them takes; `generate::ENDPOINTS` says which each one accepts.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(as = ScenarioDiffusionRequest)]
#[serde(rename_all = "camelCase")]
pub struct Diffusion {
    pub model_id: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(
        default,
        deserialize_with = "whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub num_samples: Option<u32>,
    #[serde(
        default,
        deserialize_with = "whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub num_inference_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(
        default,
        deserialize_with = "whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub width: Option<u32>,
    #[serde(
        default,
        deserialize_with = "whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// A string of digits (the spec's type); a number is read too.
    #[serde(default, deserialize_with = "seed", skip_serializing)]
    #[schema(value_type = Option<String>)]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing)]
    pub concepts: Option<Vec<Concept>>,
    #[serde(default, skip_serializing)]
    pub intermediate_images: Option<bool>,
    /// An asset id or a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Deprecated: the input image as an asset id.
    #[serde(default, skip_serializing)]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    /// The mask (white = repaint): an asset id or a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// Deprecated: the mask as an asset id.
    #[serde(default, skip_serializing)]
    pub mask_id: Option<String>,
    /// Applied by the handler (`TaskRequest::hide_outputs`); typed here so a value that is
    /// not a boolean is a 400 naming it.
    #[serde(default, skip_serializing)]
    pub hide_results: Option<bool>,
    /// Applied by the handler (`TaskRequest::inline`): the parent of an image sent as a
    /// `data:` URL, which is stored as the caller's upload.
    #[serde(default, skip_serializing)]
    pub image_parent_id: Option<String>,
    /// Applied by the handler (`TaskRequest::inline`): store an image sent as a `data:` URL
    /// hidden.
    #[serde(default, skip_serializing)]
    pub image_hide: Option<bool>,
    // Accepted and recorded, not applied (`generate::NOT_APPLIED`).
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<Object>)]
    pub model_epoch: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<Object>)]
    pub aspect_ratio: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<Object>)]
    pub negative_prompt_strength: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<Object>)]
    pub base_model_id: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<Object>)]
    pub disable_merging: Option<Value>,
}

/// A LoRA of the stack.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(as = ScenarioConcept)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Concept {
    pub model_id: String,
    pub scale: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub model_epoch: Option<Value>,
}

/// `POST /jobs/{jobId}/action`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ScenarioJobAction)]
#[serde(deny_unknown_fields)]
pub struct JobAction {
    pub action: String,
}

/// `POST /assets`: an image in base64 (plain or as a `data:` URL).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ScenarioAssetUpload)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetUpload {
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub canvas: Option<String>,
    #[serde(default)]
    pub thumbnail: Option<String>,
    #[serde(default)]
    pub hide: Option<bool>,
    #[serde(default)]
    pub collection_ids: Option<Vec<String>>,
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// `DELETE /assets` and `POST /assets/get-bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ScenarioAssetIds)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetIds {
    #[serde(default)]
    pub asset_ids: Vec<String>,
}

/// `POST /models/get-bulk`. The switches for training images and embeddings are read and
/// have nothing to change here (registry models have neither).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ScenarioModelIds)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelIds {
    #[serde(default)]
    pub model_ids: Vec<String>,
    #[serde(default)]
    pub settings: Option<bool>,
    #[serde(default)]
    pub training_images_preview: Option<bool>,
    #[serde(default)]
    pub minimal: Option<bool>,
    #[serde(default)]
    pub thumbnail: Option<bool>,
    #[serde(default)]
    pub all_training_images: Option<bool>,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioJob)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    pub job_type: &'static str,
    pub status: &'static str,
    pub status_history: Vec<StatusEntry>,
    pub progress: f32,
    pub metadata: JobMetadata,
    pub billing: Billing,
    pub owner_id: String,
    pub author_id: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioStatusEntry)]
pub struct StatusEntry {
    pub status: &'static str,
    pub date: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioJobMetadata)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    /// The request as it ran (the inference's parameters, defaults filled in).
    #[schema(value_type = Object)]
    pub input: Value,
    /// `{}` while running; a failed or canceled job's `{error: {code, message}}`.
    #[schema(value_type = Object)]
    pub output: Value,
    pub asset_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioBilling)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    pub cu_cost: f64,
    pub cu_discount: f64,
}

/// The answer of a diffusion endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioInferenceResponse)]
#[serde(rename_all = "camelCase")]
pub struct InferenceResponse {
    pub creative_units_cost: f64,
    pub creative_units_discount: f64,
    #[schema(value_type = Object)]
    pub inference: Value,
    pub job: JobView,
}

/// A dry run's answer (HTTP 269).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioDryRun)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub creative_units_cost: f64,
    pub creative_units_discount: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioJobs)]
#[serde(rename_all = "camelCase")]
pub struct JobsPage {
    pub jobs: Vec<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pagination_token: Option<String>,
}

/// An asset.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioAsset)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    pub id: String,
    pub owner_id: String,
    pub author_id: String,
    pub kind: &'static str,
    pub mime_type: String,
    /// Signed URL of the content.
    pub url: String,
    pub status: &'static str,
    pub privacy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: &'static str,
    pub edit_capabilities: Vec<&'static str>,
    pub tags: Vec<String>,
    pub collection_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub properties: AssetProperties,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub is_hidden: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_index: Option<u32>,
    /// A canvas's thumbnail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<AssetLink>,
}

/// Another asset shown with this one (a canvas's thumbnail).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioAssetLink)]
#[serde(rename_all = "camelCase")]
pub struct AssetLink {
    pub asset_id: String,
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioAssetProperties)]
pub struct AssetProperties {
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioAssets)]
#[serde(rename_all = "camelCase")]
pub struct AssetsPage {
    pub assets: Vec<AssetView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pagination_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioAssetOne)]
pub struct AssetOne {
    pub asset: AssetView,
}

/// A model: one of the server's, or a user's composition.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioModel)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub capabilities: Vec<&'static str>,
    pub custom: bool,
    pub privacy: &'static str,
    pub source: &'static str,
    pub tags: Vec<String>,
    pub collection_ids: Vec<String>,
    pub example_asset_ids: Vec<String>,
    pub training_images_number: u32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_description: Option<String>,
    /// The user who owns a user's model; absent for the server's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    /// A composition's base model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_model_id: Option<String>,
    /// A composition's LoRAs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concepts: Option<Vec<Concept>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioModels)]
#[serde(rename_all = "camelCase")]
pub struct ModelsPage {
    pub models: Vec<ModelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pagination_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioModelOne)]
pub struct ModelOne {
    pub model: ModelView,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScenarioJobOne)]
pub struct JobOne {
    pub job: JobView,
}
