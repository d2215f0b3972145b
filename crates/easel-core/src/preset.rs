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
    /// The parameters of a generation of `task` (what a preset made from a job keeps: not
    /// its prompt, images or LoRAs; for img2img and inpaint not its size either, which
    /// follows each request's image).
    pub fn of(task: &str, input: &GenerateInput) -> PresetParams {
        let sized = task == "txt2img";
        PresetParams {
            negative_prompt: input.negative_prompt.clone(),
            width: input.width.filter(|_| sized),
            height: input.height.filter(|_| sized),
            steps: input.steps,
            guidance: input.guidance,
            scheduler: input.scheduler.clone(),
            strength: input.strength,
            count: input.count,
            seed: input.seed,
        }
    }

    /// The checks a generation's fields get, naming `params.<field>` (`strength` as for an
    /// image-to-image task: a preset may serve both kinds).
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let mut probe = GenerateInput {
            prompt: "preset".into(),
            image: Some("the request's".into()),
            ..GenerateInput::default()
        };
        self.fill("img2img", &mut probe);
        probe
            .validate("img2img", limits)
            .map_err(|e| e.under("params"))
    }

    /// Fill the fields `input` of `task` leaves out (`strength` only where the task takes
    /// one: not txt2img).
    pub fn fill(&self, task: &str, input: &mut GenerateInput) {
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
            count,
            seed
        );
        if task != "txt2img" && input.strength.is_none() {
            input.strength = self.strength;
        }
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
        p.fill("txt2img", &mut input);
        assert_eq!(input.steps, Some(20), "the request wins");
        assert_eq!(input.guidance, Some(3.0));
        assert_eq!(input.negative_prompt.as_deref(), Some("blurry"));
        assert_eq!(
            input.width, None,
            "neither sets it: the model's default will"
        );
        assert_eq!(PresetParams::of("txt2img", &input).steps, Some(20));
        // Strength: kept and checked, filled only where the task takes it.
        let p = PresetParams {
            strength: Some(0.4),
            ..Default::default()
        };
        assert!(p.validate(&Limits::default()).is_ok());
        let mut t2i = GenerateInput::default();
        p.fill("txt2img", &mut t2i);
        assert_eq!(t2i.strength, None);
        let mut i2i = GenerateInput::default();
        p.fill("img2img", &mut i2i);
        assert_eq!(i2i.strength, Some(0.4));
        // A preset made from an img2img job leaves the size to each request's image.
        let sized = GenerateInput {
            width: Some(64),
            height: Some(64),
            strength: Some(0.5),
            ..Default::default()
        };
        let of = PresetParams::of("img2img", &sized);
        assert_eq!((of.width, of.height, of.strength), (None, None, Some(0.5)));
        assert_eq!(PresetParams::of("txt2img", &sized).width, Some(64));
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
