//! Stable Diffusion pipelines for SD 1.x, 2.x and XL: txt2img, img2img and inpaint (9-channel
//! inpainting UNets, or latent-mask blending with ordinary ones), with classifier-free
//! guidance. Every random tensor is drawn through a `NoiseSource` in diffusers' order, so a
//! `TorchRng` seeded like diffusers' CPU generator gives diffusers' results.
//!
//! Prompts are encoded one of two ways ([`PromptMode`]): as diffusers does (77 tokens,
//! truncated), which the parity tests compare against, or as AUTOMATIC1111 does (emphasis
//! weights, `BREAK`, any length in 75-token chunks; see [`crate::prompt`]), the default.
//! `Run` keeps every stage so the tests can compare them.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

use super::unet::{AddedCond, Unet};
use crate::clip::ClipTextModel;
use crate::family::Dtypes;
use crate::lora::Lora;
use crate::noise::NoiseSource;
use crate::prompt::{tokenize_weighted, Chunk, WeightedTokens};
use crate::schedulers::{Scheduler, SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
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
    /// How the prompts become text embeddings.
    pub prompt_mode: PromptMode,
    /// Decode the final latents with this tiny autoencoder instead of the VAE.
    pub tiny_vae: Option<&'a crate::taesd::TinyVae>,
}

/// How prompts become text embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptMode {
    /// As diffusers: 77 tokens (longer prompts are truncated), no emphasis syntax (brackets
    /// are text). What the parity tests measure against.
    Diffusers,
    /// As AUTOMATIC1111: `(word:1.2)` / `(word)` / `[word]` emphasis, `BREAK`, and prompts of
    /// any length in chunks of 75 tokens (see [`crate::prompt`]). A plain prompt of at most
    /// 75 tokens gives exactly the `Diffusers` embeddings. The default.
    #[default]
    Weighted,
}

/// Every stage of a run.
pub struct Run {
    /// The (first) tokenizer's ids: 77, or in `Weighted` mode 77 per chunk, concatenated.
    pub input_ids: Vec<u32>,
    /// As `input_ids`, padded with empty chunks to the prompt's chunk count; `None` without
    /// guidance or with SDXL's zeroed empty negative prompt.
    pub negative_input_ids: Option<Vec<u32>>,
    pub prompt_embeds: Tensor,
    pub negative_prompt_embeds: Option<Tensor>,
    pub start_latents: Tensor,
    pub step_latents: Vec<Tensor>,
    pub final_latents: Tensor,
    /// [1, 3, H, W] in [0, 1].
    pub image: Tensor,
}

/// One prompt's text conditioning.
pub struct PromptEmbeds {
    /// The (first) tokenizer's ids: 77, or 77 per chunk, concatenated.
    pub ids: Vec<u32>,
    /// [1, 77 · chunks, D]: the UNet's `encoder_hidden_states`.
    pub embeds: Tensor,
    /// SDXL: [1, projection_dim], the second encoder's pooled output (in `Weighted` mode, of
    /// the first chunk, as A1111 and ComfyUI take it).
    pub pooled: Option<Tensor>,
}

/// A prompt tokenized for `Weighted` mode: the chunks of each tokenizer, all with the same
/// chunk count.
struct ChunkedPrompt {
    first: WeightedTokens,
    second: Option<WeightedTokens>,
}

impl ChunkedPrompt {
    fn len(&self) -> usize {
        self.first.chunks.len()
    }
}

/// A1111's emphasis ("Original" mode) on one chunk's hidden states `z` [77, D]: multiply each
/// position by its weight, then scale the whole chunk so its mean is the unweighted mean
/// (`z · w · mean(z) / mean(z · w)`). Computed in f32, returned in `z`'s dtype. A chunk whose
/// weights are all 1 comes back untouched (bit-exact).
///
/// One guard A1111 lacks: when either mean is negligible against the chunk's mean magnitude
/// (`|mean| ≤ 1e-4 · mean(|z|)`), the ratio is rounding noise (of any size and sign), so the
/// rescale is skipped and `z · w` is returned. That happens when every position's mean is 0,
/// as after a final layer norm with zero bias (the tiny test models); real SD checkpoints have
/// means far from that, and get A1111's result.
pub fn apply_emphasis(z: &Tensor, weights: &[f32]) -> Result<Tensor> {
    if weights.iter().all(|&w| w == 1.0) {
        return Ok(z.clone());
    }
    let zf = z.to_dtype(DType::F32)?;
    let w = Tensor::new(weights, z.device())?.unsqueeze(1)?;
    let original_mean = zf.mean_all()?.to_scalar::<f32>()?;
    let weighted = zf.broadcast_mul(&w)?;
    let new_mean = weighted.mean_all()?.to_scalar::<f32>()?;
    let magnitude = zf.abs()?.mean_all()?.to_scalar::<f32>()?;
    let negligible = |m: f32| m.is_nan() || m.abs() <= 1e-4 * magnitude;
    let out = if negligible(original_mean) || negligible(new_mean) {
        weighted
    } else {
        (weighted * f64::from(original_mean / new_mean))?
    };
    out.to_dtype(z.dtype())
}

impl Pipeline {
    /// Load a diffusers folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`,
    /// `vae/`, `scheduler/`; SDXL also `tokenizer_2/`, `text_encoder_2/`), with `loras`.
    pub fn from_diffusers_dir(
        dir: &Path,
        loras: &[(&Lora, f64)],
        dtypes: impl Into<Dtypes>,
        device: &Device,
    ) -> Result<Pipeline> {
        let dtypes = dtypes.into();
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
                    dtypes.text,
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
                dtypes.text,
                device,
            )?,
            second,
            unet: Unet::from_dir(&dir.join("unet"), loras, dtypes.denoiser, device)?,
            vae: Vae::from_dir(&dir.join("vae"), dtypes.vae, device)?,
            scheduler_config,
            scheduler_kind,
            force_zeros_for_empty_prompt: index["force_zeros_for_empty_prompt"]
                .as_bool()
                .unwrap_or(false),
            device: device.clone(),
        })
    }

    /// Load a single-file checkpoint in the LDM / A1111 layout: SD 1.x, SD 1.x inpainting,
    /// SD 2.x or SDXL. The architecture is read off the weights (`single_file::convert`);
    /// `support_dir` (any diffusers folder of the family, or one holding just the tokenizers)
    /// supplies only the tokenizer (`tokenizer/`; SDXL also `tokenizer_2/`) and, when it has
    /// one, `scheduler/scheduler_config.json` (else the family's standard scheduler).
    pub fn from_single_file(
        path: &Path,
        support_dir: &Path,
        loras: &[(&Lora, f64)],
        dtypes: impl Into<Dtypes>,
        device: &Device,
    ) -> Result<Pipeline> {
        Self::from_single_file_with(
            path,
            support_dir,
            &super::single_file::SingleFileOptions::default(),
            loras,
            dtypes,
            device,
        )
    }

    /// [`Pipeline::from_single_file`] with options (a prediction type that overrides what the
    /// file and the scheduler config say).
    pub fn from_single_file_with(
        path: &Path,
        support_dir: &Path,
        options: &super::single_file::SingleFileOptions,
        loras: &[(&Lora, f64)],
        dtypes: impl Into<Dtypes>,
        device: &Device,
    ) -> Result<Pipeline> {
        let dtypes = dtypes.into();
        // Read at the denoiser's dtype, as diffusers' `from_single_file(torch_dtype=...)`
        // reads every part; a wider part (the VAE at f16) converts its tensors when built.
        // Reading at f32 would put the whole checkpoint on the device in f32 first.
        let conv = super::single_file::convert(path, dtypes.denoiser, device)?;
        let scheduler_config = super::single_file::scheduler_config(&conv, support_dir, options)?;
        let class = scheduler_config["_class_name"]
            .as_str()
            .unwrap_or("PNDMScheduler");
        let scheduler_kind = SchedulerKind::from_class_name(class)
            .ok_or_else(|| err(format!("unknown scheduler class `{class}`")))?;
        let family = conv.family;
        let tok = |sub: &str| -> Result<ClipTokenizer> {
            let d = support_dir.join(sub);
            if !d.is_dir() {
                return Err(err(format!(
                    "{} has no {sub}/ folder: the {family} checkpoint {} takes its tokenizer from there",
                    support_dir.display(),
                    path.display()
                )));
            }
            ClipTokenizer::from_dir(&d).map_err(|e| err(e.to_string()))
        };
        let vb = |tensors: std::collections::HashMap<String, Tensor>, dtype: DType| {
            candle_nn::VarBuilder::from_tensors(tensors, dtype, device)
        };
        let encoder = |mut tensors: std::collections::HashMap<String, Tensor>,
                       config: &serde_json::Value,
                       tok: &ClipTokenizer,
                       component: &str|
         -> Result<ClipTextModel> {
            let mut cfg: crate::clip::ClipTextConfig = serde_json::from_value(config.clone())
                .map_err(|e| err(format!("{component} config: {e}")))?;
            if tok.vocab_size() > cfg.vocab_size {
                return Err(err(format!(
                    "the {component} tokenizer in {} has {} tokens, the text encoder of {} only {}",
                    support_dir.display(),
                    tok.vocab_size(),
                    path.display(),
                    cfg.vocab_size
                )));
            }
            cfg.eos_token_id = Some(tok.eos());
            crate::loader::merge_loras(&mut tensors, component, loras, device)?;
            ClipTextModel::load(vb(tensors, dtypes.text), &cfg)
        };
        let tokenizer = tok("tokenizer")?;
        let text_encoder = encoder(
            conv.text_encoder,
            &conv.configs.text_encoder,
            &tokenizer,
            "text_encoder",
        )?;
        let second = match (conv.text_encoder_2, &conv.configs.text_encoder_2) {
            (Some(tensors), Some(config)) => {
                let tok2 = tok("tokenizer_2")?;
                let te2 = encoder(tensors, config, &tok2, "text_encoder_2")?;
                Some((tok2, te2))
            }
            _ => None,
        };
        let mut unet_tensors = conv.unet;
        crate::loader::merge_loras(&mut unet_tensors, "unet", loras, device)?;
        let unet_cfg: super::unet::UnetConfig =
            serde_json::from_value(conv.configs.unet).map_err(|e| err(e.to_string()))?;
        let vae_cfg: crate::vae::VaeConfig =
            serde_json::from_value(conv.configs.vae).map_err(|e| err(e.to_string()))?;
        // SDXL pipelines zero the empty negative prompt unless the folder says otherwise.
        let index = support_dir.join("model_index.json");
        let force_zeros_for_empty_prompt = second.is_some()
            && (!index.is_file()
                || crate::loader::read_config::<serde_json::Value>(&index)?
                    ["force_zeros_for_empty_prompt"]
                    .as_bool()
                    .unwrap_or(true));
        Ok(Pipeline {
            tokenizer,
            text_encoder,
            second,
            unet: Unet::load(vb(unet_tensors, dtypes.denoiser), unet_cfg)?,
            vae: Vae::load(vb(conv.vae, dtypes.vae), vae_cfg)?,
            scheduler_config,
            scheduler_kind,
            force_zeros_for_empty_prompt,
            device: device.clone(),
        })
    }

    /// The dtypes its parts compute in (the first text encoder's for `text`; the second,
    /// SDXL's, is loaded at the same).
    pub fn dtypes(&self) -> Dtypes {
        Dtypes {
            denoiser: self.unet.dtype(),
            text: self.text_encoder.dtype(),
            vae: self.vae.dtype(),
        }
    }

    /// The device the pipeline runs on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The model's own scheduler (from its scheduler config).
    pub fn scheduler_kind(&self) -> SchedulerKind {
        self.scheduler_kind
    }

    pub fn has_second_encoder(&self) -> bool {
        self.second.is_some()
    }

    /// Pixels per latent (8 for SD).
    pub fn vae_scale_factor(&self) -> usize {
        1 << (self.vae.config.block_out_channels.len() - 1)
    }

    /// Encodes one prompt (no guidance pairing: see [`Pipeline::encode_prompts`]).
    pub fn encode_prompt(&self, text: &str, mode: PromptMode) -> Result<PromptEmbeds> {
        Ok(self.encode_prompts(text, None, mode)?.0)
    }

    /// Text embeddings: for each text, the pooled output of the model's last text encoder
    /// (SDXL's second, projected: 1280 values; SD 1.x: 768; SD 2.x: 1024), L2-normalised,
    /// as CLIP compares texts. Texts longer than CLIP's 77-token context are truncated (77
    /// counting the start and end tokens). Returns the vectors and each text's token count
    /// (with start and end, as it ran).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let (tok, te) = match &self.second {
            Some((tok2, te2)) => (tok2, te2),
            None => (&self.tokenizer, &self.text_encoder),
        };
        let mut vectors = Vec::with_capacity(texts.len());
        let mut tokens = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(16) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|t| tok.encode_padded(t, 77)).collect();
            tokens.extend(chunk.iter().map(|t| (tok.encode(t).len() + 2).min(77)));
            let pooled = te
                .forward(&Tensor::new(ids, &self.device)?)?
                .pooled
                .to_dtype(DType::F32)?;
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            let unit = pooled.broadcast_div(&norm)?;
            vectors.extend(unit.to_vec2::<f32>()?);
        }
        Ok((vectors, tokens))
    }

    /// Encodes the prompt and, when given, the negative prompt. In `Weighted` mode the one
    /// with fewer chunks is padded with empty chunks (as A1111's `pad_cond_uncond`), so both
    /// have the same sequence length and can be batched for classifier-free guidance.
    pub fn encode_prompts(
        &self,
        prompt: &str,
        negative: Option<&str>,
        mode: PromptMode,
    ) -> Result<(PromptEmbeds, Option<PromptEmbeds>)> {
        match mode {
            PromptMode::Diffusers => Ok((
                self.encode_diffusers(prompt)?,
                negative.map(|n| self.encode_diffusers(n)).transpose()?,
            )),
            PromptMode::Weighted => {
                let mut pos = self.chunk_prompt(prompt);
                let mut neg = negative.map(|n| self.chunk_prompt(n));
                if let Some(neg) = &mut neg {
                    let n = pos.len().max(neg.len());
                    self.pad_chunks(&mut pos, n);
                    self.pad_chunks(neg, n);
                }
                Ok((
                    self.encode_chunks(&pos)?,
                    neg.map(|n| self.encode_chunks(&n)).transpose()?,
                ))
            }
        }
    }

    /// diffusers: 77 ids, truncated.
    fn encode_diffusers(&self, text: &str) -> Result<PromptEmbeds> {
        let ids = self.tokenizer.encode_padded(text, 77);
        let t = Tensor::new(vec![ids.clone()], &self.device)?;
        let out = self.text_encoder.forward(&t)?;
        match &self.second {
            None => Ok(PromptEmbeds {
                ids,
                embeds: out.last_hidden_state,
                pooled: None,
            }),
            Some((tok2, te2)) => {
                let ids2 = tok2.encode_padded(text, 77);
                let out2 = te2.forward(&Tensor::new(vec![ids2], &self.device)?)?;
                Ok(PromptEmbeds {
                    ids,
                    embeds: Tensor::cat(&[&out.penultimate, &out2.penultimate], 2)?,
                    pooled: Some(out2.pooled),
                })
            }
        }
    }

    /// Weighted mode: A1111's chunks for each tokenizer, padded to the same count (SDXL's two
    /// tokenizers can disagree, e.g. on `!`, which the second one reads as its pad token).
    ///
    /// Padding: each chunk is `[BOS, ≤75 tokens, EOS, PAD…]` with the tokenizer's own pad id,
    /// as A1111 pads (`id_pad`: end-of-text for CLIP ViT-L, SD 1.x and SDXL's first encoder;
    /// 0, i.e. `!`, for OpenCLIP, SD 2.x and SDXL's second encoder) and as ComfyUI does
    /// (`pad_with_end`). `ClipTokenizer::pad` is that same id, read from the model's
    /// tokenizer config, so one chunk of a plain prompt is exactly diffusers' 77 ids.
    fn chunk_prompt(&self, text: &str) -> ChunkedPrompt {
        let mut p = ChunkedPrompt {
            first: tokenize_weighted(&self.tokenizer, text),
            second: self
                .second
                .as_ref()
                .map(|(tok2, _)| tokenize_weighted(tok2, text)),
        };
        let n = p.len().max(p.second.as_ref().map_or(0, |s| s.chunks.len()));
        self.pad_chunks(&mut p, n);
        p
    }

    fn pad_chunks(&self, p: &mut ChunkedPrompt, n: usize) {
        p.first.pad_to(n, &self.tokenizer);
        if let (Some(s), Some((tok2, _))) = (&mut p.second, &self.second) {
            s.pad_to(n, tok2);
        }
    }

    /// Weighted mode: every chunk through the text encoder(s) on its own (one batch of `[n,
    /// 77]`: no attention across chunks), emphasis per chunk and per encoder (A1111 applies it
    /// inside each encoder's wrapper), then the chunks end to end: `[1, 77·n, D]`.
    fn encode_chunks(&self, p: &ChunkedPrompt) -> Result<PromptEmbeds> {
        let n = p.len();
        let run = |chunks: &[Chunk], te: &ClipTextModel, penultimate: bool| -> Result<_> {
            let ids: Vec<Vec<u32>> = chunks.iter().map(|c| c.ids.clone()).collect();
            let out = te.forward(&Tensor::new(ids, &self.device)?)?;
            let z = if penultimate {
                &out.penultimate
            } else {
                &out.last_hidden_state
            };
            let zs = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| apply_emphasis(&z.get(i)?, &c.weights))
                .collect::<Result<Vec<_>>>()?;
            // n × [77, D] -> [1, 77·n, D]
            let z = Tensor::cat(&zs, 0)?.unsqueeze(0)?;
            Ok((z, out.pooled))
        };
        let ids: Vec<u32> = p.first.chunks.iter().flat_map(|c| c.ids.clone()).collect();
        match (&self.second, &p.second) {
            (Some((_, te2)), Some(second)) => {
                let (z1, _) = run(&p.first.chunks, &self.text_encoder, true)?;
                let (z2, pooled) = run(&second.chunks, te2, true)?;
                debug_assert_eq!(second.chunks.len(), n);
                Ok(PromptEmbeds {
                    ids,
                    embeds: Tensor::cat(&[&z1, &z2], 2)?,
                    pooled: Some(pooled.narrow(0, 0, 1)?),
                })
            }
            _ => {
                let (z, _) = run(&p.first.chunks, &self.text_encoder, false)?;
                Ok(PromptEmbeds {
                    ids,
                    embeds: z,
                    pooled: None,
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
        if !req.width.is_multiple_of(f)
            || !req.height.is_multiple_of(f)
            || req.width == 0
            || req.height == 0
        {
            return Err(err(format!(
                "width and height must be positive multiples of {f}"
            )));
        }
        let dev = &self.device;
        let cfg = req.guidance > 1.0;
        let zero_uncond = cfg
            && req.negative_prompt.is_none()
            && self.has_second_encoder()
            && self.force_zeros_for_empty_prompt;
        let negative = if cfg && !zero_uncond {
            Some(req.negative_prompt.unwrap_or(""))
        } else {
            None
        };
        let (cond, uncond) = self.encode_prompts(req.prompt, negative, req.prompt_mode)?;
        let uncond = match uncond {
            // SDXL without a negative prompt: zeros shaped like the prompt's embeddings.
            None if zero_uncond => Some(PromptEmbeds {
                ids: vec![],
                embeds: cond.embeds.zeros_like()?,
                pooled: cond.pooled.as_ref().map(|p| p.zeros_like()).transpose()?,
            }),
            u => u,
        };
        let context = match &uncond {
            Some(u) => Tensor::cat(&[&u.embeds, &cond.embeds], 0)?,
            None => cond.embeds.clone(),
        };
        let batch = if cfg { 2 } else { 1 };
        let added = match &cond.pooled {
            Some(p) => {
                let ids = super::unet::sdxl_time_ids(req.height, req.width, batch, dev)?;
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
        if kind == SchedulerKind::FlowMatchEuler {
            return Err(err(format!(
                "{} is for flow-matching models (Sana, FLUX); Stable Diffusion predicts noise",
                kind.class_name()
            )));
        }
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
        let image = match req.tiny_vae {
            Some(t) => t.latents_to_image(&latents)?,
            None => self.vae.latents_to_image(&latents)?,
        };
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
