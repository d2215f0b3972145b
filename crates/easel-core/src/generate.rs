//! Generation tasks (`txt2img`, `img2img`, `inpaint`): one input shape for the three, its
//! validation, and the defaults filled in at submit time so a stored job says exactly what
//! ran (size, steps, guidance, scheduler and the seed, drawn when the caller gave none).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{ModelDefaults, ModelLimits};
use crate::task::OutputFormat;

/// Tasks of the diffusion engine.
pub const TASKS: &[&str] = &["txt2img", "img2img", "inpaint"];

/// Width and height must be multiples of this (the VAE's downscale factor).
/// What a model's family contributes to a request's defaults; the engine's family table
/// (`easel_diffusion::family`) supplies it, the core only applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FamilyDefaults {
    /// The side of the family's training images: the default size, and the area large init
    /// images are scaled down to.
    pub natural_size: u32,
    pub steps: u32,
    pub guidance: f32,
}

impl FamilyDefaults {
    /// Stable Diffusion 1.x's: what a family the engine does not know gets.
    pub const SD15: FamilyDefaults = FamilyDefaults {
        natural_size: 512,
        steps: 30,
        guidance: 7.5,
    };
}

pub const SIZE_MULTIPLE: u32 = 8;
/// Smallest side.
pub const MIN_SIDE: u32 = 64;
/// Largest seed (JavaScript clients can hold it exactly).
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// A LoRA to apply: a model registered with the `lora` tag, and its scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRef {
    /// Name, id or alias of the LoRA in the models registry.
    pub model: String,
    /// Strength, -4 to 4 (default 1).
    #[serde(default = "one")]
    pub scale: f32,
}

fn one() -> f32 {
    1.0
}

/// Input of `txt2img`, `img2img` and `inpaint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateInput {
    /// What to draw. A1111 syntax works: `(word:1.3)`, `(word)`, `[word]`, `BREAK`; prompts
    /// longer than 75 tokens are encoded in chunks.
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Multiple of 8, at least 64. Default: the model's (512, 1024 for SDXL); for img2img and
    /// inpaint, the input image's size rounded down to a multiple of 8 (scaled down to the
    /// model's natural area first when larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Denoising steps (default: the model's, else 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale, 0 to 30; 1 or less turns guidance off (default: the
    /// model's, else 7.5; 5 for SDXL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    /// Image i of the job uses `seed + i`. Default: drawn at random and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Scheduler by diffusers class name or short name (`euler_a`, `dpmpp_2m_karras`,
    /// `EULER_DISCRETE`, …). Default: the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Images to make (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Init image (img2img, inpaint): asset id or `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Inpaint mask (white = repaint): asset id or `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// How much of the init image to repaint, above 0 up to 1 (default 0.75 for img2img, 1
    /// for inpaint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRef>,
    /// Send a preview image as an event every this many steps (0 or absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_every: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// 1 to 100 for JPEG and WebP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// Upscale every output by this factor, 1 to 8 (Lanczos3), once it is generated: the
    /// outputs are `width`×`upscale` by `height`×`upscale`, within the server's pixel limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale: Option<u32>,
    /// Perturbed-attention guidance scale, 0 to 20 (on above 0). The local engine applies it
    /// to models whose family has PAG (Sana); a `replicate` upstream gets it as
    /// `pag_guidance_scale`; other providers and families run without it (the job's provider
    /// says which ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pag_guidance: Option<f32>,
    /// What turns the final latents into the image: `vae` (the model's own, default) or
    /// `taesd`, the tiny autoencoder installed for the model's family in the models folder's
    /// `vae_approx/` — several times faster, softer detail (local SD-family models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<Decoder>,
}

/// The decoder of a generation's final image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    Vae,
    Taesd,
}

/// The largest `upscale` factor of a generation (the `upscale` task's too).
pub const MAX_UPSCALE: u32 = 8;

/// The values a run uses once defaults are filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub seed: u64,
    pub count: u32,
    pub strength: f32,
}

impl GenerateInput {
    pub fn validate(&self, task: &str, limits: &Limits) -> Result<()> {
        for (field, text) in [
            ("prompt", Some(&self.prompt)),
            ("negative_prompt", self.negative_prompt.as_ref()),
        ] {
            let Some(text) = text else { continue };
            if text.chars().count() > limits.max_prompt_chars {
                return Err(Error::invalid(
                    field,
                    format!("longer than {} characters", limits.max_prompt_chars),
                ));
            }
            // Prompts go into the outputs' PNG text chunks, where NUL cannot be written, and
            // no control character means anything to a text encoder.
            if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(Error::invalid(
                    field,
                    "must not contain control characters (other than tab and newlines)",
                ));
            }
        }
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = side {
                check_side(name, v, limits.max_side)?;
            }
        }
        if let (Some(w), Some(h)) = (self.width, self.height) {
            check_pixels(w, h, limits.gen_pixels())?;
        }
        if let Some(s) = self.steps {
            if s == 0 || s > limits.max_steps {
                return Err(Error::invalid(
                    "steps",
                    format!("must be between 1 and {}", limits.max_steps),
                ));
            }
        }
        if let Some(g) = self.guidance {
            if !(0.0..=30.0).contains(&g) {
                return Err(Error::invalid("guidance", "must be between 0 and 30"));
            }
        }
        if let Some(s) = self.seed {
            if s > MAX_SEED {
                return Err(Error::invalid(
                    "seed",
                    format!("must be between 0 and {MAX_SEED}"),
                ));
            }
        }
        if let Some(name) = &self.scheduler {
            if crate::scheduler::resolve(name).is_none() {
                return Err(Error::invalid(
                    "scheduler",
                    format!(
                        "unknown scheduler `{name}`; use a diffusers class name \
                         (EulerAncestralDiscreteScheduler) or a short name (euler_a, \
                         dpmpp_2m_karras, ddim, …)"
                    ),
                ));
            }
        }
        if let Some(c) = self.count {
            if c == 0 || c > limits.max_images {
                return Err(Error::invalid(
                    "count",
                    format!("must be between 1 and {}", limits.max_images),
                ));
            }
        }
        if let Some(s) = self.strength {
            if !(s > 0.0 && s <= 1.0) {
                return Err(Error::invalid("strength", "must be above 0 and at most 1"));
            }
        }
        if self.loras.len() > 8 {
            return Err(Error::invalid("loras", "at most 8 LoRAs"));
        }
        for (i, l) in self.loras.iter().enumerate() {
            if l.model.trim().is_empty() {
                return Err(Error::invalid(format!("loras[{i}].model"), "required"));
            }
            if !(-4.0..=4.0).contains(&l.scale) {
                return Err(Error::invalid(
                    format!("loras[{i}].scale"),
                    "must be between -4 and 4",
                ));
            }
        }
        if let Some(q) = self.quality {
            if !(1..=100).contains(&q) {
                return Err(Error::invalid("quality", "must be between 1 and 100"));
            }
        }
        if let Some(p) = self.pag_guidance {
            if !(0.0..=20.0).contains(&p) {
                return Err(Error::invalid("pag_guidance", "must be between 0 and 20"));
            }
        }
        if let Some(f) = self.upscale {
            if !(1..=MAX_UPSCALE).contains(&f) {
                return Err(Error::invalid(
                    "upscale",
                    format!("must be between 1 and {MAX_UPSCALE}"),
                ));
            }
        }
        match task {
            "txt2img" => {
                for (name, v) in [
                    ("image", &self.image),
                    ("mask", &self.mask),
                    ("strength", &self.strength.map(|_| String::new())),
                ] {
                    if v.is_some() {
                        return Err(Error::invalid(
                            name,
                            "txt2img takes no init image; use img2img or inpaint",
                        ));
                    }
                }
            }
            "img2img" => {
                if self.image.is_none() {
                    return Err(Error::invalid("image", "required for img2img"));
                }
                if self.mask.is_some() {
                    return Err(Error::invalid("mask", "img2img takes no mask; use inpaint"));
                }
            }
            "inpaint" => {
                if self.image.is_none() {
                    return Err(Error::invalid("image", "required for inpaint"));
                }
                if self.mask.is_none() {
                    return Err(Error::invalid(
                        "mask",
                        "required for inpaint (white = repaint)",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Fill every default so the stored input says what runs. `image_size` is the init
    /// image's size (img2img, inpaint); `seed` is used when the caller gave none.
    pub fn fill_defaults(
        &mut self,
        task: &str,
        family: &FamilyDefaults,
        defaults: &ModelDefaults,
        image_size: Option<(u32, u32)>,
        seed: u64,
    ) {
        let natural = family.natural_size;
        let round = |v: u32| (v / SIZE_MULTIPLE * SIZE_MULTIPLE).max(MIN_SIDE);
        // An init image larger than the model's natural area is scaled down to that area
        // (keeping its aspect ratio): a 4000x3000 photo becomes 584x440 for SD 1.5.
        let image_size = image_size.map(|(w, h)| {
            let area = w as f64 * h as f64;
            let target = natural as f64 * natural as f64;
            if area > target {
                let k = (target / area).sqrt();
                ((w as f64 * k) as u32, (h as f64 * k) as u32)
            } else {
                (w, h)
            }
        });
        let (iw, ih) = match image_size {
            Some((w, h)) => (round(w), round(h)),
            None => (
                defaults.width.unwrap_or(natural),
                defaults.height.unwrap_or(natural),
            ),
        };
        match (self.width, self.height, image_size) {
            // One side given with an init image: keep its aspect ratio.
            (Some(w), None, Some((sw, sh))) => {
                self.height = Some(round((w as f64 * sh as f64 / sw.max(1) as f64) as u32))
            }
            (None, Some(h), Some((sw, sh))) => {
                self.width = Some(round((h as f64 * sw as f64 / sh.max(1) as f64) as u32))
            }
            _ => {}
        }
        self.width.get_or_insert(iw);
        self.height.get_or_insert(ih);
        self.steps
            .get_or_insert(defaults.steps.unwrap_or(family.steps));
        self.guidance
            .get_or_insert(defaults.guidance.unwrap_or(family.guidance));
        if self.scheduler.is_none() {
            self.scheduler = defaults.scheduler.clone();
        }
        self.seed.get_or_insert(seed);
        self.count.get_or_insert(1);
        if task != "txt2img" {
            self.strength
                .get_or_insert(if task == "inpaint" { 1.0 } else { 0.75 });
        }
    }

    /// Check the filled input against the server's and the model's limits.
    pub fn check_limits(&self, limits: &Limits, model: &ModelLimits) -> Result<()> {
        let r = self.resolved();
        let max_w = model
            .max_width
            .unwrap_or(limits.max_side)
            .min(limits.max_side);
        let max_h = model
            .max_height
            .unwrap_or(limits.max_side)
            .min(limits.max_side);
        check_side("width", r.width, max_w)?;
        check_side("height", r.height, max_h)?;
        let max_px = model
            .max_pixels
            .unwrap_or(limits.gen_pixels())
            .min(limits.gen_pixels());
        check_pixels(r.width, r.height, max_px)?;
        let (ow, oh) = self.output_size();
        if ow as u64 * oh as u64 > limits.max_pixels {
            return Err(Error::invalid(
                "upscale",
                format!(
                    "the outputs would be {ow}x{oh}, {} pixels; the limit is {}",
                    ow as u64 * oh as u64,
                    limits.max_pixels
                ),
            ));
        }
        // The server's own limit again: defaults filled in after the input's check
        // (a model's, a preset's) must not pass it.
        if r.steps == 0 || r.steps > limits.max_steps {
            return Err(Error::invalid(
                "steps",
                format!("must be between 1 and {}", limits.max_steps),
            ));
        }
        if let Some(m) = model.max_steps {
            if r.steps > m {
                return Err(Error::invalid(
                    "steps",
                    format!("this model allows at most {m} steps"),
                ));
            }
        }
        if let Some(m) = model.max_count {
            if r.count > m {
                return Err(Error::invalid(
                    "count",
                    format!("this model makes at most {m} images per job"),
                ));
            }
        }
        Ok(())
    }

    /// The run's values (defaults filled in by `fill_defaults`; absent ones fall back to
    /// the generic defaults).
    pub fn resolved(&self) -> Resolved {
        Resolved {
            width: self.width.unwrap_or(512),
            height: self.height.unwrap_or(512),
            steps: self.steps.unwrap_or(30),
            guidance: self.guidance.unwrap_or(7.5),
            seed: self.seed.unwrap_or(0),
            count: self.count.unwrap_or(1),
            strength: self.strength.unwrap_or(1.0),
        }
    }

    /// The size of each output: the generated size times `upscale`.
    pub fn output_size(&self) -> (u32, u32) {
        let r = self.resolved();
        let f = self.upscale.unwrap_or(1).max(1);
        (r.width.saturating_mul(f), r.height.saturating_mul(f))
    }

    /// The input images by field name.
    pub fn images_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        let mut v = Vec::new();
        if let Some(i) = self.image.as_mut() {
            v.push(("image", i));
        }
        if let Some(m) = self.mask.as_mut() {
            v.push(("mask", m));
        }
        v
    }
}

/// A size written `WIDTHxHEIGHT` (`1024x1024`, `768X512`), as the OpenAI-style dialects send
/// it; `auto` (or an empty string) is `None`: the model's default size. Only the syntax is
/// checked here: the sides are checked by `GenerateInput::validate` and `check_limits` like
/// any `width`/`height`. Errors name `field`.
pub fn parse_size(field: &str, s: &str) -> Result<Option<(u32, u32)>> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let bad = || {
        Error::invalid(
            field,
            format!("`{s}` is not a size like 1024x1024 (WIDTHxHEIGHT) or `auto`"),
        )
    };
    let (w, h) = t.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        v.parse::<u32>().map_err(|_| bad())
    };
    Ok(Some((side(w)?, side(h)?)))
}

fn check_side(name: &str, v: u32, max: u32) -> Result<()> {
    let max = max / SIZE_MULTIPLE * SIZE_MULTIPLE;
    if v < MIN_SIDE || v > max || !v.is_multiple_of(SIZE_MULTIPLE) {
        return Err(Error::invalid(
            name,
            format!("must be a multiple of {SIZE_MULTIPLE} from {MIN_SIDE} to {max} (got {v})"),
        ));
    }
    Ok(())
}

fn check_pixels(w: u32, h: u32, max: u64) -> Result<()> {
    if w as u64 * h as u64 > max {
        return Err(Error::invalid(
            "width",
            format!(
                "{w}x{h} is {} pixels; the limit is {max}",
                w as u64 * h as u64
            ),
        ));
    }
    Ok(())
}

/// The A1111 `parameters` text: prompt, `Negative prompt:` line, then the settings line.
/// Readers (A1111's PNG Info, Civitai, ComfyUI importers) parse this exact shape.
pub fn a1111_parameters(input: &GenerateInput, seed: u64, sampler: &str, model: &str) -> String {
    let r = input.resolved();
    let mut s = input.prompt.clone();
    if let Some(n) = input.negative_prompt.as_deref().filter(|n| !n.is_empty()) {
        s.push_str("\nNegative prompt: ");
        s.push_str(n);
    }
    s.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        r.steps, sampler, r.guidance, seed, r.width, r.height, model
    ));
    if input.image.is_some() {
        s.push_str(&format!(", Denoising strength: {}", r.strength));
    }
    if !input.loras.is_empty() {
        let l: Vec<String> = input
            .loras
            .iter()
            .map(|l| format!("{}: {}", l.model, l.scale))
            .collect();
        s.push_str(&format!(", Lora hashes: \"{}\"", l.join(", ")));
    }
    if input.decoder == Some(Decoder::Taesd) {
        s.push_str(", VAE: taesd");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskInput;
    use serde_json::json;

    fn parse(task: &str, v: serde_json::Value) -> Result<TaskInput> {
        TaskInput::parse(task, v, &Limits::default())
    }
    const IMG: &str = "ast_01jd0000000000000000000000";
    const SD: FamilyDefaults = FamilyDefaults::SD15;
    const XL: FamilyDefaults = FamilyDefaults {
        natural_size: 1024,
        steps: 30,
        guidance: 5.0,
    };

    #[test]
    fn sizes_parse_as_width_x_height() {
        assert_eq!(parse_size("size", "1024x768").unwrap(), Some((1024, 768)));
        assert_eq!(parse_size("size", " 64X96 ").unwrap(), Some((64, 96)));
        assert_eq!(parse_size("size", "auto").unwrap(), None);
        assert_eq!(parse_size("size", "").unwrap(), None);
        for bad in [
            "1024",
            "x",
            "1024x",
            "ax1",
            "-8x8",
            "1e3x8",
            "99999999999x8",
            "8x8x8",
        ] {
            let e = parse_size("size", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("size"), "{bad}");
        }
    }

    #[test]
    fn validation_names_fields() {
        assert!(parse("txt2img", json!({"prompt": "a cat"})).is_ok());
        let cases = [
            ("txt2img", json!({}), "input.prompt"),
            (
                "txt2img",
                json!({"prompt": "x", "width": 500}),
                "input.width",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "height": 32}),
                "input.height",
            ),
            ("txt2img", json!({"prompt": "x", "steps": 0}), "input.steps"),
            (
                "txt2img",
                json!({"prompt": "x", "steps": 1000}),
                "input.steps",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "guidance": -1}),
                "input.guidance",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "count": 99}),
                "input.count",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "scheduler": "warp"}),
                "input.scheduler",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "image": IMG}),
                "input.image",
            ),
            ("txt2img", json!({"prompt": "x", "seed": -1}), "input.seed"),
            (
                "txt2img",
                json!({"prompt": "x", "width": 8192, "height": 8192}),
                "input.width",
            ),
            (
                "txt2img",
                json!({"prompt": "x", "loras": [{"model": "l", "scale": 9}]}),
                "input.loras[0].scale",
            ),
            ("img2img", json!({"prompt": "x"}), "input.image"),
            (
                "img2img",
                json!({"prompt": "x", "image": IMG, "strength": 0}),
                "input.strength",
            ),
            (
                "img2img",
                json!({"prompt": "x", "image": "nope"}),
                "input.image",
            ),
            (
                "inpaint",
                json!({"prompt": "x", "image": IMG}),
                "input.mask",
            ),
        ];
        for (task, input, field) in cases {
            let e = parse(task, input.clone()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{task} {input}: {e}");
        }
        let long = "a ".repeat(3000);
        let e = parse("txt2img", json!({"prompt": long})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.prompt"));
        assert!(parse(
            "txt2img",
            json!({"prompt": "x", "scheduler": "DPM++ 2M Karras"})
        )
        .is_ok());
    }

    #[test]
    fn defaults_are_filled_and_recorded() {
        let mut g: GenerateInput = serde_json::from_value(json!({"prompt": "x"})).unwrap();
        g.fill_defaults("txt2img", &XL, &ModelDefaults::default(), None, 42);
        let r = g.resolved();
        assert_eq!(
            (r.width, r.height, r.steps, r.seed, r.count),
            (1024, 1024, 30, 42, 1)
        );
        assert_eq!(r.guidance, 5.0);
        assert_eq!(g.strength, None);

        let mut g: GenerateInput =
            serde_json::from_value(json!({"prompt": "x", "image": IMG, "width": 256, "seed": 7}))
                .unwrap();
        let d = ModelDefaults {
            steps: Some(4),
            guidance: Some(0.0),
            scheduler: Some("lcm".into()),
            ..Default::default()
        };
        g.fill_defaults("img2img", &SD, &d, Some((1000, 500)), 42);
        let r = g.resolved();
        assert_eq!((r.width, r.height, r.steps, r.seed), (256, 128, 4, 7));
        assert_eq!(g.scheduler.as_deref(), Some("lcm"));
        assert_eq!(r.strength, 0.75);

        let mut g: GenerateInput = serde_json::from_value(json!({"prompt": "x"})).unwrap();
        g.fill_defaults("inpaint", &SD, &Default::default(), Some((333, 250)), 1);
        assert_eq!(
            (g.width, g.height, g.strength),
            (Some(328), Some(248), Some(1.0))
        );

        let mut g: GenerateInput = serde_json::from_value(json!({"prompt": "x"})).unwrap();
        g.fill_defaults("img2img", &SD, &Default::default(), Some((4000, 3000)), 1);
        assert_eq!((g.width, g.height), (Some(584), Some(440)));
        let mut g: GenerateInput = serde_json::from_value(json!({"prompt": "x"})).unwrap();
        g.fill_defaults("img2img", &XL, &Default::default(), Some((4000, 3000)), 1);
        assert_eq!((g.width, g.height), (Some(1176), Some(880)));
    }

    #[test]
    fn model_limits_apply() {
        let mut g: GenerateInput =
            serde_json::from_value(json!({"prompt": "x", "width": 1024, "steps": 50})).unwrap();
        g.fill_defaults("txt2img", &SD, &Default::default(), None, 1);
        let ml = ModelLimits {
            max_width: Some(768),
            ..Default::default()
        };
        let e = g.check_limits(&Limits::default(), &ml).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("width"));
        let ml = ModelLimits {
            max_steps: Some(8),
            ..Default::default()
        };
        let e = g.check_limits(&Limits::default(), &ml).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("steps"));
    }

    #[test]
    fn a1111_parameters_shape() {
        let mut g: GenerateInput = serde_json::from_value(json!({
            "prompt": "a (red:1.2) fox", "negative_prompt": "blurry", "steps": 20, "guidance": 7,
            "width": 512, "height": 768}))
        .unwrap();
        g.fill_defaults("txt2img", &SD, &Default::default(), None, 5);
        assert_eq!(
            a1111_parameters(&g, 6, "Euler a", "sd15"),
            "a (red:1.2) fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, \
             Seed: 6, Size: 512x768, Model: sd15"
        );
    }
}

#[cfg(test)]
mod prompt_and_pixel_limits {
    use super::*;

    fn input(v: serde_json::Value) -> GenerateInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn control_characters_are_refused_in_prompts() {
        let l = Limits::default();
        let e = input(serde_json::json!({"prompt": "a fox\u{0}"}))
            .validate("txt2img", &l)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt"));
        let e = input(serde_json::json!({"prompt": "a fox", "negative_prompt": "x\u{7}"}))
            .validate("txt2img", &l)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("negative_prompt"));
        input(serde_json::json!({"prompt": "a fox,\n\tin snow\r\n"}))
            .validate("txt2img", &l)
            .unwrap();
    }

    #[test]
    fn max_pixels_bounds_generated_images_too() {
        let l = Limits {
            max_pixels: 128 * 128,
            ..Limits::default()
        };
        assert_eq!(l.gen_pixels(), 128 * 128);
        let e = input(serde_json::json!({"prompt": "x", "width": 1024, "height": 1024}))
            .validate("txt2img", &l)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("width"));
        let ok = input(serde_json::json!({"prompt": "x", "width": 128, "height": 128}));
        ok.validate("txt2img", &l).unwrap();
        ok.check_limits(&l, &Default::default()).unwrap();
    }
}
