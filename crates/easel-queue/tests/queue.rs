//! The queue end to end on every backend `easel_store::testing::backends()` gives: workers
//! running a small test workload, cancel, graceful shutdown, the reaper, webhooks, long-poll.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use easel_core::asset::blob_key;
use easel_core::job::{codes, NewJob};
use easel_core::{ErrorKind, Job, JobStatus, Webhook, WebhookEvent};
use easel_queue::{
    Executor, NoticeKind, OutputImage, Queue, QueueConfig, RunContext, RunError, RunOutput, Worker,
};
use easel_store::testing::{backends, count, new_job, user, TestStore};
use easel_store::{assets, jobs, Db};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// Short timings so that the tests run fast; nothing asserts on them.
fn config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_millis(20),
        reap_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_millis(50),
        progress_webhook_interval: Duration::from_millis(0),
        webhook_retry_base: Duration::from_millis(5),
        webhook_retry_max: Duration::from_millis(20),
        webhook_max_attempts: 3,
        webhook_timeout: Duration::from_secs(5),
        // The receivers of these tests listen on loopback: the operator's allow-list.
        webhook_policy: easel_net::Policy::allowing(vec![
            easel_net::Allow::parse("127.0.0.1").unwrap()
        ]),
        max_attempts: 3,
        max_queued_per_owner: 1_000,
    }
}

/// Upper bound for anything the tests wait for (a hang fails instead of blocking forever).
const PATIENCE: Duration = Duration::from_secs(20);

/// Poll `check` until it holds; panic with `what` after `PATIENCE`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The bytes a test job produces: a PNG signature and the job id.
fn payload(job: &Job) -> Bytes {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(job.id.as_bytes());
    Bytes::from(b)
}

fn output(job: &Job) -> RunOutput {
    RunOutput {
        outputs: vec![OutputImage {
            bytes: payload(job),
            mime_type: "image/png".into(),
            width: 1,
            height: 1,
            metadata: serde_json::json!({"job": job.id}),
            parent_id: None,
        }],
        usage_units: 0.5,
        provider: "test".into(),
    }
}

/// A small workload with a few behaviours, by task:
/// * `quick`: two steps (each waits until the worker has recorded it), one output;
/// * `fail`: rejects its input;
/// * `gated`: reports its context, then takes one permit of `gate` per step, checking for
///   cancel at every step (`ctx.step`), and produces one output;
/// * `stubborn`: reports its context, takes one permit, and produces its output without
///   looking at the cancel flag.
struct TestExec {
    db: Db,
    gate: Arc<Semaphore>,
    started: mpsc::UnboundedSender<(String, RunContext)>,
}

impl TestExec {
    fn new(db: &Db) -> (Arc<TestExec>, mpsc::UnboundedReceiver<(String, RunContext)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = TestExec {
            db: db.clone(),
            gate: Arc::new(Semaphore::new(0)),
            started: tx,
        };
        (Arc::new(exec), rx)
    }

    async fn pass_gate(&self) {
        self.gate.acquire().await.expect("gate").forget();
    }

    /// Progress is written by the worker asynchronously (and coalesced): wait for this step.
    async fn wait_recorded(&self, job: &Job, step: u32) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            match jobs::get(&self.db, &job.id).await {
                Ok(Some(j)) if j.step >= Some(step) || j.status != JobStatus::Running => return,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}

#[async_trait::async_trait]
impl Executor for TestExec {
    fn tasks(&self) -> Vec<String> {
        ["quick", "fail", "gated", "stubborn"]
            .map(String::from)
            .to_vec()
    }

    async fn run(&self, job: &Job, ctx: &RunContext) -> Result<RunOutput, RunError> {
        match job.task.as_str() {
            "quick" => {
                for step in 1..=2 {
                    ctx.step(step, 2)?;
                    self.wait_recorded(job, step).await;
                }
                Ok(output(job))
            }
            "fail" => Err(easel_core::Error::invalid("input.n", "must be even").into()),
            "gated" => {
                let _ = self.started.send((job.id.clone(), ctx.clone()));
                for step in 0..3 {
                    ctx.step(step, 3)?;
                    self.pass_gate().await;
                }
                ctx.step(3, 3)?;
                Ok(output(job))
            }
            "stubborn" => {
                let _ = self.started.send((job.id.clone(), ctx.clone()));
                self.pass_gate().await;
                Ok(output(job))
            }
            other => Err(RunError::Failed(easel_core::JobError::new(
                codes::NO_PROVIDER,
                other,
            ))),
        }
    }
}

/// A background loop and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("the loop stops when told")
            .expect("the loop does not panic");
    }
}

fn spawn_worker(q: &Queue, exec: &Arc<TestExec>) -> Running {
    let (stop, rx) = watch::channel(false);
    let worker = Worker::new(q.clone(), exec.clone());
    Running {
        stop,
        handle: tokio::spawn(worker.run(rx)),
    }
}

fn spawn_reaper(q: &Queue) -> Running {
    let (stop, rx) = watch::channel(false);
    let q = q.clone();
    Running {
        stop,
        handle: tokio::spawn(async move { q.run_reaper(rx).await }),
    }
}

async fn next_started(
    rx: &mut mpsc::UnboundedReceiver<(String, RunContext)>,
) -> (String, RunContext) {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a gated job starts")
        .expect("executor alive")
}

async fn wait_done(q: &Queue, id: &str) -> Job {
    let j = q
        .wait_terminal(id, PATIENCE)
        .await
        .unwrap()
        .expect("job exists");
    assert!(j.status.is_terminal(), "job {id} did not finish: {j:?}");
    j
}

async fn assets_of(db: &Db, job_id: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(*) AS n FROM assets WHERE job_id = '{job_id}'"),
    )
    .await
}

fn statuses(h: Vec<easel_core::job::StatusChange>) -> Vec<JobStatus> {
    h.into_iter().map(|c| c.status).collect()
}

fn job(owner: &str, task: &str) -> NewJob {
    new_job(owner, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_jobs_end_to_end() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let observed = Arc::new(Mutex::new(Vec::new()));
        let obs = observed.clone();
        q.set_job_observer(Arc::new(move |j: &Job, _| {
            obs.lock().unwrap().push((j.id.clone(), j.status))
        }));
        let (exec, _started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);

        let submitted = q.submit(job(&owner.id, "quick")).await.unwrap();
        assert!(submitted.created, "{n}");
        let done = wait_done(&q, &submitted.job.id).await;
        assert_eq!(done.status, JobStatus::Succeeded, "{n}: {done:?}");
        assert_eq!((done.attempts, done.progress), (1, 1.0), "{n}");
        assert_eq!(done.provider.as_deref(), Some("test"), "{n}");
        assert_eq!(done.usage_units, 0.5, "{n}");
        assert_eq!(done.outputs.len(), 1, "{n}");

        // The output: row and blob, consistent with each other.
        let asset = assets::get(db, &done.outputs[0])
            .await
            .unwrap()
            .expect("asset row");
        assert_eq!(asset.job_id.as_deref(), Some(done.id.as_str()), "{n}");
        assert_eq!(
            (asset.owner_id.as_str(), asset.output_index),
            (owner.id.as_str(), Some(0)),
            "{n}"
        );
        assert_eq!(asset.mime_type, "image/png", "{n}");
        let blob = b
            .blobs()
            .get(&blob_key(&owner.id, &asset.id))
            .await
            .unwrap();
        assert_eq!(blob, payload(&done), "{n}");
        assert_eq!(asset.bytes, blob.len() as u64, "{n}");
        assert_eq!(asset.sha256, hex::encode(Sha256::digest(&blob)), "{n}");
        assert_eq!(asset.metadata["job"], done.id.as_str(), "{n}");
        assert_eq!(b.blob_count(), 1, "{n}");

        // Progress and status history.
        let events = jobs::events_after(db, &done.id, 0).await.unwrap();
        let steps: Vec<i64> = events
            .iter()
            .filter(|e| e.kind == "progress")
            .filter_map(|e| e.data["step"].as_i64())
            .collect();
        assert_eq!(steps, [1, 2], "{n}: progress events");
        assert_eq!(
            statuses(jobs::history(db, &done.id).await.unwrap()),
            [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
            "{n}"
        );

        // A run that fails ends the job failed, with the executor's code; no outputs.
        let failed = q.submit(job(&owner.id, "fail")).await.unwrap().job;
        let failed = wait_done(&q, &failed.id).await;
        assert_eq!(failed.status, JobStatus::Failed, "{n}");
        let e = failed.error.clone().expect("error");
        assert_eq!(e.code, codes::INVALID_INPUT, "{n}: {e:?}");
        assert!(e.message.contains("must be even"), "{n}: {e:?}");
        assert_eq!(
            (failed.attempts, assets_of(db, &failed.id).await),
            (1, 0),
            "{n}: not retried"
        );

        w.stop().await;
        let seen = observed.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (done.id.clone(), JobStatus::Succeeded),
                (failed.id.clone(), JobStatus::Failed)
            ],
            "{n}: observer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_job() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let other = user(db, "mallory").await;
        let (exec, mut started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);
        let mut notices = q.subscribe();

        // The run sees the cancel at its next step.
        let j = q.submit(job(&owner.id, "gated")).await.unwrap().job;
        let (id, ctx) = next_started(&mut started).await;
        assert_eq!(id, j.id, "{n}");
        let e = q.cancel(&j.id, Some(&other.id)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");
        assert!(
            !ctx.is_canceled(),
            "{n}: someone else's cancel has no effect"
        );
        let flagged = q.cancel(&j.id, Some(&owner.id)).await.unwrap();
        assert_eq!(
            (flagged.status, flagged.cancel_requested),
            (JobStatus::Running, true),
            "{n}"
        );
        eventually("the cancel reaches the run", || async { ctx.is_canceled() }).await;
        exec.gate.add_permits(1);
        let done = wait_done(&q, &j.id).await;
        assert_eq!(done.status, JobStatus::Canceled, "{n}: {done:?}");
        assert!(done.outputs.is_empty(), "{n}");
        assert_eq!(assets_of(db, &j.id).await, 0, "{n}");
        assert_eq!(b.blob_count(), 0, "{n}: no blobs");
        assert_eq!(
            statuses(jobs::history(db, &j.id).await.unwrap()),
            [JobStatus::Queued, JobStatus::Running, JobStatus::Canceled],
            "{n}"
        );
        let mut kinds = Vec::new();
        while let Ok(notice) = notices.try_recv() {
            if notice.job_id == j.id {
                kinds.push(notice.kind);
            }
        }
        assert!(
            kinds.contains(&NoticeKind::CancelRequested),
            "{n}: {kinds:?}"
        );

        // A run that ignores the flag and produces outputs anyway: its blobs are deleted and
        // no asset row is written.
        let s = q.submit(job(&owner.id, "stubborn")).await.unwrap().job;
        let (_, ctx) = next_started(&mut started).await;
        q.cancel(&s.id, None).await.unwrap();
        eventually("the cancel reaches the run", || async { ctx.is_canceled() }).await;
        exec.gate.add_permits(1);
        let done = wait_done(&q, &s.id).await;
        assert_eq!(done.status, JobStatus::Canceled, "{n}: {done:?}");
        assert_eq!(assets_of(db, &s.id).await, 0, "{n}");
        assert_eq!(b.blob_count(), 0, "{n}: the late output's blob is deleted");

        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_running_job_to_another_worker() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let (exec, mut started) = TestExec::new(db);
        let w1 = spawn_worker(&q, &exec);

        let j = q.submit(job(&owner.id, "gated")).await.unwrap().job;
        let (_, ctx) = next_started(&mut started).await;
        // Stop the worker: after the grace period it stops the run (at its next step) and
        // gives the job back.
        let _ = w1.stop.send(true);
        eventually("the grace period ends and the run is stopped", || async {
            ctx.is_canceled()
        })
        .await;
        exec.gate.add_permits(1);
        tokio::time::timeout(PATIENCE, w1.handle)
            .await
            .expect("the stopping worker exits")
            .unwrap();
        let back = jobs::get(db, &j.id).await.unwrap().unwrap();
        assert_eq!(back.status, JobStatus::Queued, "{n}: {back:?}");
        assert_eq!(
            back.attempts, 0,
            "{n}: a release does not count the attempt"
        );
        assert!(!back.cancel_requested, "{n}");
        assert_eq!((assets_of(db, &j.id).await, b.blob_count()), (0, 0), "{n}");

        // Another worker finishes it, once.
        exec.gate.add_permits(10);
        let w2 = spawn_worker(&q, &exec);
        let done = wait_done(&q, &j.id).await;
        assert_eq!(done.status, JobStatus::Succeeded, "{n}: {done:?}");
        assert_eq!(done.attempts, 1, "{n}");
        w2.stop().await;
        assert_eq!(
            statuses(jobs::history(db, &j.id).await.unwrap()),
            [
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Succeeded
            ],
            "{n}"
        );
        assert_eq!(
            (assets_of(db, &j.id).await, b.blob_count()),
            (1, 1),
            "{n}: one output"
        );
        assert_eq!(done.outputs.len(), 1, "{n}");
        let usage = easel_store::usage::list(db, Some(&owner.id), None)
            .await
            .unwrap();
        assert_eq!(
            usage.iter().map(|u| u.jobs).sum::<u64>(),
            1,
            "{n}: usage counted once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_requeues_the_job_of_a_vanished_worker() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let j = q.submit(job(&owner.id, "quick")).await.unwrap().job;
        // A worker claims it with a tiny lease and is never heard of again.
        let ghost = jobs::claim(db, "wrk_ghost", 1, None)
            .await
            .unwrap()
            .expect(n);
        assert_eq!(ghost.id, j.id, "{n}");

        let reaper = spawn_reaper(&q);
        eventually("the reaper requeues the job", || async {
            let j = jobs::get(db, &j.id).await.unwrap().unwrap();
            j.status == JobStatus::Queued
        })
        .await;
        let requeued = jobs::get(db, &j.id).await.unwrap().unwrap();
        assert_eq!(requeued.attempts, 1, "{n}: the lost attempt counts");
        assert_eq!(
            jobs::heartbeat(db, &j.id, "wrk_ghost", 60_000)
                .await
                .unwrap(),
            jobs::LeaseState::Lost,
            "{n}"
        );

        let (exec, _started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);
        let done = wait_done(&q, &j.id).await;
        assert_eq!(
            (done.status, done.attempts),
            (JobStatus::Succeeded, 2),
            "{n}: {done:?}"
        );
        w.stop().await;
        reaper.stop().await;
        assert_eq!(
            statuses(jobs::history(db, &j.id).await.unwrap()),
            [
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Succeeded
            ],
            "{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_terminal_returns_when_the_job_ends_or_at_its_timeout() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;

        assert_eq!(
            q.wait_terminal("job_01jaaaaaaaaaaaaaaaaaaaaaaa", PATIENCE)
                .await
                .unwrap(),
            None,
            "{n}: unknown job"
        );

        // No worker: the timeout passes and the job comes back as it is.
        let queued = q.submit(job(&owner.id, "gated")).await.unwrap().job;
        let still = q
            .wait_terminal(&queued.id, Duration::from_millis(150))
            .await
            .unwrap();
        assert_eq!(still.map(|j| j.status), Some(JobStatus::Queued), "{n}");

        // A long wait ends as soon as the job does (well before its own timeout).
        let (exec, mut started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);
        let (_, _ctx) = next_started(&mut started).await;
        let waiter = {
            let q = q.clone();
            let id = queued.id.clone();
            tokio::spawn(async move { q.wait_terminal(&id, Duration::from_secs(600)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "{n}: returned while the job runs");
        exec.gate.add_permits(3);
        let got = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("wait_terminal returns once the job ends")
            .unwrap()
            .unwrap()
            .expect("job");
        assert_eq!(got.status, JobStatus::Succeeded, "{n}");

        // A finished job: at once.
        let again = tokio::time::timeout(
            PATIENCE,
            q.wait_terminal(&queued.id, Duration::from_secs(600)),
        )
        .await
        .expect("immediate")
        .unwrap();
        assert_eq!(again.map(|j| j.status), Some(JobStatus::Succeeded), "{n}");
        w.stop().await;
    }
}

#[tokio::test]
async fn submit_applies_defaults_caps_and_keys() {
    for b in backends().await {
        let n = b.name;
        let cfg = QueueConfig {
            max_queued_per_owner: 2,
            max_attempts: 5,
            ..config()
        };
        let q = Queue::new(b.store.clone(), cfg);
        let db = b.db();
        let owner = user(db, "alice").await;
        let mut notices = q.subscribe();

        let mut nj = job(&owner.id, "quick");
        nj.max_attempts = 0;
        nj.idempotency_key = Some("once".into());
        let first = q.submit(nj.clone()).await.unwrap();
        assert!(first.created, "{n}");
        assert_eq!(first.job.max_attempts, 5, "{n}: the queue's default");
        let notice = notices.try_recv().expect("a notice for the new job");
        assert_eq!(
            (notice.job_id.as_str(), notice.kind),
            (first.job.id.as_str(), NoticeKind::Changed),
            "{n}"
        );
        let again = q.submit(nj).await.unwrap();
        assert!(!again.created && again.job.id == first.job.id, "{n}");
        assert!(notices.try_recv().is_err(), "{n}: no notice for a replay");

        q.submit(job(&owner.id, "quick")).await.unwrap();
        let e = q
            .submit(job(&owner.id, "quick"))
            .await
            .err()
            .expect("over the cap");
        assert_eq!(e.kind, ErrorKind::RateLimited, "{n}: {e}");

        let c = q.cancel(&first.job.id, Some(&owner.id)).await.unwrap();
        assert_eq!(c.status, JobStatus::Canceled, "{n}");
        q.submit(job(&owner.id, "quick")).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks

#[derive(Debug, Clone)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Hooks {
    received: Arc<Mutex<Vec<Received>>>,
    /// The first `job.start` to `/ok` gets a 500.
    failed_once: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Hooks>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let r = Received {
        path: uri.path().to_string(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.clone(),
    };
    h.hits.fetch_add(1, Ordering::SeqCst);
    h.received.lock().unwrap().push(r);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match uri.path() {
        "/bad" => StatusCode::BAD_REQUEST,
        _ if v["type"] == "job.start" && !h.failed_once.swap(true, Ordering::SeqCst) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::OK,
    }
}

async fn start_hook_server() -> (String, Hooks) {
    let hooks = Hooks::default();
    let app = axum::Router::new()
        .route("/ok", axum::routing::post(hook))
        .route("/bad", axum::routing::post(hook))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hooks)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn settled(b: &TestStore, job_id: &str, want: usize) -> bool {
    let ds = easel_store::webhooks::for_job(b.db(), job_id)
        .await
        .unwrap();
    ds.len() == want && ds.iter().all(|(d, _)| d.status != "pending")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_recorded() {
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let secret = easel_store::users::webhook_secret(db, &owner.id)
            .await
            .unwrap();
        let (base, hooks) = start_hook_server().await;
        let hooked = |url: String, events: Vec<WebhookEvent>| {
            let mut nj = job(&owner.id, "quick");
            nj.webhook = Some(Webhook {
                url,
                events,
                format: Default::default(),
            });
            nj
        };
        let ok = q
            .submit(hooked(
                format!("{base}/ok"),
                vec![WebhookEvent::Start, WebhookEvent::Completed],
            ))
            .await
            .unwrap()
            .job;
        let bad = q
            .submit(hooked(format!("{base}/bad"), vec![WebhookEvent::Completed]))
            .await
            .unwrap()
            .job;
        let dead = q
            .submit(hooked(
                format!("http://127.0.0.1:{}/gone", closed_port()),
                vec![WebhookEvent::Completed],
            ))
            .await
            .unwrap()
            .job;

        let (exec, _started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);
        let (stop, stop_rx) = watch::channel(false);
        let enrich: easel_queue::webhooks::Enricher = Arc::new(|p: &mut serde_json::Value| {
            p["enriched"] = true.into();
        });
        let dispatcher = Running {
            stop,
            handle: tokio::spawn({
                let q = q.clone();
                async move { q.run_webhooks(Some(enrich), stop_rx).await }
            }),
        };
        for j in [&ok, &bad, &dead] {
            assert_eq!(
                wait_done(&q, &j.id).await.status,
                JobStatus::Succeeded,
                "{n}"
            );
        }
        eventually("every delivery settles", || async {
            settled(&b, &ok.id, 2).await
                && settled(&b, &bad.id, 1).await
                && settled(&b, &dead.id, 1).await
        })
        .await;
        dispatcher.stop().await;
        w.stop().await;

        // /ok: start failed once (500) then delivered; completed delivered at once.
        let ds = easel_store::webhooks::for_job(db, &ok.id).await.unwrap();
        let find = |event: &str| {
            ds.iter()
                .find(|(d, _)| d.event == event)
                .expect(event)
                .clone()
        };
        let (start, start_attempts) = find("start");
        let codes_of = |a: &[easel_store::webhooks::Attempt]| {
            a.iter().map(|a| a.status_code).collect::<Vec<_>>()
        };
        assert_eq!(
            (start.status.as_str(), start.attempts),
            ("delivered", 2),
            "{n}"
        );
        assert_eq!(codes_of(&start_attempts), [Some(500), Some(200)], "{n}");
        assert_eq!(start_attempts[0].error.as_deref(), Some("HTTP 500"), "{n}");
        let (completed, completed_attempts) = find("completed");
        assert_eq!(
            (completed.status.as_str(), completed.attempts),
            ("delivered", 1),
            "{n}"
        );
        assert_eq!(codes_of(&completed_attempts), [Some(200)], "{n}");

        // What the server got: three signed requests.
        let received = hooks.received.lock().unwrap().clone();
        let at_ok: Vec<&Received> = received.iter().filter(|r| r.path == "/ok").collect();
        assert_eq!(at_ok.len(), 3, "{n}: {at_ok:?}");
        let other_secret = easel_store::users::webhook_secret(db, &user(db, "bob").await.id)
            .await
            .unwrap();
        for r in &at_ok {
            let ts: i64 = r.timestamp.parse().expect("numeric webhook-timestamp");
            assert!(
                (ts - chrono::Utc::now().timestamp()).abs() < 3600,
                "{n}: timestamp {ts}"
            );
            assert_eq!(
                r.signature,
                easel_queue::webhooks::sign(&secret, &r.id, ts, &r.body),
                "{n}: signature"
            );
            assert_ne!(
                r.signature,
                easel_queue::webhooks::sign(&other_secret, &r.id, ts, &r.body),
                "{n}"
            );
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["data"]["id"], ok.id.as_str(), "{n}");
            assert_eq!(v["enriched"], true, "{n}: the enricher ran before signing");
            let want_id = if v["type"] == "job.start" {
                &start.id
            } else {
                &completed.id
            };
            assert_eq!(
                &r.id, want_id,
                "{n}: webhook-id is the delivery id, kept across retries"
            );
        }
        let types: Vec<String> = at_ok
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            types.iter().filter(|t| *t == "job.start").count(),
            2,
            "{n}: {types:?}"
        );
        assert_eq!(
            types.iter().filter(|t| *t == "job.completed").count(),
            1,
            "{n}: {types:?}"
        );
        let completed_body = at_ok
            .iter()
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
            .find(|v| v["type"] == "job.completed")
            .unwrap();
        assert_eq!(completed_body["data"]["status"], "succeeded", "{n}");

        // /bad: a 400 is final.
        let ds = easel_store::webhooks::for_job(db, &bad.id).await.unwrap();
        let (d, attempts) = &ds[0];
        assert_eq!(
            (d.status.as_str(), d.attempts, d.last_status_code),
            ("failed", 1, Some(400)),
            "{n}"
        );
        assert_eq!(codes_of(attempts), [Some(400)], "{n}");
        assert_eq!(
            received.iter().filter(|r| r.path == "/bad").count(),
            1,
            "{n}: not retried"
        );

        // Nobody listening: retried, then failed after webhook_max_attempts.
        let ds = easel_store::webhooks::for_job(db, &dead.id).await.unwrap();
        let (d, attempts) = &ds[0];
        assert_eq!((d.status.as_str(), d.attempts), ("failed", 3), "{n}");
        assert_eq!(codes_of(attempts), [None, None, None], "{n}");
        assert!(
            attempts.iter().all(|a| a.error.is_some()),
            "{n}: {attempts:?}"
        );
        assert_eq!(
            attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [1, 2, 3],
            "{n}"
        );
        assert_eq!(
            hooks.hits.load(Ordering::SeqCst),
            4,
            "{n}: requests that reached the server"
        );
    }
}

/// Under the default policy a delivery to a loopback receiver is refused at delivery time
/// (a name re-pointed after submit, or a job inserted around the API's check): nothing
/// reaches the receiver, one attempt is recorded as refused, and it is not retried, so the
/// delivery log cannot be used to scan the server's network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_non_public_receivers_are_refused_at_delivery() {
    for b in backends().await {
        let n = b.name;
        let cfg = QueueConfig {
            webhook_policy: easel_net::Policy::public(),
            ..config()
        };
        let q = Queue::new(b.store.clone(), cfg);
        let db = b.db();
        let owner = user(db, "mallory").await;
        let (base, hooks) = start_hook_server().await;
        let mut ids = Vec::new();
        for url in [
            format!("{base}/ok"),
            format!("http://localhost:{}/ok", closed_port()),
        ] {
            let mut nj = job(&owner.id, "quick");
            nj.webhook = Some(Webhook {
                url,
                events: vec![WebhookEvent::Completed],
                format: Default::default(),
            });
            ids.push(q.submit(nj).await.unwrap().job.id);
        }
        let (exec, _started) = TestExec::new(db);
        let w = spawn_worker(&q, &exec);
        let (stop, stop_rx) = watch::channel(false);
        let dispatcher = Running {
            stop,
            handle: tokio::spawn({
                let q = q.clone();
                async move { q.run_webhooks(None, stop_rx).await }
            }),
        };
        for id in &ids {
            assert_eq!(wait_done(&q, id).await.status, JobStatus::Succeeded, "{n}");
        }
        eventually("both deliveries settle", || async {
            settled(&b, &ids[0], 1).await && settled(&b, &ids[1], 1).await
        })
        .await;
        dispatcher.stop().await;
        w.stop().await;
        for id in &ids {
            let ds = easel_store::webhooks::for_job(db, id).await.unwrap();
            let (d, attempts) = &ds[0];
            assert_eq!((d.status.as_str(), d.attempts), ("failed", 1), "{n}");
            assert_eq!(attempts.len(), 1, "{n}");
            assert_eq!(attempts[0].status_code, None, "{n}");
            let err = attempts[0].error.as_deref().unwrap_or_default();
            assert!(
                err.starts_with("refused:") && err.contains("non-public"),
                "{n}: {err}"
            );
        }
        assert_eq!(
            hooks.hits.load(Ordering::SeqCst),
            0,
            "{n}: nothing reached the receiver"
        );
    }
}

/// No head-of-line blocking: with one worker for the device and one for the CPU, two long
/// generations queued first do not hold back a tool job submitted after them. The second
/// generation is not even claimed while the device is busy (no worker sits on its claim),
/// and it runs once the first is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_run_beside_generations_that_wait_for_the_device() {
    use easel_core::job::Resource;
    for b in backends().await {
        let n = b.name;
        let q = Queue::new(b.store.clone(), config());
        let db = b.db();
        let owner = user(db, "alice").await;
        let gen = |task: &str| NewJob {
            resource: Resource::Device,
            ..job(&owner.id, task)
        };
        let first = q.submit(gen("gated")).await.unwrap().job;
        let second = q.submit(gen("gated")).await.unwrap().job;
        let tool = q.submit(job(&owner.id, "quick")).await.unwrap().job;

        let (exec, mut started) = TestExec::new(db);
        let spawn = |resources: &[Resource]| {
            let (stop, rx) = watch::channel(false);
            let w = Worker::for_resources(q.clone(), exec.clone(), resources);
            Running {
                stop,
                handle: tokio::spawn(w.run(rx)),
            }
        };
        let device = spawn(&[Resource::Device]);
        let cpu = spawn(&[Resource::Cpu, Resource::Network]);
        let (running, _ctx) = next_started(&mut started).await;
        assert_eq!(
            running, first.id,
            "{n}: the device takes the first generation"
        );

        assert_eq!(
            wait_done(&q, &tool.id).await.status,
            JobStatus::Succeeded,
            "{n}"
        );
        let waiting = jobs::get(db, &second.id).await.unwrap().unwrap();
        assert_eq!(
            waiting.status,
            JobStatus::Queued,
            "{n}: not claimed while the device is busy"
        );
        assert_eq!(waiting.attempts, 0, "{n}");

        exec.gate.add_permits(6);
        for j in [&first, &second] {
            assert_eq!(
                wait_done(&q, &j.id).await.status,
                JobStatus::Succeeded,
                "{n}"
            );
        }
        device.stop().await;
        cpu.stop().await;
    }
}
