//! Configuration: each setting comes from its flag, else its `EASEL_*` environment variable,
//! else `easel.toml` (`--config`, default `./easel.toml` when present), else the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use easel_api::server::{self, Config};
use serde::Deserialize;

/// Where the data lives; shared by every command.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Data folder: SQLite database, blobs, models, admin.key.
    #[arg(long, env = "EASEL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data folder).
    #[arg(long, env = "EASEL_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Blob store URL: file:///PATH or s3://BUCKET/PREFIX (AWS_* variables; EASEL_S3_ENDPOINT
    /// for other S3 servers). Default: the data folder's blobs/.
    #[arg(long, env = "EASEL_STORE_URL", global = true)]
    pub store_url: Option<String>,
    /// Configuration file (default: ./easel.toml if it exists).
    #[arg(long, env = "EASEL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on (default 127.0.0.1:7878).
    #[arg(long, env = "EASEL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Base of absolute URLs in responses (default http://<listen>).
    #[arg(long, env = "EASEL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// In-process workers for image tools and remote generations (default 2), beside one for
    /// local generations on the device; 0 serves the API only.
    #[arg(long, env = "EASEL_WORKERS")]
    pub workers: Option<usize>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "EASEL_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Largest request body in bytes (default 25 MB).
    #[arg(long, env = "EASEL_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest image in pixels, input or output (default 40,000,000).
    #[arg(long, env = "EASEL_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Queued jobs one owner may have at once (default 5000).
    #[arg(long, env = "EASEL_MAX_QUEUED_PER_OWNER")]
    pub max_queued_per_owner: Option<u64>,
    /// Requests per second per API key (token bucket refill; default 100).
    #[arg(long, env = "EASEL_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// Burst size of the per-key token bucket (default 500).
    #[arg(long, env = "EASEL_RATE_BURST")]
    pub rate_burst: Option<f64>,
    /// Seconds running jobs may take to finish on shutdown before they are requeued (default 30).
    #[arg(long, env = "EASEL_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
    /// Seconds a worker's lease lasts without a heartbeat (default 30).
    #[arg(long, env = "EASEL_LEASE_SECONDS")]
    pub lease_seconds: Option<u64>,
    /// Device of the diffusion engine: cpu, cuda, cuda:N, metal or auto (default cpu).
    #[arg(long, env = "EASEL_DEVICE")]
    pub device: Option<String>,
    /// Precision of the local models: f32 (default); bf16 (on the CPU the convolution and
    /// linear layers' weights and products: half the weight memory, faster where the CPU has
    /// AMX or AVX-512 BF16; on a GPU every part); f16 (GPUs: SD's UNet and CLIP, its VAE f32).
    #[arg(long, env = "EASEL_PRECISION")]
    pub precision: Option<String>,
    /// Diffusion pipelines kept loaded; the least recently used is unloaded first (default 1).
    #[arg(long, env = "EASEL_MAX_LOADED_MODELS")]
    pub max_loaded_models: Option<usize>,
    /// Weights kept loaded, e.g. `12GiB`, `8G`, `500MB` (default: no limit but the count).
    #[arg(long, env = "EASEL_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// Largest generated image in pixels, width × height (default 4,194,304 = 2048×2048;
    /// never above --max-pixels).
    #[arg(long, env = "EASEL_MAX_GEN_PIXELS")]
    pub max_gen_pixels: Option<u64>,
    /// Most denoising steps per image (default 150).
    #[arg(long, env = "EASEL_MAX_STEPS")]
    pub max_steps: Option<u32>,
    /// Most images per generation job (default 8).
    #[arg(long, env = "EASEL_MAX_IMAGES")]
    pub max_images: Option<u32>,
    /// Largest file sent as an upload in parts, e.g. `256MiB` (the default).
    #[arg(long, env = "EASEL_MAX_UPLOAD")]
    pub max_upload: Option<String>,
    /// Seconds a synchronous request (OpenAI's image generations and edits) waits for its
    /// job before answering that it is still running (default 300).
    #[arg(long, env = "EASEL_SYNC_TIMEOUT")]
    pub sync_timeout: Option<u64>,
    /// Prepaid credit prices to publish (Scenario's `GET /oscu/prices`), comma-separated
    /// `CREDITS:AMOUNT:CURRENCY` with AMOUNT in minor units: `1000:1000:usd,5000:4500:usd`.
    #[arg(long, env = "EASEL_CREDIT_PRICES")]
    pub credit_prices: Option<String>,
    /// Image URLs requests may name for the server to fetch: `public` (default: http(s)
    /// URLs whose host resolves to public addresses only), `any` (also loopback and private
    /// networks), `off` (only data: URLs, asset ids and this server's asset URLs).
    #[arg(long, env = "EASEL_FETCH_IMAGES")]
    pub fetch_images: Option<String>,
    /// Webhook receivers allowed besides public addresses, comma-separated: networks
    /// (`10.0.0.0/8`, `fd00::/8`), addresses, or host names (`hooks.internal`). By default a
    /// webhook URL whose host resolves to a loopback, private or link-local address is refused.
    #[arg(long, env = "EASEL_WEBHOOK_ALLOW")]
    pub webhook_allow: Option<String>,
    /// Folders besides `<data-dir>/models` that local model weights may be read from,
    /// comma-separated absolute paths. A registered `source` elsewhere is refused.
    #[arg(long, env = "EASEL_MODEL_ROOTS", value_delimiter = ',')]
    pub model_roots: Option<Vec<PathBuf>>,
    /// Seconds after which a blob that a crash left without its asset row is deleted
    /// (default 600; longer than any upload or output write takes).
    #[arg(long, env = "EASEL_ORPHAN_GRACE")]
    pub orphan_grace: Option<u64>,
    /// Listen for other processes' notices on PostgreSQL (`LISTEN`: workers claim new jobs
    /// at once, revocations reach every API process). Turn off behind a connection pooler in
    /// transaction mode, where `LISTEN` cannot work; timers then do it (default true).
    #[arg(long, env = "EASEL_LISTEN_NOTICES")]
    pub listen_notices: Option<bool>,
}

/// `easel.toml`: the same settings as the flags, by their long names with underscores.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub store_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub workers: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_pixels: Option<u64>,
    pub max_queued_per_owner: Option<u64>,
    pub rate_limit: Option<f64>,
    pub rate_burst: Option<f64>,
    pub shutdown_grace: Option<u64>,
    pub lease_seconds: Option<u64>,
    pub device: Option<String>,
    pub precision: Option<String>,
    pub max_loaded_models: Option<usize>,
    pub memory_budget: Option<String>,
    pub max_gen_pixels: Option<u64>,
    pub max_steps: Option<u32>,
    pub max_images: Option<u32>,
    pub max_upload: Option<String>,
    pub sync_timeout: Option<u64>,
    pub credit_prices: Option<String>,
    pub fetch_images: Option<String>,
    pub webhook_allow: Option<Vec<String>>,
    pub model_roots: Option<Vec<PathBuf>>,
    pub orphan_grace: Option<u64>,
    pub listen_notices: Option<bool>,
}

/// Bytes from `12GiB`, `8G`, `500MB`, `1.5TB` or a plain number of bytes (K, M, G, T are
/// powers of 1024, with or without `i` and `B`).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a size like 12GiB"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => anyhow::bail!("`{s}`: unknown unit (use K, M, G or T)"),
    };
    Ok((n * mult as f64) as u64)
}

pub fn read_file_config(path: Option<&Path>) -> Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("easel.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => toml::from_str(&s).with_context(|| format!("reading {}", path.display())),
        Err(_) if !required => Ok(FileConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The server configuration from flags, environment and file.
pub fn build(args: &ServeArgs, http: bool) -> Result<Config> {
    let file = read_file_config(args.store.config.as_deref())?;
    let data_dir = args
        .store
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("easel-data"));
    let mut cfg = Config::embedded(data_dir);
    cfg.http = http;
    cfg.database_url = args.store.database_url.clone().or(file.database_url);
    cfg.store_url = args.store.store_url.clone().or(file.store_url);
    if let Some(l) = args.listen.or(file.listen) {
        cfg.listen = l;
    }
    cfg.public_url = args.public_url.clone().or(file.public_url);
    if let Some(w) = args.workers.or(file.workers) {
        cfg.workers = w;
    }
    if let Some(v) = args.max_body_bytes.or(file.max_body_bytes) {
        cfg.limits.max_body_bytes = v;
    }
    if let Some(v) = args.max_pixels.or(file.max_pixels) {
        cfg.limits.max_pixels = v;
    }
    if let Some(v) = args.max_queued_per_owner.or(file.max_queued_per_owner) {
        cfg.limits.max_queued_per_owner = v;
    }
    if let Some(v) = args.rate_limit.or(file.rate_limit) {
        cfg.rate_limit.per_second = v;
    }
    if let Some(v) = args.rate_burst.or(file.rate_burst) {
        cfg.rate_limit.burst = v;
    }
    if let Some(v) = args.shutdown_grace.or(file.shutdown_grace) {
        cfg.queue.shutdown_grace = Duration::from_secs(v);
    }
    if let Some(v) = args.lease_seconds.or(file.lease_seconds) {
        cfg.queue.lease = Duration::from_secs(v.max(1));
    }
    if let Some(v) = args.device.clone().or(file.device) {
        cfg.engine.device = v;
    }
    if let Some(v) = args.precision.clone().or(file.precision) {
        cfg.engine.precision = v
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--precision: {e}"))?;
    }
    if let Some(v) = args.max_loaded_models.or(file.max_loaded_models) {
        anyhow::ensure!(v >= 1, "--max-loaded-models must be at least 1");
        cfg.engine.max_loaded_models = v;
    }
    if let Some(v) = args.memory_budget.clone().or(file.memory_budget) {
        cfg.engine.memory_budget = Some(parse_bytes(&v).context("--memory-budget")?);
    }
    if let Some(v) = args.max_gen_pixels.or(file.max_gen_pixels) {
        cfg.limits.max_gen_pixels = v.max(64 * 64);
    }
    if let Some(v) = args.max_steps.or(file.max_steps) {
        cfg.limits.max_steps = v.max(1);
    }
    if let Some(v) = args.max_images.or(file.max_images) {
        cfg.limits.max_images = v.max(1);
    }
    if let Some(v) = args.max_upload.clone().or(file.max_upload) {
        cfg.limits.max_upload_bytes = parse_bytes(&v).context("--max-upload")?.max(1);
    }
    if let Some(v) = args.sync_timeout.or(file.sync_timeout) {
        cfg.sync_timeout = Duration::from_secs(v);
    }
    if let Some(v) = args.credit_prices.clone().or(file.credit_prices) {
        cfg.credit_prices = easel_core::usage::parse_prices(&v)
            .map_err(|e| anyhow::anyhow!("--credit-prices: {}", e.message))?;
    }
    if let Some(v) = args.fetch_images.clone().or(file.fetch_images) {
        cfg.fetch_images = easel_api::service::FetchImages::parse(&v).ok_or_else(|| {
            anyhow::anyhow!("--fetch-images: `off`, `public` or `any`, not `{v}`")
        })?;
    }
    if let Some(v) = args.orphan_grace.or(file.orphan_grace) {
        cfg.orphan_grace = Duration::from_secs(v);
    }
    if let Some(v) = args.listen_notices.or(file.listen_notices) {
        cfg.listen_notices = v;
    }
    if let Some(roots) = args.model_roots.clone().or(file.model_roots) {
        cfg.engine.model_roots = roots;
    }
    let allow = match (&args.webhook_allow, file.webhook_allow) {
        (Some(list), _) => easel_net::Allow::parse_list(list),
        (None, Some(list)) => list.iter().map(|a| easel_net::Allow::parse(a)).collect(),
        (None, None) => Ok(Vec::new()),
    };
    cfg.queue.webhook_policy =
        easel_net::Policy::allowing(allow.map_err(|e| anyhow::anyhow!("--webhook-allow: {e}"))?);
    cfg.admin_key = std::env::var("EASEL_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    Ok(cfg)
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colours only on a terminal (not in redirected output or a service's journal).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// `easel serve` / `easel worker`: run until SIGINT or SIGTERM, then shut down gracefully.
pub async fn serve(args: ServeArgs, http: bool) -> Result<()> {
    init_logging(&args.log_format);
    let mut cfg = build(&args, http)?;
    // Admins pull models from the hub over the API with the CLI's code,
    // and users import LoRAs from it.
    cfg.pull = Some(easel_api::native::pulls::Puller {
        pull: std::sync::Arc::new(crate::pull::start),
        lora: Some(std::sync::Arc::new(crate::pull::start_lora)),
    });
    let grace = cfg.queue.shutdown_grace;
    let workers = cfg.workers;
    let device = cfg.engine.device.clone();
    let precision = cfg.engine.precision;
    let data_dir = cfg.data_dir.clone();
    let stop = shutdown_signal()?;
    let srv = server::start(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(key) = &srv.generated_admin_key {
        println!(
            "Admin API key (shown once; also saved to {}):",
            data_dir.join("admin.key").display()
        );
        println!("  {key}");
    }
    let st = &srv.state;
    let models = easel_store::models::list(&st.store.db, easel_store::models::Scope::Server, 0, 1)
        .await
        .map(|(_, n)| n)
        .unwrap_or(0);
    let database = st.store.db.display_url();
    // How the engine takes model weights: views of their mapped files, or read into memory
    // (`EASEL_MAP_WEIGHTS=0`, or a system that refuses the mapping).
    let weights = if easel_diffusion::memory::mapping_available() {
        "mapped"
    } else {
        "read"
    };
    if http {
        tracing::info!(
            url = %st.public_url,
            ui = %format!("{}/", st.public_url),
            docs = %format!("{}/docs", st.public_url),
            data_dir = %data_dir.display(),
            database = %database,
            store = %st.store.blobs.url(),
            models,
            workers,
            device = %device,
            precision = %precision,
            weights,
            "Easel is listening"
        );
    } else {
        tracing::info!(data_dir = %data_dir.display(), database = %database, store = %st.store.blobs.url(), models, workers, device = %device, precision = %precision, weights, "Easel worker started");
    }
    stop.await;
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: finishing running jobs"
    );
    srv.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. Made before the server starts, so a signal that comes as
/// soon as it serves (a supervisor, a test) finds the handlers in place.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("12GiB").unwrap(), 12 << 30);
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("500 MB").unwrap(), 500 << 20);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
