//! `easel bench diffusion`: prints the engine's measurements (`easel_diffusion::bench`).

use anyhow::Result;

pub fn run(size: usize, steps: usize, tiny: bool) -> Result<()> {
    let r = easel_diffusion::bench::run(size, steps, tiny).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "easel bench diffusion ({}, {size}x{size}, f32, CPU, {} threads, {})",
        if r.tiny {
            "tiny architecture"
        } else {
            "SD 1.5 architecture, random weights"
        },
        r.threads,
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    let (u, v, c) = r.params;
    println!("{:<44} {:>12}", "measure", "value");
    println!(
        "{:<44} {:>12}",
        "parameters (UNet / VAE / text encoder, M)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            u as f64 / 1e6,
            v as f64 / 1e6,
            c as f64 / 1e6
        )
    );
    println!("{:<44} {:>12.2}", "random weights written, s", r.write_s);
    println!("{:<44} {:>12.3}", "model load (mmap), s", r.load_s);
    println!(
        "{:<44} {:>12.3}",
        "text encode (batch 2, 77 tokens), s", r.encode_s
    );
    println!(
        "{:<44} {:>12.3}",
        "UNet step with guidance (batch 2), s", r.unet_step_s
    );
    println!("{:<44} {:>12.3}", "VAE decode (1 image), s", r.decode_s);
    println!(
        "{:<44} {:>12.0}",
        "peak RSS before load, MB", r.rss_before_load_mb
    );
    println!("{:<44} {:>12.0}", "peak RSS, MB", r.rss_peak_mb);
    Ok(())
}
