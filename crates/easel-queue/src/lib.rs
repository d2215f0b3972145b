//! The durable job queue on top of `easel-store`: submit and cancel, workers that claim jobs
//! with leases and heartbeats, a reaper that requeues jobs of dead workers, progress notices
//! for SSE and long-poll, and the webhook dispatcher.
//!
//! The database is the truth; the in-process `Hub` only wakes listeners early. Every listener
//! also re-reads the database on a short timer, so several processes sharing one PostgreSQL
//! see each other's changes.

pub mod webhooks;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use easel_core::job::{NewJob, Resource};
use easel_core::{Job, Result};
use easel_store::jobs::{self, Inserted};
use easel_store::Store;
use tokio::sync::{broadcast, Notify};

pub use worker::{Executor, OutputImage, Preview, RunContext, RunError, RunOutput, Worker};

/// Wait until `rx` carries a notice about `job_id`, the receiver lags or closes, or `max`
/// passes. Listeners re-read the database after it either way: notices only wake them early.
pub async fn wait_notice(rx: &mut broadcast::Receiver<Notice>, job_id: &str, max: Duration) {
    let _ = tokio::time::timeout(max, async {
        loop {
            match rx.recv().await {
                Ok(n) if n.job_id == job_id => break,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What `Queue::announce` says about a job, to this process and the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    /// Queued or requeued: workers of its resource (all, when not known) should claim.
    Queued(Option<Resource>),
    /// A cancel was asked for while it runs.
    Cancel,
    /// Its state changed (claimed, ended).
    Changed,
}

impl Announce {
    fn as_str(self) -> &'static str {
        match self {
            Announce::Queued(_) => "queued",
            Announce::Cancel => "cancel",
            Announce::Changed => "changed",
        }
    }
}

/// What changed about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// New events are in the job's log (status or progress).
    Changed,
    /// A cancel was requested for a running job.
    CancelRequested,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub job_id: String,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// How often idle workers look for work when not woken.
    pub poll_interval: Duration,
    /// How often expired leases are reaped.
    pub reap_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before their lease is released.
    pub shutdown_grace: Duration,
    /// Minimum time between progress webhooks of one job.
    pub progress_webhook_interval: Duration,
    /// First retry delay of a failed webhook delivery; doubles each attempt.
    pub webhook_retry_base: Duration,
    /// Longest delay between webhook attempts.
    pub webhook_retry_max: Duration,
    /// Attempts before a delivery is recorded as failed.
    pub webhook_max_attempts: u32,
    /// Per-request timeout of a webhook delivery.
    pub webhook_timeout: Duration,
    /// Which addresses webhook receivers may have: public ones, plus the operator's
    /// allow-list (`--webhook-allow`). Checked at submit and again at every delivery.
    pub webhook_policy: easel_net::Policy,
    /// Attempts per job before a job whose worker keeps dying fails.
    pub max_attempts: u32,
    /// Queued jobs one owner may have.
    pub max_queued_per_owner: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            reap_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            progress_webhook_interval: Duration::from_secs(1),
            webhook_retry_base: Duration::from_secs(2),
            webhook_retry_max: Duration::from_secs(600),
            webhook_max_attempts: 8,
            webhook_timeout: Duration::from_secs(10),
            webhook_policy: easel_net::Policy::public(),
            max_attempts: 3,
            max_queued_per_owner: 5_000,
        }
    }
}

/// The queue handle shared by the API, workers and background loops.
#[derive(Clone)]
pub struct Queue {
    pub store: Store,
    pub config: QueueConfig,
    notices: broadcast::Sender<Notice>,
    /// One per `Resource` (in `Resource::ALL` order): workers wait on their resources'.
    new_work: Arc<[Notify; 3]>,
    new_webhooks: Arc<Notify>,
    observer: Arc<std::sync::RwLock<Option<JobObserver>>>,
}

/// Called when a job ends, with its run time (the HTTP layer feeds metrics from it).
pub type JobObserver = Arc<dyn Fn(&Job, Duration) + Send + Sync>;

impl Queue {
    pub fn new(store: Store, config: QueueConfig) -> Queue {
        Queue {
            store,
            config,
            notices: broadcast::channel(4096).0,
            new_work: Arc::new(std::array::from_fn(|_| Notify::new())),
            new_webhooks: Arc::new(Notify::new()),
            observer: Arc::default(),
        }
    }

    /// Enqueue a job (honouring its idempotency key and the owner's queued-job cap).
    pub async fn submit(&self, mut new: NewJob) -> Result<Inserted> {
        if new.max_attempts == 0 {
            new.max_attempts = self.config.max_attempts;
        }
        let ins = jobs::insert(&self.store.db, &new, self.config.max_queued_per_owner).await?;
        if ins.created {
            // The insert's transaction told the other processes.
            self.heard_locally(Announce::Queued(Some(new.resource)), &ins.job.id);
        }
        Ok(ins)
    }

    /// Cancel a job (see `easel_store::jobs::request_cancel`).
    pub async fn cancel(&self, id: &str, owner_id: Option<&str>) -> Result<Job> {
        let job = jobs::request_cancel(&self.store.db, id, owner_id).await?;
        let what = if job.status.is_terminal() {
            Announce::Changed
        } else {
            Announce::Cancel
        };
        self.announce(what, id).await;
        Ok(job)
    }

    pub fn set_job_observer(&self, f: JobObserver) {
        if let Ok(mut o) = self.observer.write() {
            *o = Some(f);
        }
    }

    pub(crate) fn observe(&self, job: &Job, elapsed: Duration) {
        let f = self.observer.read().ok().and_then(|o| o.clone());
        if let Some(f) = f {
            f(job, elapsed);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub(crate) fn notify(&self, job_id: &str, kind: NoticeKind) {
        let _ = self.notices.send(Notice {
            job_id: job_id.to_string(),
            kind,
        });
    }

    /// Say what happened to a job, to this process and (PostgreSQL `NOTIFY`) to every other
    /// one: workers elsewhere claim a queued job at once, a cancel reaches the worker running
    /// the job, long-polls and SSE streams elsewhere see the change. Timers stay the safety
    /// net, so a notice that fails to go out only delays.
    pub(crate) async fn announce(&self, what: Announce, job_id: &str) {
        self.heard_locally(what, job_id);
        let payload = match what {
            Announce::Queued(r) => {
                let r = r.map(Resource::as_str).unwrap_or("any");
                format!("queued:{r}:{job_id}")
            }
            _ => format!("{}:{job_id}", what.as_str()),
        };
        if let Err(e) = self
            .store
            .db
            .notify(easel_store::notify::JOBS, &payload)
            .await
        {
            tracing::warn!(error = %e, job = job_id, "could not notify other processes");
        }
    }

    /// A notice from another process (a payload of `easel_store::notify::JOBS`), or this
    /// one's own coming back: wakes the workers and waiters here. (Webhook deliveries are
    /// woken only where they were written: every dispatcher also polls.) Unknown payloads
    /// are ignored.
    pub fn heard(&self, payload: &str) {
        let Some((what, job_id)) = payload.split_once(':') else {
            return;
        };
        match what {
            // `queued:<resource>:<id>` (`any`: every resource).
            "queued" => {
                let (resource, job_id) = job_id.split_once(':').unwrap_or(("any", job_id));
                self.wake_workers(Resource::parse(resource), job_id)
            }
            "cancel" => self.notify(job_id, NoticeKind::CancelRequested),
            "changed" => self.notify(job_id, NoticeKind::Changed),
            _ => {}
        }
    }

    fn heard_locally(&self, what: Announce, job_id: &str) {
        match what {
            Announce::Queued(resource) => self.wake_workers(resource, job_id),
            Announce::Cancel => self.notify(job_id, NoticeKind::CancelRequested),
            Announce::Changed => {
                self.notify(job_id, NoticeKind::Changed);
                self.webhooks_due();
            }
        }
    }

    /// Wake the workers of `resource` (every worker when `None`).
    fn wake_workers(&self, resource: Option<Resource>, job_id: &str) {
        for r in Resource::ALL {
            if resource.is_none_or(|want| want == r) {
                let n = self.work_notice(r);
                n.notify_waiters();
                n.notify_one();
            }
        }
        self.notify(job_id, NoticeKind::Changed);
    }

    /// What the workers of `r` wait on.
    pub(crate) fn work_notice(&self, r: Resource) -> &Notify {
        let i = Resource::ALL.iter().position(|x| *x == r).unwrap_or(0);
        &self.new_work[i]
    }

    /// Wake the webhook dispatcher (deliveries were enqueued).
    pub(crate) fn webhooks_due(&self) {
        self.new_webhooks.notify_one();
    }

    /// Wait until `job_id` reaches a terminal state or `timeout` passes; returns the job as it
    /// is then (long-poll).
    pub async fn wait_terminal(&self, job_id: &str, timeout: Duration) -> Result<Option<Job>> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = jobs::get(&self.store.db, job_id).await?;
            match &job {
                Some(j) if !j.status.is_terminal() => {}
                _ => return Ok(job),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(job);
            }
            // Wake on a notice for this job, or re-read every second (other processes).
            wait_notice(
                &mut rx,
                job_id,
                (deadline - now).min(Duration::from_secs(1)),
            )
            .await;
        }
    }

    /// Requeue or fail jobs whose worker died, forever (until `stop` is true).
    pub async fn run_reaper(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match jobs::reap_expired(&self.store.db).await {
                Ok(jobs) => {
                    for j in &jobs {
                        tracing::warn!(job = %j.id, status = j.status.as_str(), attempts = j.attempts, "lease expired");
                        let what = if j.status.is_terminal() {
                            Announce::Changed
                        } else {
                            Announce::Queued(None)
                        };
                        self.announce(what, &j.id).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "reaper failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.reap_interval) => {}
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }
}
