//! `/v1/models-folder/pulls`: admins download a model from the Hugging Face hub into the
//! models folder while the server runs, and follow its progress (the web UI's progress bar).
//!
//! The download itself is the same code as `easel models pull`; it lives in the binary (with
//! the hub client), which hands the server a [`PullFn`] in `server::Config::pull`. A server
//! started without one (a library user, most tests) answers 501. A pull is not a queued job:
//! it runs in the process that accepted it and is listed there (the last 50); a restart
//! abandons one in flight, and the pull's temporary folder inside the models folder is
//! removed with it, so nothing half-written is ever registered. A finished pull is
//! registered at once (a scan of the models folder).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use easel_core::{Error, ErrorKind};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Json;
use crate::AppState;

/// What to pull; the fields of `easel models pull`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Hub repository id, such as `stable-diffusion-v1-5/stable-diffusion-v1-5`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Local model name (default: the repository's name without its owner).
    #[serde(default)]
    pub name: Option<String>,
    /// Weights variant, such as `fp16`.
    #[serde(default)]
    pub variant: Option<String>,
    /// One single-file checkpoint (a `.safetensors` path in the repository) instead of a
    /// diffusers folder.
    #[serde(default)]
    pub file: Option<String>,
    /// Replace a model of the same name (once the new one is complete).
    #[serde(default)]
    pub force: bool,
}

/// What a pull reports as it goes.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// A line of the pull's log (what `easel models pull` prints).
    Line(String),
    /// Bytes of the file being downloaded (`[i/n] path`).
    Bytes { file: String, done: u64, total: u64 },
}

pub type PullSink = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// What a finished pull installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// A model in the models folder, registered under this name.
    Model(String),
    /// A tiny autoencoder (TAESD) in the models folder's `vae_approx/<name>`: nothing to
    /// register; the engine finds it by family.
    TinyVae(String),
}

/// Starts a pull into the models folder: checks what can be checked without the network at
/// once (a 422 naming the request's field, or a 409 when the model is there), then returns
/// the download, which resolves to what it installed.
pub type PullFn = Arc<
    dyn Fn(
            PullRequest,
            std::path::PathBuf,
            PullSink,
        ) -> easel_core::Result<BoxFuture<'static, Result<Pulled, String>>>
        + Send
        + Sync,
>;

/// A LoRA a user imports from the hub (`POST /v1/uploads/import` with `hub`, Scenario's
/// `huggingFaceModelName`): the repository, its revision (default `main`) and the file (a
/// `.safetensors` path in it; default the repository's one LoRA file). Never more than
/// `max_bytes` is downloaded.
#[derive(Debug, Clone)]
pub struct HubLora {
    pub repo: String,
    pub revision: Option<String>,
    pub file: Option<String>,
    pub max_bytes: u64,
}

/// Fetches a [`HubLora`] (resolving to the file's bytes), downloading through a folder of its own inside the given scratch
/// folder (removed when done): checks what can be checked without the network at once
/// (errors name the request's field: `repo`, `revision`, `file`), then returns the download.
/// Its errors: invalid input naming `repo` (a repository that is not a LoRA's, missing,
/// gated), too large (`PayloadTooLarge`), or the hub unreachable.
pub type HubLoraFn = Arc<
    dyn Fn(
            HubLora,
            std::path::PathBuf,
        ) -> easel_core::Result<BoxFuture<'static, easel_core::Result<Vec<u8>>>>
        + Send
        + Sync,
>;

/// The binary's hub code in the server's configuration: admins' pulls into the models
/// folder, and users' LoRA imports (none: those answer 501).
#[derive(Clone)]
pub struct Puller {
    pub pull: PullFn,
    pub lora: Option<HubLoraFn>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Puller")
    }
}

/// A pull as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PullView {
    pub id: String,
    pub repo: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The log, a line per step and per file.
    pub lines: Vec<String>,
    /// The file being downloaded, and its bytes so far of its total.
    pub file: Option<String>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// The registered model, once succeeded.
    pub model: Option<String>,
    /// The tiny autoencoder installed instead of a model (a TAESD repository), once
    /// succeeded.
    pub tiny_vae: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// The pulls this process ran (newest last), shared with their tasks.
#[derive(Default)]
pub struct Pulls(Mutex<Vec<Arc<Mutex<PullView>>>>);

const KEPT: usize = 50;

fn now() -> String {
    easel_core::time::rfc3339(easel_core::time::now())
}

fn read(p: &Mutex<PullView>) -> PullView {
    p.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Start downloading a model from the hub into the models folder (admin).
#[utoipa::path(post, path = "/v1/models-folder/pulls", tag = "models", request_body = PullRequest,
    responses((status = 202, body = PullView, description = "Started"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 501, body = ErrorBody, description = "This server runs without hub access")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    Json(req): Json<PullRequest>,
) -> ApiResult<(StatusCode, axum::Json<PullView>)> {
    let Some(Puller { pull, .. }) = state.puller.clone() else {
        return Err(Error::new(
            ErrorKind::NotImplemented,
            "this server was started without hub access; run `easel models pull` instead",
        )
        .into());
    };
    let view = Arc::new(Mutex::new(PullView {
        id: easel_core::id::new("pull"),
        repo: req.repo.clone(),
        status: "running".into(),
        lines: Vec::new(),
        file: None,
        done_bytes: 0,
        total_bytes: 0,
        model: None,
        tiny_vae: None,
        error: None,
        started_at: now(),
        finished_at: None,
    }));
    let sink: PullSink = {
        let view = view.clone();
        Arc::new(move |e| {
            let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
            match e {
                PullEvent::Line(l) => v.lines.push(l),
                PullEvent::Bytes { file, done, total } => {
                    v.file = Some(file);
                    v.done_bytes = done;
                    v.total_bytes = total;
                }
            }
        })
    };
    if let Some(name) = &req.name {
        if !req.force
            && easel_store::models::resolve(&state.store.db, name)
                .await?
                .is_some()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("a model named `{name}` is registered; choose another `name`"),
            )
            .with_field("name")
            .into());
        }
    }
    let work = pull(req, state.models_dir.clone(), sink)?;
    {
        let mut all = state.pulls.0.lock().unwrap_or_else(|e| e.into_inner());
        all.push(view.clone());
        let extra = all.len().saturating_sub(KEPT);
        all.drain(..extra);
    }
    let shown = read(&view);
    tokio::spawn(async move {
        let result = match work.await {
            Ok(Pulled::Model(name)) => registered(&state, &name)
                .await
                .map(|()| Pulled::Model(name)),
            other => other,
        };
        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(Pulled::Model(name)) => {
                v.status = "succeeded".into();
                v.model = Some(name);
            }
            Ok(Pulled::TinyVae(name)) => {
                v.status = "succeeded".into();
                v.tiny_vae = Some(name);
            }
            Err(e) => {
                v.status = "failed".into();
                v.error = Some(e);
            }
        }
        v.finished_at = Some(now());
    });
    Ok((StatusCode::ACCEPTED, axum::Json(shown)))
}

/// Register what a pull wrote (a scan of the models folder), and check that the registry's
/// model of that name is the one downloaded (not another model holding the name).
async fn registered(state: &AppState, name: &str) -> Result<(), String> {
    crate::service::rescan(state)
        .await
        .map_err(|e| format!("downloaded, but registering it failed: {e}"))?;
    let m = easel_store::models::resolve(&state.store.db, name)
        .await
        .map_err(|e| format!("downloaded, but registering it failed: {e}"))?;
    let ours = |source: &str| {
        let p = std::path::Path::new(source);
        p == state.models_dir.join(name)
            || p == state.models_dir.join(format!("{name}.safetensors"))
    };
    match m {
        Some(m) if m.source.as_deref().is_some_and(ours) => Ok(()),
        _ => Err(format!(
            "downloaded into the models folder as `{name}`, but another model holds that name \
             in the registry; remove or rename it, then scan the models folder"
        )),
    }
}

/// The pulls this process ran, newest first (admin).
#[utoipa::path(get, path = "/v1/models-folder/pulls", tag = "models",
    responses((status = 200, body = Vec<PullView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _: Admin) -> ApiResult<axum::Json<Vec<PullView>>> {
    let all = state.pulls.0.lock().unwrap_or_else(|e| e.into_inner());
    Ok(axum::Json(all.iter().rev().map(|p| read(p)).collect()))
}

/// One pull (admin).
#[utoipa::path(get, path = "/v1/models-folder/pulls/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = PullView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PullView>> {
    let all = state.pulls.0.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .map(|p| read(p))
        .find(|p| p.id == id)
        .map(axum::Json)
        .ok_or_else(|| Error::not_found("pull").into())
}
