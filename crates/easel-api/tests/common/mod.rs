//! Test support: a real Easel server in-process on an ephemeral port, and HTTP helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use easel_api::server::{self, Config, Server};
use easel_queue::{Executor, RunContext, RunError, RunOutput, Worker};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use tokio::sync::watch;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

pub struct TestServer {
    pub srv: Option<Server>,
    pub base: String,
    pub http: Client,
    pub dir: Arc<tempfile::TempDir>,
}

/// Defaults for tests: quick polling and reaping, no models scan.
pub fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::embedded(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin_key = Some(ADMIN_KEY.into());
    cfg.queue.poll_interval = Duration::from_millis(50);
    cfg.queue.reap_interval = Duration::from_millis(100);
    cfg.queue.webhook_retry_base = Duration::from_millis(20);
    cfg.scan_models = false;
    // Webhook receivers of the tests listen on loopback: the operator's allow-list.
    cfg.queue.webhook_policy =
        easel_net::Policy::allowing(vec![easel_net::Allow::parse("127.0.0.1").unwrap()]);
    cfg
}

impl TestServer {
    pub async fn start(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_in(dir, f).await
    }

    /// Start on an existing data folder (restart tests).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, f: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = config(dir.path());
        f(&mut cfg);
        let srv = server::start(cfg).await.expect("server starts");
        TestServer {
            base: format!("http://{}", srv.addr),
            srv: Some(srv),
            http: Client::new(),
            dir,
        }
    }

    pub fn server(&self) -> &Server {
        self.srv.as_ref().unwrap()
    }

    pub fn req(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path, Some(key));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Create a user with a key; returns (key, user id).
    pub async fn user(&self, name: &str) -> (String, String) {
        let (s, v) = self
            .json(
                Method::POST,
                "/v1/keys",
                ADMIN_KEY,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["key"].as_str().unwrap().to_string(),
            v["user_id"].as_str().unwrap().to_string(),
        )
    }

    pub async fn upload(&self, key: &str, png: Vec<u8>) -> String {
        let resp = self
            .req(Method::POST, "/v1/assets", Some(key))
            .header("content-type", "image/png")
            .body(png)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let v: Value = resp.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Send `bytes` through `/v1/uploads` in `parts` parts (the announcement's other fields
    /// in `fields`) and complete it: the completion's status and body.
    pub async fn upload_in_parts(
        &self,
        key: &str,
        fields: Value,
        bytes: &[u8],
        parts: usize,
    ) -> (u16, Value) {
        let mut body = json!({"file_size": bytes.len(), "parts": parts,
            "content_type": "application/octet-stream"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let (s, u) = self
            .json(Method::POST, "/v1/uploads", key, Some(body))
            .await;
        assert_eq!(s, 201, "{u}");
        let size = bytes.len().div_ceil(parts);
        for (i, chunk) in bytes.chunks(size).enumerate() {
            let url = u["part_urls"][i]["url"].as_str().unwrap();
            let r = self
                .http
                .put(url)
                .body(chunk.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
        let id = u["id"].as_str().unwrap();
        self.json(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            key,
            None,
        )
        .await
    }

    pub async fn submit(&self, key: &str, body: Value) -> Value {
        let (s, v) = self.json(Method::POST, "/v1/jobs", key, Some(body)).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// Long-poll until the job ends.
    pub async fn wait(&self, key: &str, id: &str) -> Value {
        for _ in 0..10 {
            let (s, v) = self
                .json(Method::GET, &format!("/v1/jobs/{id}?wait=30"), key, None)
                .await;
            assert_eq!(s, 200, "{v}");
            if ["succeeded", "failed", "canceled"].contains(&v["status"].as_str().unwrap()) {
                return v;
            }
        }
        panic!("job {id} did not finish");
    }

    pub async fn shutdown(mut self) {
        self.srv.take().unwrap().shutdown().await;
    }
}

pub async fn get(resp: Response) -> (u16, Value) {
    let s = resp.status().as_u16();
    let t = resp.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 7) as u8, (y * 5) as u8, 90, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

pub fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("an image")
}

/// Wraps the real providers: before running, reports steps and waits until `open` is set,
/// so a test can hold a job in `running` and cancel or interrupt it.
pub struct Gated {
    pub inner: easel_providers::Providers,
    pub open: Arc<std::sync::atomic::AtomicBool>,
    pub started: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Executor for Gated {
    fn tasks(&self) -> Vec<String> {
        self.inner.tasks()
    }
    async fn run(&self, job: &easel_core::Job, ctx: &RunContext) -> Result<RunOutput, RunError> {
        self.started.notify_one();
        let mut step = 0;
        while !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            ctx.step(step % 100, 100)?;
            step += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.run(job, ctx).await
    }
}

pub struct GatedWorker {
    pub open: Arc<std::sync::atomic::AtomicBool>,
    pub started: Arc<tokio::sync::Notify>,
    pub stop: watch::Sender<bool>,
    pub handle: tokio::task::JoinHandle<()>,
}

/// A worker outside the server (as `easel worker` would be) running `Gated`.
pub fn gated_worker(srv: &Server) -> GatedWorker {
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Notify::new());
    let exec = Gated {
        inner: providers(srv),
        open: open.clone(),
        started: started.clone(),
    };
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(Worker::new(srv.state.queue.clone(), Arc::new(exec)).run(rx));
    GatedWorker {
        open,
        started,
        stop,
        handle,
    }
}

/// The providers a worker outside the server runs (CPU engine, one model loaded).
pub fn providers(srv: &Server) -> easel_providers::Providers {
    let engine =
        easel_providers::diffusion::Engine::new(easel_providers::diffusion::EngineConfig {
            model_roots: srv.state.engine.model_roots().to_vec(),
            ..Default::default()
        })
        .expect("engine");
    easel_providers::Providers::new(
        srv.state.store.clone(),
        srv.state.limits.clone(),
        Arc::new(engine),
    )
}

/// A plain worker outside the server.
pub fn worker(srv: &Server) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let exec = providers(srv);
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(Worker::new(srv.state.queue.clone(), Arc::new(exec)).run(rx));
    (stop, handle)
}

pub async fn wait_status(t: &TestServer, key: &str, id: &str, status: &str) -> Value {
    for _ in 0..500 {
        let (_, v) = t
            .json(Method::GET, &format!("/v1/jobs/{id}"), key, None)
            .await;
        if v["status"] == status {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never became {status}");
}
