//! Single-file checkpoints in the original LDM / A1111 key layout (`model.diffusion_model.*`,
//! `first_stage_model.*`, `cond_stage_model.transformer.*`), converted to diffusers' names so
//! the same model code loads them. The family is detected from the names and shapes, and the
//! UNet and VAE shapes that the weights determine are read off them (ComfyUI does the same);
//! what weights cannot tell (head counts, norm groups, the scheduler) comes from a config
//! folder of that family.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor};

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

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

/// A converted checkpoint: each component's tensors under diffusers' names.
pub struct Converted {
    /// `sd15`, `sd15-inpaint`, `sd2` or `sdxl` (see `easel_core::model::family`).
    pub family: &'static str,
    pub unet: HashMap<String, Tensor>,
    pub vae: HashMap<String, Tensor>,
    pub text_encoder: HashMap<String, Tensor>,
    pub inferred: InferredUnet,
}

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const CLIP: &str = "cond_stage_model.transformer.";

/// ResNet sub-module names, LDM → diffusers.
fn resnet_part(rest: &str) -> Option<String> {
    for (from, to) in [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
        ("nin_shortcut.", "conv_shortcut."),
        ("norm1.", "norm1."),
        ("norm2.", "norm2."),
        ("conv1.", "conv1."),
        ("conv2.", "conv2."),
    ] {
        if let Some(tail) = rest.strip_prefix(from) {
            return Some(format!("{to}{tail}"));
        }
    }
    None
}

/// Split `a.b.rest` into (a as number, b as number, rest).
fn two_indices(s: &str) -> Option<(usize, usize, &str)> {
    let (a, s) = s.split_once('.')?;
    let (b, rest) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?, rest))
}

/// Read a checkpoint and convert it. Only SD 1.x-style files (CLIP text encoder in
/// transformers naming) are supported so far; others fail with a message naming the family.
pub fn convert(path: &Path, device: &Device) -> Result<Converted> {
    let all = candle_core::safetensors::load(path, device)
        .map_err(|e| err(format!("reading checkpoint {}: {e}", path.display())))?;
    let in_channels = all
        .get(&format!("{UNET}input_blocks.0.0.weight"))
        .map(|t| t.dim(1))
        .transpose()?;
    let family = easel_core::model::family_from_tensor_names(
        all.keys().map(|k| k.as_str()),
        in_channels.map(|c| c as u64),
    )
    .ok_or_else(|| {
        err(format!(
            "{} is not a Stable Diffusion checkpoint (no known key layout)",
            path.display()
        ))
    })?;
    if matches!(
        family,
        easel_core::model::family::SD2 | easel_core::model::family::SDXL
    ) {
        return Err(err(format!(
            "single-file {family} checkpoints are not supported yet (their OpenCLIP text encoder layout); use the diffusers folder"
        )));
    }

    // UNet: walk the input blocks to learn levels and layers per level.
    let has = |k: &str| all.contains_key(&format!("{UNET}{k}"));
    let mut input_map: HashMap<usize, String> = HashMap::new();
    let (mut level, mut j, mut layers, mut channels, mut attention) =
        (0usize, 0usize, 0usize, Vec::new(), Vec::new());
    let mut n = 1;
    while has(&format!("input_blocks.{n}.0.weight"))
        || has(&format!("input_blocks.{n}.0.op.weight"))
        || has(&format!("input_blocks.{n}.0.in_layers.0.weight"))
    {
        if has(&format!("input_blocks.{n}.0.op.weight")) {
            input_map.insert(n, format!("down_blocks.{level}.downsamplers.0.conv"));
            level += 1;
            j = 0;
        } else {
            input_map.insert(n, format!("down_blocks.{level}.R{j}"));
            if j == 0 {
                let w = &all[&format!("{UNET}input_blocks.{n}.0.out_layers.3.weight")];
                channels.push(w.dim(0)?);
                attention.push(has(&format!("input_blocks.{n}.1.proj_in.weight")));
            }
            j += 1;
            layers = layers.max(j);
        }
        n += 1;
    }
    if channels.is_empty() {
        return Err(err("no UNet input blocks in the checkpoint"));
    }
    let cross = all
        .iter()
        .find(|(k, _)| k.starts_with(UNET) && k.ends_with("attn2.to_k.weight"))
        .map(|(_, t)| t.dim(1))
        .transpose()?
        .unwrap_or(768);
    let inferred = InferredUnet {
        in_channels: in_channels.unwrap_or(4),
        block_out_channels: channels.clone(),
        layers_per_block: layers,
        cross_attention_dim: cross,
        attention,
    };

    let mut unet = HashMap::new();
    let mut vae = HashMap::new();
    let mut text_encoder = HashMap::new();
    let levels = channels.len();
    for (key, t) in all {
        if let Some(rest) = key.strip_prefix(CLIP) {
            text_encoder.insert(rest.to_string(), t);
        } else if let Some(rest) = key.strip_prefix(UNET) {
            let name = unet_name(rest, &input_map, layers, levels)
                .ok_or_else(|| err(format!("unexpected UNet key `{key}`")))?;
            unet.insert(name, t);
        } else if let Some(rest) = key.strip_prefix(VAE) {
            let (name, t) = vae_name(rest, t)?;
            vae.insert(name, t);
        }
    }
    let vae_levels = vae
        .keys()
        .filter_map(|k| {
            k.strip_prefix("encoder.down_blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|m| m + 1)
        .unwrap_or(0);
    // Decoder levels are numbered in reverse in LDM: renumber now that the depth is known.
    let vae = vae
        .into_iter()
        .map(|(k, t)| match k.strip_prefix("decoder.UP") {
            Some(rest) => {
                let (i, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let i: usize = i.parse().unwrap_or(0);
                (
                    format!("decoder.up_blocks.{}.{tail}", vae_levels - 1 - i),
                    t,
                )
            }
            None => (k, t),
        })
        .collect();
    Ok(Converted {
        family,
        unet,
        vae,
        text_encoder,
        inferred,
    })
}

fn unet_name(
    rest: &str,
    input_map: &HashMap<usize, String>,
    layers: usize,
    levels: usize,
) -> Option<String> {
    for (from, to) in [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ] {
        if let Some(tail) = rest.strip_prefix(from) {
            return Some(format!("{to}{tail}"));
        }
    }
    if let Some(r) = rest.strip_prefix("input_blocks.") {
        let (n, m, tail) = two_indices(r)?;
        let target = input_map.get(&n)?;
        if target.ends_with("downsamplers.0.conv") {
            return Some(format!("{target}.{}", tail.strip_prefix("op.")?));
        }
        let (lvl, j) = target.split_once(".R")?;
        return match m {
            0 => Some(format!("{lvl}.resnets.{j}.{}", resnet_part(tail)?)),
            1 => Some(format!("{lvl}.attentions.{j}.{tail}")),
            _ => None,
        };
    }
    if let Some(r) = rest.strip_prefix("middle_block.") {
        let (m, tail) = r.split_once('.')?;
        return match m {
            "0" => Some(format!("mid_block.resnets.0.{}", resnet_part(tail)?)),
            "1" => Some(format!("mid_block.attentions.0.{tail}")),
            "2" => Some(format!("mid_block.resnets.1.{}", resnet_part(tail)?)),
            _ => None,
        };
    }
    if let Some(r) = rest.strip_prefix("output_blocks.") {
        let (n, m, tail) = two_indices(r)?;
        let (i, j) = (n / (layers + 1), n % (layers + 1));
        if i >= levels {
            return None;
        }
        let up = format!("up_blocks.{i}");
        return match m {
            0 => Some(format!("{up}.resnets.{j}.{}", resnet_part(tail)?)),
            // An upsampler sits after the attention (`.2`) or, without one, at `.1`.
            _ if tail.starts_with("conv.") => Some(format!("{up}.upsamplers.0.{tail}")),
            1 => Some(format!("{up}.attentions.{j}.{tail}")),
            _ => None,
        };
    }
    None
}

/// VAE names, LDM → diffusers (decoder levels are marked `decoder.UP<k>` and renumbered by
/// the caller). Attention 1x1-conv weights become linear weights.
fn vae_name(rest: &str, t: Tensor) -> Result<(String, Tensor)> {
    let unexpected = || err(format!("unexpected VAE key `first_stage_model.{rest}`"));
    let (side, r) = rest.split_once('.').ok_or_else(unexpected)?;
    let simple = |to: &str, tail: &str| Ok((format!("{side}.{to}{tail}"), t.clone()));
    for (from, to) in [
        ("norm_out.", "conv_norm_out."),
        ("conv_in.", "conv_in."),
        ("conv_out.", "conv_out."),
    ] {
        if let Some(tail) = r.strip_prefix(from) {
            return simple(to, tail);
        }
    }
    if side == "quant_conv" || side == "post_quant_conv" {
        return Ok((rest.to_string(), t));
    }
    if let Some(m) = r.strip_prefix("mid.") {
        if let Some(tail) = m.strip_prefix("block_1.") {
            return simple(
                "mid_block.resnets.0.",
                &resnet_part(tail).ok_or_else(unexpected)?,
            );
        }
        if let Some(tail) = m.strip_prefix("block_2.") {
            return simple(
                "mid_block.resnets.1.",
                &resnet_part(tail).ok_or_else(unexpected)?,
            );
        }
        if let Some(tail) = m.strip_prefix("attn_1.") {
            let (part, p) = tail.split_once('.').ok_or_else(unexpected)?;
            let to = match part {
                "norm" => "group_norm",
                "q" => "to_q",
                "k" => "to_k",
                "v" => "to_v",
                "proj_out" => "to_out.0",
                _ => return Err(unexpected()),
            };
            let t = if t.rank() == 4 {
                t.flatten_from(1)?
            } else {
                t.clone()
            };
            return Ok((format!("{side}.mid_block.attentions.0.{to}.{p}"), t));
        }
        return Err(unexpected());
    }
    let (group, r) = r.split_once('.').ok_or_else(unexpected)?;
    let (k, r) = r.split_once('.').ok_or_else(unexpected)?;
    let level: usize = k.parse().map_err(|_| unexpected())?;
    let prefix = match (side, group) {
        ("encoder", "down") => format!("encoder.down_blocks.{level}"),
        ("decoder", "up") => format!("decoder.UP{level}"),
        _ => return Err(unexpected()),
    };
    if let Some(r) = r.strip_prefix("block.") {
        let (j, tail) = r.split_once('.').ok_or_else(unexpected)?;
        return Ok((
            format!(
                "{prefix}.resnets.{j}.{}",
                resnet_part(tail).ok_or_else(unexpected)?
            ),
            t,
        ));
    }
    for (from, to) in [
        ("downsample.", "downsamplers.0."),
        ("upsample.", "upsamplers.0."),
    ] {
        if let Some(tail) = r.strip_prefix(from) {
            return Ok((format!("{prefix}.{to}{tail}"), t));
        }
    }
    Err(unexpected())
}
