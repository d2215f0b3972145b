//! `easel bench queue`: end-to-end throughput of a tiny image task through the HTTP API, the
//! latency of one such job, and `GET /v1/jobs/{id}` requests per second, against a server on
//! a temporary SQLite data folder (or `--database-url`), with in-process workers or
//! `--separate-workers` processes (`easel worker`, as a scale-out deployment runs them).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use futures::stream::{self, StreamExt};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    cmd: BenchCmd,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Jobs per second end to end, and job reads per second.
    Queue {
        /// Jobs to run.
        #[arg(long, default_value_t = 500)]
        jobs: usize,
        /// GET requests to time.
        #[arg(long, default_value_t = 5000)]
        gets: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// In-process workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Run the workers as this many `easel worker` processes instead (the API process
        /// then runs none).
        #[arg(long, default_value_t = 0)]
        separate_workers: usize,
        /// Whether the processes listen for each other's notices (PostgreSQL `LISTEN`);
        /// `false` measures the timers alone.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        notices: bool,
        /// Jobs timed one at a time for the latency of a single job.
        #[arg(long, default_value_t = 20)]
        latency_jobs: usize,
        /// Database (default: SQLite in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The diffusion engine (CPU by default): a family's full-size architecture with random
    /// weights (written to a temporary folder and loaded like a real model): SD 1.5, or Sana
    /// 600M-512px with its Gemma-2-2B text encoder and DC-AE (about 14 GB of memory); or an
    /// SD folder (`--model`).
    Diffusion {
        /// `sd15` or `sana` (with `--model`, the folder's SD family is read off its UNet).
        #[arg(long, default_value = "sd15")]
        family: String,
        /// Image side in pixels (a multiple of 8; of 32 for Sana; default 256, Sana 512).
        #[arg(long)]
        size: Option<usize>,
        /// Denoiser steps to time (each with guidance: SD batch 2, Sana CFG + PAG batch 3).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// The family's tiny architecture instead (to check the command quickly).
        #[arg(long)]
        tiny: bool,
        /// Measure this diffusers SD folder (`unet/`, `vae/`, `text_encoder/`) instead of
        /// writing random weights (as `scripts/bench_vs_diffusers.py` does, so that both
        /// engines time the same files).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// `f32`, or `bf16`: the kernels' convolution and linear weights in bf16, products in bf16 with
        /// f32 sums (AMX or AVX-512 BF16 where the CPU has them); on a GPU also `f16` (the
        /// family's f16 parts: SD's UNet and CLIP, its VAE in f32).
        #[arg(long, default_value = "f32")]
        precision: easel_diffusion::kernels::Precision,
        /// `cpu`, `cuda`, `cuda:N` or `metal` (a build with that feature).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

pub async fn run(a: BenchArgs) -> Result<()> {
    match a.cmd {
        BenchCmd::Queue {
            jobs,
            gets,
            concurrency,
            workers,
            separate_workers,
            notices,
            latency_jobs,
            database_url,
        } => {
            let setup = QueueSetup {
                workers,
                separate_workers,
                notices,
                database_url,
            };
            queue(jobs, gets, concurrency, latency_jobs, setup).await
        }
        BenchCmd::Diffusion {
            family,
            size,
            steps,
            tiny,
            model,
            precision,
            device,
        } => {
            let size = size.unwrap_or(if family == "sana" { 512 } else { 256 });
            let o = easel_diffusion::bench::Options {
                family,
                size,
                steps,
                tiny,
                model,
                precision,
                device,
            };
            tokio::task::spawn_blocking(move || crate::bench_diffusion::run(&o)).await?
        }
    }
}

fn tiny_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

/// Where the bench's jobs run.
struct QueueSetup {
    workers: usize,
    separate_workers: usize,
    notices: bool,
    database_url: Option<String>,
}

/// `easel worker` processes, killed when dropped.
struct WorkerProcs(Vec<std::process::Child>);

impl Drop for WorkerProcs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Submit one `convert` job of `asset`; its id.
async fn submit_convert(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    asset: &str,
) -> Result<String> {
    let body = serde_json::json!({"task": "convert", "input": {"image": asset, "format": "png"}});
    let r: serde_json::Value = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    r["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("create failed: {r}"))
}

/// Long-poll a job until it ends; an error unless it succeeded.
async fn wait_succeeded(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Result<()> {
    let r: serde_json::Value = http
        .get(format!("{base}/v1/jobs/{id}?wait=60"))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    if r["status"] != "succeeded" {
        bail!("job {id} ended {}", r["status"]);
    }
    Ok(())
}

async fn queue(
    jobs: usize,
    gets: usize,
    concurrency: usize,
    latency_jobs: usize,
    setup: QueueSetup,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = easel_api::server::Config::embedded(dir.path());
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.workers = if setup.separate_workers > 0 {
        0
    } else {
        setup.workers
    };
    cfg.database_url = setup.database_url.clone();
    cfg.listen_notices = setup.notices;
    cfg.admin_key = Some("bench-admin-key-0123456789".into());
    cfg.rate_limit.per_second = 1e9;
    cfg.rate_limit.burst = 1e9;
    cfg.queue.poll_interval = Duration::from_millis(50);
    let srv = easel_api::server::start(cfg)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut procs = WorkerProcs(Vec::new());
    for _ in 0..setup.separate_workers {
        let mut c = std::process::Command::new(std::env::current_exe()?);
        c.args(["worker", "--workers", "1", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-notices", &setup.notices.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        if let Some(url) = &setup.database_url {
            c.args(["--database-url", url]);
        }
        procs.0.push(c.spawn()?);
    }
    let base = format!("http://{}", srv.addr);
    let key = "bench-admin-key-0123456789";
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let up: serde_json::Value = http
        .post(format!("{base}/v1/assets"))
        .bearer_auth(key)
        .header("content-type", "image/png")
        .body(tiny_png())
        .send()
        .await?
        .json()
        .await?;
    let asset = up["id"]
        .as_str()
        .ok_or_else(|| anyhow!("upload failed: {up}"))?
        .to_string();

    let started = Instant::now();
    let ids: Vec<String> = stream::iter(0..jobs)
        .map(|_| submit_convert(&http, &base, key, &asset))
        .buffer_unordered(concurrency)
        .collect::<Vec<Result<String>>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let submitted = started.elapsed();
    for id in &ids {
        wait_succeeded(&http, &base, key, id).await?;
    }
    let done = started.elapsed();

    // One job at a time: submit, then a long-poll until it ends.
    let mut latencies = Vec::with_capacity(latency_jobs);
    for _ in 0..latency_jobs {
        let t = Instant::now();
        let id = submit_convert(&http, &base, key, &asset).await?;
        wait_succeeded(&http, &base, key, &id).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };

    let first = ids.first().cloned().unwrap_or_default();
    let t = Instant::now();
    let ok = stream::iter(0..gets)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/v1/jobs/{first}"));
            async move {
                http.get(url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let get_time = t.elapsed();
    drop(procs);
    srv.shutdown().await;

    let backend = match &setup.database_url {
        Some(u) if u.starts_with("postgres") => "PostgreSQL",
        _ => "SQLite",
    };
    let workers = match setup.separate_workers {
        0 => format!("{} in-process workers", setup.workers),
        n => format!("{n} worker processes"),
    };
    println!(
        "easel bench queue ({backend}, {workers}, notices {}, {concurrency} clients, {})",
        if setup.notices { "on" } else { "off" },
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    println!("{:<44} {:>12}", "measure", "value");
    println!(
        "{:<44} {:>12.1}",
        format!("submit rate, jobs/s ({jobs} jobs)"),
        jobs as f64 / submitted.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.1}",
        "end-to-end throughput, jobs/s",
        jobs as f64 / done.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.1}",
        format!("one job end to end, median ms ({latency_jobs})"),
        pct(0.5)
    );
    println!("{:<44} {:>12.1}", "one job end to end, p90 ms", pct(0.9));
    println!(
        "{:<44} {:>12.1}",
        format!("GET /v1/jobs/{{id}}, requests/s ({ok} ok)"),
        gets as f64 / get_time.as_secs_f64()
    );
    Ok(())
}
