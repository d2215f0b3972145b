//! Workers: claim a job, run it through an `Executor`, keep the lease alive, forward progress,
//! watch for cancel, store outputs (blobs first, then rows and the terminal state in one
//! transaction). On shutdown a worker lets its job finish within the grace period, then stops
//! it and releases the lease so another worker (or the next start) picks it up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_core::asset::{blob_key, Asset, AssetKind};
use easel_core::job::{codes, JobError, Progress, Resource};
use easel_core::{time, Job};
use easel_store::intents;
use easel_store::jobs::{self, Finished, LeaseState};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::{Announce, NoticeKind, Queue};

/// One output image of a run.
#[derive(Debug, Clone)]
pub struct OutputImage {
    pub bytes: Bytes,
    pub mime_type: String,
    pub width: u32,
    pub height: u32,
    /// Generation parameters, stored on the asset.
    pub metadata: serde_json::Value,
    /// The input asset it derives from.
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunOutput {
    pub outputs: Vec<OutputImage>,
    pub usage_units: f64,
    /// Which provider ran the job (`local`, or a remote's name).
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The run saw the cancel flag and stopped.
    Canceled,
    Failed(JobError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Canceled => f.write_str("canceled"),
            RunError::Failed(e) => write!(f, "{}: {}", e.code, e.message),
        }
    }
}

impl From<easel_core::Error> for RunError {
    fn from(e: easel_core::Error) -> Self {
        let code = match e.kind {
            easel_core::ErrorKind::Invalid
            | easel_core::ErrorKind::NotFound
            | easel_core::ErrorKind::PayloadTooLarge => codes::INVALID_INPUT,
            _ => codes::TASK_FAILED,
        };
        RunError::Failed(JobError::new(code, e.to_string()))
    }
}

/// Runs jobs. `easel-providers` implements it; the queue only needs this much.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Tasks this executor can run (the worker only claims these).
    fn tasks(&self) -> Vec<String>;
    async fn run(&self, job: &Job, ctx: &RunContext) -> Result<RunOutput, RunError>;
}

/// A preview of a running job's output: an image (a `data:` URL) at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub step: u32,
    pub total_steps: u32,
    /// A small image as a `data:` URL.
    pub image: String,
}

/// Handed to a running job: report progress and previews, check for cancel. Cheap to
/// clone, usable from blocking threads.
#[derive(Clone)]
pub struct RunContext {
    cancel: Arc<AtomicBool>,
    progress: Arc<watch::Sender<Option<Progress>>>,
    preview: Arc<watch::Sender<Option<Preview>>>,
    /// The log lines so far (the keeper writes new ones as `log` events).
    logs: Arc<watch::Sender<Vec<String>>>,
}

/// The receiving ends of a context, read by the lease keeper.
struct Reports {
    progress: watch::Receiver<Option<Progress>>,
    preview: watch::Receiver<Option<Preview>>,
    logs: watch::Receiver<Vec<String>>,
}

impl RunContext {
    fn new() -> (RunContext, Reports) {
        let (tx, rx) = watch::channel(None);
        let (ptx, prx) = watch::channel(None);
        let (ltx, lrx) = watch::channel(Vec::new());
        (
            RunContext {
                cancel: Arc::new(AtomicBool::new(false)),
                progress: Arc::new(tx),
                preview: Arc::new(ptx),
                logs: Arc::new(ltx),
            },
            Reports {
                progress: rx,
                preview: prx,
                logs: lrx,
            },
        )
    }

    /// A context not attached to a queue (tools run from the command line).
    pub fn detached() -> RunContext {
        RunContext::new().0
    }

    /// Publish a preview (a `preview` event of the job). Previews are best effort: when they
    /// come faster than they are written, only the latest is kept.
    pub fn preview(&self, preview: Preview) {
        self.preview.send_replace(Some(preview));
    }

    /// The latest progress reported (for callers that show it themselves).
    pub fn progress(&self) -> Option<Progress> {
        self.progress.borrow().clone()
    }

    /// The latest preview sent (for callers that show previews themselves).
    pub fn latest_preview(&self) -> Option<Preview> {
        self.preview.borrow().clone()
    }

    pub fn is_canceled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Canceled)` once a cancel was requested: call between steps and return it.
    pub fn check(&self) -> Result<(), RunError> {
        if self.is_canceled() {
            Err(RunError::Canceled)
        } else {
            Ok(())
        }
    }

    /// Report step `step` of `total` done, then check for cancel.
    pub fn step(&self, step: u32, total: u32) -> Result<(), RunError> {
        let total = total.max(1);
        self.progress.send_replace(Some(Progress {
            fraction: step.min(total) as f32 / total as f32,
            step: Some(step),
            total_steps: Some(total),
        }));
        self.check()
    }

    /// Add a log line: it becomes a `log` event of the job (`{"message"}`), which the
    /// job's SSE stream and the dialects that show logs read.
    pub fn log(&self, line: impl Into<String>) {
        let line = line.into();
        self.logs.send_modify(|l| l.push(line));
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.borrow().clone()
    }

    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub struct Worker {
    pub id: String,
    queue: Queue,
    executor: Arc<dyn Executor>,
    /// The resources of the jobs it claims (`NewJob::resource`).
    resources: Vec<Resource>,
}

impl Worker {
    /// A worker that claims jobs of every resource.
    pub fn new(queue: Queue, executor: Arc<dyn Executor>) -> Worker {
        Worker::for_resources(queue, executor, &Resource::ALL)
    }

    /// A worker that claims only jobs needing one of `resources` (a process runs one for
    /// the device and others for the CPU and the network: see `Resource`).
    pub fn for_resources(
        queue: Queue,
        executor: Arc<dyn Executor>,
        resources: &[Resource],
    ) -> Worker {
        let id = format!("wrk_{}", ulid::Ulid::new().to_string().to_lowercase());
        Worker {
            id,
            queue,
            executor,
            resources: resources.to_vec(),
        }
    }

    /// Claim and run jobs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let tasks = self.executor.tasks();
        let queue = self.queue.clone();
        loop {
            let stopped = *stop.borrow();
            if stopped {
                return;
            }
            // Created before the claim, so a job queued during it still wakes this worker.
            let notified = futures::future::select_all(
                self.resources
                    .iter()
                    .map(|r| Box::pin(queue.work_notice(*r).notified())),
            );
            match jobs::claim_for(
                &self.queue.store.db,
                &self.id,
                self.lease_ms(),
                Some(&tasks),
                &self.resources,
            )
            .await
            {
                Ok(Some(job)) => {
                    self.queue.announce(Announce::Changed, &job.id).await;
                    let span = tracing::info_span!("job", id = %job.id, task = %job.task, attempt = job.attempts);
                    self.run_job(job, stop.clone()).instrument(span).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = %self.id, error = %e, "claim failed"),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(self.queue.config.poll_interval) => {}
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }

    fn lease_ms(&self) -> i64 {
        self.queue.config.lease.as_millis() as i64
    }

    async fn run_job(&self, job: Job, mut stop: watch::Receiver<bool>) {
        let started = Instant::now();
        let (ctx, reports) = RunContext::new();
        if job.cancel_requested {
            ctx.cancel();
        }
        let lost = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = watch::channel(false);
        let keeper = tokio::spawn(keep_lease(
            self.queue.clone(),
            self.id.clone(),
            job.id.clone(),
            ctx.clone(),
            reports,
            lost.clone(),
            done_rx,
        ));
        let run = self.executor.run(&job, &ctx);
        tokio::pin!(run);
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = crate::stopped(&mut stop), if !stopping => {
                    stopping = true;
                    tracing::info!("shutdown: waiting for the running job");
                }
                _ = tokio::time::sleep(self.queue.config.shutdown_grace), if stopping => {
                    tracing::warn!("shutdown grace over: stopping the job and releasing it");
                    ctx.cancel();
                    // The run returns at its next step; give it a moment, then release.
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut run).await;
                    keeper.abort();
                    match jobs::release(&self.queue.store.db, &job.id, &self.id).await {
                        Ok(_) => self.queue.announce(Announce::Queued(None), &job.id).await,
                        Err(e) => tracing::error!(error = %e, "release failed; the lease will expire"),
                    }
                    return;
                }
            }
        };
        // Let the keeper write the last progress, then stop it.
        let _ = done_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(10), keeper)
            .await
            .is_err()
        {
            tracing::warn!("progress writer did not stop in time");
        }
        if lost.load(Ordering::Relaxed) {
            tracing::warn!("lease lost while running; discarding the result");
            return;
        }
        let db = &self.queue.store.db;
        let finished = match result {
            Ok(out) => self.store_outputs(&job, out).await,
            Err(RunError::Canceled) if stopping && !self.cancel_requested(&job.id).await => {
                match jobs::release(db, &job.id, &self.id).await {
                    Ok(_) => self.queue.announce(Announce::Queued(None), &job.id).await,
                    Err(e) => tracing::error!(error = %e, "release failed"),
                }
                return;
            }
            Err(RunError::Canceled) => jobs::finish_canceled(db, &job.id, &self.id).await,
            Err(RunError::Failed(e)) => jobs::fail(db, &job.id, &self.id, &e).await,
        };
        match finished {
            Ok(Finished::Done(j)) | Ok(Finished::Canceled(j)) => {
                tracing::info!(
                    status = j.status.as_str(),
                    seconds = started.elapsed().as_secs_f64(),
                    "job finished"
                );
                self.queue.observe(&j, started.elapsed());
            }
            Ok(Finished::LeaseLost) => tracing::warn!("lease lost before finishing"),
            Err(e) => {
                tracing::error!(error = %e, "could not record the job's end; its lease will expire")
            }
        }
        self.queue.announce(Announce::Changed, &job.id).await;
    }

    async fn cancel_requested(&self, id: &str) -> bool {
        matches!(jobs::get(&self.queue.store.db, id).await, Ok(Some(j)) if j.cancel_requested)
    }

    /// Blobs first, then rows + terminal state in one transaction; blobs of a job that ended
    /// otherwise are deleted.
    async fn store_outputs(&self, job: &Job, out: RunOutput) -> easel_core::Result<Finished> {
        let store = &self.queue.store;
        let now = time::now();
        let assets: Vec<Asset> = out
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| Asset {
                id: easel_core::id::new(easel_core::id::ASSET),
                owner_id: job.owner_id.clone(),
                job_id: Some(job.id.clone()),
                output_index: Some(i as u32),
                kind: AssetKind::Output,
                mime_type: o.mime_type.clone(),
                width: Some(o.width),
                height: Some(o.height),
                bytes: o.bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&o.bytes)),
                metadata: o.metadata.clone(),
                parent_id: o.parent_id.clone(),
                root_id: None,
                name: None,
                description: None,
                privacy: Default::default(),
                hidden: job.hide_outputs,
                created_at: now,
                updated_at: now,
            })
            .collect();
        let blobs: Vec<(String, String)> = assets
            .iter()
            .map(|a| (a.id.clone(), blob_key(&a.owner_id, &a.id)))
            .collect();
        // The intents of every output in one transaction, then the blobs.
        let stored = async {
            intents::record(store, &blobs).await?;
            for ((_, key), o) in blobs.iter().zip(out.outputs) {
                store.blobs.put(key, o.bytes).await?;
            }
            Ok::<_, easel_core::Error>(())
        }
        .await;
        if let Err(e) = stored {
            if let Err(e) = intents::remove(store, &blobs).await {
                tracing::warn!(error = %e, "outputs left to the collector");
            }
            return jobs::fail(
                &self.queue.store.db,
                &job.id,
                &self.id,
                &JobError::new(codes::TASK_FAILED, format!("could not store output: {e}")),
            )
            .await;
        }
        let res = jobs::succeed(
            &self.queue.store.db,
            &job.id,
            &self.id,
            &assets,
            out.usage_units,
            &out.provider,
        )
        .await;
        // Known not to be committed: delete the blobs now. An error leaves the commit's
        // outcome unknown, so the intents stay for the collector, which checks for rows.
        if matches!(res, Ok(Finished::LeaseLost) | Ok(Finished::Canceled(_))) {
            if let Err(e) = intents::remove(store, &blobs).await {
                tracing::warn!(error = %e, "outputs left to the collector");
            }
        }
        res
    }
}

/// Write the log lines after the first `written` as `log` events.
async fn write_logs(
    queue: &Queue,
    job_id: &str,
    worker: &str,
    lease_ms: i64,
    lines: &[String],
    written: &mut usize,
) -> easel_core::Result<LeaseState> {
    let mut state = Ok(LeaseState::Held {
        cancel_requested: false,
    });
    for line in lines.iter().skip(*written) {
        let data = serde_json::json!({ "message": line });
        state = jobs::append_running_event(&queue.store.db, job_id, worker, lease_ms, "log", data)
            .await;
        if !matches!(state, Ok(LeaseState::Held { .. })) {
            return state;
        }
        *written += 1;
    }
    state
}

/// While a job runs: write progress as it changes (coalesced), previews and log lines,
/// heartbeat on a timer, and turn cancel requests (from the database or an in-process
/// notice) into the run's flag.
async fn keep_lease(
    queue: Queue,
    worker: String,
    job_id: String,
    ctx: RunContext,
    reports: Reports,
    lost: Arc<AtomicBool>,
    mut done: watch::Receiver<bool>,
) {
    let lease_ms = queue.config.lease.as_millis() as i64;
    let beat = queue.config.lease / 3;
    let mut notices = queue.subscribe();
    let mut last_hook: Option<Instant> = None;
    let mut next_beat = tokio::time::Instant::now() + beat;
    let Reports {
        mut progress,
        mut preview,
        mut logs,
    } = reports;
    // Log lines written as events so far.
    let mut written = 0;
    loop {
        let state = tokio::select! {
            changed = logs.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
                let lines = logs.borrow_and_update().clone();
                let r = write_logs(&queue, &job_id, &worker, lease_ms, &lines, &mut written).await;
                queue.notify(&job_id, NoticeKind::Changed);
                r
            }
            changed = preview.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
                let Some(p) = preview.borrow_and_update().clone() else { continue };
                let data = serde_json::json!({"step": p.step, "total_steps": p.total_steps, "image": p.image});
                let r = jobs::append_running_event(&queue.store.db, &job_id, &worker, lease_ms, "preview", data).await;
                queue.notify(&job_id, NoticeKind::Changed);
                r
            }
            changed = progress.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
                let Some(p) = progress.borrow_and_update().clone() else { continue };
                let hook = last_hook.is_none_or(|t| t.elapsed() >= queue.config.progress_webhook_interval);
                let r = jobs::set_progress(&queue.store.db, &job_id, &worker, lease_ms, &p, hook).await;
                if hook {
                    last_hook = Some(Instant::now());
                    queue.webhooks_due();
                }
                queue.notify(&job_id, NoticeKind::Changed);
                next_beat = tokio::time::Instant::now() + beat;
                r
            }
            _ = tokio::time::sleep_until(next_beat) => {
                next_beat = tokio::time::Instant::now() + beat;
                jobs::heartbeat(&queue.store.db, &job_id, &worker, lease_ms).await
            }
            _ = crate::stopped(&mut done) => {
                // The run ended: write the log lines and the progress it reported since the
                // last write, if any.
                let lines = logs.borrow_and_update().clone();
                if lines.len() > written {
                    let _ = write_logs(&queue, &job_id, &worker, lease_ms, &lines, &mut written).await;
                    queue.notify(&job_id, NoticeKind::Changed);
                }
                if progress.has_changed().unwrap_or(false) {
                    let latest = progress.borrow_and_update().clone();
                    if let Some(p) = latest {
                        let _ = jobs::set_progress(&queue.store.db, &job_id, &worker, lease_ms, &p, false).await;
                        queue.notify(&job_id, NoticeKind::Changed);
                    }
                }
                return;
            }
            n = notices.recv() => {
                match n {
                    Ok(n) if n.job_id == job_id && n.kind == NoticeKind::CancelRequested => ctx.cancel(),
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                    _ => {}
                }
                continue;
            }
        };
        match state {
            Ok(LeaseState::Held { cancel_requested }) => {
                if cancel_requested {
                    ctx.cancel();
                }
            }
            Ok(LeaseState::Lost) => {
                lost.store(true, Ordering::Relaxed);
                ctx.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
        }
    }
}
