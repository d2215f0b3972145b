//! `easel bench diffusion`: prints the engine's measurements (`easel_diffusion::bench`).

use anyhow::Result;
use easel_diffusion::bench::Options;

pub fn run(o: &Options) -> Result<()> {
    let size = o.size;
    let r = easel_diffusion::bench::run(o).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "easel bench diffusion ({}, {size}x{size}, {}, {}, {})",
        match (r.tiny, r.family) {
            (true, f) => format!("tiny {f} architecture"),
            (false, "sana") => "Sana 600M-512px architecture, random weights".to_string(),
            (false, f) => match &r.model {
                Some(m) => format!(
                    "{} folder {}",
                    easel_diffusion::family::by_name(f).map_or(f, |f| f.label),
                    m.display()
                ),
                None => "SD 1.5 architecture, random weights".to_string(),
            },
        },
        match (o.precision, r.device.as_str()) {
            (easel_diffusion::kernels::Precision::F32, _) => "f32".to_string(),
            (p, "cpu") => format!(
                "{p} ({:?} kernel)",
                easel_diffusion::kernels::bf16::kernel()
            ),
            (p, _) => p.to_string(),
        },
        match r.device.as_str() {
            "cpu" => format!("CPU, {} threads", r.threads),
            d => d.to_string(),
        },
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
    if r.model.is_none() {
        println!("{:<44} {:>12.2}", "random weights written, s", r.write_s);
    }
    println!("{:<44} {:>12.5}", "model load, s", r.load_s);
    println!(
        "{:<44} {:>12.5}",
        "text encode (one prompt, warm), s", r.encode_s
    );
    println!("{:<44} {:>12.5}", "first step (warm-up), s", r.first_step_s);
    println!("{:<44} {:>12.5}", format!("{}, s", r.step_label), r.step_s);
    println!("{:<44} {:>12.5}", "VAE decode (1 image), s", r.decode_s);
    if let Some(s) = r.tiny_vae_decode_s {
        println!("{:<44} {:>12.5}", "TAESD decode (1 image), s", s);
    }
    println!(
        "{:<44} {:>12.0}",
        "peak RSS before load, MB", r.rss_before_load_mb
    );
    for (name, mb) in &r.rss_components_mb {
        println!(
            "{:<44} {:>12.0}",
            format!("RSS after loading the {name}, MB"),
            mb
        );
    }
    println!("{:<44} {:>12.0}", "RSS after load, MB", r.rss_after_load_mb);
    println!(
        "{:<44} {:>12.0}",
        "RSS after the steps, MB", r.rss_after_steps_mb
    );
    println!(
        "{:<44} {:>12.0}",
        "RSS after decode, MB", r.rss_after_decode_mb
    );
    println!("{:<44} {:>12.0}", "peak RSS, MB", r.rss_peak_mb);
    Ok(())
}
