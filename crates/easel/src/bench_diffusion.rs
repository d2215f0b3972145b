//! `easel bench diffusion`: prints the engine's measurements (`easel_diffusion::bench`).

use anyhow::Result;
use easel_diffusion::bench::Options;

pub fn run(o: &Options) -> Result<()> {
    let size = o.size;
    let r = easel_diffusion::bench::run(o).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "easel bench diffusion ({}, {size}x{size}, {}, CPU, {} threads, {})",
        match (r.tiny, r.family) {
            (true, f) => format!("tiny {f} architecture"),
            (false, "sana") => "Sana 600M-512px architecture, random weights".to_string(),
            (false, _) => match &r.model {
                Some(m) => format!("SD 1.5 folder {}", m.display()),
                None => "SD 1.5 architecture, random weights".to_string(),
            },
        },
        match o.precision {
            easel_diffusion::kernels::Precision::F32 => "f32".to_string(),
            p => format!(
                "{p} ({:?} kernel)",
                easel_diffusion::kernels::bf16::kernel()
            ),
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
    if r.model.is_none() {
        println!("{:<44} {:>12.2}", "random weights written, s", r.write_s);
    }
    println!("{:<44} {:>12.3}", "model load, s", r.load_s);
    println!(
        "{:<44} {:>12.3}",
        "text encode (one prompt, warm), s", r.encode_s
    );
    println!("{:<44} {:>12.3}", "first step (warm-up), s", r.first_step_s);
    println!("{:<44} {:>12.3}", format!("{}, s", r.step_label), r.step_s);
    println!("{:<44} {:>12.3}", "VAE decode (1 image), s", r.decode_s);
    if let Some(s) = r.tiny_vae_decode_s {
        println!("{:<44} {:>12.3}", "TAESD decode (1 image), s", s);
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
