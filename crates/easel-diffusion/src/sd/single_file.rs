//! Single-file checkpoints in the original LDM / A1111 key layout, read (`convert`) and written
//! (`write_single_file`).
//!
//! The layouts, per family:
//!
//! | part | SD 1.x (and inpainting) | SD 2.x | SDXL |
//! |---|---|---|---|
//! | UNet | `model.diffusion_model.*` | same | same, plus `label_emb.*` (`text_time`) |
//! | VAE | `first_stage_model.*` | same | same |
//! | text encoder | `cond_stage_model.transformer.*` (transformers' CLIP names) | `cond_stage_model.model.*` (OpenCLIP) | `conditioner.embedders.0.transformer.*` (CLIP) and `conditioner.embedders.1.model.*` (OpenCLIP, with `text_projection`) |
//!
//! One description serves both directions: for an architecture (`UnetLayout`, `VaeLayout`,
//! `TextLayout`) the `*_entries` functions list which LDM key prefix holds which diffusers
//! prefix, and how the tensors under it change (`Rule`: renamed sub-modules, the VAE's 1x1-conv
//! attention weights vs linear ones, OpenCLIP's fused `in_proj` vs `q/k/v_proj`, its
//! `text_projection` stored transposed). `convert` infers the architecture from the names and
//! shapes and maps LDM → diffusers; `write_single_file` reads it from a diffusers folder's
//! configs and maps back. Both are exact: no tensor value changes.
//!
//! What weights cannot say is fixed by rules that hold for the released models (ComfyUI and
//! diffusers use the same ones), and for the test-size models the diffusers test suite and
//! `super::tiny` build:
//!
//! - attention heads: SD 1.x UNets have 8 heads per level; SD 2.x / SDXL UNets and every text
//!   encoder have 64-wide heads (CLIP ViT-L 12, OpenCLIP ViT-H 16, bigG 20). Widths that are not
//!   multiples of 64 (test-size models) use 8-wide heads;
//! - group norms: 32 groups, or 8 when a width is not a multiple of 32 (test-size models);
//! - the VAE's scaling factor: 0.18215 (SD 1.x / 2.x) or 0.13025 (SDXL);
//! - text encoders: CLIP ViT-L uses `quick_gelu`, OpenCLIP `gelu`. SD 2.x conditions on the
//!   penultimate layer of its OpenCLIP encoder, so its last residual block is dropped (as
//!   diffusers' conversion does; the folder's encoder has one layer less than the file) and
//!   `write_single_file` writes one back (a copy of the last one, never read);
//! - prediction type: a `v_pred` key means v-prediction (with `ztsnr`: zero terminal SNR), as
//!   ComfyUI reads them; SD 2.x files without it use ComfyUI's rules (inpainting: epsilon;
//!   else v-prediction when `output_blocks.11.1.transformer_blocks.0.norm1.bias` spreads more
//!   than 0.09). Otherwise the scheduler config decides (`scheduler_config`; without one, the
//!   family's default), and the caller can override (`SingleFileOptions`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use serde_json::{json, Value};

use crate::schedulers::PredictionType;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const SD1_CLIP: &str = "cond_stage_model.transformer.";
const SD2_CLIP: &str = "cond_stage_model.model.";
const XL_CLIP: &str = "conditioner.embedders.0.transformer.";
const XL_OPEN_CLIP: &str = "conditioner.embedders.1.model.";
const XL_REFINER_CLIP: &str = "conditioner.embedders.0.model.";
/// Marker keys (ComfyUI's): v-prediction, zero terminal SNR.
const V_PRED: &str = "v_pred";
const ZTSNR: &str = "ztsnr";
/// ComfyUI's SD 2.x v-prediction heuristic: this bias spreads more in v models.
const SD2_V_PROBE: &str = "output_blocks.11.1.transformer_blocks.0.norm1.bias";

/// What the weights say about the UNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredUnet {
    pub in_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub cross_attention_dim: usize,
    /// Per level: whether it has cross-attention transformers.
    pub attention: Vec<bool>,
}

/// Each component's configuration, as its diffusers `config.json` would hold it.
#[derive(Debug, Clone)]
pub struct Configs {
    pub unet: Value,
    pub vae: Value,
    pub text_encoder: Value,
    /// SDXL's second (OpenCLIP) text encoder.
    pub text_encoder_2: Option<Value>,
}

/// A converted checkpoint: each component's tensors under diffusers' names, and its
/// configuration as read off the weights.
pub struct Converted {
    /// `sd15`, `sd15-inpaint`, `sd2` or `sdxl` (see `easel_core::model::family`). SD 2.x
    /// inpainting files are `sd2` with 9 input channels.
    pub family: &'static str,
    pub unet: HashMap<String, Tensor>,
    pub vae: HashMap<String, Tensor>,
    pub text_encoder: HashMap<String, Tensor>,
    pub text_encoder_2: Option<HashMap<String, Tensor>>,
    pub inferred: InferredUnet,
    pub configs: Configs,
    /// What the file says the model predicts (`v_pred` marker, SD 2.x heuristic); `None`
    /// when it does not say.
    pub prediction_type: Option<PredictionType>,
    /// `ztsnr` marker: trained with zero terminal SNR (`rescale_betas_zero_snr`).
    pub zero_snr: bool,
}

/// What the caller knows better than the file.
#[derive(Debug, Clone, Default)]
pub struct SingleFileOptions {
    /// Overrides the detected / configured prediction type.
    pub prediction_type: Option<PredictionType>,
}

// ---------------------------------------------------------------------------------------------
// The mapping description.

/// How the tensors under one LDM prefix become those under its diffusers prefix.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Same sub-keys on both sides.
    Same,
    /// Sub-module renames, (LDM, diffusers); the first match wins in each direction.
    Rename(&'static [(&'static str, &'static str)]),
    /// The VAE's mid-block attention: renames, and 1x1-conv weights ([C, C, 1, 1]) in LDM,
    /// linear ones ([C, C]) in diffusers.
    VaeAttention,
    /// An OpenCLIP residual block: renames, and the fused `attn.in_proj_{weight,bias}`
    /// ([3C, ..], q then k then v) in LDM, `self_attn.{q,k,v}_proj` in diffusers.
    OpenClipBlock,
    /// One tensor (exact names); `transpose`: OpenCLIP's `text_projection` is [in, out].
    Tensor { transpose: bool },
    /// In files but not in the model: dropped when reading.
    Drop,
}

/// `ldm` and `diffusers` are prefixes when empty or ending in `.`, exact names otherwise.
struct Entry {
    ldm: String,
    diffusers: String,
    rule: Rule,
}

fn entry(ldm: impl Into<String>, diffusers: impl Into<String>, rule: Rule) -> Entry {
    Entry {
        ldm: ldm.into(),
        diffusers: diffusers.into(),
        rule,
    }
}

const UNET_RESNET: &[(&str, &str)] = &[
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("skip_connection.", "conv_shortcut."),
];
const VAE_RESNET: &[(&str, &str)] = &[
    ("norm1.", "norm1."),
    ("conv1.", "conv1."),
    ("norm2.", "norm2."),
    ("conv2.", "conv2."),
    ("nin_shortcut.", "conv_shortcut."),
];
/// The second spellings (`query` ...) are older diffusers names, read when writing.
const VAE_ATTENTION: &[(&str, &str)] = &[
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
    ("q.", "query."),
    ("k.", "key."),
    ("v.", "value."),
    ("proj_out.", "proj_attn."),
];
const OPEN_CLIP_BLOCK: &[(&str, &str)] = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.out_proj.", "self_attn.out_proj."),
];
const QKV: [&str; 3] = ["q", "k", "v"];

/// The UNet's structure as far as key names go.
#[derive(Debug, Clone)]
struct UnetLayout {
    layers: usize,
    /// Per level (down path).
    down_attention: Vec<bool>,
    /// Per up block (diffusers order: deepest first).
    up_attention: Vec<bool>,
    label_emb: bool,
}

impl UnetLayout {
    fn from_config(cfg: &super::unet::UnetConfig) -> UnetLayout {
        let cross = |types: &[String]| types.iter().map(|t| t.starts_with("CrossAttn")).collect();
        UnetLayout {
            layers: cfg.layers_per_block,
            down_attention: cross(&cfg.down_block_types),
            up_attention: cross(&cfg.up_block_types),
            label_emb: cfg.addition_embed_type.is_some(),
        }
    }
}

fn unet_entries(l: &UnetLayout) -> Vec<Entry> {
    let levels = l.down_attention.len();
    let per = l.layers + 1;
    let resnet = Rule::Rename(UNET_RESNET);
    let mut v = vec![
        entry("time_embed.0.", "time_embedding.linear_1.", Rule::Same),
        entry("time_embed.2.", "time_embedding.linear_2.", Rule::Same),
        entry("input_blocks.0.0.", "conv_in.", Rule::Same),
        entry("middle_block.0.", "mid_block.resnets.0.", resnet),
        entry("middle_block.1.", "mid_block.attentions.0.", Rule::Same),
        entry("middle_block.2.", "mid_block.resnets.1.", resnet),
        entry("out.0.", "conv_norm_out.", Rule::Same),
        entry("out.2.", "conv_out.", Rule::Same),
    ];
    if l.label_emb {
        v.push(entry(
            "label_emb.0.0.",
            "add_embedding.linear_1.",
            Rule::Same,
        ));
        v.push(entry(
            "label_emb.0.2.",
            "add_embedding.linear_2.",
            Rule::Same,
        ));
    }
    for (i, &attn) in l.down_attention.iter().enumerate() {
        for j in 0..l.layers {
            let n = 1 + i * per + j;
            let d = format!("down_blocks.{i}");
            v.push(entry(
                format!("input_blocks.{n}.0."),
                format!("{d}.resnets.{j}."),
                resnet,
            ));
            if attn {
                v.push(entry(
                    format!("input_blocks.{n}.1."),
                    format!("{d}.attentions.{j}."),
                    Rule::Same,
                ));
            }
        }
        if i + 1 < levels {
            v.push(entry(
                format!("input_blocks.{}.0.op.", 1 + i * per + l.layers),
                format!("down_blocks.{i}.downsamplers.0.conv."),
                Rule::Same,
            ));
        }
    }
    for (i, &attn) in l.up_attention.iter().enumerate() {
        for j in 0..per {
            let n = i * per + j;
            v.push(entry(
                format!("output_blocks.{n}.0."),
                format!("up_blocks.{i}.resnets.{j}."),
                resnet,
            ));
            if attn {
                v.push(entry(
                    format!("output_blocks.{n}.1."),
                    format!("up_blocks.{i}.attentions.{j}."),
                    Rule::Same,
                ));
            }
        }
        if i + 1 < levels {
            // The upsampler follows the level's last resnet (and its attention, if any).
            v.push(entry(
                format!(
                    "output_blocks.{}.{}.conv.",
                    i * per + l.layers,
                    1 + attn as usize
                ),
                format!("up_blocks.{i}.upsamplers.0.conv."),
                Rule::Same,
            ));
        }
    }
    v
}

fn vae_entries(levels: usize, layers: usize) -> Vec<Entry> {
    let resnet = Rule::Rename(VAE_RESNET);
    let mut v = vec![
        entry("quant_conv.", "quant_conv.", Rule::Same),
        entry("post_quant_conv.", "post_quant_conv.", Rule::Same),
        // The autoencoder's training loss (discriminator), kept by a few old files.
        entry("loss.", "", Rule::Drop),
    ];
    for side in ["encoder", "decoder"] {
        v.push(entry(
            format!("{side}.conv_in."),
            format!("{side}.conv_in."),
            Rule::Same,
        ));
        v.push(entry(
            format!("{side}.norm_out."),
            format!("{side}.conv_norm_out."),
            Rule::Same,
        ));
        v.push(entry(
            format!("{side}.conv_out."),
            format!("{side}.conv_out."),
            Rule::Same,
        ));
        v.push(entry(
            format!("{side}.mid.block_1."),
            format!("{side}.mid_block.resnets.0."),
            resnet,
        ));
        v.push(entry(
            format!("{side}.mid.attn_1."),
            format!("{side}.mid_block.attentions.0."),
            Rule::VaeAttention,
        ));
        v.push(entry(
            format!("{side}.mid.block_2."),
            format!("{side}.mid_block.resnets.1."),
            resnet,
        ));
    }
    for i in 0..levels {
        for j in 0..layers {
            v.push(entry(
                format!("encoder.down.{i}.block.{j}."),
                format!("encoder.down_blocks.{i}.resnets.{j}."),
                resnet,
            ));
        }
        if i + 1 < levels {
            v.push(entry(
                format!("encoder.down.{i}.downsample.conv."),
                format!("encoder.down_blocks.{i}.downsamplers.0.conv."),
                Rule::Same,
            ));
        }
    }
    // LDM numbers the decoder's levels from the bottom (`up.0` is the last to run).
    for k in 0..levels {
        let i = levels - 1 - k;
        for j in 0..=layers {
            v.push(entry(
                format!("decoder.up.{k}.block.{j}."),
                format!("decoder.up_blocks.{i}.resnets.{j}."),
                resnet,
            ));
        }
        if k > 0 {
            v.push(entry(
                format!("decoder.up.{k}.upsample.conv."),
                format!("decoder.up_blocks.{i}.upsamplers.0.conv."),
                Rule::Same,
            ));
        }
    }
    v
}

#[derive(Debug, Clone, Copy)]
enum TextLayout {
    /// transformers' names (CLIP ViT-L of SD 1.x and SDXL): kept as they are.
    Transformers,
    /// OpenCLIP (SD 2.x, SDXL's second encoder): `layers` blocks in the model;
    /// `dropped`: a further block in the file that the model does not use (SD 2.x).
    OpenClip {
        layers: usize,
        projection: bool,
        dropped: Option<usize>,
    },
}

fn text_entries(l: TextLayout) -> Vec<Entry> {
    match l {
        TextLayout::Transformers => vec![entry("", "", Rule::Same)],
        TextLayout::OpenClip {
            layers,
            projection,
            dropped,
        } => {
            let mut v = vec![
                entry(
                    "token_embedding.",
                    "text_model.embeddings.token_embedding.",
                    Rule::Same,
                ),
                entry(
                    "positional_embedding",
                    "text_model.embeddings.position_embedding.weight",
                    Rule::Tensor { transpose: false },
                ),
                entry("ln_final.", "text_model.final_layer_norm.", Rule::Same),
                entry("logit_scale", "", Rule::Drop),
                entry("attn_mask", "", Rule::Drop),
            ];
            v.push(if projection {
                entry(
                    "text_projection",
                    "text_projection.weight",
                    Rule::Tensor { transpose: true },
                )
            } else {
                entry("text_projection", "", Rule::Drop)
            });
            for i in 0..layers {
                v.push(entry(
                    format!("transformer.resblocks.{i}."),
                    format!("text_model.encoder.layers.{i}."),
                    Rule::OpenClipBlock,
                ));
            }
            if let Some(d) = dropped {
                v.push(entry(format!("transformer.resblocks.{d}."), "", Rule::Drop));
            }
            v
        }
    }
}

/// The entry whose name (on one side) matches `key` best (longest), and the rest of the key.
fn find<'e, 'k>(
    entries: &'e [Entry],
    key: &'k str,
    ldm_side: bool,
) -> Option<(&'e Entry, &'k str)> {
    let mut best: Option<(&Entry, &str, usize)> = None;
    for e in entries {
        if !ldm_side && matches!(e.rule, Rule::Drop) {
            continue;
        }
        let name = if ldm_side { &e.ldm } else { &e.diffusers };
        let tail = if name.is_empty() || name.ends_with('.') {
            key.strip_prefix(name.as_str())
        } else if key == name {
            Some("")
        } else {
            None
        };
        if let Some(tail) = tail {
            if best.is_none_or(|(_, _, len)| name.len() > len) {
                best = Some((e, tail, name.len()));
            }
        }
    }
    best.map(|(e, tail, _)| (e, tail))
}

fn rename_to_diffusers(table: &[(&str, &str)], tail: &str) -> Option<String> {
    table
        .iter()
        .find_map(|(from, to)| tail.strip_prefix(from).map(|rest| format!("{to}{rest}")))
}

fn rename_to_ldm(table: &[(&str, &str)], tail: &str) -> Option<String> {
    table
        .iter()
        .find_map(|(from, to)| tail.strip_prefix(to).map(|rest| format!("{from}{rest}")))
}

fn insert_once(out: &mut HashMap<String, Tensor>, key: String, t: Tensor) -> Result<()> {
    if out.contains_key(&key) {
        return Err(err(format!("two tensors map to `{key}`")));
    }
    out.insert(key, t);
    Ok(())
}

/// LDM → diffusers for one component (`prefix`: the component's LDM prefix, for messages).
fn to_diffusers(
    entries: &[Entry],
    tensors: Vec<(String, Tensor)>,
    what: &str,
    prefix: &str,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(tensors.len());
    for (key, t) in tensors {
        // A buffer (`arange`), not a weight: recent diffusers folders do not keep it.
        if key.ends_with("position_ids") {
            continue;
        }
        let unexpected = || err(format!("unexpected {what} key `{prefix}{key}`"));
        let (e, tail) = find(entries, &key, true).ok_or_else(unexpected)?;
        let d = &e.diffusers;
        match e.rule {
            Rule::Drop => {}
            Rule::Same => insert_once(&mut out, format!("{d}{tail}"), t)?,
            Rule::Tensor { transpose } => {
                let t = if transpose { t.t()?.contiguous()? } else { t };
                insert_once(&mut out, d.clone(), t)?
            }
            Rule::Rename(table) => {
                let name = rename_to_diffusers(table, tail).ok_or_else(unexpected)?;
                insert_once(&mut out, format!("{d}{name}"), t)?
            }
            Rule::VaeAttention => {
                let name = rename_to_diffusers(VAE_ATTENTION, tail).ok_or_else(unexpected)?;
                let t = if !name.starts_with("group_norm.") && t.rank() == 4 {
                    t.flatten_from(1)?
                } else {
                    t
                };
                insert_once(&mut out, format!("{d}{name}"), t)?
            }
            Rule::OpenClipBlock => {
                if let Some(kind) = tail.strip_prefix("attn.in_proj_") {
                    let rows = t.dim(0)?;
                    if rows % 3 != 0 || !(kind == "weight" || kind == "bias") {
                        return Err(unexpected());
                    }
                    for (i, name) in QKV.iter().enumerate() {
                        let part = t.narrow(0, i * rows / 3, rows / 3)?.contiguous()?;
                        insert_once(&mut out, format!("{d}self_attn.{name}_proj.{kind}"), part)?;
                    }
                } else {
                    let name = rename_to_diffusers(OPEN_CLIP_BLOCK, tail).ok_or_else(unexpected)?;
                    insert_once(&mut out, format!("{d}{name}"), t)?
                }
            }
        }
    }
    Ok(out)
}

/// diffusers → LDM for one component; every tensor must have a place.
fn to_ldm(
    entries: &[Entry],
    tensors: &HashMap<String, Tensor>,
    what: &str,
    prefix: &str,
) -> Result<Vec<(String, Tensor)>> {
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if key.ends_with("position_ids") {
            continue;
        }
        let t = &tensors[key];
        let homeless = || {
            err(format!(
                "the {what} weight `{key}` has no place in the single-file layout"
            ))
        };
        let (e, tail) = find(entries, key, false).ok_or_else(homeless)?;
        let l = format!("{prefix}{}", e.ldm);
        match e.rule {
            Rule::Drop => unreachable!("drop entries are skipped on the diffusers side"),
            Rule::Same => out.push((format!("{l}{tail}"), t.clone())),
            Rule::Tensor { transpose } => {
                let t = if transpose {
                    t.t()?.contiguous()?
                } else {
                    t.clone()
                };
                out.push((l, t))
            }
            Rule::Rename(table) => {
                let name = rename_to_ldm(table, tail).ok_or_else(homeless)?;
                out.push((format!("{l}{name}"), t.clone()))
            }
            Rule::VaeAttention => {
                let name = rename_to_ldm(VAE_ATTENTION, tail).ok_or_else(homeless)?;
                let t = if !name.starts_with("norm.") && t.rank() == 2 {
                    let (o, i) = t.dims2()?;
                    t.reshape((o, i, 1, 1))?
                } else {
                    t.clone()
                };
                out.push((format!("{l}{name}"), t))
            }
            Rule::OpenClipBlock => {
                let qkv = tail.strip_prefix("self_attn.").and_then(|r| {
                    let (proj, kind) = r.split_once("_proj.")?;
                    QKV.contains(&proj).then_some((proj, kind))
                });
                match qkv {
                    Some(("q", kind)) => {
                        let base = key.strip_suffix(tail).unwrap_or(key);
                        let parts = QKV
                            .iter()
                            .map(|n| {
                                let k = format!("{base}self_attn.{n}_proj.{kind}");
                                tensors
                                    .get(&k)
                                    .ok_or_else(|| err(format!("{what}: `{key}` without `{k}`")))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        out.push((format!("{l}attn.in_proj_{kind}"), Tensor::cat(&parts, 0)?));
                    }
                    Some((_, kind)) => {
                        // Written with q; only check that q is there.
                        let base = key.strip_suffix(tail).unwrap_or(key);
                        let q = format!("{base}self_attn.q_proj.{kind}");
                        if !tensors.contains_key(&q) {
                            return Err(err(format!("{what}: `{key}` without `{q}`")));
                        }
                    }
                    None => {
                        let name = rename_to_ldm(OPEN_CLIP_BLOCK, tail).ok_or_else(homeless)?;
                        out.push((format!("{l}{name}"), t.clone()))
                    }
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading the architecture off the weights.

/// Head width: 64 when every width is a multiple of 64 (released models), else 8 (test sizes).
fn head_dim(widths: &[usize]) -> usize {
    if widths.iter().all(|w| w % 64 == 0) {
        64
    } else {
        8
    }
}

fn norm_groups(widths: &[usize]) -> usize {
    if widths.iter().all(|w| w % 32 == 0) {
        32
    } else {
        8
    }
}

/// A component's tensors, keys relative to its prefix.
struct Part {
    name: &'static str,
    prefix: &'static str,
    tensors: HashMap<String, Tensor>,
}

impl Part {
    fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| {
            err(format!(
                "{}: the checkpoint has no `{}{key}`",
                self.name, self.prefix
            ))
        })
    }

    fn dim(&self, key: &str, d: usize) -> Result<usize> {
        self.get(key)?.dim(d)
    }

    fn count(&self, f: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&f(i))).count()
    }

    fn convert(self, entries: &[Entry]) -> Result<HashMap<String, Tensor>> {
        to_diffusers(
            entries,
            self.tensors.into_iter().collect(),
            self.name,
            self.prefix,
        )
    }
}

/// Which text encoders a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sd1,
    Sd2,
    Xl,
}

fn infer_unet(
    u: &Part,
    kind: Kind,
    pooled_dim: Option<usize>,
) -> Result<(UnetLayout, InferredUnet, Value)> {
    let conv_in = u.get("input_blocks.0.0.weight")?;
    let in_channels = conv_in.dim(1)?;
    let (mut channels, mut down_attention, mut depth) = (vec![], vec![], vec![]);
    let mut per_level: Vec<usize> = vec![0];
    let mut n = 1;
    loop {
        if u.has(&format!("input_blocks.{n}.0.op.weight")) {
            per_level.push(0);
        } else if u.has(&format!("input_blocks.{n}.0.in_layers.0.weight")) {
            let level_layers = per_level.last_mut().expect("starts with one level");
            if *level_layers == 0 {
                channels.push(u.dim(&format!("input_blocks.{n}.0.out_layers.3.weight"), 0)?);
                down_attention.push(u.has(&format!("input_blocks.{n}.1.proj_in.weight")));
                depth.push(
                    u.count(|k| format!("input_blocks.{n}.1.transformer_blocks.{k}.norm1.weight")),
                );
            }
            *level_layers += 1;
        } else {
            break;
        }
        n += 1;
    }
    let layers = per_level[0];
    if channels.is_empty() || layers == 0 {
        return Err(err("UNet: no resnet blocks in `input_blocks`"));
    }
    if per_level.len() != channels.len() || per_level.iter().any(|&l| l != layers) {
        return Err(err(format!(
            "UNet: levels with different numbers of resnet blocks ({per_level:?}) are not supported"
        )));
    }
    let levels = channels.len();
    let per = layers + 1;
    let up_attention: Vec<bool> = (0..levels)
        .map(|i| u.has(&format!("output_blocks.{}.1.proj_in.weight", i * per)))
        .collect();
    let mid_depth = u.count(|k| format!("middle_block.1.transformer_blocks.{k}.norm1.weight"));
    if mid_depth == 0 {
        return Err(err(
            "UNet: no mid-block transformer (`middle_block.1.transformer_blocks.0`)",
        ));
    }
    // Depth per level: the level's own, the mid block's for the last level without attention
    // (diffusers' mid block takes the last level's value), 1 elsewhere.
    let depth: Vec<usize> = (0..levels)
        .map(|i| match (down_attention[i], i + 1 == levels) {
            (true, _) => depth[i],
            (false, true) => mid_depth,
            (false, false) => 1,
        })
        .collect();
    let cross = u.dim("middle_block.1.transformer_blocks.0.attn2.to_k.weight", 1)?;
    let linear = u.get("middle_block.1.proj_in.weight")?.rank() == 2;
    let out_channels = u.dim("out.2.weight", 0)?;
    let label = if u.has("label_emb.0.0.weight") {
        let input = u.dim("label_emb.0.0.weight", 1)?;
        let pooled = pooled_dim.ok_or_else(|| {
            err("UNet: a `label_emb` (text_time) UNet without SDXL's second text encoder")
        })?;
        if input <= pooled || (input - pooled) % 6 != 0 {
            return Err(err(format!(
                "UNet: label_emb input {input} is not the pooled text ({pooled}) + 6 time embeddings"
            )));
        }
        Some((input, (input - pooled) / 6))
    } else {
        None
    };

    let heads = if kind == Kind::Sd1 {
        json!(8)
    } else {
        let mut widths: Vec<usize> = (0..levels)
            .filter(|&i| down_attention[i])
            .map(|i| channels[i])
            .collect();
        widths.push(channels[levels - 1]);
        let hd = head_dim(&widths);
        json!(channels.iter().map(|c| (c / hd).max(1)).collect::<Vec<_>>())
    };
    let per_level_json = |v: &[usize]| {
        if v.iter().all(|&x| x == v[0]) {
            json!(v[0])
        } else {
            json!(v)
        }
    };
    let layout = UnetLayout {
        layers,
        down_attention: down_attention.clone(),
        up_attention: up_attention.clone(),
        label_emb: label.is_some(),
    };
    let config = json!({
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "addition_embed_type": label.map(|_| "text_time"),
        "addition_time_embed_dim": label.map(|(_, d)| d),
        "attention_head_dim": heads,
        "block_out_channels": channels,
        "center_input_sample": false,
        "cross_attention_dim": cross,
        "down_block_types": down_attention
            .iter()
            .map(|&a| if a { "CrossAttnDownBlock2D" } else { "DownBlock2D" })
            .collect::<Vec<_>>(),
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": in_channels,
        "layers_per_block": layers,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-5,
        "norm_num_groups": norm_groups(&channels),
        "out_channels": out_channels,
        "projection_class_embeddings_input_dim": label.map(|(i, _)| i),
        "transformer_layers_per_block": per_level_json(&depth),
        "up_block_types": up_attention
            .iter()
            .map(|&a| if a { "CrossAttnUpBlock2D" } else { "UpBlock2D" })
            .collect::<Vec<_>>(),
        "use_linear_projection": linear,
    });
    let inferred = InferredUnet {
        in_channels,
        block_out_channels: channels,
        layers_per_block: layers,
        cross_attention_dim: cross,
        attention: down_attention,
    };
    Ok((layout, inferred, config))
}

fn infer_vae(v: &Part, kind: Kind) -> Result<((usize, usize), Value)> {
    let levels = v.count(|i| format!("encoder.down.{i}.block.0.conv1.weight"));
    if levels == 0 {
        return Err(err("VAE: no encoder blocks (`encoder.down.0.block.0`)"));
    }
    let channels = (0..levels)
        .map(|i| v.dim(&format!("encoder.down.{i}.block.0.conv2.weight"), 0))
        .collect::<Result<Vec<_>>>()?;
    let layers = v.count(|j| format!("encoder.down.0.block.{j}.conv1.weight"));
    let decoder_levels = v.count(|k| format!("decoder.up.{k}.block.0.conv1.weight"));
    if decoder_levels != levels {
        return Err(err(format!(
            "VAE: {levels} encoder levels but {decoder_levels} decoder levels"
        )));
    }
    let config = json!({
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": channels,
        "down_block_types": vec!["DownEncoderBlock2D"; levels],
        "in_channels": v.dim("encoder.conv_in.weight", 1)?,
        "latent_channels": v.dim("decoder.conv_in.weight", 1)?,
        "layers_per_block": layers,
        "mid_block_add_attention": v.has("encoder.mid.attn_1.q.weight"),
        "norm_num_groups": norm_groups(&channels),
        "out_channels": v.dim("decoder.conv_out.weight", 0)?,
        "scaling_factor": if kind == Kind::Xl { 0.13025 } else { 0.18215 },
        "up_block_types": vec!["UpDecoderBlock2D"; levels],
        "use_post_quant_conv": v.has("post_quant_conv.weight"),
        "use_quant_conv": v.has("quant_conv.weight"),
    });
    Ok(((levels, layers), config))
}

#[allow(clippy::too_many_arguments)]
fn text_config(
    class: &str,
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    positions: usize,
    act: &str,
    projection: Option<usize>,
) -> Value {
    json!({
        "architectures": [class],
        "hidden_act": act,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-5,
        "max_position_embeddings": positions,
        "model_type": "clip_text_model",
        "num_attention_heads": (hidden / head_dim(&[hidden])).max(1),
        "num_hidden_layers": layers,
        "projection_dim": projection,
        "vocab_size": vocab,
    })
}

fn infer_transformers_text(t: &Part) -> Result<Value> {
    let p = if t.has("text_model.embeddings.token_embedding.weight") {
        "text_model."
    } else {
        ""
    };
    let emb = t.get(&format!("{p}embeddings.token_embedding.weight"))?;
    let (vocab, hidden) = emb.dims2()?;
    let layers = t.count(|i| format!("{p}encoder.layers.{i}.self_attn.q_proj.weight"));
    if layers == 0 {
        return Err(err(format!("{}: no encoder layers", t.name)));
    }
    let projection = t
        .tensors
        .get("text_projection.weight")
        .map(|w| w.dim(0))
        .transpose()?;
    Ok(text_config(
        if projection.is_some() {
            "CLIPTextModelWithProjection"
        } else {
            "CLIPTextModel"
        },
        vocab,
        hidden,
        t.dim(&format!("{p}encoder.layers.0.mlp.fc1.weight"), 0)?,
        layers,
        t.dim(&format!("{p}embeddings.position_embedding.weight"), 0)?,
        "quick_gelu",
        projection,
    ))
}

/// OpenCLIP: SD 2.x (`penultimate`: the last block is dropped) or SDXL's second encoder
/// (`projection`).
fn infer_open_clip(t: &Part, penultimate: bool) -> Result<(TextLayout, Value)> {
    let (vocab, hidden) = t.get("token_embedding.weight")?.dims2()?;
    let blocks = t.count(|i| format!("transformer.resblocks.{i}.attn.in_proj_weight"));
    let (layers, dropped) = match (penultimate, blocks) {
        (_, 0) | (true, 1) => {
            return Err(err(format!(
                "{}: too few OpenCLIP blocks ({blocks})",
                t.name
            )))
        }
        (true, n) => (n - 1, Some(n - 1)),
        (false, n) => (n, None),
    };
    let projection = if penultimate {
        None
    } else {
        Some(t.dim("text_projection", 1)?)
    };
    let layout = TextLayout::OpenClip {
        layers,
        projection: projection.is_some(),
        dropped,
    };
    let config = text_config(
        if projection.is_some() {
            "CLIPTextModelWithProjection"
        } else {
            "CLIPTextModel"
        },
        vocab,
        hidden,
        t.dim("transformer.resblocks.0.mlp.c_fc.weight", 0)?,
        layers,
        t.dim("positional_embedding", 0)?,
        "gelu",
        projection,
    );
    Ok((layout, config))
}

/// Population standard deviation of a tensor.
fn spread(t: &Tensor) -> Result<f64> {
    let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    if v.is_empty() {
        return Ok(0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    Ok((v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// Read a checkpoint and convert it: SD 1.x, SD 1.x inpainting, SD 2.x (OpenCLIP text
/// encoder, either prediction type) and SDXL base. The architecture comes from the names and
/// shapes (see the module docs for what cannot); every tensor of the UNet, VAE and text
/// encoder(s) must have its place, other keys (EMA copies, schedules) are ignored.
pub fn convert(path: &Path, dtype: DType, device: &Device) -> Result<Converted> {
    // The names first (the header only): they say what the file is and which parts to read.
    // The loader's errors say `reading <path>: …`; here it is a checkpoint.
    let in_checkpoint = |e: candle_core::Error| match e {
        candle_core::Error::Msg(m) => err(m.replacen("reading ", "reading checkpoint ", 1)),
        e => err(format!("reading checkpoint {}: {e}", path.display())),
    };
    let file = std::fs::File::open(path)
        .map_err(|e| err(format!("reading checkpoint {}: {e}", path.display())))?;
    let (header, _) = crate::loader::header_json(path, &file).map_err(in_checkpoint)?;
    let names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let has_prefix = |p: &str| names.iter().any(|n| n.starts_with(p));
    let kind = if has_prefix(XL_OPEN_CLIP) {
        if !has_prefix(XL_CLIP) {
            return Err(err(format!(
                "{}: an SDXL checkpoint without its first text encoder ({XL_CLIP}*)",
                path.display()
            )));
        }
        Kind::Xl
    } else if has_prefix(XL_REFINER_CLIP) {
        return Err(err(format!(
            "{} looks like an SDXL refiner (one OpenCLIP text encoder at {XL_REFINER_CLIP}*); refiners are not supported",
            path.display()
        )));
    } else if has_prefix(SD2_CLIP) {
        Kind::Sd2
    } else if has_prefix(SD1_CLIP) {
        Kind::Sd1
    } else if has_prefix(UNET) || has_prefix(VAE) {
        return Err(err(format!(
            "{} has no text encoder (cond_stage_model.* or conditioner.embedders.*): not a complete Stable Diffusion checkpoint",
            path.display()
        )));
    } else {
        return Err(err(format!(
            "{} is not a Stable Diffusion checkpoint (no known key layout)",
            path.display()
        )));
    };
    for (prefix, what) in [(UNET, "UNet"), (VAE, "VAE")] {
        if !has_prefix(prefix) {
            return Err(err(format!(
                "{}: no {what} weights ({prefix}*) in the checkpoint",
                path.display()
            )));
        }
    }
    // Only the parts the pipeline uses (not EMA copies or others), each tensor read once
    // straight into its buffer as `dtype`: no memory map stays resident.
    let wanted: &[&str] = match kind {
        Kind::Xl => &[UNET, VAE, XL_CLIP, XL_OPEN_CLIP],
        Kind::Sd2 => &[UNET, VAE, SD2_CLIP],
        Kind::Sd1 => &[UNET, VAE, SD1_CLIP],
    };
    let mut all = crate::loader::read_tensors_where(&[path.to_path_buf()], dtype, device, &|n| {
        wanted.iter().any(|p| n.starts_with(p))
    })
    .map_err(in_checkpoint)?;
    let mut part = |name: &'static str, prefix: &'static str| -> Result<Part> {
        let keys: Vec<String> = all
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        let tensors = keys
            .into_iter()
            .filter_map(|n| {
                let t = all.remove(&n)?;
                Some((n[prefix.len()..].to_string(), t))
            })
            .collect();
        Ok(Part {
            name,
            prefix,
            tensors,
        })
    };
    let unet = part("UNet", UNET)?;
    let vae = part("VAE", VAE)?;
    let (te1, te1_layout, te1_config, te2) = match kind {
        Kind::Sd1 => {
            let t = part("text encoder", SD1_CLIP)?;
            let c = infer_transformers_text(&t)?;
            (t, TextLayout::Transformers, c, None)
        }
        Kind::Sd2 => {
            let t = part("text encoder", SD2_CLIP)?;
            let (l, c) = infer_open_clip(&t, true)?;
            (t, l, c, None)
        }
        Kind::Xl => {
            let t = part("text encoder", XL_CLIP)?;
            let c = infer_transformers_text(&t)?;
            let t2 = part("text encoder 2", XL_OPEN_CLIP)?;
            let (l2, c2) = infer_open_clip(&t2, false)?;
            (t, TextLayout::Transformers, c, Some((t2, l2, c2)))
        }
    };
    let pooled = te2
        .as_ref()
        .and_then(|(_, _, c)| c["projection_dim"].as_u64())
        .map(|p| p as usize);
    let (unet_layout, inferred, unet_config) = infer_unet(&unet, kind, pooled)?;
    let ((vae_levels, vae_layers), vae_config) = infer_vae(&vae, kind)?;

    let prediction_type = if names.iter().any(|n| n == V_PRED) {
        Some(PredictionType::VPrediction)
    } else if kind == Kind::Sd2 && inferred.in_channels != 4 {
        // SD 2.x inpainting was trained on epsilon.
        Some(PredictionType::Epsilon)
    } else if kind == Kind::Sd2 && unet.has(SD2_V_PROBE) {
        Some(if spread(unet.get(SD2_V_PROBE)?)? > 0.09 {
            PredictionType::VPrediction
        } else {
            PredictionType::Epsilon
        })
    } else {
        None
    };
    let family = match kind {
        Kind::Xl => crate::family::SDXL,
        Kind::Sd2 => crate::family::SD2,
        Kind::Sd1 if inferred.in_channels == 9 => crate::family::SD15_INPAINT,
        Kind::Sd1 => crate::family::SD15,
    };
    let (text_encoder_2, te2_config) = match te2 {
        Some((t, l, c)) => (Some(t.convert(&text_entries(l))?), Some(c)),
        None => (None, None),
    };
    Ok(Converted {
        family,
        unet: unet.convert(&unet_entries(&unet_layout))?,
        vae: vae.convert(&vae_entries(vae_levels, vae_layers))?,
        text_encoder: te1.convert(&text_entries(te1_layout))?,
        text_encoder_2,
        inferred,
        configs: Configs {
            unet: unet_config,
            vae: vae_config,
            text_encoder: te1_config,
            text_encoder_2: te2_config,
        },
        prediction_type,
        zero_snr: names.iter().any(|n| n == ZTSNR),
    })
}

// ---------------------------------------------------------------------------------------------
// Scheduler.

fn prediction_name(p: PredictionType) -> &'static str {
    match p {
        PredictionType::Epsilon => "epsilon",
        PredictionType::VPrediction => "v_prediction",
        PredictionType::Sample => "sample",
        PredictionType::Flow => "flow_prediction",
    }
}

/// The scheduler a family's released models ship: SD 1.x PNDM, SD 2.x DDIM with
/// v-prediction (stable-diffusion-2-1), SDXL Euler; all on SD's scaled-linear betas.
pub fn default_scheduler_config(family: &str) -> Value {
    let mut c = json!({
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": false,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "set_alpha_to_one": false,
        "skip_prk_steps": true,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": null,
    });
    let extra = match family {
        crate::family::SD2 => json!({
            "_class_name": "DDIMScheduler",
            "prediction_type": "v_prediction",
        }),
        crate::family::SDXL => json!({
            "_class_name": "EulerDiscreteScheduler",
            "interpolation_type": "linear",
            "sample_max_value": 1.0,
            "use_karras_sigmas": false,
        }),
        _ => json!({"_class_name": "PNDMScheduler"}),
    };
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// The scheduler config for a converted checkpoint: `support_dir/scheduler/scheduler_config.json`
/// when there is one, else the family's default; its prediction type is the caller's override,
/// else what the file says, else the config's own. A `ztsnr` file turns
/// `rescale_betas_zero_snr` on.
pub fn scheduler_config(
    conv: &Converted,
    support_dir: &Path,
    options: &SingleFileOptions,
) -> Result<Value> {
    let file = support_dir.join("scheduler/scheduler_config.json");
    let mut config: Value = if file.is_file() {
        crate::loader::read_config(&file)?
    } else {
        default_scheduler_config(conv.family)
    };
    let obj = config
        .as_object_mut()
        .ok_or_else(|| err(format!("{} is not a JSON object", file.display())))?;
    if let Some(p) = options.prediction_type.or(conv.prediction_type) {
        obj.insert("prediction_type".into(), json!(prediction_name(p)));
    }
    if conv.zero_snr {
        obj.insert("rescale_betas_zero_snr".into(), json!(true));
    }
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Write a diffusers folder's weights as one `.safetensors` checkpoint in the LDM / A1111
/// layout (the inverse of `convert`): SD 1.x (and inpainting), SD 2.x (a text encoder with
/// `hidden_act: gelu` is OpenCLIP) or SDXL (with `text_encoder_2/`). A v-prediction scheduler
/// adds the `v_pred` marker, `rescale_betas_zero_snr` the `ztsnr` one. Tensors keep their
/// dtype. Fails, naming it, on any weight that has no place in the layout.
pub fn write_single_file(diffusers_dir: &Path, out: &Path) -> Result<()> {
    let dir = diffusers_dir;
    let config = |sub: &str| crate::loader::read_config::<Value>(&dir.join(sub));
    fn parse<T: serde::de::DeserializeOwned>(dir: &Path, v: Value, sub: &str) -> Result<T> {
        serde_json::from_value(v).map_err(|e| err(format!("{}: {e}", dir.join(sub).display())))
    }
    let weights = |sub: &str, stem: &str| -> Result<HashMap<String, Tensor>> {
        let path = crate::loader::find_weights(&dir.join(sub), stem)?;
        candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))
    };
    let mut all: Vec<(String, Tensor)> = Vec::new();

    let unet_cfg: super::unet::UnetConfig =
        parse(dir, config("unet/config.json")?, "unet/config.json")?;
    let unet_layout = UnetLayout::from_config(&unet_cfg);
    all.extend(to_ldm(
        &unet_entries(&unet_layout),
        &weights("unet", "diffusion_pytorch_model")?,
        "UNet",
        UNET,
    )?);

    let vae_cfg: crate::vae::VaeConfig = parse(dir, config("vae/config.json")?, "vae/config.json")?;
    all.extend(to_ldm(
        &vae_entries(vae_cfg.block_out_channels.len(), vae_cfg.layers_per_block),
        &weights("vae", "diffusion_pytorch_model")?,
        "VAE",
        VAE,
    )?);

    let te_raw = config("text_encoder/config.json")?;
    let te_cfg: crate::clip::ClipTextConfig = parse(dir, te_raw, "text_encoder/config.json")?;
    let te = weights("text_encoder", "model")?;
    if dir.join("text_encoder_2").is_dir() {
        all.extend(to_ldm(
            &text_entries(TextLayout::Transformers),
            &te,
            "text encoder",
            XL_CLIP,
        )?);
        let te2_cfg: crate::clip::ClipTextConfig = parse(
            dir,
            config("text_encoder_2/config.json")?,
            "text_encoder_2/config.json",
        )?;
        let te2 = weights("text_encoder_2", "model")?;
        if !te2.contains_key("text_projection.weight") {
            return Err(err(format!(
                "{}: SDXL's second text encoder has no text_projection.weight",
                dir.join("text_encoder_2").display()
            )));
        }
        let layout = TextLayout::OpenClip {
            layers: te2_cfg.num_hidden_layers,
            projection: true,
            dropped: None,
        };
        all.extend(to_ldm(
            &text_entries(layout),
            &te2,
            "text encoder 2",
            XL_OPEN_CLIP,
        )?);
    } else if te_cfg.hidden_act == "gelu" {
        let n = te_cfg.num_hidden_layers;
        let layout = TextLayout::OpenClip {
            layers: n,
            projection: false,
            dropped: None,
        };
        let converted = to_ldm(&text_entries(layout), &te, "text encoder", SD2_CLIP)?;
        // SD 2.x files hold one block more than the model uses (it conditions on the
        // penultimate one): repeat the last.
        if n == 0 {
            return Err(err("SD 2.x text encoder without layers"));
        }
        let last = format!("{SD2_CLIP}transformer.resblocks.{}.", n - 1);
        let extra: Vec<(String, Tensor)> = converted
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(&last).map(|rest| {
                    (
                        format!("{SD2_CLIP}transformer.resblocks.{n}.{rest}"),
                        t.clone(),
                    )
                })
            })
            .collect();
        all.extend(converted);
        all.extend(extra);
    } else {
        all.extend(to_ldm(
            &text_entries(TextLayout::Transformers),
            &te,
            "text encoder",
            SD1_CLIP,
        )?);
    }

    let sched = dir.join("scheduler/scheduler_config.json");
    if sched.is_file() {
        let s: Value = crate::loader::read_config(&sched)?;
        let marker = || Tensor::zeros(0, DType::F32, &Device::Cpu);
        if s["prediction_type"] == "v_prediction" {
            all.push((V_PRED.into(), marker()?));
        }
        if s["rescale_betas_zero_snr"] == true {
            all.push((ZTSNR.into(), marker()?));
        }
    }

    let mut map = HashMap::with_capacity(all.len());
    for (k, t) in all {
        insert_once(&mut map, k, t)?;
    }
    crate::loader::save_safetensors(&map, out)
}
