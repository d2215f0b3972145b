//! The local diffusion provider: `txt2img`, `img2img` and `inpaint` on `easel-diffusion`.
//!
//! A job runs as: resolve the model and LoRAs in the registry → load the input images →
//! take the device (one generation at a time per process) → get the pipeline from the cache
//! (loading it on a miss, evicting least-recently-used pipelines to stay under
//! `max_loaded_models` and `memory_budget`) → for image i, seed `seed + i`, run with a step
//! callback that reports progress, checks cancel and sends previews → encode each image
//! with an A1111 `parameters` text chunk and an `easel` JSON chunk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use easel_core::asset::blob_key;
use easel_core::generate::{a1111_parameters, Decoder, GenerateInput};
use easel_core::job::codes;
use easel_core::limits::Limits;
use easel_core::task::{OutputFormat, TaskInput};
use easel_core::{Error, Job, JobError};
use easel_diffusion::engine::{Device, Generation, Pipeline, Pixels, Precision, Step};
use easel_diffusion::lora::Lora;
use easel_imageops as ops;
use easel_queue::{OutputImage, Preview, RunContext, RunError, RunOutput};
use easel_store::Store;

/// Tasks this provider runs.
pub const TASKS: &[&str] = easel_core::generate::TASKS;

/// How the engine uses the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// `cpu`, `cuda`, `cuda:N`, `metal` or `auto`.
    pub device: String,
    /// The precision models load at (`easel_diffusion::engine::Device::with_precision`).
    pub precision: Precision,
    /// Pipelines kept loaded (at least 1).
    pub max_loaded_models: usize,
    /// Bytes of weights kept loaded; `None`: no limit but the count. A model larger than
    /// the budget still loads (alone).
    pub memory_budget: Option<u64>,
    /// The only folders local weights are read from (`source`, `support_dir`, LoRA files):
    /// the models folder first (`server::start` puts it there), then `--model-roots`.
    pub model_roots: Vec<PathBuf>,
    /// Where users' LoRAs, kept as blobs of the store, are copied to be read
    /// (`<data-dir>/cache/loras` for a server; one file per model, written once).
    pub lora_cache: PathBuf,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            device: "cpu".into(),
            precision: Precision::F32,
            max_loaded_models: 1,
            memory_budget: None,
            model_roots: Vec::new(),
            lora_cache: std::env::temp_dir().join("easel-lora-cache"),
        }
    }
}

/// What identifies a loaded pipeline: the model's weights and the merged LoRA set.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub source: PathBuf,
    /// For single-file checkpoints: a folder with the tokenizer(s) (and optionally the
    /// scheduler config); found beside the file when not given.
    pub support: Option<PathBuf>,
    pub family: String,
    pub loras: Vec<(PathBuf, f64)>,
}

struct Entry {
    spec: LoadSpec,
    pipeline: Arc<Pipeline>,
    bytes: u64,
}

/// The engine: a device, a pipeline cache and the lock that gives one job the device.
pub struct Engine {
    config: EngineConfig,
    device: Device,
    /// Least recently used first.
    cache: Mutex<Vec<Entry>>,
    device_lock: tokio::sync::Mutex<()>,
}

fn failed(msg: impl Into<String>) -> RunError {
    RunError::Failed(JobError::new(codes::TASK_FAILED, msg.into()))
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine, Error> {
        let device =
            Device::open(&config.device).map_err(|e| Error::invalid("device", e.to_string()))?;
        let device = device
            .with_precision(config.precision)
            .map_err(|e| Error::invalid("precision", e.to_string()))?;
        Ok(Engine {
            config,
            device,
            cache: Mutex::new(Vec::new()),
            device_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The folders local weights are read from (`EngineConfig::model_roots`).
    pub fn model_roots(&self) -> &[PathBuf] {
        &self.config.model_roots
    }

    /// Where users' LoRAs are copied to be read (`EngineConfig::lora_cache`).
    pub fn lora_cache(&self) -> &Path {
        &self.config.lora_cache
    }

    /// Drop this process's copy of the user's LoRA `model_id` (its model was deleted).
    pub async fn forget_lora(&self, model_id: &str) {
        let path = self
            .config
            .lora_cache
            .join(format!("{model_id}.safetensors"));
        let _ = tokio::fs::remove_file(path).await;
    }

    /// Names (sources) of the loaded pipelines, least recently used first.
    pub fn loaded(&self) -> Vec<LoadSpec> {
        self.cache
            .lock()
            .map(|c| c.iter().map(|e| e.spec.clone()).collect())
            .unwrap_or_default()
    }

    /// The pipeline for `spec`, from the cache or loaded (blocking).
    pub fn pipeline(&self, spec: &LoadSpec) -> Result<Arc<Pipeline>, Error> {
        {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| Error::internal("cache lock"))?;
            if let Some(i) = cache.iter().position(|e| &e.spec == spec) {
                let e = cache.remove(i);
                let p = e.pipeline.clone();
                cache.push(e);
                return Ok(p);
            }
        }
        let bytes = match self.config.precision {
            // The layers' weights, nearly all of a model's, are kept at half their f32 size.
            Precision::Bf16 | Precision::F16 => weight_bytes(&spec.source) / 2,
            Precision::F32 => weight_bytes(&spec.source),
        };
        self.evict_for(bytes);
        let t = std::time::Instant::now();
        let pipeline = Arc::new(self.load(spec)?);
        tracing::info!(
            model = %spec.source.display(),
            loras = spec.loras.len(),
            mb = bytes / (1 << 20),
            secs = t.elapsed().as_secs_f64(),
            "model loaded"
        );
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::internal("cache lock"))?;
        cache.push(Entry {
            spec: spec.clone(),
            pipeline: pipeline.clone(),
            bytes,
        });
        Ok(pipeline)
    }

    /// Attach the family's tiny autoencoder (TAESD) from the models folder's `vae_approx/` to
    /// a pipeline, when one is installed and is not the one last tried (also one installed or
    /// replaced after the model loaded). One that fails to load is logged once and left
    /// out: previews keep what they had.
    pub fn find_tiny_vae(&self, p: &Pipeline) {
        let (Some(name), Some(root)) = (p.family().tiny_vae, self.config.model_roots.first())
        else {
            return;
        };
        let Some(path) = easel_diffusion::taesd::find(root, name) else {
            return;
        };
        if p.tried_tiny_vae(&path) {
            return;
        }
        match p.attach_tiny_vae(&path, &self.device) {
            Ok(()) => tracing::info!(path = %path.display(), "tiny autoencoder loaded"),
            Err(e) => tracing::warn!(path = %path.display(), "tiny autoencoder not loaded: {e}"),
        }
    }

    /// Drop least-recently-used pipelines until one of `incoming` bytes fits.
    fn evict_for(&self, incoming: u64) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        // Dropped after the lock: a pipeline's last reference going gives its memory back to
        // the system, which takes a moment.
        let mut unloaded = Vec::new();
        let max = self.config.max_loaded_models.max(1);
        loop {
            let total: u64 = cache.iter().map(|e| e.bytes).sum();
            let over_count = cache.len() >= max;
            let over_budget = self
                .config
                .memory_budget
                .is_some_and(|b| total + incoming > b);
            if cache.is_empty() || !(over_count || over_budget) {
                break;
            }
            let e = cache.remove(0);
            tracing::info!(model = %e.spec.source.display(), "model unloaded (cache full)");
            unloaded.push(e);
        }
        drop(cache);
        drop(unloaded);
    }

    fn load(&self, spec: &LoadSpec) -> Result<Pipeline, Error> {
        let loras = spec
            .loras
            .iter()
            .map(|(p, s)| {
                Lora::load(p)
                    .map(|l| (l, *s))
                    .map_err(|e| Error::invalid("input.loras", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<(&Lora, f64)> = loras.iter().map(|(l, s)| (l, *s)).collect();
        let what = spec.source.display().to_string();
        let r = if spec.source.is_dir() {
            Pipeline::load_dir(&spec.source, &refs, &self.device)
        } else {
            let support = match &spec.support {
                Some(s) => s.clone(),
                None => find_support(&spec.source, &spec.family).ok_or_else(|| {
                    Error::invalid(
                        "model",
                        format!(
                            "the single-file checkpoint {what} needs a CLIP tokenizer: put a \
                             diffusers model of the same family ({}) in the same folder, or set \
                             `provider_config.support_dir` on the model",
                            spec.family
                        ),
                    )
                })?,
            };
            Pipeline::load_file(&spec.source, &support, &refs, &self.device)
        };
        r.map_err(|e| Error::internal(format!("loading {what}: {e}")))
    }
}

/// Bytes of the weight files of a model folder or file (f16 files count double: they are
/// loaded as f32).
fn weight_bytes(source: &Path) -> u64 {
    fn file(p: &Path) -> u64 {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.contains("fp16") || name.contains("bf16") {
            len * 2
        } else {
            len
        }
    }
    fn walk(dir: &Path, depth: usize) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() && depth > 0 {
                    walk(&p, depth - 1)
                } else if p.extension().is_some_and(|x| x == "safetensors") {
                    file(&p)
                } else {
                    0
                }
            })
            .sum()
    }
    if source.is_dir() {
        walk(source, 1)
    } else {
        file(source)
    }
}

/// A diffusers folder beside a single-file checkpoint whose family fits it.
pub fn find_support(file: &Path, family: &str) -> Option<PathBuf> {
    let base = |f: &str| f.trim_end_matches("-inpaint").to_string();
    let dir = file.parent()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("tokenizer").is_dir())
        .filter(|p| crate::discover::inspect(p).is_some_and(|f| base(&f.family) == base(family)))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A generation with everything read: what a job needs from the store before it takes the
/// device, or what `easel generate` builds from its flags.
pub struct Prepared {
    /// Filled in (`GenerateInput::fill_defaults`).
    pub input: GenerateInput,
    pub task: String,
    pub model_name: String,
    pub model_family: String,
    pub load: LoadSpec,
    /// Encoded init image and mask.
    pub init: Option<Vec<u8>>,
    pub mask: Option<Vec<u8>>,
    /// The init image's asset id (outputs name it as their parent).
    pub init_id: Option<String>,
}

async fn prepare(
    config: &EngineConfig,
    store: &Store,
    limits: &Limits,
    job: &Job,
) -> Result<Prepared, RunError> {
    let parsed = TaskInput::parse(&job.task, job.input.clone(), limits)?;
    let input = parsed
        .generation()
        .cloned()
        .ok_or_else(|| failed(format!("`{}` is not a generation task", job.task)))?;
    let name = job
        .model
        .as_deref()
        .ok_or_else(|| Error::invalid("model", format!("`{}` needs a model", job.task)))?;
    let model = easel_store::models::resolve_run(&store.db, name)
        .await?
        .ok_or_else(|| Error::invalid("model", format!("no model named `{name}`")))?;
    let roots = &config.model_roots;
    let mut load = base_spec(&model, roots)?;
    let mut loras = Vec::new();
    // Submission resolved each LoRA for whoever may use it (by name for the server's, by id
    // for a user's): the worker runs what the job names.
    for (i, l) in input.loras.iter().enumerate() {
        let field = format!("input.loras[{i}].model");
        let m = easel_store::models::resolve(&store.db, &l.model)
            .await?
            .filter(easel_core::model::Model::is_lora)
            .ok_or_else(|| Error::invalid(&field, format!("no LoRA named `{}`", l.model)))?;
        let path = match m.blob_key() {
            Some(key) => cached_blob(store, &config.lora_cache, &m.id, key)
                .await
                .map_err(|e| e.with_field(&field))?,
            None => {
                let src = m
                    .source
                    .ok_or_else(|| Error::invalid(&field, "the LoRA has no file (`source`)"))?;
                confined(&field, &src, roots)?
            }
        };
        loras.push((path, l.scale as f64));
    }
    load.loras = loras;
    let fetch = |id: Option<String>, field: &'static str| async move {
        let Some(id) = id else {
            return Ok::<_, RunError>(None);
        };
        let asset = easel_store::assets::get(&store.db, &id)
            .await?
            .filter(|a| a.owner_id == job.owner_id)
            .ok_or_else(|| Error::invalid(field, format!("asset {id} not found")))?;
        let bytes = store
            .blobs
            .get(&blob_key(&asset.owner_id, &asset.id))
            .await?;
        Ok(Some(bytes.to_vec()))
    };
    let init = fetch(input.image.clone(), "input.image").await?;
    let mask = fetch(input.mask.clone(), "input.mask").await?;
    Ok(Prepared {
        init_id: input.image.clone(),
        input,
        task: job.task.clone(),
        model_name: model.name,
        model_family: model.family,
        load,
        init,
        mask,
    })
}

/// The file of a user's LoRA (the blob `key` of model `id`), copied once into `cache` and
/// read from there: written to a temporary name, synced and renamed, so a reader never sees
/// half a file; a copy whose size is not the blob's (a crash) is written again. Its blob is
/// written once and never rewritten (a model's key names its id), so a whole copy there is
/// the blob.
async fn cached_blob(store: &Store, cache: &Path, id: &str, key: &str) -> Result<PathBuf, Error> {
    let path = cache.join(format!("{id}.safetensors"));
    let have = tokio::fs::metadata(&path).await.ok().map(|m| m.len());
    match (store.blobs.size(key).await, have) {
        (Ok(size), Some(len)) if len == size => return Ok(path),
        // The store cannot say now: a copy there was whole when it was renamed into place.
        (Err(e), Some(_)) => {
            tracing::warn!(error = %e, model = id, "the LoRA's blob could not be checked; using the copy");
            return Ok(path);
        }
        _ => {}
    }
    let bytes = store.blobs.get(key).await?;
    let io = |e: std::io::Error| {
        tracing::warn!(error = %e, cache = %cache.display(), "a LoRA could not be cached");
        Error::internal("the LoRA's file could not be cached; an admin can find why in the log")
    };
    tokio::fs::create_dir_all(cache).await.map_err(io)?;
    let tmp = cache.join(format!(
        ".{id}.{}.tmp",
        easel_core::id::new(easel_core::id::UPLOAD)
    ));
    let written = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &bytes).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(e));
    }
    Ok(path)
}

/// Remove from `cache` the copies of users' LoRAs whose model is gone, and temporary files
/// older than `grace` (a stopped copy's); the server's collector runs it on its timer, in
/// every process (a deleted model's copy in the process that deleted it goes at once:
/// `Engine::forget_lora`). Returns how many files went.
pub async fn prune_lora_cache(
    store: &Store,
    cache: &Path,
    grace: std::time::Duration,
) -> Result<usize, Error> {
    let Ok(mut dir) = tokio::fs::read_dir(cache).await else {
        return Ok(0);
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let gone = match name.strip_suffix(".safetensors") {
            _ if name.starts_with('.') && name.ends_with(".tmp") => entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                // Another process may be writing it: only one this old is abandoned.
                .is_some_and(|age| age > grace.max(std::time::Duration::from_secs(3600))),
            Some(id) => easel_store::models::get(&store.db, id).await?.is_none(),
            None => false,
        };
        if gone && tokio::fs::remove_file(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The weights of a local model, without LoRAs.
fn base_spec(model: &easel_core::model::Model, roots: &[PathBuf]) -> Result<LoadSpec, Error> {
    let source = model.source.clone().ok_or_else(|| {
        Error::invalid(
            "model",
            format!("the model `{}` has no local weights (`source`)", model.name),
        )
    })?;
    let support = match model
        .provider_config
        .get("support_dir")
        .and_then(|v| v.as_str())
    {
        Some(dir) => Some(confined("model", dir, roots)?),
        None => None,
    };
    Ok(LoadSpec {
        source: confined("model", &source, roots)?,
        support,
        family: model.family.clone(),
        loras: Vec::new(),
    })
}

/// How `prompt` fits the text encoder of a local model (its family's `prompt_fit`, and the
/// emphasis weights it gives), read
/// from the model's tokenizer alone: the folder's, or a single file's support folder. A
/// model without local weights, or whose tokenizer cannot be read, is 422 on `model`
/// (without the server's paths).
pub fn prompt_check(
    model: &easel_core::model::Model,
    roots: &[PathBuf],
    prompt: &str,
) -> Result<easel_core::model::PromptCheck, Error> {
    let spec = base_spec(model, roots)?;
    let family = easel_diffusion::family::by_name(&model.family).ok_or_else(|| {
        Error::invalid(
            "model",
            format!(
                "the local engine does not run the family `{}`",
                model.family
            ),
        )
    })?;
    let dir = if spec.source.is_dir() {
        spec.source.clone()
    } else {
        spec.support
            .clone()
            .or_else(|| find_support(&spec.source, &spec.family))
            .ok_or_else(|| Error::invalid("model", "the model has no tokenizer folder"))?
    };
    let fit = (family.prompt_fit)(&dir, prompt).map_err(|e| {
        tracing::warn!(error = %e, dir = %dir.display(), "a model's tokenizer could not be read");
        Error::invalid(
            "model",
            "the model's tokenizer could not be read; an admin can find why in the server log",
        )
    })?;
    let pieces = if fit.weighted {
        easel_diffusion::prompt::parse_weights(prompt)
    } else {
        Vec::new()
    };
    let weights: Vec<f32> = pieces
        .iter()
        .filter(|p| !easel_diffusion::prompt::is_break(p))
        .map(|(_, w)| *w)
        .collect();
    Ok(easel_core::model::PromptCheck {
        tokens: fit.tokens,
        window: fit.window,
        chunks: fit.chunks,
        truncated: fit.truncated,
        min_weight: weights.iter().copied().fold(1.0, f32::min),
        max_weight: weights.iter().copied().fold(1.0, f32::max),
    })
}

/// A load error as a job's submitter sees it: the kind and field, without the message,
/// which names files on this server (logged here, for the operator).
fn without_paths(e: Error) -> Error {
    tracing::warn!(error = %e, "a model could not be loaded");
    let what = if e.field.as_deref() == Some("input.loras") {
        "a LoRA's file could not be read"
    } else {
        "the model's weights could not be loaded"
    };
    let mut out = Error::new(
        e.kind,
        format!("{what}; an admin can find why in the server log"),
    );
    out.field = e.field;
    out
}

/// A registry path confined to the model roots (`easel_core::model::confine_path`). The
/// error names no path: it reaches whoever submitted the job.
fn confined(field: &str, path: &str, roots: &[PathBuf]) -> Result<PathBuf, Error> {
    easel_core::model::confine_path(field, path, roots).map_err(|_| {
        Error::invalid(
            field,
            "the model's files are outside the folders this server loads models from; an \
             admin must move them under the models folder or add a --model-roots folder",
        )
    })
}

/// Text embeddings from a local model's CLIP text encoder (`Pipeline::embed_texts`): the
/// vectors and each text's token count. Shares the engine's pipeline cache and device lock
/// with generations.
pub async fn embed(
    engine: &Arc<Engine>,
    model: &easel_core::model::Model,
    texts: Vec<String>,
) -> Result<(Vec<Vec<f32>>, Vec<usize>), Error> {
    if model.provider != "local" {
        return Err(Error::invalid(
            "model",
            format!(
                "the model `{}` runs on the `{}` provider; embeddings come from a local model's \
                 text encoder",
                model.name, model.provider
            ),
        ));
    }
    let spec = base_spec(model, &engine.config.model_roots)?;
    let _device = engine.device_lock.lock().await;
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let p = engine.pipeline(&spec).map_err(without_paths)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        p.embed_texts(&refs)
            .map_err(|e| Error::internal(format!("text encoder: {e}")))
    })
    .await
    .map_err(|e| Error::internal(format!("embedding panicked: {e}")))?
}

/// Run a generation job.
pub async fn run(
    engine: &Arc<Engine>,
    store: &Store,
    limits: &Limits,
    job: &Job,
    ctx: &RunContext,
) -> Result<RunOutput, RunError> {
    let p = prepare(&engine.config, store, limits, job).await?;
    let _device = engine.device_lock.lock().await;
    ctx.check()?;
    let engine = engine.clone();
    let limits = limits.clone();
    let ctx2 = ctx.clone();
    let outputs = tokio::task::spawn_blocking(move || generate(&engine, &p, &limits, &ctx2))
        .await
        .map_err(|e| failed(format!("generation panicked: {e}")))??;
    let sizes: Vec<(u32, u32)> = outputs.iter().map(|o| (o.width, o.height)).collect();
    Ok(RunOutput {
        usage_units: easel_core::usage::image_units(&sizes),
        outputs,
        provider: "local".into(),
    })
}

fn ops_invalid(field: &str) -> impl Fn(ops::OpsError) -> RunError + '_ {
    move |e| Error::invalid(field, e.to_string()).into()
}

/// The blocking part: load, run each image, encode. Progress, previews and cancel go
/// through `ctx`.
pub fn generate(
    engine: &Engine,
    p: &Prepared,
    limits: &Limits,
    ctx: &RunContext,
) -> Result<Vec<OutputImage>, RunError> {
    let g = &p.input;
    let r = g.resolved();
    let (w, h) = (r.width, r.height);
    let init = match &p.init {
        Some(b) => {
            let img = ops::decode(b, limits.max_pixels).map_err(ops_invalid("input.image"))?;
            let img = ops::resize(&img, w, h, ops::Filter::Lanczos3)
                .map_err(ops_invalid("input.image"))?;
            Some(Pixels {
                width: w as usize,
                height: h as usize,
                data: img.to_rgb8().into_raw(),
            })
        }
        None => None,
    };
    let mask = match &p.mask {
        Some(b) => {
            let img = ops::decode(b, limits.max_pixels).map_err(ops_invalid("input.mask"))?;
            let img = ops::resize(&img, w, h, ops::Filter::Bilinear)
                .map_err(ops_invalid("input.mask"))?;
            Some(Pixels {
                width: w as usize,
                height: h as usize,
                data: img.to_luma8().into_raw(),
            })
        }
        None => None,
    };
    let pipeline = engine.pipeline(&p.load).map_err(without_paths)?;
    ctx.check()?;
    engine.find_tiny_vae(&pipeline);
    let tiny = pipeline.tiny_vae();
    let tiny_vae = match g.decoder {
        Some(Decoder::Taesd) => Some(tiny.as_deref().ok_or_else(|| no_tiny_vae(&pipeline))?),
        _ => None,
    };
    let scheduler = g
        .scheduler
        .as_deref()
        .and_then(easel_core::scheduler::resolve);
    let sampler = g
        .scheduler
        .clone()
        .unwrap_or_else(|| pipeline.scheduler_kind().class_name().to_string());
    let (format, quality) = (g.format.unwrap_or(OutputFormat::Png), g.quality);
    let enc = crate::encoding(format, quality);
    let preview_every = g.preview_every.unwrap_or(0);
    let mut outputs = Vec::new();
    for i in 0..r.count {
        let seed = r.seed + i as u64;
        let gen = Generation {
            prompt: &g.prompt,
            negative_prompt: g.negative_prompt.as_deref(),
            width: w as usize,
            height: h as usize,
            steps: r.steps as usize,
            guidance: r.guidance as f64,
            scheduler: scheduler.clone(),
            init_image: init.as_ref(),
            mask: mask.as_ref(),
            strength: r.strength as f64,
            seed,
            pag: g.pag_guidance.map(f64::from),
            tiny_vae,
        };
        let mut on_step = |s: Step| -> bool {
            // Progress counts the steps asked for: a scheduler that evaluates the model more
            // often (PNDM's PLMS runs steps + 1) is scaled down to them.
            let n = s.total.max(1);
            let shown = n.min(r.steps.max(1) as usize);
            let index = (s.index * shown).div_ceil(n);
            let (done, total) = (i * shown as u32 + index as u32, r.count * shown as u32);
            if ctx.step(done, total).is_err() {
                return false;
            }
            if preview_every > 0 && s.index.is_multiple_of(preview_every as usize) && s.index < n {
                if let Some(image) = s.preview().and_then(|p| preview_url(&p)) {
                    ctx.preview(Preview {
                        step: done,
                        total_steps: total,
                        image,
                    });
                }
            }
            true
        };
        let out = pipeline
            .generate(&gen, &mut on_step)
            .map_err(|e| failed(format!("generation failed: {e}")))?
            .ok_or(RunError::Canceled)?;
        let (iw, ih, rgb) = (out.width, out.height, out.data);
        let img = ops::image::DynamicImage::ImageRgb8(
            ops::image::RgbImage::from_raw(iw as u32, ih as u32, rgb)
                .ok_or_else(|| failed("decoded image has the wrong size"))?,
        );
        let img = match g.upscale {
            Some(f) if f > 1 => {
                ops::upscale(&img, ops::ScaleTarget::Factor(f as f32), limits.max_pixels)
                    .map_err(|e| failed(format!("upscaling failed: {e}")))?
            }
            _ => img,
        };
        let params = a1111_parameters(g, seed, &sampler, &p.model_name);
        let meta = serde_json::json!({
            "task": p.task, "model": p.model_name, "family": p.model_family,
            "prompt": g.prompt, "negative_prompt": g.negative_prompt,
            "width": w, "height": h, "steps": r.steps, "guidance": r.guidance,
            "scheduler": sampler, "seed": seed, "index": i,
            "strength": g.image.as_ref().map(|_| r.strength),
            "loras": g.loras,
            "upscale": g.upscale,
            "decoder": g.decoder,
        });
        let text = vec![
            ("parameters".to_string(), params.clone()),
            ("easel".to_string(), meta.to_string()),
        ];
        // The asset record also carries the A1111 text (outputs in JPEG or WebP have no
        // text chunks to read it from).
        let mut meta = meta;
        meta["parameters"] = params.into();
        let bytes =
            ops::encode(&img, &enc, &text).map_err(|e| failed(format!("encoding failed: {e}")))?;
        outputs.push(OutputImage {
            bytes: Bytes::from(bytes),
            mime_type: format.mime().to_string(),
            width: img.width(),
            height: img.height(),
            metadata: meta,
            parent_id: p.init_id.clone(),
        });
    }
    Ok(outputs)
}

/// Why a generation cannot decode with a tiny autoencoder.
fn no_tiny_vae(p: &Pipeline) -> RunError {
    let f = p.family();
    let msg = match f.tiny_vae {
        None => format!("{} models have no tiny autoencoder; use `vae`", f.label),
        Some(name) => format!(
            "no tiny autoencoder is installed for {} models: put `{name}` (the diffusers \
             folder of madebyollin/{name}, or its `{name}_decoder.safetensors`) in the models \
             folder's `{}/`",
            f.label,
            easel_diffusion::taesd::FOLDER
        ),
    };
    Error::invalid("input.decoder", msg).into()
}

/// The longest side of a preview: a full-size decoded preview (TAESD) is scaled down to it,
/// since each preview is a row of the job's event log.
const PREVIEW_SIDE: u32 = 384;

/// A JPEG `data:` URL of a step's preview, at most [`PREVIEW_SIDE`] on its longest side.
fn preview_url(p: &Pixels) -> Option<String> {
    let img = ops::image::RgbImage::from_raw(p.width as u32, p.height as u32, p.data.clone())?;
    let large = img.width().max(img.height()) > PREVIEW_SIDE;
    let img = ops::image::DynamicImage::ImageRgb8(img);
    let img = if large {
        ops::resize_fit(
            &img,
            PREVIEW_SIDE,
            PREVIEW_SIDE,
            ops::Fit::Contain,
            ops::Filter::Bilinear,
        )
        .ok()?
    } else {
        img
    };
    let jpeg = ops::encode(&img, &ops::Encoding::Jpeg { quality: 70 }, &[]).ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}
