//! Presets: a model's named parameter sets. A generation that names a preset (or, naming
//! none, runs a model with a default preset) takes the preset's parameters for the fields
//! the request leaves out; the request's own values win, and the model's defaults fill what
//! both leave out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::generate::GenerateInput;
use crate::limits::Limits;
use crate::time::Timestamp;

/// The generation fields a preset sets (each optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl PresetParams {
    /// The parameters of a generation (what a preset made from a job keeps: not its prompt,
    /// images or LoRAs).
    pub fn of(input: &GenerateInput) -> PresetParams {
        PresetParams {
            negative_prompt: input.negative_prompt.clone(),
            width: input.width,
            height: input.height,
            steps: input.steps,
            guidance: input.guidance,
            scheduler: input.scheduler.clone(),
            strength: input.strength,
            count: input.count,
            seed: input.seed,
        }
    }

    /// The checks a generation's fields get, naming `params.<field>`.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let mut probe = GenerateInput {
            prompt: "preset".into(),
            ..GenerateInput::default()
        };
        self.fill(&mut probe);
        probe
            .validate("txt2img", limits)
            .map_err(|e| e.under("params"))
    }

    /// Fill the fields `input` leaves out.
    pub fn fill(&self, input: &mut GenerateInput) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if input.$f.is_none() { input.$f = self.$f.clone(); } )* };
        }
        fill!(
            negative_prompt,
            width,
            height,
            steps,
            guidance,
            scheduler,
            strength,
            count,
            seed
        );
    }
}

/// A preset as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preset {
    pub id: String,
    pub model_id: String,
    /// The user who made it.
    pub author_id: String,
    pub name: String,
    /// The task it was made for (`txt2img`, …), when said: shown, not enforced.
    pub task: Option<String>,
    pub params: PresetParams,
    /// Applied when a request names no preset (one per model at most).
    pub is_default: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A new preset, or (every field optional) a change to one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetSpec {
    /// 1 to 200 characters.
    pub name: Option<String>,
    pub task: Option<String>,
    pub params: Option<PresetParams>,
    pub is_default: Option<bool>,
}

/// The most presets of one model.
pub const MAX_PRESETS: u64 = 100;

impl PresetSpec {
    /// Errors name the field.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        if let Some(n) = &self.name {
            crate::model::check_title("name", n)?;
        }
        if let Some(t) = &self.task {
            if !crate::generate::TASKS.contains(&t.as_str()) {
                return Err(Error::invalid(
                    "task",
                    format!("must be one of {}", crate::generate::TASKS.join(", ")),
                ));
            }
        }
        if let Some(p) = &self.params {
            p.validate(limits)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_fills_what_a_request_leaves_out() {
        let p = PresetParams {
            steps: Some(12),
            guidance: Some(3.0),
            negative_prompt: Some("blurry".into()),
            ..Default::default()
        };
        let mut input = GenerateInput {
            prompt: "a fox".into(),
            steps: Some(20),
            ..Default::default()
        };
        p.fill(&mut input);
        assert_eq!(input.steps, Some(20), "the request wins");
        assert_eq!(input.guidance, Some(3.0));
        assert_eq!(input.negative_prompt.as_deref(), Some("blurry"));
        assert_eq!(
            input.width, None,
            "neither sets it: the model's default will"
        );
        assert_eq!(PresetParams::of(&input).steps, Some(20));
    }

    #[test]
    fn bad_params_name_their_field() {
        let limits = Limits::default();
        let bad = PresetSpec {
            params: Some(PresetParams {
                steps: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            bad.validate(&limits).unwrap_err().field.as_deref(),
            Some("params.steps")
        );
        let bad = PresetSpec {
            task: Some("upscale".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.validate(&limits).unwrap_err().field.as_deref(),
            Some("task")
        );
        let bad = PresetSpec {
            name: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.validate(&limits).unwrap_err().field.as_deref(),
            Some("name")
        );
    }
}
