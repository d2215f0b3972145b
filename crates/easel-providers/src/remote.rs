//! Remote providers: generation tasks (`txt2img`, `img2img`, `inpaint`) run by another
//! server over HTTP, for models whose `provider` (or `fallback_provider`) is one of:
//!
//! | kind | speaks | `base_url` is |
//! |---|---|---|
//! | `openai` | an OpenAI-compatible images API: `POST /images/generations` (JSON), `POST /images/edits` (multipart), `response_format: b64_json` | the API root with its version (`https://api.openai.com/v1`, `http://host:7878/openai/v1`) |
//! | `replicate` | Replicate/Cog predictions: `POST /v1/models/{owner}/{name}/predictions` or `POST /v1/predictions` with `version`, `Prefer: wait`, then `GET` its `urls.get` until it ends | the root before `/v1` (`https://api.replicate.com`, `http://host:7878/replicate`) |
//! | `easel` | another Easel server's native API: `POST /v1/jobs` (with `Idempotency-Key: easel-upstream:<job id>:<config>:<n>`, so a retried submit whose answer was lost finds the same upstream job; `n` counts the upstream jobs that failed, so a retry after one submits anew), `GET /v1/jobs/{id}?wait=`, outputs by their signed URLs | the server root (`http://host:7878`) |
//!
//! The provider config (`provider_config` / `fallback_provider_config`):
//!
//! | key | meaning |
//! |---|---|
//! | `base_url` | above; absent: `https://api.openai.com/v1` (`openai`), `https://api.replicate.com` (`replicate`); required for `easel` |
//! | `model` | the upstream model (`openai`: `model`; `replicate`: `owner/name`; `easel`: a model name); absent: the upstream's default (`replicate` needs `model` or `version`) |
//! | `version` | `replicate`: a version id (then `POST /v1/predictions`) |
//! | `api_key_env` | the name of an environment variable holding the upstream key, sent as `Authorization: Bearer`. Keys are never stored in the registry: a config with a key-like field at any depth (`api_key`, `headers.Authorization`, …: `model::find_secret`) is refused when the model is saved (`ModelSpec::validate`), and nothing here is returned by the API but the variable's name |
//! | `timeout_s` | the whole call's deadline (default 600) |
//! | `retries` | extra attempts after a retryable failure (default 2) |
//! | `extensions` | `openai`: also send the AI Magicx/Easel extension fields (`seed`, `negative_prompt`, `steps`, `guidance`, `scheduler`, `strength`); default false, since OpenAI refuses unknown fields |
//!
//! Retryable failures (connection errors, timeouts, HTTP 408/429/5xx) are retried with
//! exponential backoff (0.5 s, 1 s, 2 s, … at most 8 s), checking for cancel in between;
//! others (a 4xx: the upstream refused the input) are not. `timeout_s` is the deadline of
//! the whole call, retries included: every request gets only what is left of it. Once
//! upstream work has started (a prediction, an Easel job), a failed poll is polled again
//! (at most 6 in a row) instead of submitting the work again. Upstream progress is relayed
//! (the Easel job's steps; the tqdm lines of a prediction's logs), and work this server
//! stops following (the job canceled, the deadline passed, polls that keep failing) is
//! canceled upstream (`replicate`, `easel`). `upscale` is done here after the download
//! (`openai`, `replicate`) or by the upstream (`easel`); `pag_guidance` goes to a
//! `replicate` upstream as `pag_guidance_scale`. Outputs are downloaded (at most 64 MiB each),
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
    /// Which of the model's configs this is (`provider_config`, `fallback_provider_config`).
    pub slot: String,
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
        let base_url = easel_core::model::provider_base_url(kind, config)
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
            slot: field.to_string(),
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
    /// The upstream work this attempt submitted has ended (failed): a retry must submit
    /// anew, under a new idempotency key.
    ended: bool,
    error: RunError,
}

impl CallError {
    fn fatal(e: RunError) -> CallError {
        CallError {
            retry: false,
            ended: false,
            error: e,
        }
    }
    fn failed(msg: String, retry: bool) -> CallError {
        CallError {
            retry,
            ended: false,
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
    // The upstream's URL (its `base_url`) is for admins: the message goes to the job.
    let e = e.without_url();
    let why = if e.is_timeout() {
        format!("no answer in time (`timeout_s`): {e}")
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    };
    CallError::failed(format!("{what}: {why}"), true)
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
    let (mut attempt, mut submission) = (0, 0);
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
            submission,
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
                // An `easel` upstream got `upscale` in the input and did it.
                let outputs = if remote.kind == "easel" {
                    outputs
                } else {
                    upscaled(&g, limits, outputs).await?
                };
                let sizes: Vec<(u32, u32)> = outputs.iter().map(|o| (o.width, o.height)).collect();
                return Ok(RunOutput {
                    usage_units: easel_core::usage::image_units(&sizes),
                    outputs,
                    provider: remote.kind.clone(),
                });
            }
            Err(e)
                if e.retry
                    && attempt < remote.retries
                    && Instant::now() + backoff(attempt) < deadline =>
            {
                let wait = backoff(attempt);
                attempt += 1;
                if e.ended {
                    submission += 1;
                }
                tracing::warn!(job = %job.id, provider = %remote.kind, attempt, error = ?e.error, "retrying the upstream call");
                ctx.log(format!(
                    "the {} provider failed ({}); retry {attempt} of {} in {:.1} s",
                    remote.kind,
                    e.error,
                    remote.retries,
                    wait.as_secs_f64()
                ));
                pause(ctx, wait).await?;
            }
            Err(e) => return Err(e.error),
        }
    }
}

/// The outputs upscaled by the input's `upscale` (`easel_imageops::upscale`, within the
/// server's pixel limit, re-encoded in the job's format), for kinds whose upstream does not
/// do it (`openai`, `replicate`).
async fn upscaled(
    g: &GenerateInput,
    limits: &Limits,
    outputs: Vec<OutputImage>,
) -> Result<Vec<OutputImage>, RunError> {
    let f = g.upscale.unwrap_or(1);
    if f <= 1 {
        return Ok(outputs);
    }
    let format = g.format.unwrap_or(easel_core::task::OutputFormat::Png);
    let enc = crate::encoding(format, g.quality);
    let max_pixels = limits.max_pixels;
    let mut out = Vec::with_capacity(outputs.len());
    for o in outputs {
        let o = tokio::task::spawn_blocking(move || {
            let img = easel_imageops::decode(&o.bytes, max_pixels)?;
            let target = easel_imageops::ScaleTarget::Factor(f as f32);
            let img = easel_imageops::upscale(&img, target, max_pixels)?;
            let bytes = easel_imageops::encode(&img, &enc, &[])?;
            Ok::<_, easel_imageops::OpsError>(OutputImage {
                bytes: Bytes::from(bytes),
                mime_type: format.mime().to_string(),
                width: img.width(),
                height: img.height(),
                ..o
            })
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| {
            RunError::Failed(JobError::new(
                "provider_failed",
                format!("upscaling an output of the provider: {e}"),
            ))
        })?;
        out.push(o);
    }
    Ok(out)
}

/// The wait before retry `attempt + 1`: 0.5 s, 1 s, 2 s, … at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt.min(4))
}

/// Sleep, checking for cancel every 50 ms.
async fn pause(ctx: &RunContext, wait: Duration) -> Result<(), RunError> {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        ctx.check()?;
        tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
    }
    Ok(())
}

/// How many failed polls in a row of upstream work end the attempt (with backoff between
/// them, within the deadline): a blip while polling does not submit the work again.
const POLL_FAILURES: u32 = 6;

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
    /// How many submissions before this one ended upstream (part of the `easel` kind's
    /// idempotency key).
    submission: u32,
}

impl Call<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.remote.base_url)
    }

    /// Send a request to the upstream's API (with its key) within what is left of the
    /// deadline.
    async fn send(
        &self,
        what: &str,
        r: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        self.send_plain(what, self.remote.auth(r)).await
    }

    /// Send a request within what is left of the deadline, without the upstream's key (an
    /// output URL may be on another host).
    async fn send_plain(
        &self,
        what: &str,
        r: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        self.timed_out()?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        r.timeout(left.max(Duration::from_millis(1)))
            .send()
            .await
            .map_err(|e| http_error(what, e))
    }

    /// Poll upstream work until `done` says it ended: retryable poll failures are retried
    /// in place (backoff, at most `POLL_FAILURES` in a row); cancel, the deadline or giving
    /// up cancels the upstream work (the `cancel` request) first.
    async fn follow(
        &self,
        what: &str,
        mut v: Value,
        poll: impl Fn() -> reqwest::RequestBuilder,
        cancel: impl Fn() -> reqwest::RequestBuilder,
        interval: Duration,
        mut done: impl FnMut(&Value) -> Result<bool, CallError>,
    ) -> Result<Value, CallError> {
        let mut failures = 0;
        loop {
            if done(&v)? {
                return Ok(v);
            }
            let stop = if self.ctx.is_canceled() {
                Some(CallError::fatal(RunError::Canceled))
            } else {
                self.timed_out().err()
            };
            if let Some(e) = stop {
                self.cancel_upstream(cancel()).await;
                return Err(e);
            }
            tokio::time::sleep(interval).await;
            let r = match self.send(what, poll()).await {
                Ok(resp) => json_of(what, resp).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(next) => {
                    v = next;
                    failures = 0;
                }
                Err(e) if e.retry && failures < POLL_FAILURES => {
                    let wait = backoff(failures);
                    failures += 1;
                    tracing::warn!(job = %self.job.id, provider = %self.remote.kind, failures, error = ?e.error, "polling the upstream failed; polling again");
                    if Instant::now() + wait < self.deadline {
                        pause(self.ctx, wait).await.map_err(CallError::fatal)?;
                    }
                }
                Err(e) => {
                    self.cancel_upstream(cancel()).await;
                    return Err(e);
                }
            }
        }
    }

    /// Ask the upstream to cancel work this server no longer follows (best effort, 10 s).
    async fn cancel_upstream(&self, r: reqwest::RequestBuilder) {
        let r = self.remote.auth(r.timeout(Duration::from_secs(10)));
        if let Err(e) = r.send().await {
            tracing::warn!(job = %self.job.id, provider = %self.remote.kind, error = %e, "could not cancel the upstream work");
        }
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
        // From the upstream's own host (an admin configured it) or from public addresses
        // only: an upstream's answer cannot point this server into its own network.
        let bad = |e: String| CallError::failed(format!("an output URL: {e}"), false);
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let upstream = reqwest::Url::parse(&self.remote.base_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .and_then(|h| easel_net::Allow::parse(&h).ok());
        let target = easel_net::Policy::allowing(upstream.into_iter().collect())
            .resolve(&parsed)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let client = if target.addrs.is_empty() {
            self.client.clone()
        } else {
            target.client().build().map_err(|e| bad(e.to_string()))?
        };
        let resp = self
            .send_plain("downloading an output", client.get(url))
            .await?;
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
        let resp = self.send("the openai provider", req).await?;
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
        if let Some(p) = self.g.pag_guidance {
            input["pag_guidance_scale"] = json!(p);
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
            .send(
                "the replicate provider",
                self.client
                    .post(url)
                    .header("Prefer", "wait=60")
                    .json(&body),
            )
            .await?;
        let p = json_of("the replicate provider", resp).await?;
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
        let p = self
            .follow(
                "polling the replicate prediction",
                p,
                || self.client.get(&get),
                || self.client.post(&cancel),
                Duration::from_millis(250),
                |p| {
                    if let Some(logs) = p["logs"].as_str() {
                        if let Some((done, total)) = last_progress(logs) {
                            let _ = self.ctx.step(done, total);
                        }
                    }
                    match p["status"].as_str().unwrap_or("") {
                        "succeeded" => Ok(true),
                        "failed" | "canceled" => Err(CallError::failed(
                            format!(
                                "the replicate prediction {}: {}",
                                p["status"].as_str().unwrap_or(""),
                                p["error"].as_str().unwrap_or("no error given")
                            ),
                            false,
                        )),
                        _ => Ok(false),
                    }
                },
            )
            .await?;
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
        // One key per submission: a repeated POST (its answer lost) finds the same upstream
        // job; after that job failed, a retry submits anew under the next key.
        let key = format!(
            "easel-upstream:{}:{}:{}",
            self.job.id, self.remote.slot, self.submission
        );
        let resp = self
            .send(
                "the easel provider",
                self.client
                    .post(self.url("/v1/jobs"))
                    .header("Idempotency-Key", key)
                    .json(&body),
            )
            .await?;
        let j = json_of("the easel provider", resp).await?;
        let id = j["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CallError::failed(format!("no job id in {j}"), false))?;
        let j = self
            .follow(
                "polling the easel job",
                j,
                || self.client.get(self.url(&format!("/v1/jobs/{id}?wait=1"))),
                || self.client.post(self.url(&format!("/v1/jobs/{id}/cancel"))),
                Duration::ZERO,
                |j| {
                    if let (Some(s), Some(t)) = (j["step"].as_u64(), j["total_steps"].as_u64()) {
                        let _ = self.ctx.step(s as u32, t as u32);
                    }
                    match j["status"].as_str().unwrap_or("") {
                        "succeeded" => Ok(true),
                        "failed" | "canceled" => {
                            let retry = j["error"]["code"] == "lease_expired";
                            let mut e = CallError::failed(
                                format!(
                                    "the easel job {id} {}: {}",
                                    j["status"].as_str().unwrap_or(""),
                                    j["error"]["message"].as_str().unwrap_or("no error given")
                                ),
                                retry,
                            );
                            e.ended = true;
                            Err(e)
                        }
                        _ => Ok(false),
                    }
                },
            )
            .await?;
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
        let e = Remote::from_config("easel", &json!({}), "provider_config").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("provider_config.base_url"));
        let e = Remote::from_config("openai", &json!({"base_url": "ftp://x"}), "provider_config")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("provider_config.base_url"));
        // The hosted services when none is given.
        let r =
            Remote::from_config("replicate", &json!({"model": "a/b"}), "provider_config").unwrap();
        assert_eq!(r.base_url, "https://api.replicate.com");
        let r = Remote::from_config("openai", &json!({}), "provider_config").unwrap();
        assert_eq!(r.base_url, "https://api.openai.com/v1");
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
