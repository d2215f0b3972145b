//! `easel bench diffusion`'s measurements: CPU timings of the engine on the SD 1.5
//! architecture (or the tiny one) with random weights, written as a diffusers folder first so
//! "load" is the real memory-mapped path. The binary prints the report.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::sd::unet::{Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};

/// What one run measured (times in seconds, sizes in MB).
#[derive(Debug, Clone)]
pub struct Report {
    pub tiny: bool,
    pub size: usize,
    pub threads: usize,
    /// Parameters of the UNet, VAE and text encoder.
    pub params: (u64, u64, u64),
    pub write_s: f64,
    pub load_s: f64,
    pub encode_s: f64,
    /// One UNet step with guidance (batch 2), mean over the steps after a warm-up.
    pub unet_step_s: f64,
    pub decode_s: f64,
    pub rss_before_load_mb: f64,
    pub rss_peak_mb: f64,
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
    std::fs::create_dir_all(dir)?;
    let text =
        serde_json::to_vec_pretty(config).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    std::fs::write(dir.join("config.json"), text)?;
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

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// Build, write, load and time the components at `size`² over `steps` UNet steps.
pub fn run(size: usize, steps: usize, tiny: bool) -> Result<Report> {
    if size % 8 != 0 || size == 0 {
        candle_core::bail!("--size must be a positive multiple of 8");
    }
    let dev = Device::Cpu;
    let dir = tempfile::tempdir()?;
    let (unet_cfg, vae_cfg, clip_cfg) = configs(tiny);
    let t = Instant::now();
    let u: UnetConfig = json(unet_cfg.clone())?;
    let unet_params = write_random(
        &dir.path().join("unet"),
        &unet_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Unet::load(vb, u.clone()).map(|_| ()),
    )?;
    let v: VaeConfig = json(vae_cfg.clone())?;
    let vae_params = write_random(
        &dir.path().join("vae"),
        &vae_cfg,
        "diffusion_pytorch_model.safetensors",
        |vb| Vae::load(vb, v.clone()).map(|_| ()),
    )?;
    let c: ClipTextConfig = json(clip_cfg.clone())?;
    let clip_params = write_random(
        &dir.path().join("text_encoder"),
        &clip_cfg,
        "model.safetensors",
        |vb| ClipTextModel::load(vb, &c).map(|_| ()),
    )?;
    let write = t.elapsed();
    let rss_before = peak_rss_mb();

    let t = Instant::now();
    let te = ClipTextModel::from_dir(
        &dir.path().join("text_encoder"),
        "text_encoder",
        &[],
        DType::F32,
        &dev,
    )?;
    let unet = Unet::from_dir(&dir.path().join("unet"), &[], DType::F32, &dev)?;
    let vae = Vae::from_dir(&dir.path().join("vae"), DType::F32, &dev)?;
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
    Ok(Report {
        tiny,
        size,
        threads: candle_core::utils::get_num_threads(),
        params: (unet_params, vae_params, clip_params),
        write_s: write.as_secs_f64(),
        load_s: load.as_secs_f64(),
        encode_s: encode.as_secs_f64(),
        unet_step_s: step.as_secs_f64(),
        decode_s: decode.as_secs_f64(),
        rss_before_load_mb: rss_before,
        rss_peak_mb: peak_rss_mb(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tiny_bench_measures_every_stage() {
        let r = super::run(64, 1, true).unwrap();
        assert!(r.params.0 > 0 && r.params.1 > 0 && r.params.2 > 0);
        assert!(r.threads >= 1);
        assert!(super::run(60, 1, true).is_err(), "sizes are multiples of 8");
    }
}
