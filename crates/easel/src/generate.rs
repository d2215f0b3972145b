//! `easel generate`: run the diffusion engine locally, without a server or a database, with
//! a progress bar on stderr. The request goes through the same validation and defaults as
//! the API (`TaskInput::parse`, `GenerateInput::fill_defaults`) and the same engine code as
//! the `local` provider (`easel_providers::diffusion::generate`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use easel_core::generate::LoraRef;
use easel_core::limits::Limits;
use easel_core::task::TaskInput;
use easel_providers::diffusion::{self, Engine, EngineConfig, LoadSpec, Prepared};
use easel_queue::{RunContext, RunError};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What to draw (A1111 syntax: `(word:1.3)`, `BREAK`; long prompts are chunked).
    pub prompt: String,
    /// A model folder or `.safetensors` file, or the name of one in `<data-dir>/models/`.
    #[arg(long, short)]
    pub model: String,
    /// Output file; its extension picks the format (png, jpg, webp). With `--count` above 1,
    /// image i is written as `<stem>-<i>.<ext>`.
    #[arg(long, short, default_value = "out.png")]
    pub output: PathBuf,
    /// Replace output files that exist (otherwise they are refused before anything runs).
    #[arg(long)]
    pub force: bool,
    /// What not to draw (same syntax as the prompt).
    #[arg(long)]
    pub negative: Option<String>,
    /// Denoising steps, 1 to 150 [default: the family's: 30; Sana 20].
    #[arg(long)]
    pub steps: Option<u32>,
    /// Guidance scale, 0 to 30; 1 or less turns it off [default: the family's: 7.5; SDXL 5;
    /// Sana 4.5].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Perturbed-attention guidance scale (Sana models; above 0: on).
    #[arg(long)]
    pub pag: Option<f32>,
    /// Image i uses seed + i (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scheduler: a diffusers class name or a short name (euler_a, dpmpp_2m_karras, ddim, …).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Image width, a multiple of 8 from 64 [default: the init image's, else the family's:
    /// 512; SD 2 768; SDXL and Sana 1024].
    #[arg(long)]
    pub width: Option<u32>,
    /// Image height, as `--width`.
    #[arg(long)]
    pub height: Option<u32>,
    /// Images to make (1 to 8); image i uses seed + i.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Init image: img2img (or inpaint with `--mask`).
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// How much of the init image to repaint (0 to 1).
    #[arg(long)]
    pub strength: Option<f32>,
    /// Inpaint mask (white = repaint); needs `--init-image`.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// A LoRA file and its scale, `FILE:SCALE` (scale defaults to 1); repeatable.
    #[arg(long = "lora")]
    pub loras: Vec<String>,
    /// For single-file checkpoints: a folder with the tokenizer(s) (default: a diffusers
    /// model of the same family beside the file).
    #[arg(long)]
    pub support_dir: Option<PathBuf>,
    /// cpu, cuda, cuda:N, metal or auto.
    #[arg(long, default_value = "cpu", env = "EASEL_DEVICE")]
    pub device: String,
    /// f32; bf16 (on the CPU the kernels' convolution and linear weights in bf16, products in
    /// bf16 with f32 sums; on a GPU every part); f16 (GPUs: SD's UNet and CLIP, its VAE f32).
    #[arg(long, default_value = "f32", env = "EASEL_PRECISION")]
    pub precision: easel_diffusion::kernels::Precision,
    /// 1 to 100, for JPEG and WebP.
    #[arg(long)]
    pub quality: Option<u8>,
    /// What decodes the image: `vae` (the model's) or `taesd` (the tiny autoencoder in
    /// `<data-dir>/models/vae_approx/`: several times faster, softer) [default: vae].
    #[arg(long)]
    pub decoder: Option<String>,
    #[command(flatten)]
    pub store: crate::config::StoreArgs,
}

/// Resolve `--model`: a path, or a name under `<data-dir>/models/`.
fn find_model(spec: &str, data_dir: &Path) -> Result<PathBuf> {
    let p = PathBuf::from(spec);
    if p.exists() {
        return Ok(p);
    }
    let models = data_dir.join("models");
    for cand in [
        models.join(spec),
        models.join(format!("{spec}.safetensors")),
    ] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    bail!(
        "no model `{spec}`: not a path, and not in {} (run `easel models list` or `easel models pull`)",
        models.display()
    )
}

fn parse_lora(s: &str) -> Result<(PathBuf, f32)> {
    let (file, scale) = match s.rsplit_once(':') {
        Some((f, sc)) if sc.parse::<f32>().is_ok() => (f, sc.parse::<f32>()?),
        _ => (s, 1.0),
    };
    let file = PathBuf::from(file);
    if !file.is_file() {
        bail!("--lora {s}: no such file");
    }
    Ok((file, scale))
}

fn output_path(base: &Path, i: u32, count: u32) -> PathBuf {
    if count <= 1 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = base.extension().and_then(|s| s.to_str()).unwrap_or("png");
    base.with_file_name(format!("{stem}-{i}.{ext}"))
}

fn draw_bar(done: u32, total: u32, started: Instant) {
    let width = 30;
    let filled = (done as usize * width) / total.max(1) as usize;
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let _ = write!(
        std::io::stderr(),
        "\r[{}{}] step {done}/{total}  {rate:.2} it/s  {secs:.1}s ",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let file = crate::config::read_file_config(args.store.config.as_deref())?;
    let data_dir = args
        .store
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("easel-data"));
    let source = find_model(&args.model, &data_dir)?;
    let found = easel_providers::discover::inspect(&source).with_context(|| {
        format!(
            "{} is not a diffusers folder or a checkpoint",
            source.display()
        )
    })?;
    if found.lora {
        bail!("{} is a LoRA; pass it with --lora", source.display());
    }
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("png")
        .to_ascii_lowercase();
    let format = match ext.as_str() {
        "png" => "png",
        "jpg" | "jpeg" => "jpeg",
        "webp" => "webp",
        other => bail!("-o: unknown image extension `.{other}` (png, jpg, webp)"),
    };
    let loras = args
        .loras
        .iter()
        .map(|s| parse_lora(s))
        .collect::<Result<Vec<_>>>()?;
    let task = match (&args.init_image, &args.mask) {
        (None, None) => "txt2img",
        (Some(_), None) => "img2img",
        (Some(_), Some(_)) => "inpaint",
        (None, Some(_)) => bail!("--mask needs --init-image"),
    };
    let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
        p.as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    if !args.force {
        let count = args.count.max(1);
        if let Some(p) = (0..count)
            .map(|i| output_path(&args.output, i, count))
            .find(|p| p.exists())
        {
            bail!(
                "{} exists; choose another -o or pass --force to replace it",
                p.display()
            );
        }
    }
    let init = read(&args.init_image)?;
    let mask = read(&args.mask)?;
    // Validate exactly as the API does; images are placeholders for the parser.
    const PLACEHOLDER: &str = "ast_00000000000000000000000000";
    let input = serde_json::json!({
        "prompt": args.prompt, "negative_prompt": args.negative, "steps": args.steps,
        "guidance": args.guidance, "pag_guidance": args.pag, "seed": args.seed, "scheduler": args.scheduler,
        "width": args.width, "height": args.height, "count": args.count,
        "image": init.as_ref().map(|_| PLACEHOLDER), "mask": mask.as_ref().map(|_| PLACEHOLDER),
        "strength": args.strength, "format": format, "quality": args.quality,
        "decoder": args.decoder,
        "loras": loras.iter().map(|(p, s)| LoraRef { model: p.display().to_string(), scale: *s }).collect::<Vec<_>>(),
    });
    let input = strip_nulls(input);
    let limits = Limits::default();
    let parsed = TaskInput::parse(task, input, &limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut g = parsed.generation().cloned().expect("a generation task");
    let image_size = match &init {
        Some(b) => {
            let info = easel_imageops::probe(b).context("--init-image")?;
            Some((info.width, info.height))
        }
        None => None,
    };
    g.fill_defaults(
        task,
        &easel_diffusion::family::defaults(&found.family),
        &Default::default(),
        image_size,
        rand::random::<u32>() as u64,
    );
    g.check_limits(&limits, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    g.image = None; // no asset id: outputs have no parent
    g.mask = None;
    let r = g.resolved();
    eprintln!(
        "{task} with {} ({}): {}x{}, {} steps, guidance {}, seed {}{}",
        found.name,
        found.family,
        r.width,
        r.height,
        r.steps,
        r.guidance,
        r.seed,
        if r.count > 1 {
            format!(", {} images", r.count)
        } else {
            String::new()
        }
    );
    let prepared = Prepared {
        input: g,
        task: task.into(),
        model_name: found.name.clone(),
        model_family: found.family.clone(),
        load: LoadSpec {
            source: source.clone(),
            support: args.support_dir.clone(),
            family: found.family.clone(),
            loras: loras.iter().map(|(p, s)| (p.clone(), *s as f64)).collect(),
        },
        init,
        mask,
        init_id: None,
    };
    let engine = Engine::new(EngineConfig {
        device: args.device.clone(),
        precision: args.precision,
        // Where the family's tiny autoencoder is looked for.
        model_roots: vec![data_dir.join("models")],
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let ctx = RunContext::detached();
    let done = Arc::new(AtomicBool::new(false));
    let bar = {
        let ctx = ctx.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut last = None;
            while !done.load(Ordering::Relaxed) {
                if let Some(p) = ctx.progress() {
                    let now = (p.step.unwrap_or(0), p.total_steps.unwrap_or(1));
                    if last != Some(now) {
                        draw_bar(now.0, now.1, started);
                        last = Some(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The run is over: show where it ended, even if it ended between two polls.
            if let Some(p) = ctx.progress() {
                last = Some((p.step.unwrap_or(0), p.total_steps.unwrap_or(1)));
            }
            if let Some((d, t)) = last {
                draw_bar(d, t, started);
                eprintln!();
            }
        })
    };
    let t = Instant::now();
    let result = diffusion::generate(&engine, &prepared, &limits, &ctx);
    done.store(true, Ordering::Relaxed);
    let _ = bar.join();
    let outputs = match result {
        Ok(o) => o,
        Err(RunError::Canceled) => bail!("canceled"),
        Err(RunError::Failed(e)) => bail!("{}", e.message),
    };
    for (i, o) in outputs.iter().enumerate() {
        let path = output_path(&args.output, i as u32, outputs.len() as u32);
        std::fs::write(&path, &o.bytes).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} ({}x{}, seed {})",
            path.display(),
            o.width,
            o.height,
            o.metadata["seed"]
        );
    }
    eprintln!("done in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_and_loras() {
        assert_eq!(
            output_path(Path::new("a/b.png"), 0, 1),
            PathBuf::from("a/b.png")
        );
        assert_eq!(
            output_path(Path::new("a/b.png"), 2, 3),
            PathBuf::from("a/b-2.png")
        );
        assert!(parse_lora("/nonexistent.safetensors:0.5").is_err());
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().display().to_string();
        assert_eq!(parse_lora(&format!("{p}:0.5")).unwrap().1, 0.5);
        assert_eq!(parse_lora(&p).unwrap().1, 1.0);
    }
}
