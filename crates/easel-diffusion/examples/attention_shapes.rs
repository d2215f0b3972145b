//! Times the engine's attention kernel on the attention shapes of SD 1.5's UNet (batch 2, as
//! with guidance): self-attention over every latent position and cross-attention over the 77
//! text tokens, at each level where the UNet attends, for 256² and 512² images. The figures
//! behind the attention kernel's block sizes; compare with `torch.nn.functional.
//! scaled_dot_product_attention` on the same shapes (`scripts/attention_torch.py`; both read
//! `scripts/attention_shapes.json`).
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
    // SD 1.5's attention shapes, shared with `scripts/attention_torch.py`; 8 heads throughout.
    let shapes: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../../scripts/attention_shapes.json"))
            .expect("the shapes file is JSON");
    println!("shape | ms");
    for shape in &shapes {
        let field = |k: &str| shape[k].as_u64().expect("a size") as usize;
        let (what, n, m, dim) = (
            shape["what"].as_str().expect("a name"),
            field("tokens"),
            field("keys"),
            field("channels"),
        );
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
