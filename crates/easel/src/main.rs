//! `easel`: the command line. `serve` runs the whole server; `worker` runs workers only
//! (against a shared PostgreSQL + S3); `keys`, `models` and `jobs` administer the data dir or
//! database directly; `generate` runs the diffusion engine locally; `bench` measures.

mod admin;
mod bench;
mod bench_diffusion;
mod config;
mod generate;
mod pull;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "easel",
    version,
    about = "Easel: a self-hosted image-generation server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server: HTTP API, in-process workers, webhooks (embedded defaults: no
    /// configuration needed).
    Serve(config::ServeArgs),
    /// Run workers only, sharing the database and blob store of a server.
    Worker(config::ServeArgs),
    /// Create, list and revoke API keys.
    Keys(admin::KeysArgs),
    /// List, add, remove and scan registry models; pull models from the Hugging Face hub.
    Models(admin::ModelsArgs),
    /// List, show and cancel jobs.
    Jobs(admin::JobsArgs),
    /// Generate images locally, without a server (txt2img, img2img with --init-image,
    /// inpaint with --mask), with a progress bar.
    Generate(generate::GenerateArgs),
    /// Benchmarks (`easel bench queue`).
    Bench(bench::BenchArgs),
}

/// Weights are views of their mapped files (`easel_diffusion::memory`): loading a model is
/// reading its headers (and copying the few weights a layer lays out anew).
#[global_allocator]
static ALLOCATOR: easel_diffusion::memory::Allocator = easel_diffusion::memory::Allocator;

fn main() -> std::process::ExitCode {
    // Before any thread starts: the engine's large buffers come from the heap and are reused
    // (`easel_diffusion::memory`).
    easel_diffusion::memory::keep_freed_memory();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => config::serve(a, true).await,
        Command::Worker(a) => config::serve(a, false).await,
        Command::Keys(a) => admin::keys(a).await,
        Command::Models(a) => admin::models(a).await,
        Command::Jobs(a) => admin::jobs(a).await,
        Command::Generate(a) => tokio::task::spawn_blocking(move || generate::run(a))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("generate panicked: {e}"))),
        Command::Bench(a) => bench::run(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
