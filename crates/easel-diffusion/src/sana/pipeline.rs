//! The Sana pipeline, as diffusers' `SanaPipeline` and `SanaPAGPipeline` run it: the prompt
//! through Gemma-2 with the complex human instruction (`text`), classifier-free guidance and
//! perturbed-attention guidance in one transformer batch (`[uncond, cond, perturbed]`, see
//! `pag`), a flow-matching scheduler (the model's DPM-Solver++ with flow sigmas, or
//! FlowMatchEuler), the DC-AE decoder, and resolution binning (`binning`).
//!
//! Choices where diffusers leaves one to the caller, each applied one way:
//!
//! * **PAG on** when the PAG scale is above 0 (diffusers' rule; NVIDIA's demo app applies it
//!   only above 1, so a request at the Sana API's minimum of 1 gets PAG at scale 1 here).
//! * **PAG layers**: `pag_applied_layers` of the folder's `model_index.json` (what
//!   `SanaPAGPipeline.save_pretrained` writes), else `transformer_blocks.8` — NVIDIA's choice
//!   for the released 600M and 1600M models — and on models with 8 blocks or fewer (tiny
//!   ones) the middle block. Patterns resolve as diffusers resolves them (`pag::select_layers`).
//! * **FlowMatchEuler on a Sana folder**: the folder's scheduler config is DPM-Solver's, whose
//!   `flow_shift` FlowMatchEuler does not read; the pipeline passes it as `shift` (unless the
//!   caller sets `shift`), so both schedulers run the model's noise schedule.
//! * **img2img** (diffusers has no Sana img2img pipeline): the init image is encoded by DC-AE
//!   (deterministic, no draws), the loop starts at `int(n − n·strength)` as diffusers' other
//!   flow img2img pipelines do, and the start latents are `σ·noise + (1 − σ)·x₀`.
//! * **Decoding** is tiled (diffusers' `tiled_decode`, its default tile) when the latents
//!   exceed 64×64 (2048² for the released f32c32 autoencoder), so 4096² fits in memory.
//!
//! Noise is one `randn([1, C, h, w])` per image from the PyTorch-compatible generator, so a
//! seed gives diffusers' image for `num_images_per_prompt` 1.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use serde_json::{json, Value};

use super::dcae::AutoencoderDc;
use super::text::{PromptEncoding, SanaTextEncoder, DEFAULT_MAX_SEQUENCE_LENGTH};
use super::transformer::{Perturbed, SanaTransformer};
use super::{binning, pag};
use crate::family::Dtypes;
use crate::noise::NoiseSource;
use crate::schedulers::{Scheduler, SchedulerConfig, SchedulerKind};

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// Latent sides above this are decoded in tiles.
const UNTILED_LATENT_SIDE: usize = 64;

/// A loaded Sana model.
pub struct SanaPipeline {
    pub text: SanaTextEncoder,
    pub transformer: SanaTransformer,
    pub vae: AutoencoderDc,
    scheduler_config: Value,
    scheduler_kind: SchedulerKind,
    /// Blocks whose self-attention PAG perturbs.
    pag_blocks: Vec<usize>,
    device: Device,
}

/// What to generate.
pub struct Request<'a> {
    pub prompt: &'a str,
    /// `None`: the empty negative prompt.
    pub negative_prompt: Option<&'a str>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// CFG scale; 1 or less turns classifier-free guidance off.
    pub guidance: f64,
    /// PAG scale; 0 turns perturbed-attention guidance off.
    pub pag_scale: f64,
    /// Scheduler class and config keys over the model's `scheduler_config.json`.
    pub scheduler: Option<(SchedulerKind, Value)>,
    /// img2img input, `[1, 3, H, W]` in [0, 1].
    pub init_image: Option<&'a Tensor>,
    /// How much of the init image to repaint, 0..1.
    pub strength: f64,
    /// Prompt tokens kept (diffusers' `max_sequence_length`, 300).
    pub max_sequence_length: usize,
    /// Snap the size to the model's aspect-ratio bins and resize the image back (diffusers'
    /// `use_resolution_binning`, on by default there and in the engine).
    pub resolution_binning: bool,
}

impl Request<'_> {
    /// A txt2img request with diffusers' defaults for the rest.
    pub fn new(prompt: &str, width: usize, height: usize, steps: usize) -> Request<'_> {
        Request {
            prompt,
            negative_prompt: None,
            width,
            height,
            steps,
            guidance: 4.5,
            pag_scale: 0.0,
            scheduler: None,
            init_image: None,
            strength: 1.0,
            max_sequence_length: DEFAULT_MAX_SEQUENCE_LENGTH,
            resolution_binning: true,
        }
    }
}

/// Every stage of a run, for the parity tests.
pub struct Run {
    pub prompt: PromptEncoding,
    /// Negative embeddings and mask (CFG only).
    pub negative: Option<(Tensor, Tensor)>,
    /// The size the transformer ran at (after binning).
    pub size: (usize, usize),
    pub start_latents: Tensor,
    /// The guided prediction given to each scheduler step.
    pub noise_preds: Vec<Tensor>,
    pub step_latents: Vec<Tensor>,
    pub final_latents: Tensor,
    /// `[1, 3, H, W]` in [0, 1] at the requested size.
    pub image: Tensor,
}

impl SanaPipeline {
    /// Load a diffusers Sana folder (`model_index.json`, `scheduler/`, `text_encoder/`,
    /// `tokenizer/`, `transformer/`, `vae/`).
    pub fn load(dir: &Path, dtypes: impl Into<Dtypes>, device: &Device) -> Result<SanaPipeline> {
        let dtypes = dtypes.into();
        let index = crate::loader::read_config(&dir.join("model_index.json"))?;
        let path = dir.join("scheduler/scheduler_config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        let scheduler_config: Value =
            serde_json::from_str(&crate::schedulers::quote_non_finite(&text))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let class = scheduler_config["_class_name"]
            .as_str()
            .unwrap_or("DPMSolverMultistepScheduler");
        let scheduler_kind = SchedulerKind::from_class_name(class).ok_or_else(|| {
            err(format!(
                "unknown scheduler class `{class}` in {}",
                dir.display()
            ))
        })?;
        let transformer = SanaTransformer::load(&dir.join("transformer"), dtypes.denoiser, device)?;
        let pag_blocks = pag_blocks(&index, transformer.config().num_layers)?;
        Ok(SanaPipeline {
            text: SanaTextEncoder::load(dir, dtypes.text, device)?,
            transformer,
            vae: AutoencoderDc::load(&dir.join("vae"), dtypes.vae, device)?,
            scheduler_config,
            scheduler_kind,
            pag_blocks,
            device: device.clone(),
        })
    }

    pub fn scheduler_kind(&self) -> SchedulerKind {
        self.scheduler_kind
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The blocks PAG perturbs.
    pub fn pag_blocks(&self) -> &[usize] {
        &self.pag_blocks
    }

    /// Put PAG on the blocks `patterns` select (diffusers' `pag_applied_layers`).
    pub fn set_pag_layers(&mut self, patterns: &[String]) -> Result<()> {
        self.pag_blocks = pag::select_layers(patterns, self.transformer.config().num_layers)
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    /// A scheduler for `req`, its timesteps set.
    fn scheduler(&self, req: &Request) -> Result<Scheduler> {
        let (kind, mut overrides) = req
            .scheduler
            .clone()
            .unwrap_or((self.scheduler_kind, Value::Null));
        if kind == SchedulerKind::FlowMatchEuler {
            if let Some(shift) = self
                .scheduler_config
                .get("flow_shift")
                .filter(|v| v.is_number())
            {
                if overrides.is_null() {
                    overrides = json!({});
                }
                if let Some(o) = overrides.as_object_mut() {
                    o.entry("shift").or_insert(shift.clone());
                }
            }
        }
        let config = SchedulerConfig::from_json_with_overrides(&self.scheduler_config, &overrides)
            .map_err(|e| err(e.to_string()))?;
        let mut s = Scheduler::new(kind, config).map_err(|e| err(e.to_string()))?;
        s.set_timesteps(req.steps).map_err(|e| err(e.to_string()))?;
        Ok(s)
    }

    /// Run a request. `on_step(i, n, latents)` after every step; false cancels (`Ok(None)`).
    pub fn run(
        &self,
        req: &Request,
        noise: &mut dyn NoiseSource,
        on_step: &mut dyn FnMut(usize, usize, &Tensor) -> bool,
    ) -> Result<Option<Run>> {
        let dev = &self.device;
        if req.width == 0 || req.height == 0 {
            return Err(err("width and height must be positive"));
        }
        let tcfg = self.transformer.config();
        let (height, width) = if req.resolution_binning {
            let table = binning::table_for(tcfg.sample_size)?;
            binning::classify(req.height, req.width, table)
        } else {
            (req.height, req.width)
        };
        let r = self.vae.spatial_compression() * tcfg.patch_size;
        if height % r != 0 || width % r != 0 {
            return Err(err(format!(
                "width and height must be multiples of {r} (or use resolution binning)"
            )));
        }
        let cfg = req.guidance > 1.0;
        let use_pag = req.pag_scale > 0.0;
        if use_pag && self.pag_blocks.is_empty() {
            return Err(err("this model has no blocks selected for PAG"));
        }

        let prompt = self.text.encode_full(req.prompt, req.max_sequence_length)?;
        let negative = if cfg {
            Some(
                self.text
                    .encode_negative(req.negative_prompt.unwrap_or(""), req.max_sequence_length)?,
            )
        } else {
            None
        };
        let layout = pag::batch_layout(cfg, use_pag);
        let (mut embeds, mut masks) = (Vec::new(), Vec::new());
        for chunk in &layout {
            let (e, m) = match (chunk, &negative) {
                (pag::Chunk::Uncond, Some((e, m))) => (e, m),
                _ => (&prompt.embeds, &prompt.mask),
            };
            embeds.push(e.clone());
            masks.push(m.clone());
        }
        let dtype = self.transformer.dtype();
        let embeds = Tensor::cat(&embeds, 0)?.to_dtype(dtype)?;
        let masks = Tensor::cat(&masks, 0)?;
        // The caption's keys and values are the same at every step.
        let caption = self.transformer.caption(&embeds, &masks)?;
        let perturbed = use_pag.then(|| Perturbed {
            first_row: pag::perturbed_first_row(1, cfg),
            blocks: &self.pag_blocks,
        });

        let mut sched = self.scheduler(req)?;
        let latent_channels = self.vae.config().latent_channels;
        let shape = [
            1,
            latent_channels,
            height / r * tcfg.patch_size,
            width / r * tcfg.patch_size,
        ];
        let scaling = self.vae.config().scaling_factor;
        let image_latents = match req.init_image {
            Some(img) if req.strength < 1.0 => {
                let n = sched.timesteps().len();
                let begin = (n as f64 - n as f64 * req.strength).max(0.0) as usize;
                if begin >= n {
                    return Err(err(format!(
                        "strength {} leaves no steps to run",
                        req.strength
                    )));
                }
                sched.set_begin_index(begin);
                let img = if (img.dim(2)?, img.dim(3)?) != (height, width) {
                    binning::resize_and_crop(img, height, width)?
                } else {
                    img.clone()
                };
                let x = img.affine(2.0, -1.0)?.to_dtype(self.vae.dtype())?;
                Some((self.vae.encode(&x)?.to_dtype(DType::F32)? * scaling)?)
            }
            _ => None,
        };
        let start_noise = noise.randn(&shape, dev)?;
        let mut latents = match &image_latents {
            Some(x) => sched.add_noise(x, &start_noise, 0)?,
            None => (&start_noise * sched.init_noise_sigma())?,
        };
        let start_latents = latents.clone();

        let timesteps = sched.timesteps().to_vec();
        let n = timesteps.len();
        let rows = layout.len();
        let (mut noise_preds, mut step_latents) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, &t) in timesteps.iter().enumerate() {
            let x = Tensor::cat(&vec![&latents; rows], 0)?.to_dtype(dtype)?;
            let tt = Tensor::full((t * tcfg.timestep_scale) as f32, rows, dev)?;
            let out = self
                .transformer
                .forward_with_caption(&x, &tt, &caption, perturbed)?
                .to_dtype(DType::F32)?;
            let mut pred = pag::combine(
                &out,
                cfg.then_some(req.guidance),
                use_pag.then(|| pag::pag_scale_at(req.pag_scale, 0.0, t)),
            )?;
            // Models that also predict a variance: keep the prediction half.
            if tcfg.out_channels() == 2 * latent_channels {
                pred = pred.narrow(1, 0, latent_channels)?;
            }
            latents = sched.step(&pred, i, &latents, noise)?;
            noise_preds.push(pred);
            step_latents.push(latents.clone());
            if !on_step(i + 1, n, &latents) {
                return Ok(None);
            }
        }
        // As diffusers: the decoder's raw output is resized back, then mapped to [0, 1].
        let raw = self.decode_raw(&latents)?;
        let raw = if (height, width) != (req.height, req.width) {
            binning::resize_and_crop(&raw, req.height, req.width)?
        } else {
            raw
        };
        let image = raw.affine(0.5, 0.5)?.clamp(0f32, 1f32)?;
        Ok(Some(Run {
            prompt,
            negative,
            size: (width, height),
            start_latents,
            noise_preds,
            step_latents,
            final_latents: latents,
            image,
        }))
    }

    /// `[N, 3, H, W]` in [0, 1] from latents: `clamp(decode(z / scaling) / 2 + 0.5, 0, 1)`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_raw(latents)?
            .affine(0.5, 0.5)?
            .clamp(0f32, 1f32)
    }

    /// The decoder's raw output (about [-1, 1]) in f32, tiled above 64×64 latents.
    fn decode_raw(&self, latents: &Tensor) -> Result<Tensor> {
        let z = (latents / self.vae.config().scaling_factor)?.to_dtype(self.vae.dtype())?;
        let (_, _, h, w) = z.dims4()?;
        let x = if h.max(w) > UNTILED_LATENT_SIDE {
            let (tile, overlap) = self.vae.default_tiling();
            self.vae.decode_tiled(&z, tile, overlap)?
        } else {
            self.vae.decode(&z)?
        };
        x.to_dtype(DType::F32)
    }
}

/// The blocks PAG perturbs: the folder's `pag_applied_layers`, else the documented default.
fn pag_blocks(index: &Value, num_layers: usize) -> Result<Vec<usize>> {
    let patterns: Vec<String> = match index.get("pag_applied_layers") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err("model_index.json: pag_applied_layers must be strings"))
            })
            .collect::<Result<_>>()?,
        _ if num_layers > 8 => vec!["transformer_blocks.8".to_string()],
        _ => return Ok(vec![num_layers / 2]),
    };
    pag::select_layers(&patterns, num_layers).map_err(|e| err(format!("model_index.json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pag_layers_come_from_the_index_or_the_default() {
        assert_eq!(pag_blocks(&json!({}), 28).unwrap(), vec![8]);
        assert_eq!(pag_blocks(&json!({}), 4).unwrap(), vec![2]);
        assert_eq!(
            pag_blocks(&json!({"pag_applied_layers": "transformer_blocks.1"}), 4).unwrap(),
            vec![1]
        );
        assert_eq!(
            pag_blocks(&json!({"pag_applied_layers": ["transformer_blocks.2"]}), 28).unwrap(),
            vec![2, 20, 21, 22, 23, 24, 25, 26, 27]
        );
        assert!(pag_blocks(&json!({"pag_applied_layers": ["transformer_blocks.9"]}), 4).is_err());
    }
}
