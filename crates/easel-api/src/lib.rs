//! The HTTP API (axum): the native API under `/v1`, the OpenAPI document and docs page,
//! metrics and health, and the web UI (`ui`). Dialect modules (added beside `native`) translate their wire formats
//! onto the same core calls in `service`; they never talk to each other.
//!
//! `server::start` assembles a whole Easel process (store, queue, workers, background loops,
//! HTTP) and is what the binary and the end-to-end tests run.

pub mod auth;
pub mod dialect;
pub mod error;
pub mod extract;
pub mod fastapi;
pub mod leonardo;
pub mod metrics;
pub mod native;
pub mod openai;
pub mod openapi;
pub mod replicate;
pub mod sartiq;
pub mod scenario;
pub mod server;
pub mod service;
pub mod signing;
pub mod ui;
pub mod zip;

use std::sync::Arc;
use std::time::Duration;

use easel_core::limits::Limits;
use easel_queue::Queue;
use easel_store::Store;

/// Everything a handler needs, passed explicitly as axum state.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

pub struct AppInner {
    pub store: Store,
    pub queue: Queue,
    pub limits: Limits,
    /// Base for absolute URLs in responses (`http://127.0.0.1:7878`).
    pub public_url: String,
    pub signer: signing::UrlSigner,
    pub auth: auth::Authenticator,
    pub metrics: metrics::Metrics,
    pub signed_url_ttl: Duration,
    /// How long a synchronous dialect request (OpenAI's image generations and edits) waits.
    pub sync_timeout: Duration,
    /// The diffusion engine this process's workers use; requests that need a model right
    /// away (text embeddings) share its pipeline cache and device lock.
    pub engine: Arc<easel_providers::diffusion::Engine>,
    /// Which image URLs requests may name for the server to fetch.
    pub fetch_images: service::FetchImages,
    /// `<data-dir>/models`: where scans look and tiny models are written.
    pub models_dir: std::path::PathBuf,
    /// Downloads from the hub (`native::pulls`): the binary's function, and those run.
    pub puller: Option<native::pulls::Puller>,
    pub pulls: native::pulls::Pulls,
    /// Whether models are registered from the folder (at start and on a miss).
    pub scan_models: bool,
    /// The models folder's modification time at the last scan (`service::rescan`); its lock
    /// makes scans take turns.
    pub models_seen: tokio::sync::Mutex<Option<std::time::SystemTime>>,
    /// The prepaid credit prices the operator publishes (`--credit-prices`).
    pub credit_prices: Vec<easel_core::usage::CreditPrice>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}
