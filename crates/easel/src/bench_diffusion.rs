//! `easel bench diffusion`: prints the engine's measurements (`easel_diffusion::bench`).

use anyhow::Result;

pub fn run(family: &str, size: usize, steps: usize, tiny: bool) -> Result<()> {
    let r = easel_diffusion::bench::run(family, size, steps, tiny)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "easel bench diffusion ({}, {size}x{size}, f32, CPU, {} threads, {})",
        match (r.tiny, r.family) {
            (true, f) => format!("tiny {f} architecture"),
            (false, "sana") => "Sana 600M-512px architecture, random weights".to_string(),
            (false, _) => "SD 1.5 architecture, random weights".to_string(),
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
        "parameters (denoiser / VAE / text encoder, M)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            u as f64 / 1e6,
            v as f64 / 1e6,
            c as f64 / 1e6
        )
    );
    println!("{:<44} {:>12.2}", "random weights written, s", r.write_s);
    println!("{:<44} {:>12.3}", "model load (mmap), s", r.load_s);
    println!("{:<44} {:>12.3}", "text encode (one prompt), s", r.encode_s);
    println!("{:<44} {:>12.3}", format!("{}, s", r.step_label), r.step_s);
    println!("{:<44} {:>12.3}", "VAE decode (1 image), s", r.decode_s);
    println!(
        "{:<44} {:>12.0}",
        "peak RSS before load, MB", r.rss_before_load_mb
    );
    println!("{:<44} {:>12.0}", "peak RSS, MB", r.rss_peak_mb);
    Ok(())
}
