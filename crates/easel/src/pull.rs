//! `easel models pull`: download a model from the Hugging Face hub (or a mirror with the same
//! API) into `<data-dir>/models/`.
//!
//! A diffusers repository becomes the folder `models/<name>/` with only what the engine
//! loads: `model_index.json`, each component's configuration and tokenizer files, and one set
//! of `.safetensors` weights per component: a single file, or, where the chosen variant is
//! only sharded (Sana's Gemma-2 text encoder, the 1.6B Sana transformers), the index
//! (`model.safetensors.index.json`, …) and every shard it lists. A single-file checkpoint
//! (`--file`) becomes `models/<name>.safetensors`. Both are what `easel models scan` (and
//! `easel serve` at start) registers. A tiny autoencoder's repository (a top-level
//! `config.json` of class `AutoencoderTiny`, as `madebyollin/taesd` and `madebyollin/taesdxl`)
//! becomes `models/vae_approx/<name>/` (its config and weights), where the engine finds it.
//!
//! Nothing half-written is ever visible: files are downloaded into a hidden temporary folder
//! inside `models/` and the result is renamed into place once every file is complete. Pickle
//! weights (`.bin`, `.ckpt`, …) are never downloaded, since loading them can run code.
//!
//! [`plan`] decides what to download from the repository's file list alone (a sharded set's
//! shards are recognised by their names); [`run`] does the network and file work, and checks
//! each downloaded index against the plan ([`check_index`]) before its shards are fetched.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hf_hub::api::tokio::{ApiBuilder, ApiError, ApiRepo, Progress};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use serde_json::Value;

use easel_api::native::pulls::{HubLora, Pulled};

/// `easel models pull REPO`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Hub repository id, such as `stable-diffusion-v1-5/stable-diffusion-v1-5`.
    pub repo: String,
    /// Branch, tag or commit to download.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Local model name (default: the repository's name, without its owner).
    #[arg(long)]
    pub name: Option<String>,
    /// Weights variant, such as `fp16`: take `*.fp16.safetensors` (or fp16 shards) where a
    /// component has them (about half the download), else its default weights.
    #[arg(long, conflicts_with = "file")]
    pub variant: Option<String>,
    /// Download this single-file checkpoint (a `.safetensors` path in the repository) instead
    /// of a diffusers folder. It is saved as `models/<name>.safetensors`.
    #[arg(long)]
    pub file: Option<String>,
    /// Access token, for gated or private repositories (default: the `huggingface-cli login`
    /// token, if any).
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Hub address (a mirror with the same API works too).
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub endpoint: String,
    /// Replace an existing model of the same name (only once the new one is complete).
    #[arg(long)]
    pub force: bool,
}

// ---------------------------------------------------------------------------------------------
// Choosing the files (pure)
// ---------------------------------------------------------------------------------------------

/// What the user asked for, as far as choosing files goes.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// `--variant`: prefer `<stem>.<variant>.safetensors`.
    pub variant: Option<String>,
    /// `--file`: one single-file checkpoint.
    pub file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A diffusers folder, saved as `models/<name>/`.
    Diffusers,
    /// One checkpoint file, saved as `models/<name>.safetensors`.
    SingleFile,
    /// A tiny autoencoder (TAESD), saved as `models/vae_approx/<name>/`.
    TinyVae,
}

/// One file to download: its path in the repository and its path in the result (relative to
/// the model folder; for a single file, just the file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub remote: String,
    pub local: String,
}

/// What to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: Kind,
    pub files: Vec<PlannedFile>,
    /// Components of `model_index.json` left out because Easel does not use them; they are
    /// set to `[null, null]` in the saved `model_index.json`.
    pub skipped: Vec<String>,
    /// Things worth telling the user (a variant that a component lacks, a smaller variant).
    pub notes: Vec<String>,
}

/// Components a pipeline may list that Easel never loads (and that can be large).
const UNUSED_COMPONENTS: &[&str] = &["safety_checker", "feature_extractor", "image_encoder"];

/// Extensions of pickle-based weights: never downloaded.
const PICKLE_EXTENSIONS: &[&str] = &[".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"];

fn is_pickle(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    PICKLE_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// Whether the diffusers `model_index.json` must be read before [`plan`] can decide.
pub fn needs_index(siblings: &[String], select: &Select) -> bool {
    select.file.is_none() && siblings.iter().any(|s| s == "model_index.json")
}

/// Whether the repository's top-level `config.json` must be read to decide: a repository
/// without `model_index.json` may be a tiny autoencoder ([`plan_tiny_vae`]).
pub fn needs_config(siblings: &[String], select: &Select) -> bool {
    select.file.is_none()
        && !siblings.iter().any(|s| s == "model_index.json")
        && siblings.iter().any(|s| s == "config.json")
}

/// The plan for a tiny autoencoder's repository, when `config` (its top-level `config.json`)
/// is of class `AutoencoderTiny`: the config and one `diffusion_pytorch_model` weights file
/// (the variant when asked and present, else the default; never a pickle). `None`: not one.
pub fn plan_tiny_vae(siblings: &[String], config: &Value, select: &Select) -> Option<Result<Plan>> {
    if config.get("_class_name").and_then(Value::as_str) != Some("AutoencoderTiny") {
        return None;
    }
    let has = |f: &str| siblings.iter().any(|s| s == f);
    let mut notes = Vec::new();
    let weights = match select.variant.as_deref() {
        Some(v) if has(&format!("diffusion_pytorch_model.{v}.safetensors")) => {
            Some(format!("diffusion_pytorch_model.{v}.safetensors"))
        }
        Some(v) => {
            notes.push(format!("no {v} variant; the default weights are taken"));
            None
        }
        None => None,
    }
    .or_else(|| {
        [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
        ]
        .into_iter()
        .find(|f| has(f))
        .map(str::to_string)
    });
    let Some(weights) = weights else {
        return Some(Err(anyhow!(
            "the tiny autoencoder has no diffusion_pytorch_model.safetensors (pickle weights are \
             never downloaded)"
        )));
    };
    Some(Ok(Plan {
        kind: Kind::TinyVae,
        files: vec![
            PlannedFile {
                remote: "config.json".into(),
                local: "config.json".into(),
            },
            PlannedFile {
                remote: weights,
                // The loader reads the default name.
                local: "diffusion_pytorch_model.safetensors".into(),
            },
        ],
        skipped: vec![],
        notes,
    }))
}

/// Decide what to download from the repository's file list (`siblings`) and, for a diffusers
/// repository, its `model_index.json`.
///
/// - With `select.file`: that one file, which must be listed and be `.safetensors`.
/// - A diffusers repository (it has `model_index.json`): the index, and for each component
///   it lists (except [`UNUSED_COMPONENTS`]) the component's top-level `.json`, `.txt` and
///   `.model` files (configuration, tokenizer) plus one set of `.safetensors` weights.
///   Preferred: the requested variant, then the default weights, then (without `--variant`)
///   the `fp16` variant; for each, a single `<stem>[.<variant>].safetensors` file before a
///   sharded set. A sharded set is its index (`<stem>.safetensors.index[.<variant>].json`,
///   or the older `<stem>.safetensors.<variant>.index.json`) and the shards named like it
///   (`<stem>[.<variant>]-00001-of-0000N.safetensors`, or the older
///   `<stem>-00001-of-0000N.<variant>.safetensors`), which must be parts 1 to N of N. A
///   variant other than `fp16` is saved under the default names (`<stem>.safetensors`,
///   `<stem>.safetensors.index.json`), which the loaders read; shards keep their names,
///   which the index lists. A component whose weights are only pickles, or shards without
///   their index, is refused.
/// - Otherwise: the repository's only top-level `.safetensors` file, as a single-file
///   checkpoint; with several, the user must choose one with `--file`.
pub fn plan(siblings: &[String], model_index: Option<&Value>, select: &Select) -> Result<Plan> {
    if let Some(file) = &select.file {
        check_single_file_name(file)?;
        if !siblings.iter().any(|s| s == file) {
            let available = top_safetensors(siblings, true);
            bail!(
                "the repository has no file `{file}`{}",
                if available.is_empty() {
                    String::new()
                } else {
                    format!("; its .safetensors files: {}", available.join(", "))
                }
            );
        }
        return Ok(single(file.clone()));
    }
    if siblings.iter().any(|s| s == "model_index.json") {
        let index =
            model_index.ok_or_else(|| anyhow!("model_index.json is needed to choose the files"))?;
        return plan_diffusers(siblings, index, select.variant.as_deref());
    }
    // Not a diffusers repository: a single-file checkpoint, if there is exactly one.
    let top = top_safetensors(siblings, false);
    match top.len() {
        1 => Ok(single(top[0].to_string())),
        0 => {
            let pickles: Vec<&str> = siblings
                .iter()
                .filter(|s| is_pickle(s))
                .map(String::as_str)
                .collect();
            if pickles.is_empty() {
                bail!("the repository has neither a model_index.json (diffusers) nor a .safetensors checkpoint");
            }
            bail!(
                "the repository has only pickle checkpoints ({}); Easel loads .safetensors \
                 only, since loading a pickle can run code. Look for a .safetensors \
                 version of this model",
                pickles.join(", ")
            )
        }
        _ => bail!(
            "the repository is not a diffusers folder (no model_index.json) and has several \
             checkpoints; choose one with --file: {}",
            top.join(", ")
        ),
    }
}

fn single(file: String) -> Plan {
    let local = file.rsplit('/').next().unwrap_or(&file).to_string();
    Plan {
        kind: Kind::SingleFile,
        files: vec![PlannedFile {
            remote: file,
            local,
        }],
        skipped: vec![],
        notes: vec![],
    }
}

/// `.safetensors` files at the top of the repository (or anywhere, with `all`).
fn top_safetensors(siblings: &[String], all: bool) -> Vec<&str> {
    siblings
        .iter()
        .filter(|s| s.ends_with(".safetensors") && (all || !s.contains('/')))
        .map(String::as_str)
        .collect()
}

/// `--file`: a relative path to a `.safetensors` file.
pub fn check_single_file_name(file: &str) -> Result<()> {
    check_relative(file).with_context(|| format!("invalid --file `{file}`"))?;
    if is_pickle(file) {
        bail!(
            "`{file}` is a pickle checkpoint; Easel loads .safetensors only, since loading a \
             pickle can run code. Look for a .safetensors version of this model"
        );
    }
    if !file.ends_with(".safetensors") {
        bail!("--file must name a .safetensors checkpoint, not `{file}`");
    }
    Ok(())
}

/// A relative path made of plain names (no `..`, no absolute path, no backslash).
fn check_relative(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(':'));
    if !ok {
        bail!("`{path}` is not a plain relative path");
    }
    Ok(())
}

/// The components a `model_index.json` lists: `name: [library, class]` entries whose library
/// is set (`[null, null]` means absent).
fn components(index: &Value) -> Result<Vec<String>> {
    let obj = index
        .as_object()
        .ok_or_else(|| anyhow!("model_index.json is not a JSON object"))?;
    let mut out = Vec::new();
    for (key, value) in obj {
        if key.starts_with('_') {
            continue;
        }
        let Some(pair) = value.as_array() else {
            continue;
        };
        if pair.len() == 2 && pair[0].is_string() {
            out.push(key.clone());
        }
    }
    Ok(out)
}

/// One way a component's weights can be loaded: a single `<stem>[.<variant>].safetensors`
/// file, or a sharded set (`<stem>.safetensors.index[.<variant>].json` and the shards it
/// lists).
struct Candidate<'a> {
    stem: &'a str,
    variant: Option<&'a str>,
    /// The single file, or the index of a sharded set.
    file: &'a str,
    /// Whether `file` is an index.
    sharded: bool,
    /// The shards named like the index, in order (empty for a single file).
    shards: Vec<Shard<'a>>,
}

impl Candidate<'_> {
    /// In words, for messages: the file, or the index and its shards.
    fn describe(&self) -> String {
        if self.sharded {
            format!("{} and its {} shards", self.file, self.shards.len())
        } else {
            self.file.to_string()
        }
    }
}

/// `<stem>[.<variant>].safetensors`, not a shard.
fn parse_weights(file: &str) -> Option<Candidate<'_>> {
    if parse_shard(file).is_some() {
        return None;
    }
    let base = file.strip_suffix(".safetensors")?;
    let (stem, variant) = match base.split_once('.') {
        Some((stem, variant)) => (stem, Some(variant)),
        None => (base, None),
    };
    (!stem.is_empty()).then_some(Candidate {
        stem,
        variant,
        file,
        sharded: false,
        shards: vec![],
    })
}

/// One shard of a sharded `.safetensors` checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard<'a> {
    file: &'a str,
    stem: &'a str,
    variant: Option<&'a str>,
    part: u32,
    total: u32,
}

/// A shard's name, in the forms transformers and diffusers write: `<stem>-00001-of-00003`,
/// `<stem>.<variant>-00001-of-00003` and the older `<stem>-00001-of-00003.<variant>`, each
/// followed by `.safetensors`.
fn parse_shard(file: &str) -> Option<Shard<'_>> {
    let base = file.strip_suffix(".safetensors")?;
    let (head, tail) = base.rsplit_once("-of-")?;
    let (total, legacy_variant) = match tail.split_once('.') {
        Some((total, variant)) => (total, Some(variant)),
        None => (tail, None),
    };
    let (name, part) = head.rsplit_once('-')?;
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (part, total) = (number(part)?, number(total)?);
    let (stem, variant) = match (name.split_once('.'), legacy_variant) {
        (Some(_), Some(_)) => return None,
        (Some((stem, variant)), None) => (stem, Some(variant)),
        (None, variant) => (name, variant),
    };
    let ok =
        !stem.is_empty() && variant.is_none_or(|v| !v.is_empty()) && (1..=total).contains(&part);
    ok.then_some(Shard {
        file,
        stem,
        variant,
        part,
        total,
    })
}

/// The index of a sharded `.safetensors` checkpoint: `<stem>.safetensors.index.json`,
/// `<stem>.safetensors.index.<variant>.json` or the older
/// `<stem>.safetensors.<variant>.index.json`; returns the stem and the variant.
fn parse_index(file: &str) -> Option<(&str, Option<&str>)> {
    let base = file.strip_suffix(".json")?;
    let parts: Vec<&str> = base.split('.').collect();
    match *parts.as_slice() {
        [stem, "safetensors", "index"] => Some((stem, None)),
        [stem, "safetensors", "index", variant] | [stem, "safetensors", variant, "index"] => {
            Some((stem, Some(variant)))
        }
        _ => None,
    }
    .filter(|(stem, variant)| !stem.is_empty() && variant.is_none_or(|v| !v.is_empty()))
}

/// Any `*.index.json`-style file (a sharded checkpoint's index, pickle or not): never a
/// configuration file.
fn is_any_index(file: &str) -> bool {
    file.ends_with(".json") && (file.contains(".index.") || file.ends_with(".index.json"))
}

fn stem_rank(stem: &str) -> usize {
    match stem {
        "diffusion_pytorch_model" => 0,
        "model" => 1,
        _ => 2,
    }
}

/// The ways a component's weights can be loaded, from its file list: every single
/// `.safetensors` file, and every `.safetensors` index with the shards named like it.
fn candidates<'a>(files: &[&'a str]) -> Vec<Candidate<'a>> {
    let visible = || files.iter().copied().filter(|f| !f.starts_with('.'));
    let shards: Vec<Shard> = visible().filter_map(parse_shard).collect();
    let mut out: Vec<Candidate> = visible().filter_map(parse_weights).collect();
    for index in visible() {
        let Some((stem, variant)) = parse_index(index) else {
            continue;
        };
        let mut mine: Vec<Shard> = shards
            .iter()
            .copied()
            .filter(|s| s.stem == stem && s.variant == variant)
            .collect();
        mine.sort_by(|a, b| (a.part, a.file).cmp(&(b.part, b.file)));
        out.push(Candidate {
            stem,
            variant,
            file: index,
            sharded: true,
            shards: mine,
        });
    }
    out
}

/// A sharded set must be complete by its names: parts 1 to N of N, once each.
fn check_shards(component: &str, c: &Candidate) -> Result<()> {
    let names = || {
        c.shards
            .iter()
            .map(|s| s.file)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(first) = c.shards.first() else {
        bail!(
            "component `{component}` has the index {} but none of its shards",
            c.file
        );
    };
    let total = first.total;
    let complete = c.shards.len() == total as usize
        && c.shards
            .iter()
            .enumerate()
            .all(|(i, s)| s.total == total && s.part as usize == i + 1);
    if !complete {
        bail!(
            "component `{component}`: the shards of {} are incomplete or inconsistent ({}); \
             expected parts 1 to {total} of {total}",
            c.file,
            names()
        );
    }
    Ok(())
}

fn plan_diffusers(siblings: &[String], index: &Value, variant: Option<&str>) -> Result<Plan> {
    let mut plan = Plan {
        kind: Kind::Diffusers,
        files: vec![PlannedFile {
            remote: "model_index.json".into(),
            local: "model_index.json".into(),
        }],
        skipped: vec![],
        notes: vec![],
    };
    let mut other_variants: Vec<String> = Vec::new();
    for component in components(index)? {
        if UNUSED_COMPONENTS.contains(&component.as_str()) {
            plan.skipped.push(component);
            continue;
        }
        if component.starts_with('.')
            || component.contains('/')
            || check_relative(&component).is_err()
        {
            bail!("model_index.json lists an invalid component `{component}`");
        }
        let prefix = format!("{component}/");
        // The component's own files (not those of sub-folders).
        let files: Vec<&str> = siblings
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix))
            .filter(|f| !f.contains('/') && !f.is_empty())
            .collect();
        if files.is_empty() {
            bail!("model_index.json lists `{component}`, but the repository has no {component}/ folder");
        }
        let mut configs: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| {
                !f.starts_with('.')
                    && !is_any_index(f)
                    && (f.ends_with(".json") || f.ends_with(".txt") || f.ends_with(".model"))
            })
            .collect();
        configs.sort();
        // A component with a config.json is a model and needs weights; tokenizers and
        // schedulers have none.
        let is_model = files.contains(&"config.json");
        let found = candidates(&files);
        let has_safetensors = files.iter().any(|f| f.ends_with(".safetensors"));
        if is_model || has_safetensors || !found.is_empty() {
            let chosen = choose_weights(&component, &files, &found, variant)?;
            if let Some(note) = chosen.note {
                plan.notes.push(note);
            }
            for c in &found {
                if let Some(v) = c.variant {
                    if Some(v) != variant && !other_variants.iter().any(|o| o == v) {
                        other_variants.push(v.to_string());
                    }
                }
            }
            for c in configs {
                plan.files.push(planned(&component, c, c));
            }
            for (remote, local) in chosen.files {
                plan.files.push(planned(&component, remote, &local));
            }
        } else {
            if configs.is_empty() {
                bail!("the repository's {component}/ folder has no configuration files");
            }
            for c in configs {
                plan.files.push(planned(&component, c, c));
            }
        }
    }
    if variant.is_none() {
        if let Some(v) = ["fp16", "bf16"]
            .into_iter()
            .find(|v| other_variants.iter().any(|o| o == v))
        {
            plan.notes.push(format!(
                "{v} weights are available: --variant {v} downloads about half as much"
            ));
        }
    }
    Ok(plan)
}

fn planned(component: &str, remote: &str, local: &str) -> PlannedFile {
    PlannedFile {
        remote: format!("{component}/{remote}"),
        local: format!("{component}/{local}"),
    }
}

struct Chosen<'a> {
    /// The files to download (remote name, local name), in order: a single file, or an
    /// index followed by its shards.
    files: Vec<(&'a str, String)>,
    note: Option<String>,
}

fn choose_weights<'a>(
    component: &str,
    files: &[&'a str],
    found: &[Candidate<'a>],
    variant: Option<&str>,
) -> Result<Chosen<'a>> {
    if found.is_empty() {
        let pickles: Vec<&str> = files.iter().copied().filter(|f| is_pickle(f)).collect();
        let shards: Vec<Shard> = files.iter().copied().filter_map(parse_shard).collect();
        if let Some(first) = shards.first() {
            let names: Vec<&str> = shards.iter().map(|s| s.file).collect();
            let index = match first.variant {
                None => format!("{}.safetensors.index.json", first.stem),
                Some(v) => format!("{}.safetensors.index.{v}.json", first.stem),
            };
            bail!(
                "component `{component}` has sharded weights ({}) but not their index \
                 ({index}), which is needed to load them",
                names.join(", ")
            );
        }
        if !pickles.is_empty() {
            bail!(
                "component `{component}` has only pickle weights ({}); Easel loads \
                 .safetensors only, since loading a pickle can run code. Try another \
                 --revision (a `refs/pr/N` conversion, for example) or a converted copy of \
                 this model",
                pickles.join(", ")
            );
        }
        bail!("component `{component}` has no .safetensors weights");
    }
    // Rank: the requested variant, then the default weights, then fp16 (without --variant);
    // at each step a single file before a sharded set.
    let rank = |c: &Candidate| -> Option<(usize, usize, bool)> {
        let v = match (c.variant, variant) {
            (Some(a), Some(b)) if a == b => 0,
            (None, _) => 1,
            (Some("fp16"), None) => 2,
            _ => return None,
        };
        Some((v, stem_rank(c.stem), c.sharded))
    };
    let best = found
        .iter()
        .filter_map(|c| rank(c).map(|r| (r, c)))
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.file.cmp(b.1.file)));
    let Some((_, c)) = best else {
        let names: Vec<&str> = found.iter().map(|c| c.file).collect();
        bail!(
            "component `{component}` has no weights for {}: it has {}",
            match variant {
                Some(v) => format!("variant `{v}` and no default weights"),
                None => "the default variant; choose one with --variant".into(),
            },
            names.join(", ")
        );
    };
    let note = match (variant, c.variant) {
        (Some(v), None) => Some(format!(
            "`{component}` has no {v} variant: taking {}",
            c.describe()
        )),
        _ => None,
    };
    // The loaders find `<stem>.safetensors`, `<stem>.fp16.safetensors` and the indexes
    // `<stem>.safetensors.index[.fp16].json`, so other variants are saved under the default
    // names. Shards keep their names: the index lists them.
    if !c.sharded {
        let local = match c.variant {
            None | Some("fp16") => c.file.to_string(),
            Some(_) => format!("{}.safetensors", c.stem),
        };
        return Ok(Chosen {
            files: vec![(c.file, local)],
            note,
        });
    }
    check_shards(component, c)?;
    let default_index = format!("{}.safetensors.index.json", c.stem);
    let local =
        if c.file == default_index || c.file == format!("{}.safetensors.index.fp16.json", c.stem) {
            c.file.to_string()
        } else {
            default_index
        };
    let mut files = vec![(c.file, local)];
    files.extend(c.shards.iter().map(|s| (s.file, s.file.to_string())));
    Ok(Chosen { files, note })
}

/// Checks a downloaded index (`remote`, a path in the repository) against the plan: its
/// `weight_map` must name plain file names that the plan downloads into the same folder,
/// or the loader would miss tensors.
pub fn check_index(plan: &Plan, remote: &str, bytes: &[u8]) -> Result<()> {
    let (folder, _) = remote.rsplit_once('/').unwrap_or(("", remote));
    let v: Value =
        serde_json::from_slice(bytes).with_context(|| format!("{remote}: not valid JSON"))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| anyhow!("{remote}: no weight_map"))?;
    let mut missing: Vec<&str> = Vec::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| anyhow!("{remote}: weight_map values must be file names"))?;
        if file.contains('/') || check_relative(file).is_err() {
            bail!("{remote}: weight_map names `{file}`, which is not a plain file name");
        }
        let path = if folder.is_empty() {
            file.to_string()
        } else {
            format!("{folder}/{file}")
        };
        if !plan.files.iter().any(|f| f.remote == path) && !missing.contains(&file) {
            missing.push(file);
        }
    }
    if !missing.is_empty() {
        missing.sort();
        bail!(
            "{remote} lists shards that are not among the repository's files to download \
             ({}); the repository looks inconsistent",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The `model_index.json` to save: the components not downloaded become `[null, null]`, so
/// the folder is consistent for diffusers too.
pub fn rewrite_index(index: &Value, skipped: &[String]) -> Value {
    let mut index = index.clone();
    if let Some(obj) = index.as_object_mut() {
        for s in skipped {
            if let Some(v) = obj.get_mut(s) {
                *v = serde_json::json!([null, null]);
            }
        }
    }
    index
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Checks a hub repository id: `name` or `owner/name`, each part 1–96 letters, digits, `-`,
/// `_` or `.`, starting and ending with a letter, digit or `_`, without `--` or `..`.
pub fn check_repo_id(id: &str) -> Result<()> {
    let part_ok = |p: &str| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        !p.is_empty()
            && p.len() <= 96
            && p.chars().all(|c| word(c) || c == '-' || c == '.')
            && p.starts_with(word)
            && p.ends_with(word)
            && !p.contains("--")
            && !p.contains("..")
    };
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) || id.ends_with(".git") {
        bail!(
            "invalid repository id `{id}`: expected `owner/name` (letters, digits, `-`, `_`, \
             `.`), such as `stable-diffusion-v1-5/stable-diffusion-v1-5`"
        );
    }
    Ok(())
}

fn check_revision(rev: &str) -> Result<()> {
    let ok = !rev.is_empty()
        && rev.len() <= 256
        && rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !rev.contains("..")
        && !rev.starts_with('/');
    if !ok {
        bail!("invalid --revision `{rev}`: expected a branch, tag or commit such as `main`");
    }
    Ok(())
}

fn check_variant(v: &str) -> Result<()> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("invalid --variant `{v}`: expected a name such as `fp16`");
    }
    Ok(())
}

/// The default model name: the repository's name part, with characters other than letters,
/// digits, `-`, `_` and `.` replaced by `-` (as `easel models scan` names folders).
pub fn default_name(repo: &str) -> String {
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    name.trim_start_matches('.').to_string()
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "invalid --name `{name}`: use letters, digits, `-`, `_` and `.` (not first), at \
             most 100"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Downloading
// ---------------------------------------------------------------------------------------------

/// The repository listing (`GET /api/models/{repo}/revision/{rev}?blobs=true`).
#[derive(Deserialize)]
struct RepoListing {
    sha: Option<String>,
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
}

/// A listing, read.
struct Listing {
    commit: String,
    siblings: Vec<String>,
    sizes: HashMap<String, u64>,
}

/// Where the result goes.
fn target(models_dir: &Path, name: &str, kind: Kind) -> PathBuf {
    match kind {
        Kind::Diffusers => models_dir.join(name),
        Kind::SingleFile => models_dir.join(format!("{name}.safetensors")),
        Kind::TinyVae => models_dir.join(easel_diffusion::taesd::FOLDER).join(name),
    }
}

fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} already exists; choose another --name, or pass --force to replace it",
            path.display()
        );
    }
    Ok(())
}

/// `easel models pull`: validate, list, choose, download into a temporary folder, rename
/// into place.
pub async fn run(args: PullArgs, data_dir: &Path) -> Result<()> {
    let job = prepare(args, data_dir, None).map_err(|(_, e)| e)?;
    // On Ctrl-C the pull future is dropped, which removes its temporary folder.
    tokio::select! {
        r = job.run() => r.map(|_| ()),
        _ = tokio::signal::ctrl_c() => bail!("interrupted; nothing was saved"),
    }
}

/// A pull for the server (`POST /v1/models-folder/pulls`): the same checks and download as
/// `easel models pull`, reported to `sink`. The hub address and token come from the server's
/// environment (`HF_ENDPOINT`, `HF_TOKEN`, the saved login).
pub fn start(
    req: easel_api::native::pulls::PullRequest,
    models_dir: PathBuf,
    sink: easel_api::native::pulls::PullSink,
) -> easel_core::Result<futures::future::BoxFuture<'static, std::result::Result<Pulled, String>>> {
    let (endpoint, token) = server_hub();
    let args = PullArgs {
        repo: req.repo,
        revision: req.revision.unwrap_or_else(|| "main".into()),
        name: req.name,
        variant: req.variant,
        file: req.file,
        token,
        endpoint,
        force: req.force,
    };
    let data_dir = models_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let job = prepare(args, &data_dir, Some(sink)).map_err(|(field, e)| {
        let msg = format!("{e:#}");
        match field {
            "existing" => {
                easel_core::Error::new(easel_core::ErrorKind::Conflict, msg).with_field("name")
            }
            _ => easel_core::Error::invalid(field, msg),
        }
    })?;
    Ok(Box::pin(async move {
        job.run().await.map_err(|e| format!("{e:#}"))
    }))
}

/// A user's LoRA import from the hub (`POST /v1/uploads/import` with `hub`, Scenario's
/// `huggingFaceModelName`): the repository id, revision and file checked at once (errors
/// name `repo`, `revision`, `file`), then the file fetched by [`Pull::fetch_lora`] through
/// a temporary folder in `scratch`. The hub address as for [`start`]; no token is sent
/// (public repositories only).
pub fn start_lora(
    req: HubLora,
    scratch: PathBuf,
) -> easel_core::Result<futures::future::BoxFuture<'static, easel_core::Result<Vec<u8>>>> {
    let field =
        |f: &'static str| move |e: anyhow::Error| easel_core::Error::invalid(f, format!("{e:#}"));
    check_repo_id(&req.repo).map_err(field("repo"))?;
    let revision = req.revision.clone().unwrap_or_else(|| "main".into());
    check_revision(&revision).map_err(field("revision"))?;
    if let Some(f) = &req.file {
        check_single_file_name(f).map_err(field("file"))?;
    }
    // Without the server's token: a user reaches only what the hub shows anyone, never the
    // gated or private repositories the operator's login may read.
    let (endpoint, _) = server_hub();
    let endpoint = check_endpoint(&endpoint)
        .map_err(|e| easel_core::Error::internal(format!("the server's HF_ENDPOINT: {e:#}")))?;
    let pull = Pull {
        name: default_name(&req.repo),
        repo: req.repo,
        revision,
        endpoint,
        token: None,
        force: false,
        select: Select {
            variant: None,
            file: req.file,
        },
        data_dir: scratch.clone(),
        models_dir: scratch,
        // No log: an import reports its outcome on the upload.
        sink: Some(Arc::new(|_| {})),
    };
    let max = req.max_bytes;
    Ok(Box::pin(pull.fetch_lora(max)))
}

/// The hub a server reaches: `HF_ENDPOINT` (default huggingface.co; checked by `prepare` or
/// [`check_endpoint`]), and `HF_TOKEN` or the saved login.
fn server_hub() -> (String, Option<String>) {
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into());
    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(saved_token);
    (endpoint, token)
}

/// The LoRA file of a repository (its file list): `file` when given (it must be listed);
/// else diffusers' `pytorch_lora_weights.safetensors` at the top; else the repository's one
/// top-level `.safetensors` file. A diffusers model's repository (`model_index.json`) is not
/// a LoRA's; pickles are never chosen.
pub fn choose_lora(siblings: &[String], file: Option<&str>) -> Result<String> {
    if let Some(f) = file {
        if !siblings.iter().any(|s| s == f) {
            bail!("the repository has no file `{f}`");
        }
        return Ok(f.to_string());
    }
    if siblings.iter().any(|s| s == "model_index.json") {
        bail!(
            "it is a diffusers model, not a LoRA: an admin adds base models with `easel models \
             pull` (or POST /v1/models-folder/pulls)"
        );
    }
    const DIFFUSERS_LORA: &str = "pytorch_lora_weights.safetensors";
    if siblings.iter().any(|s| s == DIFFUSERS_LORA) {
        return Ok(DIFFUSERS_LORA.into());
    }
    match top_safetensors(siblings, false).as_slice() {
        [one] => Ok(one.to_string()),
        [] if siblings.iter().any(|s| is_pickle(s)) => bail!(
            "it holds only pickle weights, which Easel never downloads (loading a pickle can \
             run code): look for a .safetensors version"
        ),
        [] => bail!("it has no .safetensors file at its top"),
        several => bail!(
            "it has several .safetensors files ({}): name one as the file",
            several.join(", ")
        ),
    }
}

/// A hub address (`--endpoint`, `HF_ENDPOINT`): an http(s) URL, without its trailing `/`.
fn check_endpoint(endpoint: &str) -> Result<String> {
    let endpoint = endpoint.trim().trim_end_matches('/').to_string();
    let url = reqwest::Url::parse(&endpoint)
        .map_err(|e| anyhow!("invalid --endpoint `{endpoint}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("invalid --endpoint `{endpoint}`: expected an http:// or https:// address");
    }
    Ok(endpoint)
}

/// Everything that can be checked without the network, first; an error names the field.
fn prepare(
    args: PullArgs,
    data_dir: &Path,
    sink: Option<easel_api::native::pulls::PullSink>,
) -> std::result::Result<Pull, (&'static str, anyhow::Error)> {
    let on = |field: &'static str| move |e: anyhow::Error| (field, e);
    check_repo_id(&args.repo).map_err(on("repo"))?;
    check_revision(&args.revision).map_err(on("revision"))?;
    let name = match &args.name {
        Some(n) => {
            check_name(n).map_err(on("name"))?;
            n.clone()
        }
        None => {
            let n = default_name(&args.repo);
            check_name(&n)
                .context("choose a model name with --name")
                .map_err(on("name"))?;
            n
        }
    };
    let variant = args.variant.as_deref().map(str::trim);
    if let Some(v) = variant {
        check_variant(v).map_err(on("variant"))?;
    }
    if let Some(f) = &args.file {
        check_single_file_name(f).map_err(on("file"))?;
    }
    let endpoint = check_endpoint(&args.endpoint).map_err(on("endpoint"))?;
    let models_dir = data_dir.join("models");
    let early_kind = if args.file.is_some() {
        Kind::SingleFile
    } else {
        Kind::Diffusers
    };
    // `existing`: the request's `name`, taken (a conflict rather than bad input).
    refuse_existing(&target(&models_dir, &name, early_kind), args.force).map_err(on("existing"))?;
    let token = args
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(saved_token);
    let select = Select {
        variant: variant.map(str::to_string),
        file: args.file.clone(),
    };
    Ok(Pull {
        repo: args.repo.clone(),
        revision: args.revision.clone(),
        name,
        endpoint,
        token,
        force: args.force,
        select,
        data_dir: data_dir.to_path_buf(),
        models_dir,
        sink,
    })
}

/// The token saved by `huggingface-cli login` (`$HF_TOKEN_PATH`, `$HF_HOME/token` or
/// `~/.cache/huggingface/token`).
fn saved_token() -> Option<String> {
    let path = if let Some(p) = std::env::var_os("HF_TOKEN_PATH") {
        PathBuf::from(p)
    } else if let Some(home) = std::env::var_os("HF_HOME") {
        PathBuf::from(home).join("token")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface/token")
    };
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

struct Pull {
    repo: String,
    revision: String,
    name: String,
    endpoint: String,
    token: Option<String>,
    force: bool,
    select: Select,
    data_dir: PathBuf,
    models_dir: PathBuf,
    /// Where progress goes: the terminal (`None`) or the server's record of the pull.
    sink: Option<easel_api::native::pulls::PullSink>,
}

impl Pull {
    /// A line of the log: printed, or handed to the sink.
    fn say(&self, line: String) {
        match &self.sink {
            Some(s) => s(easel_api::native::pulls::PullEvent::Line(line)),
            None => println!("{line}"),
        }
    }

    fn api(&self, cache: PathBuf) -> Result<hf_hub::api::tokio::Api> {
        ApiBuilder::from_cache(Cache::new(cache))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            .with_max_files(4)
            .with_user_agent("easel", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| anyhow!("setting up the hub client: {e}"))
    }

    fn repo(&self, api: &hf_hub::api::tokio::Api, revision: &str) -> ApiRepo {
        api.repo(Repo::with_revision(
            self.repo.clone(),
            RepoType::Model,
            revision.to_string(),
        ))
    }

    /// An HTTP failure, in words.
    fn http_error(&self, status: reqwest::StatusCode, what: &str) -> anyhow::Error {
        match status.as_u16() {
            401 | 403 => anyhow!(
                "the hub refused access to {} (HTTP {status}): it is gated or private. Accept \
                 its terms on the hub, then pass --token or set HF_TOKEN",
                self.repo
            ),
            404 => anyhow!(
                "{what}: not found (HTTP 404). Check the repository id and --revision `{}` (a \
                 private repository also answers 404 without a token)",
                self.revision
            ),
            _ => anyhow!("{what}: the hub answered HTTP {status}"),
        }
    }

    fn network_error(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow::Error::new(e).context(format!(
            "could not reach the hub at {} (check the network, or --endpoint / HF_ENDPOINT)",
            self.endpoint
        ))
    }

    /// A small JSON file of the repository, read without the cache.
    async fn fetch_json(
        &self,
        api: &hf_hub::api::tokio::Api,
        repo: &ApiRepo,
        file: &str,
    ) -> Result<Value> {
        let what = format!("fetching {}/{file}", self.repo);
        let resp = api
            .client()
            .get(repo.url(file))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp.status(), &what));
        }
        let bytes = resp.bytes().await.map_err(|e| self.network_error(e))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{what}: not valid JSON"))
    }

    /// The repository's files at the revision, and the commit it names (downloads take
    /// exactly that commit, even if the branch moves meanwhile).
    async fn listing(&self, api: &hf_hub::api::tokio::Api) -> Result<Listing> {
        let repo = self.repo(api, &self.revision);
        let listing_what = format!("listing {} at `{}`", self.repo, self.revision);
        let resp = repo
            .info_request()
            .query(&[("blobs", "true")])
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp.status(), &listing_what));
        }
        let listing: RepoListing = resp
            .json()
            .await
            .with_context(|| format!("{listing_what}: unexpected answer"))?;
        let commit = listing
            .sha
            .clone()
            .filter(|s| check_revision(s).is_ok())
            .unwrap_or_else(|| self.revision.clone());
        Ok(Listing {
            commit,
            siblings: listing
                .siblings
                .iter()
                .map(|s| s.rfilename.clone())
                .collect(),
            sizes: listing
                .siblings
                .into_iter()
                .filter_map(|s| Some((s.rfilename, s.size?)))
                .collect(),
        })
    }

    /// A user's LoRA import: the repository's LoRA file ([`choose_lora`]), at most `max`
    /// bytes (refused from the listing before any download, and checked after), downloaded
    /// through a temporary folder (removed when done) and read.
    async fn fetch_lora(self, max: u64) -> easel_core::Result<Vec<u8>> {
        let fail = |e: anyhow::Error| easel_core::Error::invalid("repo", format!("{e:#}"));
        let too_large = |file: &str, n: u64| {
            easel_core::Error::new(
                easel_core::ErrorKind::PayloadTooLarge,
                format!(
                    "{}/{file} is {n} bytes, over this server's upload limit ({max} bytes)",
                    self.repo
                ),
            )
            .with_field("repo")
        };
        let api = self
            .api(self.models_dir.join(".easel-pull-unused"))
            .map_err(fail)?;
        let listing = self.listing(&api).await.map_err(fail)?;
        let file = choose_lora(&listing.siblings, self.select.file.as_deref())
            .with_context(|| format!("cannot import a LoRA from {}", self.repo))
            .map_err(fail)?;
        let listed = listing.sizes.get(&file).copied();
        if let Some(n) = listed.filter(|&n| n > max) {
            return Err(too_large(&file, n));
        }
        std::fs::create_dir_all(&self.models_dir)
            .map_err(|e| easel_core::Error::internal(format!("creating the hub cache: {e}")))?;
        let tmp = tempfile::Builder::new()
            .prefix(".easel-lora-")
            .tempdir_in(&self.models_dir)
            .map_err(|e| easel_core::Error::internal(format!("creating the hub cache: {e}")))?;
        let api = self.api(tmp.path().join("cache")).map_err(fail)?;
        let repo = self.repo(&api, &listing.commit);
        let path = self.download(&repo, &file, &file).await.map_err(fail)?;
        let blob = std::fs::canonicalize(&path).unwrap_or(path);
        let got = std::fs::metadata(&blob)
            .map_err(|e| easel_core::Error::internal(e.to_string()))?
            .len();
        if got > max {
            return Err(too_large(&file, got));
        }
        if listed.is_some_and(|want| want != got) {
            return Err(fail(anyhow!(
                "{file}: received {got} bytes, the hub lists {}",
                listed.unwrap_or_default()
            )));
        }
        tokio::fs::read(&blob)
            .await
            .map_err(|e| easel_core::Error::internal(format!("reading {file}: {e}")))
    }

    /// Download; resolves to what was installed.
    async fn run(self) -> Result<Pulled> {
        // The listing and model_index.json need no cache; the cache path is never written.
        let api = self.api(self.models_dir.join(".easel-pull-unused"))?;
        let Listing {
            commit,
            siblings,
            sizes,
        } = self.listing(&api).await?;
        let repo = self.repo(&api, &commit);

        let index = if needs_index(&siblings, &self.select) {
            Some(self.fetch_json(&api, &repo, "model_index.json").await?)
        } else {
            None
        };
        // Only to tell a tiny autoencoder: a config that cannot be read is not one.
        let config = if needs_config(&siblings, &self.select) {
            self.fetch_json(&api, &repo, "config.json").await.ok()
        } else {
            None
        };
        let plan = match config
            .as_ref()
            .and_then(|c| plan_tiny_vae(&siblings, c, &self.select))
        {
            Some(p) => p,
            None => plan(&siblings, index.as_ref(), &self.select),
        }
        .with_context(|| format!("cannot pull {}", self.repo))?;
        let dest = target(&self.models_dir, &self.name, plan.kind);
        refuse_existing(&dest, self.force)?;

        let total: u64 = plan
            .files
            .iter()
            .filter_map(|f| sizes.get(f.remote.as_str()))
            .sum();
        self.say(format!(
            "Pulling {}@{} ({} file{}, {}) into {}",
            self.repo,
            short(&commit),
            plan.files.len(),
            if plan.files.len() == 1 { "" } else { "s" },
            human(total),
            dest.display()
        ));
        if !plan.skipped.is_empty() {
            self.say(format!(
                "  not downloaded (unused by Easel): {}",
                plan.skipped.join(", ")
            ));
        }
        for note in &plan.notes {
            self.say(format!("  note: {note}"));
        }

        std::fs::create_dir_all(&self.models_dir)
            .with_context(|| format!("creating {}", self.models_dir.display()))?;
        // Removed when dropped: on success (after the rename), on error, and on Ctrl-C.
        let tmp = tempfile::Builder::new()
            .prefix(".easel-pull-")
            .tempdir_in(&self.models_dir)
            .with_context(|| format!("creating a folder in {}", self.models_dir.display()))?;
        let staged = tmp.path().join("model");
        let api = self.api(tmp.path().join("cache"))?;
        let repo = self.repo(&api, &commit);
        let n = plan.files.len();
        for (i, f) in plan.files.iter().enumerate() {
            let label = format!("[{}/{n}] {}", i + 1, f.remote);
            let out = match plan.kind {
                Kind::Diffusers | Kind::TinyVae => staged.join(&f.local),
                Kind::SingleFile => tmp.path().join("model.safetensors"),
            };
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let started = Instant::now();
            let size = if f.remote == "model_index.json" && plan.kind == Kind::Diffusers {
                let index = index.as_ref().expect("fetched above");
                let text = serde_json::to_string_pretty(&rewrite_index(index, &plan.skipped))?;
                std::fs::write(&out, text + "\n")?;
                std::fs::metadata(&out)?.len()
            } else {
                let path = self.download(&repo, &f.remote, &label).await?;
                let blob = std::fs::canonicalize(&path).unwrap_or(path);
                let got = std::fs::metadata(&blob)?.len();
                if let Some(&want) = sizes.get(f.remote.as_str()) {
                    if got != want {
                        bail!("{}: received {got} bytes, the hub lists {want}", f.remote);
                    }
                }
                move_file(&blob, &out)?;
                // A sharded set's index comes before its shards: check it before they are
                // downloaded.
                let name = f.remote.rsplit('/').next().unwrap_or(&f.remote);
                if plan.kind == Kind::Diffusers && parse_index(name).is_some() {
                    let bytes = std::fs::read(&out)
                        .with_context(|| format!("reading {}", out.display()))?;
                    check_index(&plan, &f.remote, &bytes)?;
                }
                got
            };
            self.say(format!(
                "{label}  {}  {:.1}s",
                human(size),
                started.elapsed().as_secs_f64()
            ));
        }

        // Into place. With --force the old model is moved into the temporary folder first
        // (and removed with it).
        if std::fs::symlink_metadata(&dest).is_ok() {
            if !self.force {
                bail!(
                    "{} appeared while downloading; pass --force to replace it",
                    dest.display()
                );
            }
            std::fs::rename(&dest, tmp.path().join("replaced"))
                .with_context(|| format!("moving the old {} aside", dest.display()))?;
        }
        let source = match plan.kind {
            Kind::Diffusers | Kind::TinyVae => staged,
            Kind::SingleFile => tmp.path().join("model.safetensors"),
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::rename(&source, &dest)
            .with_context(|| format!("moving the download to {}", dest.display()))?;
        drop(tmp);

        self.say(format!(
            "Pulled {}@{} into {}",
            self.repo,
            short(&commit),
            dest.display()
        ));
        if plan.kind == Kind::TinyVae {
            let families: Vec<&str> = easel_diffusion::family::FAMILIES
                .iter()
                .filter(|f| f.tiny_vae == Some(self.name.as_str()))
                .map(|f| f.label)
                .collect();
            if families.is_empty() {
                self.say(format!(
                    "No family looks for a tiny autoencoder named `{}`: pull it again with \
                     --name taesd (SD 1.x/2.x) or --name taesdxl (SDXL)",
                    self.name
                ));
            } else {
                self.say(format!(
                    "Previews of {} models are now decoded with it, and `decoder: taesd` \
                     (--decoder taesd) decodes their images with it",
                    families.join(", ")
                ));
            }
            return Ok(Pulled::TinyVae(self.name));
        }
        if self.sink.is_none() {
            self.say(format!(
                "Register it with `easel models scan --data-dir {}` (`easel serve` also registers \
                 it when it starts); it is then the model `{}` in `easel models list`.",
                self.data_dir.display(),
                self.name
            ));
        }
        Ok(Pulled::Model(self.name))
    }

    /// Download one file into the cache, retrying network failures and 5xx answers (a retry
    /// resumes the partial file); returns the cached file.
    async fn download(&self, repo: &ApiRepo, file: &str, label: &str) -> Result<PathBuf> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            let progress = LineProgress::new(label, self.sink.clone());
            let result = repo.download_with_progress(file, progress.clone()).await;
            progress.clear();
            match result {
                Ok(path) => return Ok(path),
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    let why = match &e {
                        ApiError::RequestError(r) => match r.status() {
                            Some(s) => format!("HTTP {s}"),
                            None => "network error".into(),
                        },
                        other => other.to_string(),
                    };
                    let line = format!("  {file}: {why}; retrying ({}/{ATTEMPTS})", attempt + 1);
                    match &self.sink {
                        Some(_) => self.say(line),
                        None => eprintln!("{line}"),
                    }
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(ApiError::RequestError(e)) => {
                    return Err(match e.status() {
                        Some(s) => self.http_error(s, &format!("downloading {file}")),
                        None => self.network_error(e).context(format!("downloading {file}")),
                    })
                }
                Err(e) => return Err(anyhow!("downloading {file}: {e}")),
            }
        }
    }
}

fn retryable(e: &ApiError) -> bool {
    match e {
        ApiError::RequestError(e) => e
            .status()
            .is_none_or(|s| s.is_server_error() || s.as_u16() == 429),
        ApiError::TooManyRetries(_) | ApiError::Join(_) => true,
        _ => false,
    }
}

/// Rename (same filesystem: the cache is inside the temporary folder), else copy.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        let _ = std::fs::remove_file(from);
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    if commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        &commit[..12]
    } else {
        commit
    }
}

fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A live `label  42% of 3.4 GB` line on a terminal's stderr, redrawn at most 5 times a
/// second. Shared by the chunk tasks of one download.
#[derive(Clone)]
struct LineProgress {
    state: Arc<Mutex<ProgressState>>,
    /// The server's record of the pull, told instead of drawing on the terminal.
    sink: Option<easel_api::native::pulls::PullSink>,
}

struct ProgressState {
    label: String,
    total: usize,
    done: usize,
    drawn: Option<Instant>,
    live: bool,
}

impl LineProgress {
    fn new(label: &str, sink: Option<easel_api::native::pulls::PullSink>) -> LineProgress {
        let live = sink.is_none() && std::io::stderr().is_terminal();
        LineProgress {
            sink,
            state: Arc::new(Mutex::new(ProgressState {
                label: label.to_string(),
                total: 0,
                done: 0,
                drawn: None,
                live,
            })),
        }
    }

    fn draw(s: &mut ProgressState, force: bool) {
        if !s.live
            || (!force
                && s.drawn
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(200)))
        {
            return;
        }
        let pct = if s.total == 0 {
            100.0
        } else {
            s.done as f64 * 100.0 / s.total as f64
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}  {pct:.0}% of {}",
            s.label,
            human(s.total as u64)
        );
        let _ = err.flush();
        s.drawn = Some(Instant::now());
    }

    /// Hand the bytes so far to the sink, at most every 200 ms (and at once when `force`).
    fn tell(&self, s: &mut ProgressState, force: bool) {
        let Some(sink) = &self.sink else { return };
        if !force
            && s.drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        sink(easel_api::native::pulls::PullEvent::Bytes {
            file: s.label.clone(),
            done: s.done as u64,
            total: s.total as u64,
        });
        s.drawn = Some(Instant::now());
    }

    /// Erase the live line (the caller prints the final one).
    fn clear(&self) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.live && s.drawn.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Progress for LineProgress {
    async fn init(&mut self, size: usize, _filename: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = size;
        s.done = 0;
        LineProgress::draw(&mut s, true);
        self.tell(&mut s, true);
    }

    async fn update(&mut self, size: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done += size;
        LineProgress::draw(&mut s, false);
        self.tell(&mut s, false);
    }

    async fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(files: &[&str]) -> Vec<String> {
        files.iter().map(|s| s.to_string()).collect()
    }

    fn remotes(p: &Plan) -> Vec<&str> {
        p.files.iter().map(|f| f.remote.as_str()).collect()
    }

    fn is_shard(name: &str) -> bool {
        parse_shard(name).is_some()
    }

    fn variant(v: &str) -> Select {
        Select {
            variant: Some(v.into()),
            file: None,
        }
    }

    /// A user's LoRA import takes the named file, else diffusers' LoRA file, else the one
    /// top-level `.safetensors`; it refuses a diffusers model, pickles only, none or several.
    #[test]
    fn the_lora_of_a_repository() {
        let files = list(&["README.md", "ink.safetensors", "samples/a.png"]);
        assert_eq!(choose_lora(&files, None).unwrap(), "ink.safetensors");
        let files = list(&[
            "pytorch_lora_weights.safetensors",
            "other.safetensors",
            "sub/x.safetensors",
        ]);
        assert_eq!(
            choose_lora(&files, None).unwrap(),
            "pytorch_lora_weights.safetensors"
        );
        assert_eq!(
            choose_lora(&files, Some("sub/x.safetensors")).unwrap(),
            "sub/x.safetensors"
        );
        let e = choose_lora(&files, Some("sub/missing.safetensors")).unwrap_err();
        assert!(
            e.to_string().contains("no file `sub/missing.safetensors`"),
            "{e}"
        );
        for (files, says) in [
            (
                list(&["model_index.json", "unet/x.safetensors"]),
                "diffusers model",
            ),
            (list(&["lora.ckpt", "lora.bin"]), "pickle"),
            (list(&["README.md", "sub/a.safetensors"]), "no .safetensors"),
            (
                list(&["a.safetensors", "b.safetensors"]),
                "a.safetensors, b.safetensors",
            ),
        ] {
            let e = format!("{:#}", choose_lora(&files, None).unwrap_err());
            assert!(e.contains(says), "{files:?}: {e}");
        }
    }

    /// stable-diffusion-v1-5/stable-diffusion-v1-5 at main.
    fn sd15() -> (Vec<String>, Value) {
        let siblings = list(&[
            ".gitattributes",
            "README.md",
            "feature_extractor/preprocessor_config.json",
            "model_index.json",
            "safety_checker/config.json",
            "safety_checker/model.fp16.safetensors",
            "safety_checker/model.safetensors",
            "safety_checker/pytorch_model.bin",
            "safety_checker/pytorch_model.fp16.bin",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.fp16.safetensors",
            "text_encoder/model.safetensors",
            "text_encoder/pytorch_model.bin",
            "text_encoder/pytorch_model.fp16.bin",
            "tokenizer/merges.txt",
            "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer_config.json",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.bin",
            "unet/diffusion_pytorch_model.fp16.bin",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.non_ema.bin",
            "unet/diffusion_pytorch_model.non_ema.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "v1-5-pruned-emaonly.ckpt",
            "v1-5-pruned-emaonly.safetensors",
            "v1-5-pruned.ckpt",
            "v1-5-pruned.safetensors",
            "v1-inference.yaml",
            "vae/config.json",
            "vae/diffusion_pytorch_model.bin",
            "vae/diffusion_pytorch_model.fp16.bin",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ]);
        let index = json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.6.0",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        });
        (siblings, index)
    }

    /// stabilityai/stable-diffusion-xl-base-1.0 at main.
    fn sdxl() -> (Vec<String>, Value) {
        let siblings = list(&[
            ".gitattributes",
            "01.png",
            "LICENSE.md",
            "README.md",
            "comparison.png",
            "model_index.json",
            "pipeline.png",
            "scheduler/scheduler_config.json",
            "sd_xl_base_1.0.safetensors",
            "sd_xl_base_1.0_0.9vae.safetensors",
            "sd_xl_offset_example-lora_1.0.safetensors",
            "text_encoder/config.json",
            "text_encoder/flax_model.msgpack",
            "text_encoder/model.fp16.safetensors",
            "text_encoder/model.onnx",
            "text_encoder/model.safetensors",
            "text_encoder/openvino_model.bin",
            "text_encoder/openvino_model.xml",
            "text_encoder_2/config.json",
            "text_encoder_2/flax_model.msgpack",
            "text_encoder_2/model.fp16.safetensors",
            "text_encoder_2/model.onnx",
            "text_encoder_2/model.onnx_data",
            "text_encoder_2/model.safetensors",
            "text_encoder_2/openvino_model.bin",
            "text_encoder_2/openvino_model.xml",
            "tokenizer/merges.txt",
            "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer_config.json",
            "tokenizer/vocab.json",
            "tokenizer_2/merges.txt",
            "tokenizer_2/special_tokens_map.json",
            "tokenizer_2/tokenizer_config.json",
            "tokenizer_2/vocab.json",
            "unet/config.json",
            "unet/diffusion_flax_model.msgpack",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/model.onnx",
            "unet/model.onnx_data",
            "unet/openvino_model.bin",
            "unet/openvino_model.xml",
            "vae/config.json",
            "vae/diffusion_flax_model.msgpack",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
            "vae_1_0/config.json",
            "vae_1_0/diffusion_pytorch_model.fp16.safetensors",
            "vae_1_0/diffusion_pytorch_model.safetensors",
            "vae_decoder/config.json",
            "vae_decoder/model.onnx",
            "vae_decoder/openvino_model.bin",
            "vae_decoder/openvino_model.xml",
            "vae_encoder/config.json",
            "vae_encoder/model.onnx",
            "vae_encoder/openvino_model.bin",
            "vae_encoder/openvino_model.xml",
        ]);
        let index = json!({
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.19.0.dev0",
            "force_zeros_for_empty_prompt": true,
            "add_watermarker": null,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        });
        (siblings, index)
    }

    #[test]
    fn sd15_takes_what_the_pipeline_loads_and_nothing_else() {
        let (siblings, index) = sd15();
        assert!(needs_index(&siblings, &Select::default()));
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert_eq!(p.kind, Kind::Diffusers);
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );
        assert!(p.files.iter().all(|f| f.local == f.remote));
        assert_eq!(p.skipped, ["feature_extractor", "safety_checker"]);
        assert!(
            p.notes.iter().any(|n| n.contains("--variant fp16")),
            "{:?}",
            p.notes
        );
        let saved = rewrite_index(&index, &p.skipped);
        assert_eq!(saved["safety_checker"], json!([null, null]));
        assert_eq!(saved["feature_extractor"], json!([null, null]));
        assert_eq!(saved["unet"], index["unet"]);
        assert_eq!(saved["_class_name"], "StableDiffusionPipeline");
    }

    #[test]
    fn sd15_variants() {
        let (siblings, index) = sd15();
        let p = plan(&siblings, Some(&index), &variant("fp16")).unwrap();
        let weights: Vec<&str> = remotes(&p)
            .into_iter()
            .filter(|f| f.ends_with(".safetensors"))
            .collect();
        assert_eq!(
            weights,
            [
                "text_encoder/model.fp16.safetensors",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "vae/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        assert!(p.files.iter().all(|f| f.local == f.remote));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert!(!remotes(&p).iter().any(|f| f.ends_with(".bin")));

        // non_ema exists for the UNet only: saved under the name the loader finds; the other
        // components fall back to their default weights, with a note.
        let p = plan(&siblings, Some(&index), &variant("non_ema")).unwrap();
        let unet = p
            .files
            .iter()
            .find(|f| f.remote == "unet/diffusion_pytorch_model.non_ema.safetensors")
            .unwrap();
        assert_eq!(unet.local, "unet/diffusion_pytorch_model.safetensors");
        assert!(remotes(&p).contains(&"vae/diffusion_pytorch_model.safetensors"));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("`vae` has no non_ema variant")));
    }

    #[test]
    fn sdxl_with_and_without_fp16() {
        let (siblings, index) = sdxl();
        let p = plan(&siblings, Some(&index), &variant("fp16")).unwrap();
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.fp16.safetensors",
                "text_encoder_2/config.json",
                "text_encoder_2/model.fp16.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/vocab.json",
                "tokenizer_2/merges.txt",
                "tokenizer_2/special_tokens_map.json",
                "tokenizer_2/tokenizer_config.json",
                "tokenizer_2/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        // Not components: the single-file checkpoints, the ONNX/OpenVINO/Flax exports and the
        // extra VAE folders are never taken.
        for f in remotes(&p) {
            assert!(
                !f.contains("onnx") && !f.contains("openvino") && !f.contains("flax"),
                "{f}"
            );
            assert!(!f.starts_with("vae_") && !f.starts_with("sd_xl"), "{f}");
        }
        assert!(p.skipped.is_empty());

        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert!(remotes(&p).contains(&"unet/diffusion_pytorch_model.safetensors"));
        assert!(remotes(&p).contains(&"text_encoder_2/model.safetensors"));
        assert!(!remotes(&p).iter().any(|f| f.contains(".fp16.")));
    }

    #[test]
    fn fp16_only_components_are_taken_without_a_variant() {
        let siblings = list(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "scheduler/scheduler_config.json",
        ]);
        let index = json!({"_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "safety_checker": [null, null]});
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert!(remotes(&p).contains(&"unet/diffusion_pytorch_model.fp16.safetensors"));
        // A variant that exists nowhere, with no default weights: refused, listing what is there.
        let e = plan(&siblings, Some(&index), &variant("bf16"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("variant `bf16`") && e.contains("fp16.safetensors"),
            "{e}"
        );
    }

    #[test]
    fn pickle_only_components_are_refused() {
        let siblings = list(&[
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/pytorch_model.bin",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.bin",
            "vae/config.json",
            "vae/diffusion_pytorch_model.bin",
        ]);
        let (_, index) = sd15();
        let e = format!(
            "{:#}",
            plan(&siblings, Some(&index), &Select::default()).unwrap_err()
        );
        assert!(
            e.contains("component `text_encoder` has only pickle weights (pytorch_model.bin)")
                && e.contains(".safetensors only"),
            "{e}"
        );
    }

    #[test]
    fn shards_without_their_index_or_incomplete_and_missing_components_are_refused() {
        let index = json!({"unet": ["diffusers", "UNet2DConditionModel"]});
        let siblings = list(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
            "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        ]);
        let e = plan(&siblings, Some(&index), &Select::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("component `unet` has sharded weights")
                && e.contains("not their index (diffusion_pytorch_model.safetensors.index.json)"),
            "{e}"
        );
        // A shard missing from the listing, or an index without shards.
        let siblings = list(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model-00001-of-00003.safetensors",
            "unet/diffusion_pytorch_model-00003-of-00003.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.json",
        ]);
        let e = plan(&siblings, Some(&index), &Select::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("incomplete") && e.contains("parts 1 to 3"),
            "{e}"
        );
        let siblings = list(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors.index.json",
        ]);
        let e = plan(&siblings, Some(&index), &Select::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("none of its shards"), "{e}");
        let e = plan(
            &list(&["model_index.json"]),
            Some(&index),
            &Select::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no unet/ folder"), "{e}");
        let e = plan(
            &list(&["model_index.json", "unet/config.json"]),
            Some(&index),
            &Select::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no .safetensors weights"), "{e}");
        // A hostile index cannot send files outside the model folder.
        let evil = json!({"..": ["diffusers", "X"]});
        assert!(plan(
            &list(&["model_index.json", "../config.json"]),
            Some(&evil),
            &Select::default()
        )
        .is_err());
    }

    fn sana_index() -> Value {
        json!({
            "_class_name": "SanaPipeline",
            "_diffusers_version": "0.32.0.dev0",
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
            "text_encoder": ["transformers", "Gemma2Model"],
            "tokenizer": ["transformers", "GemmaTokenizerFast"],
            "transformer": ["diffusers", "SanaTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderDC"]
        })
    }

    /// Efficient-Large-Model/Sana_600M_512px_diffusers at main: the Gemma-2 text encoder is
    /// sharded (default and fp16), the rest single files.
    fn sana_600m_512px() -> Vec<String> {
        list(&[
            ".gitattributes",
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
            "text_encoder/model.fp16-00001-of-00002.safetensors",
            "text_encoder/model.fp16-00002-of-00002.safetensors",
            "text_encoder/model.safetensors.index.fp16.json",
            "text_encoder/model.safetensors.index.json",
            "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer.model",
            "tokenizer/tokenizer_config.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.fp16.safetensors",
            "transformer/diffusion_pytorch_model.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ])
    }

    #[test]
    fn sana_600m_takes_the_sharded_text_encoder_and_the_tokenizer() {
        let siblings = sana_600m_512px();
        let index = sana_index();
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert_eq!(p.kind, Kind::Diffusers);
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors.index.json",
                "text_encoder/model-00001-of-00002.safetensors",
                "text_encoder/model-00002-of-00002.safetensors",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer.json",
                "tokenizer/tokenizer.model",
                "tokenizer/tokenizer_config.json",
                "transformer/config.json",
                "transformer/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );
        assert!(p.files.iter().all(|f| f.local == f.remote));
        assert!(p.skipped.is_empty());
        assert_eq!(
            p.notes,
            ["fp16 weights are available: --variant fp16 downloads about half as much"]
        );

        let p = plan(&siblings, Some(&index), &variant("fp16")).unwrap();
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors.index.fp16.json",
                "text_encoder/model.fp16-00001-of-00002.safetensors",
                "text_encoder/model.fp16-00002-of-00002.safetensors",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer.json",
                "tokenizer/tokenizer.model",
                "tokenizer/tokenizer_config.json",
                "transformer/config.json",
                "transformer/diffusion_pytorch_model.fp16.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        // fp16 keeps its names: the loaders read `model.safetensors.index.fp16.json`.
        assert!(p.files.iter().all(|f| f.local == f.remote));
        assert!(p.notes.is_empty(), "{:?}", p.notes);

        // The downloaded index is checked against the plan.
        let weight_map = json!({"weight_map": {
            "embed_tokens.weight": "model.fp16-00001-of-00002.safetensors",
            "norm.weight": "model.fp16-00002-of-00002.safetensors",
        }});
        let bytes = serde_json::to_vec(&weight_map).unwrap();
        check_index(&p, "text_encoder/model.safetensors.index.fp16.json", &bytes).unwrap();
    }

    /// Efficient-Large-Model/Sana_1600M_1024px_BF16_diffusers at main: the default weights of
    /// the transformer and the text encoder are sharded (fp32), the bf16 ones a single file
    /// for the transformer and shards for the text encoder; an int4 transformer beside them.
    fn sana_1600m_1024px_bf16() -> Vec<String> {
        list(&[
            ".gitattributes",
            "LICENSE.txt",
            "README.md",
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
            "text_encoder/model.bf16-00001-of-00002.safetensors",
            "text_encoder/model.bf16-00002-of-00002.safetensors",
            "text_encoder/model.safetensors.index.bf16.json",
            "text_encoder/model.safetensors.index.json",
            "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer.model",
            "tokenizer/tokenizer_config.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.bf16.safetensors",
            "transformer/diffusion_pytorch_model.int4.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "vae/config.json",
            "vae/diffusion_pytorch_model.bf16.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ])
    }

    #[test]
    fn sana_1600m_bf16_default_and_bf16_variant() {
        let siblings = sana_1600m_1024px_bf16();
        let index = sana_index();
        // Default: the fp32 weights, sharded where the repository shards them.
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors.index.json",
                "text_encoder/model-00001-of-00002.safetensors",
                "text_encoder/model-00002-of-00002.safetensors",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer.json",
                "tokenizer/tokenizer.model",
                "tokenizer/tokenizer_config.json",
                "transformer/config.json",
                "transformer/diffusion_pytorch_model.safetensors.index.json",
                "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
                "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );
        assert!(p.files.iter().all(|f| f.local == f.remote));
        assert_eq!(
            p.notes,
            ["bf16 weights are available: --variant bf16 downloads about half as much"]
        );

        // bf16: saved under the default names the loaders read; shards keep theirs (the
        // index lists them).
        let p = plan(&siblings, Some(&index), &variant("bf16")).unwrap();
        let pairs: Vec<(&str, &str)> = p
            .files
            .iter()
            .map(|f| (f.remote.as_str(), f.local.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("model_index.json", "model_index.json"),
                (
                    "scheduler/scheduler_config.json",
                    "scheduler/scheduler_config.json"
                ),
                ("text_encoder/config.json", "text_encoder/config.json"),
                (
                    "text_encoder/model.safetensors.index.bf16.json",
                    "text_encoder/model.safetensors.index.json"
                ),
                (
                    "text_encoder/model.bf16-00001-of-00002.safetensors",
                    "text_encoder/model.bf16-00001-of-00002.safetensors"
                ),
                (
                    "text_encoder/model.bf16-00002-of-00002.safetensors",
                    "text_encoder/model.bf16-00002-of-00002.safetensors"
                ),
                (
                    "tokenizer/special_tokens_map.json",
                    "tokenizer/special_tokens_map.json"
                ),
                ("tokenizer/tokenizer.json", "tokenizer/tokenizer.json"),
                ("tokenizer/tokenizer.model", "tokenizer/tokenizer.model"),
                (
                    "tokenizer/tokenizer_config.json",
                    "tokenizer/tokenizer_config.json"
                ),
                ("transformer/config.json", "transformer/config.json"),
                (
                    "transformer/diffusion_pytorch_model.bf16.safetensors",
                    "transformer/diffusion_pytorch_model.safetensors"
                ),
                ("vae/config.json", "vae/config.json"),
                (
                    "vae/diffusion_pytorch_model.bf16.safetensors",
                    "vae/diffusion_pytorch_model.safetensors"
                ),
            ]
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // int4 only on request; the other components fall back to their defaults.
        let p = plan(&siblings, Some(&index), &variant("int4")).unwrap();
        assert!(p.files.contains(&PlannedFile {
            remote: "transformer/diffusion_pytorch_model.int4.safetensors".into(),
            local: "transformer/diffusion_pytorch_model.safetensors".into(),
        }));
        assert!(p.notes.iter().any(|n| n
            == "`text_encoder` has no int4 variant: taking model.safetensors.index.json and \
                its 2 shards"));
    }

    /// Efficient-Large-Model/Sana_1600M_512px_diffusers: the transformer's default weights
    /// are sharded, its fp16 ones a single file.
    #[test]
    fn sana_1600m_fp16_prefers_the_single_file_variant() {
        let siblings = list(&[
            "model_index.json",
            "scheduler/scheduler_config.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.fp16.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
        ]);
        let index = json!({"_class_name": "SanaPipeline",
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
            "transformer": ["diffusers", "SanaTransformer2DModel"]});
        let p = plan(&siblings, Some(&index), &variant("fp16")).unwrap();
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "transformer/config.json",
                "transformer/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        // Without the default weights, sharded fp16 is taken without --variant, as a single
        // fp16 file is.
        let siblings = list(&[
            "model_index.json",
            "scheduler/scheduler_config.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
        ]);
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert_eq!(
            remotes(&p)[3..],
            [
                "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
                "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            ]
        );
    }

    /// What a plan saves is what Easel's Sana loaders read: the files are made empty (the
    /// indexes with a `weight_map` naming their shards) and the loaders' own file lookups
    /// run on them.
    #[test]
    fn the_loaders_find_what_the_plan_saves() {
        fn materialize(p: &Plan, dir: &Path) {
            for f in &p.files {
                let out = dir.join(&f.local);
                std::fs::create_dir_all(out.parent().unwrap()).unwrap();
                let name = f.remote.rsplit('/').next().unwrap();
                let body = if parse_index(name).is_some() {
                    // The index lists the shards planned beside it, as the hub's does.
                    let folder = f.remote.rsplit_once('/').unwrap().0;
                    let map: serde_json::Map<String, Value> = p
                        .files
                        .iter()
                        .filter_map(|g| g.remote.strip_prefix(&format!("{folder}/")))
                        .filter(|g| is_shard(g))
                        .enumerate()
                        .map(|(i, g)| (format!("t{i}.weight"), json!(g)))
                        .collect();
                    serde_json::to_vec(&json!({ "weight_map": map })).unwrap()
                } else {
                    vec![]
                };
                std::fs::write(out, body).unwrap();
            }
        }
        let cases = [
            (sana_600m_512px(), Select::default()),
            (sana_600m_512px(), variant("fp16")),
            (sana_1600m_1024px_bf16(), Select::default()),
            (sana_1600m_1024px_bf16(), variant("bf16")),
        ];
        for (siblings, select) in cases {
            let p = plan(&siblings, Some(&sana_index()), &select).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            materialize(&p, tmp.path());
            let te = tmp.path().join("text_encoder");
            let files = easel_diffusion::loader::weight_files(&te, "model").unwrap();
            let want: Vec<PathBuf> = p
                .files
                .iter()
                .filter(|f| f.local.starts_with("text_encoder/") && is_shard(&f.local))
                .map(|f| tmp.path().join(&f.local))
                .collect();
            assert_eq!(files, want, "{:?}", select.variant);
            assert!(files.iter().all(|f| f.is_file()));
            // Every Sana component's weights are found by the one loader rule.
            for (component, stem) in [
                ("vae", "diffusion_pytorch_model"),
                ("transformer", "diffusion_pytorch_model"),
            ] {
                let files =
                    easel_diffusion::loader::weight_files(&tmp.path().join(component), stem)
                        .unwrap();
                assert!(files.iter().all(|f| f.is_file()), "{component}");
            }
            assert!(tmp.path().join("tokenizer/tokenizer.json").is_file());
        }
    }

    #[test]
    fn older_variant_shard_names_are_recognised() {
        // Older transformers versions wrote `model-00001-of-00002.fp16.safetensors` and
        // `model.safetensors.fp16.index.json`; the index is saved under a name the loaders
        // read.
        let siblings = list(&[
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model-00001-of-00002.fp16.safetensors",
            "text_encoder/model-00002-of-00002.fp16.safetensors",
            "text_encoder/model.safetensors.fp16.index.json",
        ]);
        let index = json!({"text_encoder": ["transformers", "Gemma2Model"]});
        let p = plan(&siblings, Some(&index), &variant("fp16")).unwrap();
        let pairs: Vec<(&str, &str)> = p
            .files
            .iter()
            .map(|f| (f.remote.as_str(), f.local.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("model_index.json", "model_index.json"),
                ("text_encoder/config.json", "text_encoder/config.json"),
                (
                    "text_encoder/model.safetensors.fp16.index.json",
                    "text_encoder/model.safetensors.index.json"
                ),
                (
                    "text_encoder/model-00001-of-00002.fp16.safetensors",
                    "text_encoder/model-00001-of-00002.fp16.safetensors"
                ),
                (
                    "text_encoder/model-00002-of-00002.fp16.safetensors",
                    "text_encoder/model-00002-of-00002.fp16.safetensors"
                ),
            ]
        );
    }

    #[test]
    fn pickle_shards_are_refused() {
        let siblings = list(&[
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/pytorch_model-00001-of-00002.bin",
            "text_encoder/pytorch_model-00002-of-00002.bin",
            "text_encoder/pytorch_model.bin.index.json",
        ]);
        let index = json!({"text_encoder": ["transformers", "Gemma2Model"]});
        let e = plan(&siblings, Some(&index), &Select::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "component `text_encoder` has only pickle weights \
                 (pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin)"
            ),
            "{e}"
        );
        // A pickle index beside safetensors weights is not a configuration file.
        let siblings = list(&[
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "text_encoder/pytorch_model-00001-of-00002.bin",
            "text_encoder/pytorch_model-00002-of-00002.bin",
            "text_encoder/pytorch_model.bin.index.json",
            "text_encoder/pytorch_model.bin.index.fp16.json",
        ]);
        let p = plan(&siblings, Some(&index), &Select::default()).unwrap();
        assert_eq!(
            remotes(&p),
            [
                "model_index.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors"
            ]
        );
    }

    #[test]
    fn downloaded_indexes_are_checked_against_the_plan() {
        let p = plan(&sana_600m_512px(), Some(&sana_index()), &Select::default()).unwrap();
        let remote = "text_encoder/model.safetensors.index.json";
        let check = |v: Value| check_index(&p, remote, &serde_json::to_vec(&v).unwrap());
        check(json!({"metadata": {"total_size": 10}, "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors",
        }}))
        .unwrap();
        let e = check(json!({"weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00003-of-00003.safetensors",
        }}))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("lists shards that are not among")
                && e.contains("(model-00003-of-00003.safetensors)"),
            "{e}"
        );
        // A shard of another folder, a path, no map: refused.
        let e = check(json!({"weight_map": {"a": "diffusion_pytorch_model.safetensors"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("diffusion_pytorch_model.safetensors"), "{e}");
        let e = check(json!({"weight_map": {"a": "../vae/diffusion_pytorch_model.safetensors"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a plain file name"), "{e}");
        for bad in [json!({}), json!({"weight_map": {}}), json!([1])] {
            let e = check(bad).unwrap_err().to_string();
            assert!(e.contains("no weight_map"), "{e}");
        }
        assert!(check_index(&p, remote, b"not json").is_err());
    }

    #[test]
    fn shard_and_index_names() {
        let s = parse_shard("model.fp16-00001-of-00002.safetensors").unwrap();
        assert_eq!(
            (s.stem, s.variant, s.part, s.total),
            ("model", Some("fp16"), 1, 2)
        );
        let s = parse_shard("model-00002-of-00002.bf16.safetensors").unwrap();
        assert_eq!(
            (s.stem, s.variant, s.part, s.total),
            ("model", Some("bf16"), 2, 2)
        );
        let s = parse_shard("diffusion_pytorch_model-00001-of-00002.safetensors").unwrap();
        assert_eq!((s.stem, s.variant), ("diffusion_pytorch_model", None));
        for not in [
            "model.safetensors",
            "model.fp16.safetensors",
            "model-00003-of-00002.safetensors",
            "model-00000-of-00002.safetensors",
            "model.fp16-00001-of-00002.bf16.safetensors",
            "-00001-of-00002.safetensors",
            "model-x-of-00002.safetensors",
            "model-00001-of-00002.bin",
        ] {
            assert!(parse_shard(not).is_none(), "{not}");
        }
        assert_eq!(
            parse_index("model.safetensors.index.json"),
            Some(("model", None))
        );
        assert_eq!(
            parse_index("model.safetensors.index.bf16.json"),
            Some(("model", Some("bf16")))
        );
        assert_eq!(
            parse_index("model.safetensors.fp16.index.json"),
            Some(("model", Some("fp16")))
        );
        for not in [
            "pytorch_model.bin.index.json",
            "config.json",
            "model.safetensors",
            ".safetensors.index.json",
        ] {
            assert_eq!(parse_index(not), None, "{not}");
        }
        assert!(is_any_index("pytorch_model.bin.index.fp16.json"));
        assert!(!is_any_index("tokenizer_config.json"));
    }

    #[test]
    fn single_file_repositories() {
        // One checkpoint (plus a pickle twin and a config): taken without --file.
        let siblings = list(&[
            ".gitattributes",
            "README.md",
            "dreamshaper_8.ckpt",
            "dreamshaper_8.safetensors",
            "v1-inference.yaml",
            "images/sample.png",
        ]);
        assert!(!needs_index(&siblings, &Select::default()));
        let p = plan(&siblings, None, &Select::default()).unwrap();
        assert_eq!(p.kind, Kind::SingleFile);
        assert_eq!(
            p.files,
            [PlannedFile {
                remote: "dreamshaper_8.safetensors".into(),
                local: "dreamshaper_8.safetensors".into()
            }]
        );

        // Several: the user chooses; --file wins even over a diffusers layout.
        let (mut siblings, _) = sd15();
        siblings.retain(|s| s != "model_index.json");
        let e = plan(&siblings, None, &Select::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--file") && e.contains("v1-5-pruned-emaonly.safetensors"),
            "{e}"
        );
        let (siblings, _) = sd15();
        let pick = Select {
            variant: None,
            file: Some("v1-5-pruned-emaonly.safetensors".into()),
        };
        assert!(!needs_index(&siblings, &pick));
        let p = plan(&siblings, None, &pick).unwrap();
        assert_eq!(p.kind, Kind::SingleFile);
        assert_eq!(remotes(&p), ["v1-5-pruned-emaonly.safetensors"]);

        // A nested file is saved under its own name.
        let p = plan(
            &list(&["v2/model.safetensors"]),
            None,
            &Select {
                variant: None,
                file: Some("v2/model.safetensors".into()),
            },
        )
        .unwrap();
        assert_eq!(p.files[0].local, "model.safetensors");

        // Pickles are never downloaded; absent files are named.
        let ckpt = Select {
            variant: None,
            file: Some("v1-5-pruned.ckpt".into()),
        };
        let e = plan(&siblings, None, &ckpt).unwrap_err().to_string();
        assert!(e.contains("pickle"), "{e}");
        let missing = Select {
            variant: None,
            file: Some("nope.safetensors".into()),
        };
        let e = plan(&siblings, None, &missing).unwrap_err().to_string();
        assert!(e.contains("no file `nope.safetensors`"), "{e}");
        let e = plan(
            &list(&["model.ckpt", "README.md"]),
            None,
            &Select::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only pickle checkpoints (model.ckpt)"), "{e}");
        assert!(plan(&list(&["README.md"]), None, &Select::default()).is_err());
    }

    #[test]
    fn repository_ids_and_names() {
        for ok in [
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "gpt2",
            "user_1/My.Model_v2",
        ] {
            check_repo_id(ok).unwrap();
        }
        for bad in [
            "",
            "/",
            "a/b/c",
            "../etc",
            "owner/",
            "/name",
            "with space/x",
            "a--b/c",
            "a/b..c",
            "a/-b",
            "a/b.git",
            "https://huggingface.co/a/b",
        ] {
            let e = check_repo_id(bad).unwrap_err().to_string();
            assert!(e.contains("invalid repository id"), "{bad}: {e}");
        }
        assert_eq!(
            default_name("stabilityai/stable-diffusion-xl-base-1.0"),
            "stable-diffusion-xl-base-1.0"
        );
        assert_eq!(default_name("gpt2"), "gpt2");
        check_name("sd15").unwrap();
        for bad in ["", ".hidden", "a/b", "a b", ".."] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_revision("main").unwrap();
        check_revision("refs/pr/12").unwrap();
        check_revision("0123456789abcdef0123456789abcdef01234567").unwrap();
        for bad in ["", "a b", "../x", "/x", "a?b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
        check_single_file_name("a/b.safetensors").unwrap();
        for bad in [
            "../a.safetensors",
            "/a.safetensors",
            "a.ckpt",
            "a.bin",
            "a.txt",
        ] {
            assert!(check_single_file_name(bad).is_err(), "{bad}");
        }
        assert!(is_shard(
            "diffusion_pytorch_model-00001-of-00002.safetensors"
        ));
        assert!(!is_shard("diffusion_pytorch_model.fp16.safetensors"));
        assert_eq!(human(999), "999 B");
        assert_eq!(human(3_440_000_000), "3.4 GB");
    }
}
