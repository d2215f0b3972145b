//! Assemble and run a whole Easel process: open the store, make sure an admin key exists,
//! register models found on disk, start workers, the reaper and the webhook dispatcher, and
//! serve HTTP. `Server::shutdown` stops accepting work, lets running jobs finish within the
//! grace period, then releases their leases.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use easel_core::auth::Role;
use easel_core::limits::Limits;
use easel_core::{Error, Result};
use easel_queue::{Queue, QueueConfig, Worker};
use easel_store::{Blobs, Db, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, RateLimit};
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::signing::UrlSigner;
use crate::{native, openapi, AppInner, AppState};

/// Everything that configures a server. `Config::embedded(dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data-dir>/easel.db`.
    pub database_url: Option<String>,
    /// `file://…` or `s3://bucket/prefix`; default `file://<data-dir>/blobs`.
    pub store_url: Option<String>,
    /// Base of absolute URLs; default `http://<listen>`.
    pub public_url: Option<String>,
    /// In-process workers for the image tools and remote generations; with any, one more
    /// runs local generations on the engine's device (0: API only).
    pub workers: usize,
    pub limits: Limits,
    pub queue: QueueConfig,
    pub rate_limit: RateLimit,
    /// How long a verified key is trusted without asking the database again. Revocations
    /// clear the cache at once (in every process, on PostgreSQL); this bounds the rest.
    pub auth_cache_ttl: Duration,
    /// Admin key to install if none exists (`EASEL_ADMIN_KEY`).
    pub admin_key: Option<String>,
    pub signed_url_ttl: Duration,
    /// How long a synchronous dialect request (OpenAI's image generations and edits) waits
    /// for its job before answering that it is still running.
    /// Prepaid credit prices to publish (Scenario's `GET /oscu/prices`); none by default.
    pub credit_prices: Vec<easel_core::usage::CreditPrice>,
    pub sync_timeout: Duration,
    /// Register models found under `<data-dir>/models/` at start.
    pub scan_models: bool,
    /// Start the HTTP listener (false for a worker-only process).
    pub http: bool,
    /// The local diffusion engine: device and model cache.
    pub engine: easel_providers::diffusion::EngineConfig,
    /// Which image URLs requests may name for the server to fetch.
    pub fetch_images: crate::service::FetchImages,
    /// Blobs that a crash left without their asset row are deleted once their intent is
    /// this old (writes in flight in other processes finish well within it): at start, then
    /// every `orphan_grace / 2`.
    pub orphan_grace: Duration,
    /// Listen for other processes' notices (PostgreSQL `LISTEN`); off, timers do it.
    pub listen_notices: bool,
    /// Downloads from the hub for `POST /v1/models-folder/pulls` (the binary's `easel models
    /// pull`); `None` answers 501.
    pub pull: Option<crate::native::pulls::Puller>,
}

impl Config {
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: "127.0.0.1:7878".parse().expect("address"),
            data_dir: data_dir.into(),
            database_url: None,
            store_url: None,
            public_url: None,
            workers: 2,
            limits: Limits::default(),
            queue: QueueConfig::default(),
            rate_limit: RateLimit::default(),
            auth_cache_ttl: Duration::from_secs(10),
            admin_key: None,
            signed_url_ttl: Duration::from_secs(24 * 3600),
            sync_timeout: Duration::from_secs(300),
            credit_prices: Vec::new(),
            scan_models: true,
            http: true,
            engine: Default::default(),
            fetch_images: Default::default(),
            orphan_grace: Duration::from_secs(600),
            listen_notices: true,
            pull: None,
        }
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The admin key, when this start generated it (printed once by the binary).
    pub generated_admin_key: Option<String>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
}

/// Open the store at the configured URLs (creating the data dir for embedded defaults).
pub async fn open_store(cfg: &Config) -> Result<Store> {
    let dir_error = |what: &str, e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (the user running easel may not write there: choose another --data-dir or fix its permissions)"
        } else {
            ""
        };
        Error::invalid(
            "data_dir",
            format!(
                "cannot {what} the data folder {}: {e}{hint}",
                cfg.data_dir.display()
            ),
        )
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| dir_error("create", e))?;
    let data_dir = std::fs::canonicalize(&cfg.data_dir).map_err(|e| dir_error("open", e))?;
    // Writable? (SQLite and the blob store would fail later with less to say.)
    // (One name per process: several may share the folder and start at once.)
    let probe = data_dir.join(format!(
        ".easel-write-check-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| dir_error("write in", e))?;
    let db_url = cfg
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("easel.db").display()));
    let store_url = cfg
        .store_url
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
    Ok(Store {
        db: Db::connect(&db_url).await?,
        blobs: Blobs::open(&store_url)?,
    })
}

/// Make sure an admin can log in: install `admin_key` if given and unknown; otherwise, when
/// no admin key exists, generate one and write it to `<data-dir>/admin.key` (mode 0600).
pub async fn ensure_admin(
    store: &Store,
    data_dir: &std::path::Path,
    admin_key: Option<&str>,
) -> Result<Option<String>> {
    let db = &store.db;
    let admin = || async {
        let users = easel_store::users::list_users(db).await?;
        match users.into_iter().find(|u| u.role == Role::Admin) {
            Some(u) => Ok::<_, Error>(u),
            None => easel_store::users::create_user(db, "admin", Role::Admin).await,
        }
    };
    if let Some(k) = admin_key {
        if easel_store::users::authenticate(db, k).await?.is_none() {
            let user = admin().await?;
            easel_store::users::create_key(db, &user.id, "EASEL_ADMIN_KEY", Some(k)).await?;
        }
        return Ok(None);
    }
    if easel_store::users::has_admin_key(db).await? {
        return Ok(None);
    }
    let user = admin().await?;
    let (_, key) = easel_store::users::create_key(db, &user.id, "first admin key", None).await?;
    let path = data_dir.join("admin.key");
    write_secret_file(&path, &key)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(key))
}

fn write_secret_file(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")
}

/// Start a server as configured.
pub async fn start(cfg: Config) -> Result<Server> {
    let store = open_store(&cfg).await?;
    let generated_admin_key = ensure_admin(&store, &cfg.data_dir, cfg.admin_key.as_deref()).await?;
    if cfg.scan_models {
        let dir = cfg.data_dir.join("models");
        match easel_providers::discover::scan(&store.db, &dir).await {
            Ok(n) if n > 0 => {
                tracing::info!(count = n, dir = %dir.display(), "registered models found on disk")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scanning the models folder failed"),
        }
    }
    let secret = easel_store::settings::get_or_init(
        &store.db,
        "url_signing_secret",
        easel_store::settings::random_hex,
    )
    .await?;
    let mut queue_cfg = cfg.queue.clone();
    queue_cfg.max_attempts = cfg.limits.max_attempts;
    queue_cfg.max_queued_per_owner = cfg.limits.max_queued_per_owner;
    let queue = Queue::new(store.clone(), queue_cfg);

    let listener = if cfg.http {
        Some(
            tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| {
                    Error::invalid("listen", format!("cannot listen on {}: {e}", cfg.listen))
                })?,
        )
    } else {
        None
    };
    let addr = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(cfg.listen);
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let mut engine_cfg = cfg.engine.clone();
    engine_cfg.model_roots = model_roots(&cfg)?;
    engine_cfg.lora_cache = cfg.data_dir.join("cache").join("loras");
    let models_dir = engine_cfg.model_roots[0].clone();
    let engine = Arc::new(easel_providers::diffusion::Engine::new(engine_cfg)?);
    let state = AppState(Arc::new(AppInner {
        engine: engine.clone(),
        store: store.clone(),
        queue: queue.clone(),
        limits: cfg.limits.clone(),
        public_url,
        signer: UrlSigner::new(&secret),
        auth: Authenticator::new(cfg.rate_limit, cfg.auth_cache_ttl),
        metrics: Metrics::new(),
        signed_url_ttl: cfg.signed_url_ttl,
        sync_timeout: cfg.sync_timeout,
        credit_prices: cfg.credit_prices.clone(),
        fetch_images: cfg.fetch_images,
        scan_models: cfg.scan_models,
        // The start's scan (above) saw the folder as it is now.
        models_seen: tokio::sync::Mutex::new(
            std::fs::metadata(&models_dir)
                .and_then(|m| m.modified())
                .ok()
                .filter(|_| cfg.scan_models),
        ),
        models_dir,
        puller: cfg.pull.clone(),
        pulls: Default::default(),
    }));
    let m = state.metrics.clone();
    queue.set_job_observer(Arc::new(move |job, elapsed| {
        m.job_finished(&job.task, job.status.as_str(), elapsed)
    }));

    let (stop, stop_rx) = watch::channel(false);
    let executor = Arc::new(easel_providers::Providers::new(
        store.clone(),
        cfg.limits.clone(),
        engine,
    ));
    // One worker for the device (the engine runs one generation at a time), and `workers`
    // for the tools and remote generations: a generation waiting for the device is never
    // claimed while a tool could run (see `Resource`).
    use easel_core::job::Resource;
    let classes = (cfg.workers > 0)
        .then_some(vec![Resource::Device])
        .into_iter()
        .chain((0..cfg.workers).map(|_| vec![Resource::Cpu, Resource::Network]));
    let workers = classes
        .map(|resources| {
            let w = Worker::for_resources(queue.clone(), executor.clone(), &resources);
            tokio::spawn(w.run(stop_rx.clone()))
        })
        .collect();
    let enrich_state = state.clone();
    let enrich: easel_queue::webhooks::Enricher =
        Arc::new(move |payload| enrich_webhook(&enrich_state, payload));
    let background = vec![
        tokio::spawn({
            let q = queue.clone();
            let rx = stop_rx.clone();
            async move { q.run_reaper(rx).await }
        }),
        tokio::spawn({
            let q = queue.clone();
            let rx = stop_rx.clone();
            async move { q.run_webhooks(Some(enrich), rx).await }
        }),
        tokio::spawn(listen(state.clone(), cfg.listen_notices, stop_rx.clone())),
        tokio::spawn(collect_orphans(
            store.clone(),
            cfg.orphan_grace,
            state.engine.lora_cache().to_path_buf(),
            crate::service::hub_scratch(&state.models_dir),
            stop_rx.clone(),
        )),
    ];
    let http = listener.map(|listener| {
        let app = router(state.clone());
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        })
    });
    Ok(Server {
        addr,
        state,
        generated_admin_key,
        stop,
        workers,
        background,
        http,
    })
}

/// Act on other processes' notices (PostgreSQL `LISTEN`; nothing to do on SQLite): jobs
/// queued, canceled or changed elsewhere wake this process's workers and waiters; a key
/// revoked elsewhere empties the key cache. The connection is retried while it fails; the
/// timers cover what is missed meanwhile.
async fn listen(state: AppState, enabled: bool, mut stop: watch::Receiver<bool>) {
    use easel_store::notify::{AUTH, JOBS};
    if !enabled {
        return;
    }
    loop {
        let mut listener = match state.store.db.listen(&[JOBS, AUTH]).await {
            // Revocations sent while not listening were missed: forget every cached key.
            Ok(Some(l)) => {
                state.auth.forget_all();
                l
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other processes' notices; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    _ = easel_queue::stopped(&mut stop) => return,
                }
            }
        };
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) if n.channel == JOBS => state.queue.heard(&n.payload),
                    Ok(n) if n.channel == AUTH => state.auth.forget_all(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the notice connection; reconnecting");
                        break;
                    }
                },
                _ = easel_queue::stopped(&mut stop) => return,
            }
        }
    }
}

/// Remove the hub imports' temporary folders a stopped process left: those older than an
/// hour (a live import's ends within its 15-minute fetch).
async fn prune_hub_scratch(dir: &std::path::Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let old = e
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && e.file_name().to_string_lossy().starts_with(".easel-lora-") {
            let _ = tokio::fs::remove_dir_all(e.path()).await;
        }
    }
}

/// Delete blobs that crashes left without their asset row (`easel_store::intents`), the
/// parts of uploads left incomplete past their expiry (`easel_store::uploads::expire`) and
/// expired downloads, now
/// and then every half grace period, until stopped.
async fn collect_orphans(
    store: Store,
    grace: Duration,
    lora_cache: PathBuf,
    hub_scratch: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let every = (grace / 2).max(Duration::from_millis(100));
    loop {
        prune_hub_scratch(&hub_scratch).await;
        match easel_providers::diffusion::prune_lora_cache(&store, &lora_cache, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed copies of deleted LoRAs"),
            Err(e) => tracing::warn!(error = %e, "pruning the LoRA cache failed; retrying later"),
        }
        match easel_store::uploads::expire(&store.db, easel_core::time::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "expired uploads left incomplete"),
            Err(e) => tracing::warn!(error = %e, "expiring uploads failed; retrying later"),
        }
        if let Err(e) = easel_store::downloads::expire(&store.db, easel_core::time::now()).await {
            tracing::warn!(error = %e, "expiring downloads failed; retrying later");
        }
        match easel_store::intents::collect(&store, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(blobs = n, "deleted blobs left without their asset row"),
            Err(e) => {
                tracing::warn!(error = %e, "collecting orphaned blobs failed; retrying later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = easel_queue::stopped(&mut stop) => return,
        }
    }
}

/// The folders local weights may be read from: `<data-dir>/models` (canonical), then the
/// configured roots (canonical where they exist).
fn model_roots(cfg: &Config) -> Result<Vec<PathBuf>> {
    let data_dir = std::fs::canonicalize(&cfg.data_dir)
        .map_err(|e| Error::invalid("data_dir", e.to_string()))?;
    let models = data_dir.join("models");
    let mut roots = vec![models.clone()];
    // A linked models folder: its target too (discovery writes canonical paths).
    if let Ok(real) = std::fs::canonicalize(&models) {
        if real != models {
            roots.push(real);
        }
    }
    for r in &cfg.engine.model_roots {
        if !r.is_absolute() {
            return Err(Error::invalid(
                "model_roots",
                format!("{} is not an absolute path", r.display()),
            ));
        }
        // As written, and where it leads when it is a link.
        roots.push(r.clone());
        if let Ok(real) = std::fs::canonicalize(r) {
            if &real != r {
                roots.push(real);
            }
        }
    }
    Ok(roots)
}

/// Render a webhook payload's job as its webhook asks, with signed output URLs fresh at send
/// time: the native envelope's `data`, or a dialect's own object as the whole body.
fn enrich_webhook(state: &AppState, payload: &mut serde_json::Value) {
    let Some(job) = payload.get("data").cloned() else {
        return;
    };
    let Ok(job) = serde_json::from_value::<easel_core::Job>(job) else {
        return;
    };
    let format = job.webhook.as_ref().and_then(|w| w.format.as_deref());
    match format.and_then(crate::dialect::webhook_format) {
        Some(body) => *payload = body(state, &job),
        None => {
            let view = native::jobs::view(state, job, None);
            payload["data"] = serde_json::to_value(view).unwrap_or_default();
        }
    }
}

impl Server {
    /// Stop: no new HTTP connections or claims; running jobs get the grace period, then
    /// their leases are released. Returns when everything stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        for b in self.background.drain(..) {
            let _ = b.await;
        }
        if let Some(h) = self.http.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        self.state.store.db.pool.close().await;
    }

    /// Stop everything at once, as a crash would: leases are not released.
    pub async fn abort(mut self) {
        for h in self
            .workers
            .drain(..)
            .chain(self.background.drain(..))
            .chain(self.http.take())
        {
            h.abort();
            let _ = h.await;
        }
        self.state.store.db.pool.close().await;
    }

    /// Wait until the HTTP server ends (after `stop`).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

#[derive(Clone, Default)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let limit = state.limits.max_body_bytes;
    let doc = openapi::document();
    Router::new()
        .merge(native::routes())
        .merge(crate::ui::routes())
        .merge(crate::sartiq::routes(&state))
        .merge(crate::scenario::routes(&state))
        .merge(crate::openai::routes(&state))
        .merge(crate::leonardo::routes(&state))
        .merge(crate::replicate::routes(&state))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc))
        .route("/metrics", get(crate::metrics::render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|req: Request| async move {
            ApiError(Error::not_found(&format!("route {} {}", req.method(), req.uri().path())))
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        // The access log: one info line per request (method, path, request id, the key that
        // made it, status, latency).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, key_id = tracing::field::Empty)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Millis),
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(UlidRequestId))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.store.db.ping().await;
    let blobs = state.store.blobs.ping().await;
    match (db, blobs) {
        (Ok(()), Ok(())) => "ready".into_response(),
        (db, blobs) => {
            let msg = format!(
                "not ready: database {}, blob store {}",
                db.err().map(|e| e.message).unwrap_or_else(|| "ok".into()),
                blobs
                    .err()
                    .map(|e| e.message)
                    .unwrap_or_else(|| "ok".into())
            );
            (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
        }
    }
}
