//! Times each path of the engine's 3×3 convolution (im2col, Winograd F(2×2) and F(4×4)) on
//! the layer shapes of SD 1.5's UNet (batch 2, as with guidance) and VAE decoder, and prints
//! the path `Conv2d` chooses for each: the figures behind `winograd::choose`'s thresholds.
//! The last column is the same layer built at `Precision::Bf16` (its own choice of path, on
//! the best bf16 kernel this CPU has).
//!
//! `cargo run --release -p easel-diffusion --example conv_paths [-- REPEATS [FILTER]]`
//! (FILTER: only the layers whose name contains it); `PATHS=F2,F4` times only the paths
//! named; threads from `RAYON_NUM_THREADS`. Each figure is the best of REPEATS runs.

use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use candle_nn::Conv2dConfig;
use easel_diffusion::kernels::winograd::{self, Choice};
use easel_diffusion::kernels::{bf16, with_precision, Conv2d, Precision};

fn main() -> candle_core::Result<()> {
    let repeats: usize = std::env::args()
        .nth(1)
        .map_or(3, |a| a.parse().expect("REPEATS is a number"));
    let filter = std::env::args().nth(2).unwrap_or_default();
    // (what, batch, channels in, channels out, side).
    let layers = [
        ("UNet 256² level 0", 2, 320, 320, 32),
        ("UNet 256² level 1", 2, 640, 640, 16),
        ("UNet 256² level 2", 2, 1280, 1280, 8),
        ("UNet 512² level 0", 2, 320, 320, 64),
        ("UNet 512² level 1", 2, 640, 640, 32),
        ("UNet 512² level 2", 2, 1280, 1280, 16),
        ("UNet 512² level 3", 2, 1280, 1280, 8),
        ("VAE 256² 32²", 1, 512, 512, 32),
        ("VAE 256² 64²", 1, 512, 512, 64),
        ("VAE 256² 128²", 1, 256, 256, 128),
        ("VAE 256² 256²", 1, 128, 128, 256),
        ("VAE 512² 512²", 1, 128, 128, 512),
    ];
    println!(
        "layer | chosen | im2col ms | F2 ms | F4 ms | bf16 ({:?}) ms",
        bf16::kernel()
    );
    for (what, b, cin, cout, side) in layers {
        if !what.contains(&filter) {
            continue;
        }
        let x = Tensor::randn(0f32, 1., (b, cin, side, side), &Device::Cpu)?;
        let w = (Tensor::randn(0f32, 1., (cout, cin, 3, 3), &Device::Cpu)? * 0.02)?;
        let bias = Tensor::randn(0f32, 1., cout, &Device::Cpu)?;
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let half = with_precision(Precision::Bf16, || {
            Conv2d::new(w.clone(), Some(bias.clone()), cfg)
        })?;
        let conv = Conv2d::new(w, Some(bias), cfg)?;
        let mut ms = Vec::new();
        for path in [Choice::Im2col, Choice::F2, Choice::F4] {
            if std::env::var("PATHS").is_ok_and(|p| !p.contains(&format!("{path:?}"))) {
                ms.push(f64::NAN);
                continue;
            }
            let mut best = f64::MAX;
            for _ in 0..repeats {
                let t = Instant::now();
                drop(conv.forward_by(&x, path)?);
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.push(best);
        }
        let mut best = f64::MAX;
        for _ in 0..repeats {
            let t = Instant::now();
            drop(half.forward(&x)?);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        // The chosen path, through the layer itself.
        conv.forward(&x)?;
        println!(
            "{what} ({b}×{cin}→{cout}) | {:?} | {:.1} | {:.1} | {:.1} | {best:.1}",
            winograd::choose(b, cin, cout, side, side),
            ms[0],
            ms[1],
            ms[2]
        );
    }
    Ok(())
}
