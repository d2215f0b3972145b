//! Stable Diffusion pipelines for SD 1.x, 2.x and XL: txt2img, img2img and inpaint (9-channel
//! inpainting UNets, or latent-mask blending with ordinary ones), with classifier-free
//! guidance. Every random tensor is drawn through a `NoiseSource` in diffusers' order, so a
//! `TorchRng` seeded like diffusers' CPU generator gives diffusers' results.
//!
//! Prompts are encoded as diffusers does (77 tokens, truncated); `Run` keeps every stage so
//! the parity tests can compare them.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

use crate::clip::ClipTextModel;
use crate::lora::Lora;
use crate::noise::NoiseSource;
use crate::schedulers::{Scheduler, SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::unet::{AddedCond, Unet};
use crate::vae::Vae;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// A loaded model: tokenizers, text encoders, UNet, VAE and the scheduler config.
pub struct Pipeline {
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextModel,
    /// SDXL's second tokenizer and encoder.
    second: Option<(ClipTokenizer, ClipTextModel)>,
    pub unet: Unet,
    pub vae: Vae,
    scheduler_config: serde_json::Value,
    scheduler_kind: SchedulerKind,
    force_zeros_for_empty_prompt: bool,
    device: Device,
}

/// What to generate.
pub struct Request<'a> {
    pub prompt: &'a str,
    /// `None`: the empty prompt (SDXL with `force_zeros_for_empty_prompt`: zero embeddings).
    pub negative_prompt: Option<&'a str>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Guidance scale; 1 or less turns classifier-free guidance off.
    pub guidance: f64,
    /// Scheduler class and config keys put over the model's `scheduler_config.json`;
    /// `None`: the model's own scheduler.
    pub scheduler: Option<(SchedulerKind, serde_json::Value)>,
    /// img2img / inpaint input, [1, 3, H, W] in [0, 1].
    pub init_image: Option<&'a Tensor>,
    /// Inpaint mask, [1, 1, H, W], 1 = repaint (binarized at 0.5).
    pub mask: Option<&'a Tensor>,
    /// How much of the init image to repaint (img2img / inpaint), 0..1.
    pub strength: f64,
}

/// Every stage of a run.
pub struct Run {
    pub input_ids: Vec<u32>,
    pub negative_input_ids: Option<Vec<u32>>,
    pub prompt_embeds: Tensor,
    pub negative_prompt_embeds: Option<Tensor>,
    pub start_latents: Tensor,
    pub step_latents: Vec<Tensor>,
    pub final_latents: Tensor,
    /// [1, 3, H, W] in [0, 1].
    pub image: Tensor,
}

struct Conditioning {
    ids: Vec<u32>,
    embeds: Tensor,
    pooled: Option<Tensor>,
}

impl Pipeline {
    /// Load a diffusers folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`,
    /// `vae/`, `scheduler/`; SDXL also `tokenizer_2/`, `text_encoder_2/`), with `loras`.
    pub fn from_diffusers_dir(
        dir: &Path,
        loras: &[(&Lora, f64)],
        dtype: DType,
        device: &Device,
    ) -> Result<Pipeline> {
        let index: serde_json::Value = crate::loader::read_config(&dir.join("model_index.json"))?;
        let tok =
            |sub: &str| ClipTokenizer::from_dir(&dir.join(sub)).map_err(|e| err(e.to_string()));
        let second = if dir.join("text_encoder_2").is_dir() {
            Some((
                tok("tokenizer_2")?,
                ClipTextModel::from_dir(
                    &dir.join("text_encoder_2"),
                    "text_encoder_2",
                    loras,
                    dtype,
                    device,
                )?,
            ))
        } else {
            None
        };
        let scheduler_config: serde_json::Value =
            crate::loader::read_config(&dir.join("scheduler/scheduler_config.json"))?;
        let class = scheduler_config["_class_name"]
            .as_str()
            .unwrap_or("PNDMScheduler");
        let scheduler_kind = SchedulerKind::from_class_name(class).ok_or_else(|| {
            err(format!(
                "unknown scheduler class `{class}` in {}",
                dir.display()
            ))
        })?;
        Ok(Pipeline {
            tokenizer: tok("tokenizer")?,
            text_encoder: ClipTextModel::from_dir(
                &dir.join("text_encoder"),
                "text_encoder",
                loras,
                dtype,
                device,
            )?,
            second,
            unet: Unet::from_dir(&dir.join("unet"), loras, dtype, device)?,
            vae: Vae::from_dir(&dir.join("vae"), dtype, device)?,
            scheduler_config,
            scheduler_kind,
            force_zeros_for_empty_prompt: index["force_zeros_for_empty_prompt"]
                .as_bool()
                .unwrap_or(false),
            device: device.clone(),
        })
    }

    /// Load a single-file checkpoint (LDM / A1111 layout). `config_dir` is a diffusers
    /// folder of the same family that supplies what the weights do not say: component configs,
    /// tokenizer, scheduler.
    pub fn from_single_file(
        path: &Path,
        config_dir: &Path,
        loras: &[(&Lora, f64)],
        dtype: DType,
        device: &Device,
    ) -> Result<Pipeline> {
        let mut conv = crate::single_file::convert(path, device)?;
        let vb = |tensors: std::collections::HashMap<String, Tensor>| {
            candle_nn::VarBuilder::from_tensors(tensors, dtype, device)
        };
        crate::loader::merge_loras(&mut conv.unet, "unet", loras, device)?;
        crate::loader::merge_loras(&mut conv.text_encoder, "text_encoder", loras, device)?;
        let read =
            |sub: &str| crate::loader::read_config::<serde_json::Value>(&config_dir.join(sub));
        let te_cfg: crate::clip::ClipTextConfig =
            serde_json::from_value(read("text_encoder/config.json")?)
                .map_err(|e| err(e.to_string()))?;
        let unet_cfg: crate::unet::UnetConfig =
            serde_json::from_value(read("unet/config.json")?).map_err(|e| err(e.to_string()))?;
        let vae_cfg: crate::vae::VaeConfig =
            serde_json::from_value(read("vae/config.json")?).map_err(|e| err(e.to_string()))?;
        if unet_cfg.block_out_channels != conv.inferred.block_out_channels
            || unet_cfg.in_channels != conv.inferred.in_channels
        {
            return Err(err(format!(
                "{} does not fit the configs in {} (UNet channels {:?} vs {:?})",
                path.display(),
                config_dir.display(),
                conv.inferred.block_out_channels,
                unet_cfg.block_out_channels
            )));
        }
        let scheduler_config: serde_json::Value = read("scheduler/scheduler_config.json")?;
        let class = scheduler_config["_class_name"]
            .as_str()
            .unwrap_or("PNDMScheduler");
        Ok(Pipeline {
            tokenizer: ClipTokenizer::from_dir(&config_dir.join("tokenizer"))
                .map_err(|e| err(e.to_string()))?,
            text_encoder: ClipTextModel::load(vb(conv.text_encoder), &te_cfg)?,
            second: None,
            unet: Unet::load(vb(conv.unet), unet_cfg)?,
            vae: Vae::load(vb(conv.vae), vae_cfg)?,
            scheduler_kind: SchedulerKind::from_class_name(class)
                .ok_or_else(|| err(format!("unknown scheduler class `{class}`")))?,
            scheduler_config,
            force_zeros_for_empty_prompt: false,
            device: device.clone(),
        })
    }

    pub fn is_sdxl(&self) -> bool {
        self.second.is_some()
    }

    /// Pixels per latent (8 for SD).
    pub fn vae_scale_factor(&self) -> usize {
        1 << (self.vae.config.block_out_channels.len() - 1)
    }

    fn encode(&self, text: &str) -> Result<Conditioning> {
        let ids = self.tokenizer.encode_padded(text, 77);
        let t = Tensor::new(vec![ids.clone()], &self.device)?;
        let out = self.text_encoder.forward(&t)?;
        match &self.second {
            None => Ok(Conditioning {
                ids,
                embeds: out.last_hidden_state,
                pooled: None,
            }),
            Some((tok2, te2)) => {
                let ids2 = tok2.encode_padded(text, 77);
                let out2 = te2.forward(&Tensor::new(vec![ids2], &self.device)?)?;
                Ok(Conditioning {
                    ids,
                    embeds: Tensor::cat(&[&out.penultimate, &out2.penultimate], 2)?,
                    pooled: Some(out2.pooled),
                })
            }
        }
    }

    /// Generate. `on_step(i, n, latents)` runs after every scheduler step; returning false
    /// cancels (`Ok(None)`).
    pub fn run(
        &self,
        req: &Request,
        noise: &mut dyn NoiseSource,
        on_step: &mut dyn FnMut(usize, usize, &Tensor) -> bool,
    ) -> Result<Option<Run>> {
        let f = self.vae_scale_factor();
        if req.width % f != 0 || req.height % f != 0 || req.width == 0 || req.height == 0 {
            return Err(err(format!(
                "width and height must be positive multiples of {f}"
            )));
        }
        let dev = &self.device;
        let cfg = req.guidance > 1.0;
        let cond = self.encode(req.prompt)?;
        let uncond = match (cfg, req.negative_prompt) {
            (false, _) => None,
            (true, None) if self.is_sdxl() && self.force_zeros_for_empty_prompt => {
                Some(Conditioning {
                    ids: vec![],
                    embeds: cond.embeds.zeros_like()?,
                    pooled: cond.pooled.as_ref().map(|p| p.zeros_like()).transpose()?,
                })
            }
            (true, neg) => Some(self.encode(neg.unwrap_or(""))?),
        };
        let context = match &uncond {
            Some(u) => Tensor::cat(&[&u.embeds, &cond.embeds], 0)?,
            None => cond.embeds.clone(),
        };
        let batch = if cfg { 2 } else { 1 };
        let added = match &cond.pooled {
            Some(p) => {
                let (h, w) = (req.height as f32, req.width as f32);
                let ids = Tensor::new(&[[h, w, 0.0, 0.0, h, w]], dev)?.repeat((batch, 1))?;
                let pooled = match &uncond {
                    Some(u) => Tensor::cat(&[u.pooled.as_ref().unwrap_or(p), p], 0)?,
                    None => p.clone(),
                };
                Some((pooled, ids))
            }
            None => None,
        };

        let (kind, overrides) = req
            .scheduler
            .clone()
            .unwrap_or((self.scheduler_kind, serde_json::Value::Null));
        let sconf = SchedulerConfig::from_json_with_overrides(&self.scheduler_config, &overrides)
            .map_err(|e| err(e.to_string()))?;
        let mut sched = Scheduler::new(kind, sconf).map_err(|e| err(e.to_string()))?;
        sched
            .set_timesteps(req.steps)
            .map_err(|e| err(e.to_string()))?;

        let lat_ch = self.vae.config.latent_channels;
        let shape = [1, lat_ch, req.height / f, req.width / f];
        let unet_in = self.unet.config.in_channels;
        let inpaint_unet = unet_in == 2 * lat_ch + 1;
        let encode_image = |x: &Tensor, noise: &mut dyn NoiseSource| -> Result<Tensor> {
            let post = self.vae.encode(x)?;
            let n = noise.randn(post.mean.dims(), dev)?;
            self.vae.scale_latents(&post.sample(&n)?)
        };
        if req.mask.is_some() && req.init_image.is_none() {
            return Err(err("a mask needs an init image"));
        }
        let init = req.init_image.map(|i| i.affine(2.0, -1.0)).transpose()?;
        let full_strength = req.init_image.is_none() || req.strength >= 1.0;
        if !full_strength {
            let begin = sched.begin_index_for_strength(req.strength);
            if begin >= req.steps * sched.order().max(1) {
                return Err(err(format!(
                    "strength {} leaves no steps to run",
                    req.strength
                )));
            }
            sched.set_begin_index(begin);
        }
        // Draw order follows diffusers: image latents (when needed), then the noise.
        let blend = req.mask.is_some() && !inpaint_unet;
        let image_latents = match &init {
            Some(x) if !full_strength || blend => Some(encode_image(x, noise)?),
            _ => None,
        };
        let start_noise = noise.randn(&shape, dev)?;
        let mut latents = match &image_latents {
            Some(il) if !full_strength => sched.add_noise(il, &start_noise, 0)?,
            _ => (&start_noise * sched.init_noise_sigma())?,
        };
        let mask_inputs = match (req.mask, &init) {
            (Some(m), Some(x)) => {
                let m = m.ge(0.5f32)?.to_dtype(DType::F32)?;
                let keep = m.lt(0.5f32)?.to_dtype(DType::F32)?;
                let masked = x.broadcast_mul(&keep)?;
                let masked_latents = encode_image(&masked, noise)?;
                let small = m.upsample_nearest2d(shape[2], shape[3])?;
                Some((small, masked_latents))
            }
            _ => None,
        };
        let start_latents = latents.clone();
        let n = sched.timesteps().len();
        let timesteps = sched.timesteps().to_vec();
        let mut step_latents = Vec::with_capacity(n);
        for (i, &t) in timesteps.iter().enumerate() {
            let x = if cfg {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let mut x = sched.scale_model_input(&x, i)?;
            if let (true, Some((m, ml))) = (inpaint_unet, &mask_inputs) {
                let rep = |t: &Tensor| {
                    if cfg {
                        Tensor::cat(&[t, t], 0)
                    } else {
                        Ok(t.clone())
                    }
                };
                x = Tensor::cat(&[&x, &rep(m)?, &rep(ml)?], 1)?;
            }
            let cond_add = added.as_ref().map(|(p, ids)| AddedCond {
                text_embeds: p,
                time_ids: ids,
            });
            let eps = self.unet.forward(&x, t, &context, cond_add)?;
            let guided = if cfg {
                let (u, c) = (eps.narrow(0, 0, 1)?, eps.narrow(0, 1, 1)?);
                (&u + ((&c - &u)? * req.guidance)?)?
            } else {
                eps
            };
            latents = sched.step(&guided, i, &latents, noise)?;
            if let (true, Some((m, _)), Some(il)) = (blend, &mask_inputs, &image_latents) {
                // Ordinary UNet: keep the unmasked area on the init image's noise trajectory.
                let proper = if i + 1 < n {
                    sched.add_noise(il, &start_noise, i + 1)?
                } else {
                    il.clone()
                };
                latents =
                    ((proper.broadcast_mul(&m.affine(-1.0, 1.0)?))? + latents.broadcast_mul(m)?)?;
            }
            step_latents.push(latents.clone());
            if !on_step(i + 1, n, &latents) {
                return Ok(None);
            }
        }
        let image = self.vae.latents_to_image(&latents)?;
        Ok(Some(Run {
            input_ids: cond.ids,
            negative_input_ids: uncond
                .as_ref()
                .filter(|u| !u.ids.is_empty())
                .map(|u| u.ids.clone()),
            prompt_embeds: cond.embeds,
            negative_prompt_embeds: uncond.map(|u| u.embeds),
            start_latents,
            step_latents,
            final_latents: latents,
            image,
        }))
    }
}
