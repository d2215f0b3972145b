//! `easel bench diffusion`'s measurements: timings of the engine on a family's released
//! architecture (SD 1.5; Sana 600M-512px with its Gemma-2-2B text encoder and the f32c32
//! DC-AE) or its tiny one, with random weights written as a diffusers folder first so "load"
//! is the real loading path (`loader::read_tensors`); or, with `Options::model`, an existing
//! diffusers SD folder (1.x, 2.x or XL). On the CPU by default, or on the device
//! `Options::device` names, each part at the dtype the engine would load it at there
//! (`engine::Device::dtypes`); on a GPU each timed stage ends by waiting for the device.
//! The binary prints the report.
//!
//! The peak RSS includes writing the random weights (the largest component is held in memory
//! once while it is written: Sana's text encoder is written in bf16, as the released repos
//! ship it, and loaded as f32).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};

use crate::kernels::with_precision;
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::gemma::{Gemma2Config, Gemma2Model};
use crate::sana::dcae::{AutoencoderDc, DcAeConfig, PerStage};
use crate::sana::pipeline::SanaPipeline;
use crate::sana::transformer::{Perturbed, SanaTransformer, SanaTransformerConfig};
use crate::sd::unet::{AddedCond, Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};

/// What one run measured (times in seconds, sizes in MB).
#[derive(Debug, Clone)]
pub struct Report {
    /// `sd15`, `sd2`, `sdxl` (a `--model` folder) or `sana`.
    pub family: &'static str,
    /// The device it ran on (`cpu`, `cuda:0`, …).
    pub device: String,
    /// What one step is (SD: a UNet step with CFG, batch 2; Sana: a transformer step with CFG
    /// and PAG, batch 3).
    pub step_label: &'static str,
    pub tiny: bool,
    pub size: usize,
    pub threads: usize,
    /// Parameters of the denoiser (UNet / transformer), VAE and text encoder.
    pub params: (u64, u64, u64),
    pub write_s: f64,
    pub load_s: f64,
    pub encode_s: f64,
    /// The warm-up step: the first, which also reads the mapped weights from the page cache.
    pub first_step_s: f64,
    /// One denoiser step with guidance, mean over the steps after a warm-up.
    pub step_s: f64,
    pub decode_s: f64,
    /// The tiny autoencoder's decode of the same latents (SD; the released TAESD
    /// configuration, or the tiny one with `--tiny`), when the family has one.
    pub tiny_vae_decode_s: Option<f64>,
    pub rss_before_load_mb: f64,
    /// Resident memory (now, not peak) after the load, after the timed steps and after the
    /// decode.
    pub rss_after_load_mb: f64,
    /// Resident memory after each component loaded, in load order (SD: text encoder, UNet,
    /// VAE; Sana loads as one pipeline and reports none).
    pub rss_components_mb: Vec<(&'static str, f64)>,
    pub rss_after_steps_mb: f64,
    pub rss_after_decode_mb: f64,
    pub rss_peak_mb: f64,
    /// The model folder measured when one was given (else the weights were written first).
    pub model: Option<std::path::PathBuf>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// `sd15` or `sana`.
    pub family: String,
    pub size: usize,
    pub steps: usize,
    /// The family's tiny architecture.
    pub tiny: bool,
    /// Measure this diffusers folder (SD: `unet/`, `vae/`, `text_encoder/`) instead of
    /// writing random weights: the folder `scripts/bench_vs_diffusers.py` writes once and
    /// times in both engines.
    pub model: Option<std::path::PathBuf>,
    /// The precision the models load at (`kernels::with_precision`; on a GPU the parts'
    /// dtypes, `engine::Device::dtypes`).
    pub precision: crate::kernels::Precision,
    /// The device spec (`cpu`, `cuda`, `cuda:1`, `metal`; see `device::device`).
    pub device: String,
}

fn configs(tiny: bool) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    if tiny {
        return (
            json!({"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                   "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 8,
                   "layers_per_block": 1}),
            json!({"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}),
            json!({"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "hidden_act": "quick_gelu"}),
        );
    }
    (
        // runwayml/stable-diffusion-v1-5 unet/config.json (the fields that matter).
        json!({"block_out_channels": [320, 640, 1280, 1280],
               "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
               "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
               "cross_attention_dim": 768, "attention_head_dim": 8, "layers_per_block": 2}),
        json!({"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32}),
        json!({"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
               "num_attention_heads": 12, "hidden_act": "quick_gelu"}),
    )
}

/// Build a component with random weights and write it as `dir/config.json` + weights file.
fn write_random(
    dir: &Path,
    config: &serde_json::Value,
    weights: &str,
    build: impl Fn(VarBuilder) -> Result<()>,
) -> Result<u64> {
    write_random_as(dir, config, weights, DType::F32, build)
}

fn write_random_as(
    dir: &Path,
    config: &serde_json::Value,
    weights: &str,
    dtype: DType,
    build: impl Fn(VarBuilder) -> Result<()>,
) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    let text =
        serde_json::to_vec_pretty(config).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    std::fs::write(dir.join("config.json"), text)?;
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, dtype, &Device::Cpu))?;
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    vm.save(dir.join(weights))?;
    Ok(params as u64)
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// Build, write, load and time `family`'s components (`sd15` or `sana`; with a `--model`
/// folder, the SD family the folder holds) at `size`² over `steps` denoiser steps.
pub fn run(o: &Options) -> Result<Report> {
    let device = crate::engine::Device::open(&o.device)?.with_precision(o.precision)?;
    match (o.family.as_str(), &o.model) {
        (crate::family::SANA, None) => run_sana(o, &device),
        (crate::family::SANA, Some(_)) => {
            candle_core::bail!("--model is for SD folders (1.x, 2.x, XL)")
        }
        (crate::family::SD15, None) => run_sd(o, &crate::sd::SD15_ROW, &device),
        (_, Some(m)) => run_sd(o, sd_family(m)?, &device),
        (other, None) => candle_core::bail!(
            "no benchmark writes family `{other}` (sd15, sana; other SD families with --model)"
        ),
    }
}

/// The SD family of a `--model` folder, from its UNet's config (the folder needs no
/// `model_index.json`): SDXL's added conditioning, SD 1.x inpainting's 9 input channels,
/// SD 2.x's 1024-wide cross-attention, else SD 1.x.
fn sd_family(dir: &Path) -> Result<&'static crate::family::Family> {
    let cfg: UnetConfig = crate::loader::read_config(&dir.join("unet/config.json"))?;
    Ok(if cfg.addition_embed_type.is_some() {
        &crate::sd::SDXL_ROW
    } else if cfg.in_channels == 9 {
        &crate::sd::SD15_INPAINT_ROW
    } else if cfg.cross_attention_dim == 1024 {
        &crate::sd::SD2_ROW
    } else {
        &crate::sd::SD15_ROW
    })
}

/// Parameters in a component folder's weight files.
fn folder_params(dir: &Path, stem: &str) -> Result<u64> {
    let mut n = 0u64;
    for f in crate::loader::weight_files(dir, stem)? {
        let h = crate::family::read_header(&f)?;
        n += h
            .values()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum::<u64>();
    }
    Ok(n)
}

/// What every family's run shares around its own stages: the weights already in place
/// (`write`, with the peak before loading), then load (the resident memory after each named
/// component), text encoding (timed the second time), an untimed setup, one warm-up and
/// `steps` timed denoiser steps,
/// and one decode, each timed, with the resident memory after the load, the steps and the
/// decode.
struct Stages<L, E, P, S, D> {
    load: L,
    encode: E,
    prepare: P,
    step: S,
    decode: D,
}

/// Waits for the device's queued work (a GPU's; nothing on the CPU).
type WaitDevice<'a> = &'a dyn Fn() -> Result<()>;

/// What a run is, besides its timings.
struct Head<'a> {
    family: &'static str,
    device: &'a Device,
    step_label: &'static str,
    tiny: bool,
    size: usize,
    steps: usize,
    params: (u64, u64, u64),
    model: Option<std::path::PathBuf>,
}

fn measure<M, C, X>(
    head: Head,
    sync: WaitDevice,
    write: std::time::Duration,
    stages: Stages<
        impl FnOnce(&mut Vec<(&'static str, f64)>) -> Result<M>,
        impl Fn(&M) -> Result<C>,
        impl FnOnce(&M, C) -> Result<X>,
        impl Fn(&M, &X, usize) -> Result<()>,
        impl Fn(&M) -> Result<()>,
    >,
) -> Result<Report> {
    let rss_before = peak_rss_mb();
    let t = Instant::now();
    let mut components = Vec::new();
    let model = (stages.load)(&mut components)?;
    sync()?;
    let load = t.elapsed();
    let rss_after_load = rss_mb();
    // Timed the second time: the first also reads the text encoder's mapped embeddings.
    (stages.encode)(&model)?;
    sync()?;
    let t = Instant::now();
    let encoded = (stages.encode)(&model)?;
    sync()?;
    let encode = t.elapsed();
    let x = (stages.prepare)(&model, encoded)?;
    sync()?;
    let t = Instant::now();
    (stages.step)(&model, &x, 0)?; // warm-up
    sync()?;
    let first_step = t.elapsed();
    let t = Instant::now();
    for i in 0..head.steps {
        (stages.step)(&model, &x, i)?;
    }
    sync()?;
    let step = t.elapsed() / head.steps.max(1) as u32;
    let rss_after_steps = rss_mb();
    if !head.device.is_cpu() {
        // A GPU's first decode also compiles and picks its kernels: timed the second time.
        (stages.decode)(&model)?;
        sync()?;
    }
    let t = Instant::now();
    (stages.decode)(&model)?;
    sync()?;
    let decode = t.elapsed();
    Ok(Report {
        family: head.family,
        device: crate::device::name(head.device),
        step_label: head.step_label,
        tiny: head.tiny,
        size: head.size,
        threads: candle_core::utils::get_num_threads(),
        params: head.params,
        write_s: write.as_secs_f64(),
        load_s: load.as_secs_f64(),
        encode_s: encode.as_secs_f64(),
        first_step_s: first_step.as_secs_f64(),
        step_s: step.as_secs_f64(),
        decode_s: decode.as_secs_f64(),
        tiny_vae_decode_s: None,
        rss_before_load_mb: rss_before,
        rss_after_load_mb: rss_after_load,
        rss_components_mb: components,
        rss_after_steps_mb: rss_after_steps,
        rss_after_decode_mb: rss_mb(),
        rss_peak_mb: peak_rss_mb(),
        model: head.model,
    })
}

fn run_sd(
    o: &Options,
    family: &'static crate::family::Family,
    device: &crate::engine::Device,
) -> Result<Report> {
    let (size, steps, tiny) = (o.size, o.steps, o.tiny);
    if size % 8 != 0 || size == 0 {
        candle_core::bail!("--size must be a positive multiple of 8");
    }
    let dev = device.0.clone();
    let dtypes = device.dtypes(family);
    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    let (dir, (unet_params, vae_params, clip_params)) = match &o.model {
        Some(m) => (
            m.as_path(),
            (
                folder_params(&m.join("unet"), "diffusion_pytorch_model")?,
                folder_params(&m.join("vae"), "diffusion_pytorch_model")?,
                folder_params(&m.join("text_encoder"), "model")?,
            ),
        ),
        None => (tmp.path(), write_sd(tmp.path(), tiny)?),
    };
    let write = t.elapsed();
    let lat = size / 8;
    let head = Head {
        family: family.id,
        device: &dev,
        step_label: "UNet step with CFG (batch 2)",
        tiny,
        size,
        steps,
        params: (unet_params, vae_params, clip_params),
        model: o.model.clone(),
    };
    type Parts = (ClipTextModel, Unet, Vae);
    let stages = Stages {
        load: |rss: &mut Vec<(&'static str, f64)>| {
            with_precision(o.precision, || {
                let te = ClipTextModel::from_dir(
                    &dir.join("text_encoder"),
                    "text_encoder",
                    &[],
                    dtypes.text,
                    &dev,
                )?;
                rss.push(("text encoder", rss_mb()));
                let unet = Unet::from_dir(&dir.join("unet"), &[], dtypes.denoiser, &dev)?;
                rss.push(("UNet", rss_mb()));
                let vae = Vae::from_dir(&dir.join("vae"), dtypes.vae, &dev)?;
                rss.push(("VAE", rss_mb()));
                Ok((te, unet, vae))
            })
        },
        encode: |(te, _, _): &Parts| {
            let ids = Tensor::new(vec![vec![1u32; 77]; 2], &dev)?;
            Ok(te.forward(&ids)?.last_hidden_state)
        },
        // SDXL's context is both encoders' states side by side and its added conditioning
        // the second's pooled output: random ones of those shapes (the second encoder's
        // time is not what is measured).
        prepare: |(_, unet, _): &Parts, ctx: Tensor| {
            let cfg = &unet.config;
            let ctx = if ctx.dim(2)? == cfg.cross_attention_dim {
                ctx
            } else {
                Tensor::randn(0f32, 1f32, (2, 77, cfg.cross_attention_dim), &dev)?
            };
            let added = match (
                &cfg.addition_embed_type,
                cfg.projection_class_embeddings_input_dim,
            ) {
                (Some(_), Some(input)) => {
                    let time_dim = 6 * cfg.addition_time_embed_dim.unwrap_or(256);
                    Some((
                        Tensor::randn(0f32, 1f32, (2, input - time_dim), &dev)?,
                        crate::sd::unet::sdxl_time_ids(size, size, 2, &dev)?,
                    ))
                }
                _ => None,
            };
            let x = Tensor::randn(0f32, 1f32, (2, cfg.in_channels, lat, lat), &dev)?;
            Ok((x, ctx, added))
        },
        step: |(_, unet, _): &Parts,
               (x, ctx, added): &(Tensor, Tensor, Option<(Tensor, Tensor)>),
               i| {
            let added = added.as_ref().map(|(text_embeds, time_ids)| AddedCond {
                text_embeds,
                time_ids,
            });
            unet.forward(x, 999.0 - i as f64, ctx, added).map(|_| ())
        },
        decode: |(_, _, vae): &Parts| {
            let z = Tensor::randn(0f32, 1f32, (1, vae.config.latent_channels, lat, lat), &dev)?;
            vae.decode(&z).map(|_| ())
        },
    };
    let mut report = measure(head, &|| dev.synchronize(), write, stages)?;
    report.tiny_vae_decode_s = Some(time_tiny_vae(lat, tiny, o.precision, &dev)?);
    Ok(report)
}

/// Seconds of one TAESD decode of a `[1, 4, lat, lat]` latent (random weights; after a
/// warm-up at the same size).
fn time_tiny_vae(
    lat: usize,
    tiny: bool,
    precision: crate::kernels::Precision,
    dev: &Device,
) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    if tiny {
        crate::taesd::make_tiny(dir.path(), 4, 5)?;
    } else {
        crate::taesd::write_random(dir.path(), crate::taesd::released_config(4), 5)?;
    }
    let t = with_precision(precision, || {
        crate::taesd::TinyVae::load_path(dir.path(), dev)
    })?;
    let z = Tensor::randn(0f32, 1f32, (1, 4, lat, lat), dev)?;
    t.forward(&z)?;
    dev.synchronize()?;
    let start = Instant::now();
    t.forward(&z)?;
    dev.synchronize()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Write SD 1.5's (or the tiny) UNet, VAE and text encoder with random weights into `dir`;
/// returns their parameter counts.
fn write_sd(dir: &Path, tiny: bool) -> Result<(u64, u64, u64)> {
    let (unet_cfg, vae_cfg, clip_cfg) = configs(tiny);
    let u: UnetConfig = json(unet_cfg.clone())?;
    let unet_params = write_random(
        &dir.join("unet"),
        &unet_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Unet::load(vb, u.clone()).map(|_| ()),
    )?;
    let v: VaeConfig = json(vae_cfg.clone())?;
    let vae_params = write_random(
        &dir.join("vae"),
        &vae_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Vae::load(vb, v.clone()).map(|_| ()),
    )?;
    let c: ClipTextConfig = json(clip_cfg.clone())?;
    let clip_params = write_random(
        &dir.join("text_encoder"),
        &clip_cfg,
        "model.safetensors",
        |vb| ClipTextModel::load(vb, &c).map(|_| ()),
    )?;
    Ok((unet_params, vae_params, clip_params))
}

/// Sana 600M-512px's transformer (`Efficient-Large-Model/Sana_600M_512px_diffusers`).
fn sana_600m_512() -> SanaTransformerConfig {
    SanaTransformerConfig {
        num_attention_heads: 36,
        attention_head_dim: 32,
        num_layers: 28,
        num_cross_attention_heads: Some(16),
        cross_attention_head_dim: Some(72),
        cross_attention_dim: Some(1152),
        sample_size: 16,
        ..SanaTransformerConfig::default()
    }
}

/// The released Sana autoencoder (`mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers`, the `vae/`
/// of every Sana repo), not `AutoencoderDC()`'s defaults.
fn sana_dcae_f32c32() -> DcAeConfig {
    let stage = |a: &str, b: &str| {
        vec![a, a, a, b, b, b]
            .into_iter()
            .map(String::from)
            .collect()
    };
    DcAeConfig {
        encoder_block_types: PerStage::Each(stage("ResBlock", "EfficientViTBlock")),
        decoder_block_types: PerStage::Each(stage("ResBlock", "EfficientViTBlock")),
        encoder_layers_per_block: vec![2, 2, 2, 3, 3, 3],
        decoder_layers_per_block: vec![3, 3, 3, 3, 3, 3],
        encoder_qkv_multiscales: vec![vec![], vec![], vec![], vec![5], vec![5], vec![5]],
        decoder_qkv_multiscales: vec![vec![], vec![], vec![], vec![5], vec![5], vec![5]],
        upsample_block_type: "interpolate".into(),
        downsample_block_type: "Conv".into(),
        decoder_norm_types: PerStage::All("rms_norm".into()),
        decoder_act_fns: PerStage::All("silu".into()),
        scaling_factor: 0.41407,
        ..DcAeConfig::default()
    }
}

fn run_sana(o: &Options, device: &crate::engine::Device) -> Result<Report> {
    let (size, steps, tiny) = (o.size, o.steps, o.tiny);
    if size % 32 != 0 || size == 0 {
        candle_core::bail!("--size must be a positive multiple of 32");
    }
    let dev = device.0.clone();
    let dtypes = device.dtypes(&crate::sana::SANA_ROW);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let t = Instant::now();
    let params = if tiny {
        crate::sana::tiny::make_tiny(dir, 0)?;
        (
            folder_params(&dir.join("transformer"), "diffusion_pytorch_model")?,
            folder_params(&dir.join("vae"), "diffusion_pytorch_model")?,
            folder_params(&dir.join("text_encoder"), "model")?,
        )
    } else {
        crate::sana::tiny::write_index(dir)?;
        // The tokenizer is the tiny one: tokenizing is not what is measured.
        crate::tokenizer_json::write_tiny(
            &dir.join("tokenizer"),
            &crate::sana::text::DEFAULT_COMPLEX_HUMAN_INSTRUCTION,
            400,
        )
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let g: Gemma2Config = json(json!({}))?; // transformers' defaults: gemma-2-2b
        let text = write_random_as(
            &dir.join("text_encoder"),
            &serde_json::to_value(&g).map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            "model.safetensors",
            DType::BF16,
            |vb| Gemma2Model::new(vb, &g).map(|_| ()),
        )?;
        let tc = sana_600m_512();
        let transformer = write_random(
            &dir.join("transformer"),
            &serde_json::to_value(&tc).map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            "diffusion_pytorch_model.safetensors",
            |vb| SanaTransformer::new(tc.clone(), vb).map(|_| ()),
        )?;
        let vc = sana_dcae_f32c32();
        let vae = write_random(
            &dir.join("vae"),
            &serde_json::to_value(&vc).map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            "diffusion_pytorch_model.safetensors",
            |vb| AutoencoderDc::new(vc.clone(), vb).map(|_| ()),
        )?;
        (transformer, vae, text)
    };
    let write = t.elapsed();
    let head = Head {
        family: crate::family::SANA,
        device: &dev,
        step_label: "transformer step with CFG + PAG (batch 3)",
        tiny,
        size,
        steps,
        params,
        model: None,
    };
    let rows = 3;
    let latent = |pipe: &SanaPipeline, rows| {
        let (r, c) = (
            pipe.vae.spatial_compression(),
            pipe.transformer.config().in_channels,
        );
        Tensor::randn(0f32, 1f32, (rows, c, size / r, size / r), &dev)
    };
    let stages = Stages {
        load: |_: &mut Vec<(&'static str, f64)>| {
            with_precision(o.precision, || SanaPipeline::load(dir, dtypes, &dev))
        },
        encode: |pipe: &SanaPipeline| pipe.text.encode("a cyberpunk cat with a neon sign", 300),
        // As the pipeline runs: the caption side once, then the steps, in the transformer's
        // dtype.
        prepare: |pipe: &SanaPipeline, (embeds, mask): (Tensor, Tensor)| {
            let caption = pipe
                .transformer
                .caption(&embeds.repeat((rows, 1, 1))?, &mask.repeat((rows, 1))?)?;
            Ok((
                latent(pipe, rows)?.to_dtype(pipe.transformer.dtype())?,
                Tensor::full(999f32, rows, &dev)?,
                caption,
                pipe.pag_blocks().to_vec(),
            ))
        },
        step: |pipe: &SanaPipeline,
               (x, tt, caption, blocks): &(Tensor, Tensor, _, Vec<usize>),
               _| {
            let perturbed = Some(Perturbed {
                first_row: 2,
                blocks,
            });
            pipe.transformer
                .forward_with_caption(x, tt, caption, perturbed)
                .map(|_| ())
        },
        decode: |pipe: &SanaPipeline| pipe.decode(&latent(pipe, 1)?).map(|_| ()),
    };
    measure(head, &|| dev.synchronize(), write, stages)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tiny_bench_measures_every_stage() {
        let opts = |family: &str, size| super::Options {
            family: family.into(),
            size,
            steps: 1,
            tiny: true,
            model: None,
            precision: Default::default(),
            device: "cpu".into(),
        };
        for family in ["sd15", "sana"] {
            let r = super::run(&opts(family, 64)).unwrap();
            assert_eq!(r.family, family);
            assert!(r.params.0 > 0 && r.params.1 > 0 && r.params.2 > 0);
            assert!(r.threads >= 1);
            assert!(r.step_s > 0.0 && r.decode_s > 0.0);
        }
        assert!(
            super::run(&opts("sd15", 60)).is_err(),
            "sizes are multiples of 8"
        );
        assert!(
            super::run(&opts("sana", 48)).is_err(),
            "sizes are multiples of 32"
        );
        assert!(super::run(&opts("sdxl", 64)).is_err());
        assert!(r_after_load_is_resident(
            &super::run(&opts("sd15", 64)).unwrap()
        ));
        // A written folder measured again through --model: the same parameters.
        let dir = tempfile::tempdir().unwrap();
        let params = super::write_sd(dir.path(), true).unwrap();
        let again = super::run(&super::Options {
            model: Some(dir.path().to_path_buf()),
            ..opts("sd15", 64)
        })
        .unwrap();
        assert_eq!(again.params, params);
        assert_eq!(again.model.as_deref(), Some(dir.path()));
        assert_eq!((again.family, again.device.as_str()), ("sd15", "cpu"));

        // An SDXL folder: its family from the UNet's config; the step gets SDXL's added
        // conditioning and its wider context.
        let xl = tempfile::tempdir().unwrap();
        crate::sd::tiny::make_tiny(crate::sd::Variant::Sdxl, xl.path(), 0).unwrap();
        let r = super::run(&super::Options {
            model: Some(xl.path().to_path_buf()),
            ..opts("sdxl", 64)
        })
        .unwrap();
        assert_eq!(r.family, "sdxl");
        assert!(r.step_s > 0.0 && r.decode_s > 0.0);

        // A device this build lacks, and f16 on the CPU, are refused before any work.
        if !crate::device::has_cuda() {
            let e = super::run(&super::Options {
                device: "cuda".into(),
                ..opts("sd15", 64)
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        let e = super::run(&super::Options {
            precision: crate::kernels::Precision::F16,
            ..opts("sd15", 64)
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("GPUs only"), "{e}");
    }

    /// The components are reported in load order, each a resident size under the peak. (Not
    /// that each is larger than the last: the other tests of this process allocate and free
    /// memory meanwhile.)
    fn r_after_load_is_resident(r: &super::Report) -> bool {
        let names: Vec<&str> = r.rss_components_mb.iter().map(|c| c.0).collect();
        names == ["text encoder", "UNet", "VAE"]
            && r.rss_components_mb
                .iter()
                .all(|c| c.1 > 0.0 && c.1 <= r.rss_peak_mb + 1.0)
            && r.rss_after_load_mb > 0.0
            && r.rss_after_load_mb <= r.rss_peak_mb + 1.0
    }
}
