//! Times the engine's attention kernel on the attention shapes of SD 1.5's UNet (batch 2, as
//! with guidance): self-attention over every latent position and cross-attention over the 77
//! text tokens, at each level where the UNet attends, for 256² and 512² images. The figures
//! behind the attention kernel's block sizes; compare with `torch.nn.functional.
//! scaled_dot_product_attention` on the same shapes (`scripts/attention_torch.py`).
//!
//! `cargo run --release -p easel-diffusion --example attention_shapes [-- REPEATS]`; threads
//! from `RAYON_NUM_THREADS`. Each figure is the best of REPEATS runs.

use std::time::Instant;

use candle_core::{Device, Tensor};
use easel_diffusion::kernels::attention;

fn main() -> candle_core::Result<()> {
    let repeats: usize = std::env::args()
        .nth(1)
        .map_or(3, |a| a.parse().expect("REPEATS is a number"));
    // (what, tokens, keys, channels); 8 heads throughout, as SD 1.5.
    let shapes = [
        ("256² self 32²", 1024, 1024, 320),
        ("256² self 16²", 256, 256, 640),
        ("256² cross 32²", 1024, 77, 320),
        ("512² self 64²", 4096, 4096, 320),
        ("512² self 32²", 1024, 1024, 640),
        ("512² self 16²", 256, 256, 1280),
        ("512² cross 64²", 4096, 77, 320),
    ];
    println!("shape | ms");
    for (what, n, m, dim) in shapes {
        let q = Tensor::randn(0f32, 1.0, (2, n, dim), &Device::Cpu)?;
        let k = Tensor::randn(0f32, 1.0, (2, m, dim), &Device::Cpu)?;
        let v = Tensor::randn(0f32, 1.0, (2, m, dim), &Device::Cpu)?;
        let scale = ((dim / 8) as f64).powf(-0.5);
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let t = Instant::now();
            let out = attention(&q, &k, &v, 8, scale, false)?;
            best = best.min(t.elapsed().as_secs_f64());
            drop(out);
        }
        println!("{what} | {:.1}", best * 1e3);
    }
    Ok(())
}
