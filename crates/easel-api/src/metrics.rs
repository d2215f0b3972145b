//! Prometheus metrics: HTTP latency by route, job durations by task and outcome, and queue
//! depth (read from the database at scrape time, so it is right across processes).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::AppState;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http: HistogramVec,
    jobs: HistogramVec,
    finished: IntCounterVec,
    depth: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http = HistogramVec::new(
            HistogramOpts::new(
                "easel_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("metric");
        let jobs = HistogramVec::new(
            HistogramOpts::new(
                "easel_job_duration_seconds",
                "Job run time by task and outcome",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["task", "status"],
        )
        .expect("metric");
        let finished = IntCounterVec::new(
            Opts::new(
                "easel_jobs_finished_total",
                "Jobs finished by task and outcome",
            ),
            &["task", "status"],
        )
        .expect("metric");
        let depth = IntGaugeVec::new(
            Opts::new("easel_queue_depth", "Jobs queued or running"),
            &["status"],
        )
        .expect("metric");
        for m in [
            Box::new(http.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(jobs.clone()),
            Box::new(finished.clone()),
            Box::new(depth.clone()),
        ] {
            registry.register(m).expect("register metric");
        }
        Metrics {
            registry,
            http,
            jobs,
            finished,
            depth,
        }
    }

    pub fn job_finished(&self, task: &str, status: &str, elapsed: Duration) {
        self.jobs
            .with_label_values(&[task, status])
            .observe(elapsed.as_secs_f64());
        self.finished.with_label_values(&[task, status]).inc();
    }
}

/// Middleware: observe every request's latency under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    state
        .metrics
        .http
        .with_label_values(&[&method, &route, resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics`
pub async fn render(State(state): State<AppState>) -> Response {
    if let Ok(counts) = easel_store::jobs::counts_by_status(&state.store.db).await {
        state.metrics.depth.with_label_values(&["queued"]).set(0);
        state.metrics.depth.with_label_values(&["running"]).set(0);
        for (s, n) in counts {
            state.metrics.depth.with_label_values(&[s.as_str()]).set(n);
        }
    }
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&state.metrics.registry.gather(), &mut buf);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        buf,
    )
        .into_response()
}
