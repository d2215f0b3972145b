//! Remote providers: generation tasks (`txt2img`, `img2img`, `inpaint`) run by another
//! server over HTTP, for models whose `provider` (or `fallback_provider`) is one of:
//!
//! | kind | speaks | `base_url` is |
//! |---|---|---|
//! | `openai` | an OpenAI-compatible images API: `POST /images/generations` (JSON), `POST /images/edits` (multipart), `response_format: b64_json` | the API root with its version (`https://api.openai.com/v1`, `http://host:7878/openai/v1`) |
//! | `replicate` | Replicate/Cog predictions: `POST /v1/models/{owner}/{name}/predictions` or `POST /v1/predictions` with `version`, `Prefer: wait`, then `GET` its `urls.get` until it ends | the root before `/v1` (`https://api.replicate.com`, `http://host:7878/replicate`) |
//! | `easel` | another Easel server's native API: `POST /v1/jobs` (with the job's id as `Idempotency-Key`, so a retried submit never runs twice), `GET /v1/jobs/{id}?wait=`, outputs by their signed URLs | the server root (`http://host:7878`) |
//!
//! The provider config (`provider_config` / `fallback_provider_config`):
//!
//! | key | meaning |
//! |---|---|
//! | `base_url` (required) | above |
//! | `model` | the upstream model (`openai`: `model`; `replicate`: `owner/name`; `easel`: a model name); absent: the upstream's default (`replicate` needs `model` or `version`) |
//! | `version` | `replicate`: a version id (then `POST /v1/predictions`) |
//! | `api_key_env` | the name of an environment variable holding the upstream key, sent as `Authorization: Bearer`. Keys are never stored in the registry: a config with `api_key` or `token` is refused when the model is saved (`ModelSpec::validate`), and nothing here is returned by the API but the variable's name |
//! | `timeout_s` | the whole call's deadline (default 600) |
//! | `retries` | extra attempts after a retryable failure (default 2) |
//! | `extensions` | `openai`: also send the AI Magicx/Easel extension fields (`seed`, `negative_prompt`, `steps`, `guidance`, `scheduler`, `strength`); default false, since OpenAI refuses unknown fields |
//!
//! Retryable failures (connection errors, timeouts, HTTP 408/429/5xx) are retried with
//! exponential backoff (0.5 s, 1 s, 2 s, … at most 8 s), checking for cancel in between;
//! others (a 4xx: the upstream refused the input) are not. Upstream progress is relayed (the
//! Easel job's steps; the tqdm lines of a prediction's logs), and a cancel of the job cancels
//! the upstream work (`replicate`, `easel`). Outputs are downloaded (at most 64 MiB each),
//! checked against the server's pixel limit, and stored as this server's assets.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use easel_core::generate::GenerateInput;
use easel_core::limits::Limits;
use easel_core::task::TaskInput;
use easel_core::{Error, Job, JobError};
use easel_queue::{OutputImage, RunContext, RunError, RunOutput};
use easel_store::Store;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// The remote kinds.
pub const KINDS: &[&str] = &["openai", "replicate", "easel"];

/// Largest output accepted from an upstream.
const MAX_DOWNLOAD: usize = 64 << 20;

/// What a provider config says (see the module documentation).
#[derive(Debug, Clone)]
pub struct Remote {
    pub kind: String,
    pub base_url: String,
    pub model: Option<String>,
    pub version: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub extensions: bool,
}

impl Remote {
    /// Read a config of a remote kind. Errors name the config's field.
    pub fn from_config(kind: &str, config: &Value, field: &str) -> Result<Remote, Error> {
        let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
        let base_url = s("base_url")
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| {
                Error::invalid(
                    format!("{field}.base_url"),
                    format!("a `{kind}` provider needs an http(s) base_url"),
                )
            })?
            .trim_end_matches('/')
            .to_string();
        let api_key = match s("api_key_env") {
            Some(var) => Some(std::env::var(&var).map_err(|_| {
                Error::unavailable(format!(
                    "the environment variable {var} (api_key_env of the `{kind}` provider) is not set"
                ))
            })?),
            None => None,
        };
        Ok(Remote {
            kind: kind.to_string(),
            base_url,
            model: s("model"),
            version: s("version"),
            api_key,
            timeout: Duration::from_secs_f64(
                config
                    .get("timeout_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(600.0)
                    .clamp(1.0, 86_400.0),
            ),
            retries: config
                .get("retries")
                .and_then(Value::as_u64)
                .unwrap_or(2)
                .min(10) as u32,
            extensions: config
                .get("extensions")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// A request to `{base_url}{path}` with the upstream key.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.auth(client.request(method, format!("{}{path}", self.base_url)))
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }
}

/// A failed call: whether trying again may help.
#[derive(Debug)]
struct CallError {
    retry: bool,
    error: RunError,
}

impl CallError {
    fn fatal(e: RunError) -> CallError {
        CallError {
            retry: false,
            error: e,
        }
    }
    fn failed(msg: String, retry: bool) -> CallError {
        CallError {
            retry,
            error: RunError::Failed(JobError::new("provider_failed", msg)),
        }
    }
}

impl From<RunError> for CallError {
    fn from(e: RunError) -> Self {
        CallError::fatal(e)
    }
}

fn http_error(what: &str, e: reqwest::Error) -> CallError {
    CallError::failed(format!("{what}: {e}"), true)
}

/// An upstream answer that is not a success: retry on 408, 429 and 5xx.
async fn status_error(what: &str, resp: reqwest::Response) -> CallError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(500).collect();
    let retry = status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
    CallError::failed(format!("{what}: HTTP {} {body}", status.as_u16()), retry)
}

async fn json_of(what: &str, resp: reqwest::Response) -> Result<Value, CallError> {
    if !resp.status().is_success() {
        return Err(status_error(what, resp).await);
    }
    resp.json::<Value>()
        .await
        .map_err(|e| CallError::failed(format!("{what}: not JSON: {e}"), false))
}

/// Run a generation job on a remote provider, with retries.
pub async fn run(
    remote: &Remote,
    store: &Store,
    limits: &Limits,
    job: &Job,
    ctx: &RunContext,
) -> Result<RunOutput, RunError> {
    let input = TaskInput::parse(&job.task, job.input.clone(), limits)?;
    let g = input.generation().cloned().ok_or_else(|| {
        Error::invalid("task", format!("`{}` is not a generation task", job.task))
    })?;
    let images = Images::load(store, job, &g).await?;
    let client = reqwest::Client::builder()
        .timeout(remote.timeout)
        .user_agent(concat!("easel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RunError::from(Error::internal(e.to_string())))?;
    let deadline = Instant::now() + remote.timeout;
    let mut attempt = 0;
    loop {
        ctx.check()?;
        let call = Call {
            remote,
            client: &client,
            job,
            g: &g,
            images: &images,
            ctx,
            limits,
            deadline,
        };
        let r = match remote.kind.as_str() {
            "openai" => call.openai().await,
            "replicate" => call.replicate().await,
            "easel" => call.easel().await,
            other => Err(CallError::fatal(RunError::Failed(JobError::new(
                easel_core::job::codes::NO_PROVIDER,
                format!("no remote provider kind `{other}`"),
            )))),
        };
        match r {
            Ok(outputs) => {
                let sizes: Vec<(u32, u32)> = outputs.iter().map(|o| (o.width, o.height)).collect();
                return Ok(RunOutput {
                    usage_units: easel_core::usage::image_units(&sizes),
                    outputs,
                    provider: remote.kind.clone(),
                });
            }
            Err(e) if e.retry && attempt < remote.retries && Instant::now() < deadline => {
                attempt += 1;
                let wait = Duration::from_millis(500 << (attempt - 1).min(4));
                tracing::warn!(job = %job.id, provider = %remote.kind, attempt, error = ?e.error, "retrying the upstream call");
                ctx.log(format!(
                    "{} failed ({:?}); retry {attempt}",
                    remote.kind, e.error
                ));
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    ctx.check()?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => return Err(e.error),
        }
    }
}

/// The job's input images, read once.
struct Images {
    image: Option<Bytes>,
    mask: Option<Bytes>,
}

impl Images {
    async fn load(store: &Store, job: &Job, g: &GenerateInput) -> Result<Images, RunError> {
        let fetch = |id: Option<String>, field: &'static str| async move {
            let Some(id) = id else {
                return Ok::<_, RunError>(None);
            };
            let a = easel_store::assets::get(&store.db, &id)
                .await?
                .filter(|a| a.owner_id == job.owner_id)
                .ok_or_else(|| Error::invalid(field, format!("asset {id} not found")))?;
            Ok(Some(
                store
                    .blobs
                    .get(&easel_core::asset::blob_key(&a.owner_id, &a.id))
                    .await?,
            ))
        };
        Ok(Images {
            image: fetch(g.image.clone(), "input.image").await?,
            mask: fetch(g.mask.clone(), "input.mask").await?,
        })
    }
}

fn data_url(bytes: &[u8]) -> String {
    let mime = easel_imageops::probe(bytes)
        .map(|i| i.format.mime())
        .unwrap_or("image/png");
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// One attempt.
struct Call<'a> {
    remote: &'a Remote,
    client: &'a reqwest::Client,
    job: &'a Job,
    g: &'a GenerateInput,
    images: &'a Images,
    ctx: &'a RunContext,
    limits: &'a Limits,
    deadline: Instant,
}

impl Call<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.remote.base_url)
    }

    fn timed_out(&self) -> Result<(), CallError> {
        if Instant::now() >= self.deadline {
            return Err(CallError::failed(
                format!(
                    "the {} provider did not finish within {}s",
                    self.remote.kind,
                    self.remote.timeout.as_secs()
                ),
                false,
            ));
        }
        Ok(())
    }

    /// An output image from bytes, checked and described.
    fn output(&self, bytes: Bytes) -> Result<OutputImage, CallError> {
        let info = easel_imageops::probe(&bytes).map_err(|e| {
            CallError::failed(
                format!(
                    "the {} provider sent an unreadable image: {e}",
                    self.remote.kind
                ),
                false,
            )
        })?;
        if u64::from(info.width) * u64::from(info.height) > self.limits.max_pixels {
            return Err(CallError::failed(
                format!(
                    "the {} provider sent a {}x{} image, over this server's pixel limit",
                    self.remote.kind, info.width, info.height
                ),
                false,
            ));
        }
        let r = self.g.resolved();
        Ok(OutputImage {
            mime_type: info.format.mime().to_string(),
            width: info.width,
            height: info.height,
            metadata: json!({
                "provider": self.remote.kind,
                "upstream_model": self.remote.model,
                "prompt": self.g.prompt,
                "negative_prompt": self.g.negative_prompt,
                "seed": r.seed,
            }),
            parent_id: self.g.image.clone(),
            bytes,
        })
    }

    /// Download an output: a `data:` URL or an http(s) URL.
    async fn download(&self, url: &str) -> Result<OutputImage, CallError> {
        if let Some(rest) = url.strip_prefix("data:") {
            let (_, b64) = rest.split_once(";base64,").ok_or_else(|| {
                CallError::failed("an output data: URL that is not base64".into(), false)
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| CallError::failed(format!("an output data: URL: {e}"), false))?;
            return self.output(Bytes::from(bytes));
        }
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http_error("downloading an output", e))?;
        if !resp.status().is_success() {
            return Err(status_error("downloading an output", resp).await);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOWNLOAD as u64)
        {
            return Err(CallError::failed("an output over 64 MiB".into(), false));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| http_error("downloading an output", e))?;
        if bytes.len() > MAX_DOWNLOAD {
            return Err(CallError::failed("an output over 64 MiB".into(), false));
        }
        self.output(bytes)
    }

    fn no_loras(&self) -> Result<(), CallError> {
        if !self.g.loras.is_empty() {
            return Err(CallError::fatal(
                Error::invalid(
                    "input.loras",
                    format!(
                        "LoRAs are applied by local and `easel` providers; this model runs on a \
                         `{}` provider",
                        self.remote.kind
                    ),
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// `openai`: `/images/generations`, or `/images/edits` with an image.
    async fn openai(&self) -> Result<Vec<OutputImage>, CallError> {
        self.no_loras()?;
        let r = self.g.resolved();
        let mut fields = Map::new();
        if let Some(m) = &self.remote.model {
            fields.insert("model".into(), json!(m));
        }
        fields.insert("prompt".into(), json!(self.g.prompt));
        fields.insert("n".into(), json!(r.count));
        fields.insert("size".into(), json!(format!("{}x{}", r.width, r.height)));
        fields.insert("response_format".into(), json!("b64_json"));
        if self.remote.extensions {
            fields.insert("seed".into(), json!(r.seed));
            fields.insert("steps".into(), json!(r.steps));
            fields.insert("guidance".into(), json!(r.guidance));
            if let Some(n) = &self.g.negative_prompt {
                fields.insert("negative_prompt".into(), json!(n));
            }
            if let Some(s) = &self.g.scheduler {
                fields.insert("scheduler".into(), json!(s));
            }
            if self.images.image.is_some() {
                fields.insert("strength".into(), json!(r.strength));
            }
        }
        let req = match &self.images.image {
            None => self
                .client
                .post(self.url("/images/generations"))
                .json(&fields),
            Some(image) => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    let text = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    form = form.text(k, text);
                }
                let part = |bytes: Vec<u8>, name: &str| {
                    reqwest::multipart::Part::bytes(bytes)
                        .file_name(name.to_string())
                        .mime_str("image/png")
                        .expect("a valid mime type")
                };
                form = form.part("image", part(png_of(image, None)?, "image.png"));
                if let Some(mask) = &self.images.mask {
                    // Easel's masks are white where to repaint; OpenAI's are transparent there.
                    form = form.part("mask", part(png_of(image, Some(mask))?, "mask.png"));
                }
                self.client.post(self.url("/images/edits")).multipart(form)
            }
        };
        let resp = self
            .remote
            .auth(req)
            .send()
            .await
            .map_err(|e| http_error("the openai provider", e))?;
        let v = json_of("the openai provider", resp).await?;
        let data = v["data"].as_array().cloned().unwrap_or_default();
        if data.is_empty() {
            return Err(CallError::failed(
                format!("the openai provider answered no images: {v}"),
                false,
            ));
        }
        let mut out = Vec::new();
        for d in data {
            self.ctx.check()?;
            if let Some(b) = d["b64_json"].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| CallError::failed(format!("b64_json: {e}"), false))?;
                out.push(self.output(Bytes::from(bytes))?);
            } else if let Some(u) = d["url"].as_str() {
                out.push(self.download(u).await?);
            }
        }
        self.ctx
            .step(out.len() as u32, out.len() as u32)
            .map_err(CallError::fatal)?;
        Ok(out)
    }

    /// `replicate`: create with `Prefer: wait`, poll `urls.get`, relay progress, cancel.
    async fn replicate(&self) -> Result<Vec<OutputImage>, CallError> {
        self.no_loras()?;
        let r = self.g.resolved();
        let mut input = json!({
            "prompt": self.g.prompt,
            "width": r.width,
            "height": r.height,
            "num_inference_steps": r.steps,
            "guidance_scale": r.guidance,
            "seed": r.seed,
            "num_outputs": r.count,
        });
        if let Some(n) = &self.g.negative_prompt {
            input["negative_prompt"] = json!(n);
        }
        if let Some(img) = &self.images.image {
            input["image"] = json!(data_url(img));
            input["prompt_strength"] = json!(r.strength);
        }
        if let Some(m) = &self.images.mask {
            input["mask"] = json!(data_url(m));
        }
        let (url, body) = match (&self.remote.version, &self.remote.model) {
            (Some(v), _) => (
                self.url("/v1/predictions"),
                json!({"version": v, "input": input}),
            ),
            (None, Some(m)) if m.contains('/') => (
                self.url(&format!("/v1/models/{m}/predictions")),
                json!({"input": input}),
            ),
            _ => {
                return Err(CallError::fatal(
                    Error::invalid(
                        "provider_config",
                        "a `replicate` provider needs `version` or `model` as owner/name",
                    )
                    .into(),
                ))
            }
        };
        let resp = self
            .remote
            .auth(
                self.client
                    .post(url)
                    .header("Prefer", "wait=60")
                    .json(&body),
            )
            .send()
            .await
            .map_err(|e| http_error("the replicate provider", e))?;
        let mut p = json_of("the replicate provider", resp).await?;
        let get = p["urls"]["get"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                p["id"]
                    .as_str()
                    .map(|id| self.url(&format!("/v1/predictions/{id}")))
            })
            .ok_or_else(|| CallError::failed(format!("no prediction id in {p}"), false))?;
        let cancel = p["urls"]["cancel"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{get}/cancel"));
        loop {
            if let Some(logs) = p["logs"].as_str() {
                if let Some((done, total)) = last_progress(logs) {
                    let _ = self.ctx.step(done, total);
                }
            }
            match p["status"].as_str().unwrap_or("") {
                "succeeded" => break,
                "failed" | "canceled" => {
                    return Err(CallError::failed(
                        format!(
                            "the replicate prediction {}: {}",
                            p["status"].as_str().unwrap_or(""),
                            p["error"].as_str().unwrap_or("no error given")
                        ),
                        false,
                    ))
                }
                _ => {}
            }
            if self.ctx.is_canceled() {
                let _ = self.remote.auth(self.client.post(&cancel)).send().await;
                return Err(CallError::fatal(RunError::Canceled));
            }
            self.timed_out()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let resp = self
                .remote
                .auth(self.client.get(&get))
                .send()
                .await
                .map_err(|e| http_error("polling the replicate prediction", e))?;
            p = json_of("polling the replicate prediction", resp).await?;
        }
        let urls: Vec<String> = match &p["output"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            other => {
                return Err(CallError::failed(
                    format!("a replicate output that is not URLs: {other}"),
                    false,
                ))
            }
        };
        let mut out = Vec::new();
        for u in urls {
            self.ctx.check()?;
            out.push(self.download(&u).await?);
        }
        Ok(out)
    }

    /// `easel`: a native job upstream, followed to its end.
    async fn easel(&self) -> Result<Vec<OutputImage>, CallError> {
        let mut input = self.job.input.clone();
        if let Some(img) = &self.images.image {
            input["image"] = json!(data_url(img));
        }
        if let Some(m) = &self.images.mask {
            input["mask"] = json!(data_url(m));
        }
        // Progress previews are this server's business; the upstream need not make them.
        if let Some(o) = input.as_object_mut() {
            o.remove("preview_every");
        }
        let mut body = json!({"task": self.job.task, "input": input});
        if let Some(m) = &self.remote.model {
            body["model"] = json!(m);
        }
        let resp = self
            .remote
            .auth(
                self.client
                    .post(self.url("/v1/jobs"))
                    .header("Idempotency-Key", format!("easel-upstream:{}", self.job.id))
                    .json(&body),
            )
            .send()
            .await
            .map_err(|e| http_error("the easel provider", e))?;
        let mut j = json_of("the easel provider", resp).await?;
        let id = j["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CallError::failed(format!("no job id in {j}"), false))?;
        loop {
            if let (Some(s), Some(t)) = (j["step"].as_u64(), j["total_steps"].as_u64()) {
                let _ = self.ctx.step(s as u32, t as u32);
            }
            match j["status"].as_str().unwrap_or("") {
                "succeeded" => break,
                "failed" | "canceled" => {
                    let retry = j["error"]["code"] == "lease_expired";
                    return Err(CallError::failed(
                        format!(
                            "the easel job {id} {}: {}",
                            j["status"].as_str().unwrap_or(""),
                            j["error"]["message"].as_str().unwrap_or("no error given")
                        ),
                        retry,
                    ));
                }
                _ => {}
            }
            if self.ctx.is_canceled() {
                let _ = self
                    .remote
                    .auth(self.client.post(self.url(&format!("/v1/jobs/{id}/cancel"))))
                    .send()
                    .await;
                return Err(CallError::fatal(RunError::Canceled));
            }
            self.timed_out()?;
            let resp = self
                .remote
                .auth(self.client.get(self.url(&format!("/v1/jobs/{id}?wait=1"))))
                .send()
                .await
                .map_err(|e| http_error("polling the easel job", e))?;
            j = json_of("polling the easel job", resp).await?;
        }
        let mut out = Vec::new();
        for o in j["outputs"].as_array().cloned().unwrap_or_default() {
            self.ctx.check()?;
            let url = o["url"]
                .as_str()
                .ok_or_else(|| CallError::failed(format!("an output without url: {o}"), false))?;
            out.push(self.download(url).await?);
        }
        Ok(out)
    }
}

/// The last `done/total` of tqdm-style lines (`50%|#####     | 1/2`).
fn last_progress(logs: &str) -> Option<(u32, u32)> {
    logs.lines().rev().find_map(|l| {
        let (_, rest) = l.rsplit_once('|')?;
        let (a, b) = rest.trim().split_once('/')?;
        let b = b.split_whitespace().next()?;
        Some((a.trim().parse().ok()?, b.parse().ok()?))
    })
}

/// A PNG of `image`, or with `mask` (white = repaint) the image with alpha 0 where the mask
/// is white (OpenAI's edit masks).
fn png_of(image: &[u8], mask: Option<&Bytes>) -> Result<Vec<u8>, CallError> {
    let bad = |e: easel_imageops::OpsError| {
        CallError::fatal(Error::invalid("input.image", e.to_string()).into())
    };
    let img = easel_imageops::decode(image, u64::MAX).map_err(bad)?;
    let out = match mask {
        None => img,
        Some(m) => {
            let m = easel_imageops::decode(m, u64::MAX).map_err(bad)?;
            let m = easel_imageops::resize(
                &m,
                img.width(),
                img.height(),
                easel_imageops::Filter::Bilinear,
            )
            .map_err(bad)?
            .to_luma8();
            let mut rgba = img.to_rgba8();
            for (p, k) in rgba.pixels_mut().zip(m.pixels()) {
                p.0[3] = 255 - k.0[0];
            }
            easel_imageops::image::DynamicImage::ImageRgba8(rgba)
        }
    };
    easel_imageops::encode(&out, &easel_imageops::Encoding::Png, &[]).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_from_tqdm_lines() {
        assert_eq!(last_progress(""), None);
        assert_eq!(
            last_progress("Running\n 33%|###       | 1/3\n 66%|######    | 2/3\n"),
            Some((2, 3))
        );
        assert_eq!(
            last_progress("100%|██████████| 50/50 [00:03<00:00, 15.2it/s]"),
            Some((50, 50))
        );
    }

    #[test]
    fn configs_need_a_base_url_and_read_keys_from_the_environment() {
        let e = Remote::from_config("openai", &json!({}), "provider_config").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("provider_config.base_url"));
        let r = Remote::from_config(
            "easel",
            &json!({"base_url": "http://127.0.0.1:9/", "retries": 50, "timeout_s": 5}),
            "provider_config",
        )
        .unwrap();
        assert_eq!(r.base_url, "http://127.0.0.1:9");
        assert_eq!((r.retries, r.timeout), (10, Duration::from_secs(5)));
        assert!(r.api_key.is_none());
        let e = Remote::from_config(
            "easel",
            &json!({"base_url": "http://x", "api_key_env": "EASEL_TEST_SURELY_UNSET_VAR"}),
            "provider_config",
        )
        .unwrap_err();
        assert!(e.message.contains("EASEL_TEST_SURELY_UNSET_VAR"), "{e}");
    }
}
