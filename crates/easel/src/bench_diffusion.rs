//! `easel bench diffusion`: CPU timings of the diffusion engine on the SD 1.5 architecture
//! with random weights. The weights are written as a diffusers folder first, so "load" is the
//! real memory-mapped loading path.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use easel_diffusion::clip::{ClipTextConfig, ClipTextModel};
use easel_diffusion::unet::{Unet, UnetConfig};
use easel_diffusion::vae::{Vae, VaeConfig};
use serde_json::json;

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
    build: impl Fn(VarBuilder) -> candle_core::Result<()>,
) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(config)?)?;
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    vm.save(dir.join(weights))?;
    Ok(params as u64)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
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

pub fn run(size: usize, steps: usize, tiny: bool) -> Result<()> {
    anyhow::ensure!(
        size % 8 == 0 && size > 0,
        "--size must be a positive multiple of 8"
    );
    let dev = Device::Cpu;
    let dir = tempfile::tempdir()?;
    let (unet_cfg, vae_cfg, clip_cfg) = configs(tiny);
    let t = Instant::now();
    let u: UnetConfig = serde_json::from_value(unet_cfg.clone())?;
    let unet_params = write_random(
        &dir.path().join("unet"),
        &unet_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Unet::load(vb, u.clone()).map(|_| ()),
    )?;
    let v: VaeConfig = serde_json::from_value(vae_cfg.clone())?;
    let vae_params = write_random(
        &dir.path().join("vae"),
        &vae_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Vae::load(vb, v.clone()).map(|_| ()),
    )?;
    let c: ClipTextConfig = serde_json::from_value(clip_cfg.clone())?;
    let clip_params = write_random(
        &dir.path().join("text_encoder"),
        &clip_cfg,
        "model.safetensors",
        |vb| ClipTextModel::load(vb, &c).map(|_| ()),
    )?;
    let generate = t.elapsed();
    let rss_before = peak_rss_mb();

    let t = Instant::now();
    let te = ClipTextModel::from_dir(
        &dir.path().join("text_encoder"),
        "text_encoder",
        &[],
        DType::F32,
        &dev,
    )
    .context("text encoder")?;
    let unet = Unet::from_dir(&dir.path().join("unet"), &[], DType::F32, &dev).context("unet")?;
    let vae = Vae::from_dir(&dir.path().join("vae"), DType::F32, &dev).context("vae")?;
    let load = t.elapsed();

    let ids = Tensor::new(vec![vec![1u32; 77]; 2], &dev)?;
    let t = Instant::now();
    let ctx = te.forward(&ids)?.last_hidden_state;
    let encode = t.elapsed();
    let lat = size / 8;
    let x = Tensor::randn(0f32, 1f32, (2, 4, lat, lat), &dev)?;
    let _ = unet.forward(&x, 999.0, &ctx, None)?; // warm-up
    let t = Instant::now();
    for i in 0..steps {
        let _ = unet.forward(&x, 999.0 - i as f64, &ctx, None)?;
    }
    let step = t.elapsed() / steps.max(1) as u32;
    let z = Tensor::randn(0f32, 1f32, (1, 4, lat, lat), &dev)?;
    let t = Instant::now();
    let _ = vae.decode(&z)?;
    let decode = t.elapsed();

    println!(
        "easel bench diffusion ({}, {size}x{size}, f32, CPU, {} threads, {})",
        if tiny {
            "tiny architecture"
        } else {
            "SD 1.5 architecture, random weights"
        },
        candle_core::utils::get_num_threads(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    println!("{:<44} {:>12}", "measure", "value");
    println!(
        "{:<44} {:>12}",
        "parameters (UNet / VAE / text encoder, M)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            unet_params as f64 / 1e6,
            vae_params as f64 / 1e6,
            clip_params as f64 / 1e6
        )
    );
    println!(
        "{:<44} {:>12.2}",
        "random weights written, s",
        generate.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.3}",
        "model load (mmap), s",
        load.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.3}",
        "text encode (batch 2, 77 tokens), s",
        encode.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.3}",
        "UNet step with guidance (batch 2), s",
        step.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.3}",
        "VAE decode (1 image), s",
        decode.as_secs_f64()
    );
    println!("{:<44} {:>12.0}", "peak RSS before load, MB", rss_before);
    println!("{:<44} {:>12.0}", "peak RSS, MB", peak_rss_mb());
    Ok(())
}
