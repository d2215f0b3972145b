//! The models registry: what can be run, by which provider, with which defaults and limits.
//! Every dialect's model selector resolves through a model's id, name or aliases.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
}

/// Families the local engine recognizes; free text is allowed for remote models.
pub mod family {
    pub const SD15: &str = "sd15";
    pub const SD2: &str = "sd2";
    pub const SDXL: &str = "sdxl";
    pub const SD15_INPAINT: &str = "sd15-inpaint";
    pub const UNKNOWN: &str = "unknown";
}

/// The family of a single-file checkpoint (original LDM / A1111 key layout) from its tensor
/// names and the UNet's input channels (`model.diffusion_model.input_blocks.0.0.weight`
/// dim 1). `None` when the names are not those of a checkpoint.
pub fn family_from_tensor_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    unet_in_channels: Option<u64>,
) -> Option<&'static str> {
    let (mut xl, mut open_clip, mut clip, mut unet) = (false, false, false, false);
    for n in names {
        xl |= n.starts_with("conditioner.embedders.1");
        open_clip |= n.starts_with("cond_stage_model.model.");
        clip |= n.starts_with("cond_stage_model.transformer.");
        unet |= n.starts_with("model.diffusion_model.");
    }
    if xl {
        Some(family::SDXL)
    } else if open_clip {
        // SD 2.x inpainting checkpoints stay `sd2`: the family names the text encoder.
        Some(family::SD2)
    } else if unet_in_channels == Some(9) {
        Some(family::SD15_INPAINT)
    } else if clip || unet {
        Some(family::SD15)
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Unique, URL-safe name (`sd15`, `my-lora`).
    pub name: String,
    /// Other names the model answers to (a dialect's model ids).
    pub aliases: Vec<String>,
    pub family: String,
    /// Tasks the model can do (`txt2img`, `img2img`, …).
    pub tasks: Vec<String>,
    /// Local path or hub repository id.
    pub source: Option<String>,
    /// `local`, `openai`, `replicate` or `easel`.
    pub provider: String,
    #[schema(value_type = Object)]
    pub provider_config: serde_json::Value,
    pub fallback_provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    pub defaults: ModelDefaults,
    pub limits: ModelLimits,
    pub recommended: bool,
    pub beta: bool,
    pub tags: Vec<String>,
    /// Registered by the scan of `<data-dir>/models/` (rescans update it).
    pub discovered: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Provider kinds a model may name.
pub const PROVIDERS: &[&str] = &["local", "openai", "replicate", "easel"];

/// Fields a client sets when creating a model; also the shape of a full update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "unknown_family")]
    pub family: String,
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "local_provider")]
    pub provider: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub provider_config: serde_json::Value,
    #[serde(default)]
    pub fallback_provider: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    #[serde(default)]
    pub defaults: ModelDefaults,
    #[serde(default)]
    pub limits: ModelLimits,
    #[serde(default)]
    pub recommended: bool,
    #[serde(default)]
    pub beta: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn unknown_family() -> String {
    family::UNKNOWN.to_string()
}
fn local_provider() -> String {
    "local".to_string()
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A partial update: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub family: Option<String>,
    pub tasks: Option<Vec<String>>,
    pub source: Option<String>,
    pub provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub provider_config: Option<serde_json::Value>,
    pub fallback_provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    pub defaults: Option<ModelDefaults>,
    pub limits: Option<ModelLimits>,
    pub recommended: Option<bool>,
    pub beta: Option<bool>,
    pub tags: Option<Vec<String>>,
}

impl ModelSpec {
    pub fn validate(&self) -> Result<()> {
        check_name("name", &self.name)?;
        for (i, a) in self.aliases.iter().enumerate() {
            if a.is_empty() || a.len() > 200 || a.chars().any(char::is_whitespace) {
                return Err(Error::invalid(
                    format!("aliases[{i}]"),
                    "must be 1 to 200 characters without spaces",
                ));
            }
        }
        for (field, p) in [
            ("provider", Some(&self.provider)),
            ("fallback_provider", self.fallback_provider.as_ref()),
        ] {
            if let Some(p) = p {
                if !PROVIDERS.contains(&p.as_str()) {
                    return Err(Error::invalid(
                        field,
                        format!("unknown provider `{p}`; one of {}", PROVIDERS.join(", ")),
                    ));
                }
            }
        }
        if !self.provider_config.is_object() {
            return Err(Error::invalid("provider_config", "must be an object"));
        }
        Ok(())
    }

    /// Apply a patch, producing the spec to validate and store.
    pub fn patched(mut self, p: ModelPatch) -> ModelSpec {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = p.$f { self.$f = v; } )* };
        }
        set!(
            name,
            aliases,
            family,
            tasks,
            provider,
            provider_config,
            defaults,
            limits,
            recommended,
            beta,
            tags
        );
        if p.source.is_some() {
            self.source = p.source;
        }
        if p.fallback_provider.is_some() {
            self.fallback_provider = p.fallback_provider;
        }
        if p.fallback_provider_config.is_some() {
            self.fallback_provider_config = p.fallback_provider_config;
        }
        self
    }
}

impl Model {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            family: self.family.clone(),
            tasks: self.tasks.clone(),
            source: self.source.clone(),
            provider: self.provider.clone(),
            provider_config: self.provider_config.clone(),
            fallback_provider: self.fallback_provider.clone(),
            fallback_provider_config: self.fallback_provider_config.clone(),
            defaults: self.defaults.clone(),
            limits: self.limits.clone(),
            recommended: self.recommended,
            beta: self.beta,
            tags: self.tags.clone(),
        }
    }
}

/// Model names: 1–100 of letters, digits, `-`, `_`, `.`.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Error::invalid(
            field,
            "must be 1 to 100 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_from_checkpoint_keys() {
        let f = |names: &[&str], ch| family_from_tensor_names(names.iter().copied(), ch);
        let unet = "model.diffusion_model.input_blocks.0.0.weight";
        assert_eq!(
            f(&[unet, "cond_stage_model.transformer.x"], Some(4)),
            Some(family::SD15)
        );
        assert_eq!(
            f(&[unet, "cond_stage_model.transformer.x"], Some(9)),
            Some(family::SD15_INPAINT)
        );
        assert_eq!(
            f(&[unet, "cond_stage_model.model.x"], Some(4)),
            Some(family::SD2)
        );
        assert_eq!(
            f(&[unet, "cond_stage_model.model.x"], Some(9)),
            Some(family::SD2)
        );
        assert_eq!(
            f(&[unet, "conditioner.embedders.1.model.x"], Some(4)),
            Some(family::SDXL)
        );
        assert_eq!(f(&["lora_unet_x.lora_down.weight"], None), None);
    }

    use super::*;

    #[test]
    fn spec_defaults_and_validation() {
        let s: ModelSpec = serde_json::from_value(serde_json::json!({"name": "sd15"})).unwrap();
        assert_eq!(s.provider, "local");
        assert!(s.validate().is_ok());
        let bad = ModelSpec {
            provider: "fal".into(),
            ..s.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err().field.as_deref(),
            Some("provider")
        );
        let bad = ModelSpec {
            name: "a b".into(),
            ..s.clone()
        };
        assert_eq!(bad.validate().unwrap_err().field.as_deref(), Some("name"));
        let p = s.patched(ModelPatch {
            beta: Some(true),
            tags: Some(vec!["x".into()]),
            ..Default::default()
        });
        assert!(p.beta);
        assert_eq!(p.tags, vec!["x".to_string()]);
        assert_eq!(p.name, "sd15");
    }
}
