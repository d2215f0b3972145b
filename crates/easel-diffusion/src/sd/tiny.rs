//! Tiny Stable Diffusion models with random weights, in exactly the layout real ones ship: a
//! diffusers folder (`model_index.json`, `scheduler/`, `unet/`, `vae/`, `text_encoder/`,
//! `tokenizer/`, and for SDXL `text_encoder_2/` + `tokenizer_2/`) with real-looking configs,
//! for tests, benchmarks and `easel models make-tiny`. A 64×64 image takes a few milliseconds.
//!
//! Per variant, what a released model of that variant has, scaled down:
//!
//! - `sd15`: CLIP ViT-L-like text encoder (`quick_gelu`), conv projections, 8 heads per UNet
//!   level, PNDM;
//! - `sd15-inpaint`: `sd15` with a 9-channel UNet (`StableDiffusionInpaintPipeline`);
//! - `sd2`: OpenCLIP-like text encoder (`gelu`, pad token `!`), linear projections,
//!   per-level `attention_head_dim`, DDIM with v-prediction;
//! - `sdxl`: two text encoders (the second with `text_projection`, pad `!`), `text_time`
//!   added embedding, a first level without attention, deeper transformers below, Euler,
//!   `force_zeros_for_empty_prompt`.
//!
//! The sizes follow the rules `single_file` uses for what weights do not say (8-wide heads
//! below 64 channels, 8 norm groups below 32), so a tiny model converted with
//! [`write_single_file`] loads back to the same model. Weights are f32 from the crate's
//! random-weight writer (`crate::tiny`); the same seed gives the same files.
//!
//! [`make_tiny_lora`] writes a LoRA for such a model (its attention layers, found in the
//! weights files' headers) in the key layout of diffusers, of PEFT or of kohya-ss; the three
//! layouts hold the same numbers for the same seed and rank.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use candle_core::Result;
use serde_json::{json, Value};

use super::unet::{Unet, UnetConfig};
use super::Variant;
use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::family::read_header;
use crate::rng::TorchRng;
use crate::tiny::{write_component, write_json, write_safetensors, Vocabulary};
use crate::vae::{Vae, VaeConfig};

pub use super::single_file::write_single_file;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Configs.

struct TextSpec {
    hidden: usize,
    heads: usize,
    layers: usize,
    act: &'static str,
    /// `CLIPTextModelWithProjection` with this projection size.
    projection: Option<usize>,
    pad: &'static str,
}

fn text_config(s: &TextSpec, vocab: &Vocabulary) -> Value {
    json!({
        "architectures": [if s.projection.is_some() { "CLIPTextModelWithProjection" } else { "CLIPTextModel" }],
        "attention_dropout": 0.0,
        "bos_token_id": vocab.id("<|startoftext|>"),
        "dropout": 0.0,
        "eos_token_id": vocab.id("<|endoftext|>"),
        "hidden_act": s.act,
        "hidden_size": s.hidden,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 4 * s.hidden,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": s.heads,
        "num_hidden_layers": s.layers,
        "pad_token_id": vocab.id(s.pad),
        "projection_dim": s.projection.unwrap_or(s.hidden),
        "torch_dtype": "float32",
        "transformers_version": "4.44.2",
        "vocab_size": vocab.tokens.len(),
    })
}

fn unet_config(family: Variant, cross: usize, pooled: usize) -> Value {
    let mut c = json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "addition_embed_type": null,
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": null,
        "attention_head_dim": 8,
        "attention_type": "default",
        "block_out_channels": [32, 64],
        "center_input_sample": false,
        "class_embed_type": null,
        "class_embeddings_concat": false,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": cross,
        "cross_attention_norm": null,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "dropout": 0.0,
        "dual_cross_attention": false,
    });
    // (Two literals: one would pass `json!`'s recursion limit.)
    let rest = json!({
        "encoder_hid_dim": null,
        "encoder_hid_dim_type": null,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": if family == Variant::Inpaint { 9 } else { 4 },
        "layers_per_block": 2,
        "mid_block_only_cross_attention": null,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": null,
        "num_class_embeds": null,
        "only_cross_attention": false,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": null,
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": false,
        "resnet_time_scale_shift": "default",
        "reverse_transformer_layers_per_block": null,
        "sample_size": 8,
        "time_cond_proj_dim": null,
        "time_embedding_act_fn": null,
        "time_embedding_dim": null,
        "time_embedding_type": "positional",
        "timestep_post_act": null,
        "transformer_layers_per_block": 1,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "upcast_attention": false,
        "use_linear_projection": false,
    });
    merge(&mut c, &rest);
    let over = match family {
        Variant::Sd15 | Variant::Inpaint => json!({}),
        // SD 2.x: heads per level (64-wide in the real model, 8-wide at this size), linear
        // projections.
        Variant::Sd2 => json!({
            "attention_head_dim": [4, 8],
            "use_linear_projection": true,
        }),
        // SDXL: no attention on the first level, two transformer blocks on the second, the
        // `text_time` embedding of the pooled text and six size/crop numbers.
        Variant::Sdxl => json!({
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "attention_head_dim": [2, 4],
            "block_out_channels": [16, 32],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "norm_num_groups": 8,
            "projection_class_embeddings_input_dim": pooled + 6 * 8,
            "transformer_layers_per_block": [1, 2],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "use_linear_projection": true,
        }),
    };
    merge(&mut c, &over);
    c
}

/// `a`'s keys, overwritten and extended by `b`'s (both objects).
fn merge(a: &mut Value, b: &Value) {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        a.extend(b.clone());
    }
}

fn vae_config(family: Variant) -> Value {
    json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": [16, 32, 32, 32],
        "down_block_types": vec!["DownEncoderBlock2D"; 4],
        "force_upcast": true,
        "in_channels": 3,
        "latent_channels": 4,
        "latents_mean": null,
        "latents_std": null,
        "layers_per_block": 1,
        "mid_block_add_attention": true,
        "norm_num_groups": 8,
        "out_channels": 3,
        "sample_size": 64,
        "scaling_factor": if family == Variant::Sdxl { 0.13025 } else { 0.18215 },
        "shift_factor": null,
        "up_block_types": vec!["UpDecoderBlock2D"; 4],
        "use_post_quant_conv": true,
        "use_quant_conv": true,
    })
}

const DIFFUSERS_VERSION: &str = "0.30.0";

fn model_index(family: Variant, scheduler: &str) -> Value {
    let none = json!([null, null]);
    let text = json!(["transformers", "CLIPTextModel"]);
    let tok = json!(["transformers", "CLIPTokenizer"]);
    let common = json!({
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": none,
        "image_encoder": none,
        "scheduler": ["diffusers", scheduler],
        "text_encoder": text,
        "tokenizer": tok,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    });
    let extra = match family {
        Variant::Sdxl => json!({
            "_class_name": "StableDiffusionXLPipeline",
            "force_zeros_for_empty_prompt": true,
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": tok,
        }),
        _ => json!({
            "_class_name": if family == Variant::Inpaint {
                "StableDiffusionInpaintPipeline"
            } else {
                "StableDiffusionPipeline"
            },
            "requires_safety_checker": false,
            "safety_checker": none,
        }),
    };
    let mut c = common;
    merge(&mut c, &extra);
    c
}

// ---------------------------------------------------------------------------------------------

/// Write a complete diffusers folder for `family` into `dir` (created if needed) with random
/// weights drawn from `seed`.
pub fn make_tiny(family: Variant, dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    // One generator per component, all from the seed.
    let component_seed = |k: u64| seed.wrapping_mul(8).wrapping_add(k);
    let vocab = Vocabulary::build();
    let open_clip = family == Variant::Sd2;
    let text = TextSpec {
        hidden: 32,
        heads: 4,
        layers: 2,
        act: if open_clip { "gelu" } else { "quick_gelu" },
        projection: None,
        pad: if open_clip { "!" } else { "<|endoftext|>" },
    };
    // SDXL's second encoder (OpenCLIP bigG-like).
    let text2 = (family == Variant::Sdxl).then_some(TextSpec {
        hidden: 48,
        heads: 6,
        layers: 2,
        act: "gelu",
        projection: Some(40),
        pad: "!",
    });

    let mut scheduler = super::single_file::default_scheduler_config(family.family().id);
    if let Some(s) = scheduler.as_object_mut() {
        s.insert("_diffusers_version".into(), json!(DIFFUSERS_VERSION));
    }
    let scheduler_class = scheduler["_class_name"]
        .as_str()
        .unwrap_or("PNDMScheduler")
        .to_string();
    write_json(
        &dir.join("model_index.json"),
        &model_index(family, &scheduler_class),
    )?;
    write_json(&dir.join("scheduler/scheduler_config.json"), &scheduler)?;

    let mut encoders = vec![("text_encoder", "tokenizer", &text, 1)];
    if let Some(t2) = &text2 {
        encoders.push(("text_encoder_2", "tokenizer_2", t2, 2));
    }
    for (sub, tok, spec, k) in encoders {
        vocab.write(&dir.join(tok), spec.pad)?;
        let config = text_config(spec, &vocab);
        let parsed: ClipTextConfig =
            serde_json::from_value(config.clone()).map_err(|e| err(e.to_string()))?;
        write_component(
            &dir.join(sub),
            &config,
            "model.safetensors",
            component_seed(k),
            spec.projection.is_some(),
            |vb| ClipTextModel::load(vb, &parsed).map(|_| ()),
        )?;
    }

    let cross = text.hidden + text2.as_ref().map_or(0, |t| t.hidden);
    let pooled = text2.as_ref().and_then(|t| t.projection).unwrap_or(0);
    let config = unet_config(family, cross, pooled);
    let parsed: UnetConfig =
        serde_json::from_value(config.clone()).map_err(|e| err(e.to_string()))?;
    write_component(
        &dir.join("unet"),
        &config,
        "diffusion_pytorch_model.safetensors",
        component_seed(3),
        false,
        |vb| Unet::load(vb, parsed).map(|_| ()),
    )?;

    let config = vae_config(family);
    let parsed: VaeConfig =
        serde_json::from_value(config.clone()).map_err(|e| err(e.to_string()))?;
    write_component(
        &dir.join("vae"),
        &config,
        "diffusion_pytorch_model.safetensors",
        component_seed(4),
        false,
        |vb| Vae::load(vb, parsed).map(|_| ()),
    )
}

// ---------------------------------------------------------------------------------------------
// LoRAs.

/// A LoRA file layout [`make_tiny_lora`] can write, each as the tools that make such files
/// write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraLayout {
    /// diffusers before PEFT (`save_lora_weights` of 0.19 to 0.2x): the UNet as
    /// `unet.<module>.lora.down.weight` / `.lora.up.weight`, the text encoders as
    /// `text_encoder.<module>.lora_linear_layer.down.weight` / `.up.weight` (their patched
    /// projections); no alphas (alpha = rank); metadata `format: pt`.
    Diffusers,
    /// diffusers with PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight`, the same under
    /// `text_encoder.` and `text_encoder_2.`; no alphas; metadata `format: pt`.
    Peft,
    /// kohya-ss sd-scripts (what A1111, ComfyUI and most shared LoRAs use):
    /// `lora_unet_<module, . as _>.lora_down.weight` / `.lora_up.weight` / `.alpha` (a 0-d
    /// tensor), text encoders under `lora_te_` (SDXL: `lora_te1_`, `lora_te2_`). SDXL UNet
    /// modules carry their SGM names (`input_blocks_4_1_…`), as sd-scripts trains SDXL on the
    /// original UNet; SD 1.x/2.x ones their diffusers names. Metadata `ss_*` and
    /// `modelspec.*` as sd-scripts writes them.
    Kohya,
}

impl LoraLayout {
    pub const ALL: [LoraLayout; 3] = [LoraLayout::Diffusers, LoraLayout::Peft, LoraLayout::Kohya];

    pub fn name(self) -> &'static str {
        match self {
            LoraLayout::Diffusers => "diffusers",
            LoraLayout::Peft => "peft",
            LoraLayout::Kohya => "kohya",
        }
    }
}

impl std::fmt::Display for LoraLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a LoRA layout.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown LoRA layout `{0}` (expected diffusers, peft or kohya)")]
pub struct UnknownLoraLayout(pub String);

impl FromStr for LoraLayout {
    type Err = UnknownLoraLayout;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        LoraLayout::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| UnknownLoraLayout(s.to_string()))
    }
}

/// Std of the entries of `up @ down` (alpha = rank, so that is the delta merged at scale 1):
/// ten times the base weights' 0.02, so a merged LoRA visibly changes a tiny model's images.
/// Down and up are drawn with std `√(LORA_DELTA_STD) / rank^¼` each, whatever the rank.
const LORA_DELTA_STD: f64 = 0.2;

/// The linear layers a LoRA adapts: UNet attention, CLIP self-attention (weight name suffixes).
const UNET_TARGETS: [&str; 4] = [
    ".to_q.weight",
    ".to_k.weight",
    ".to_v.weight",
    ".to_out.0.weight",
];
const TEXT_TARGETS: [&str; 4] = [
    ".self_attn.q_proj.weight",
    ".self_attn.k_proj.weight",
    ".self_attn.v_proj.weight",
    ".self_attn.out_proj.weight",
];

/// The SGM (original SDXL UNet) name of a diffusers UNet attention module, as kohya's SDXL
/// LoRAs name it: `down_blocks.i.attentions.j` → `input_blocks.{1 + i(L+1) + j}.1`,
/// `mid_block.attentions.0` → `middle_block.1`, `up_blocks.i.attentions.j` →
/// `output_blocks.{i(L+1) + j}.1`, with L the UNet's layers per block.
fn sgm_unet_name(module: &str, layers: usize) -> Result<String> {
    let parts: Vec<&str> = module.splitn(5, '.').collect();
    let num = |s: &str| s.parse::<usize>().ok();
    let mapped = match parts.as_slice() {
        ["down_blocks", i, "attentions", j, rest] => num(i)
            .zip(num(j))
            .map(|(i, j)| format!("input_blocks.{}.1.{rest}", 1 + i * (layers + 1) + j)),
        ["mid_block", "attentions", "0", rest @ ..] => {
            Some(format!("middle_block.1.{}", rest.join(".")))
        }
        ["up_blocks", i, "attentions", j, rest] => num(i)
            .zip(num(j))
            .map(|(i, j)| format!("output_blocks.{}.1.{rest}", i * (layers + 1) + j)),
        _ => None,
    };
    mapped.ok_or_else(|| err(format!("no SGM name for the UNet module `{module}`")))
}

/// Write a LoRA for the model `make_tiny` wrote into `model_dir` (any family) to `out`: a
/// rank-`rank` pair for every attention projection of the UNet (`to_q`, `to_k`, `to_v`,
/// `to_out.0`) and of the text encoder(s) (`q_proj`, `k_proj`, `v_proj`, `out_proj`), found
/// with their shapes in the weights files' headers, in `layout`'s key names. Down and up are
/// normal from `TorchRng(seed)`, drawn per module in name order (UNet, then text encoders),
/// scaled so that `up @ down` has std 0.2 at any rank (ten times the base weights'); alpha =
/// rank. Every layout holds the same numbers for the same seed and rank,
/// so they merge to the same weights.
pub fn make_tiny_lora(
    model_dir: &Path,
    out: &Path,
    layout: LoraLayout,
    rank: usize,
    seed: u64,
) -> Result<()> {
    if rank == 0 {
        return Err(err("a LoRA needs a rank of at least 1"));
    }
    let sdxl = model_dir.join("text_encoder_2").is_dir();
    let mut components = vec![(
        "unet",
        crate::loader::find_weights(&model_dir.join("unet"), "diffusion_pytorch_model")?,
        &UNET_TARGETS[..],
    )];
    for te in ["text_encoder", "text_encoder_2"] {
        let dir = model_dir.join(te);
        if te == "text_encoder" || dir.is_dir() {
            components.push((
                te,
                crate::loader::find_weights(&dir, "model")?,
                &TEXT_TARGETS[..],
            ));
        }
    }
    // SDXL's kohya names need the UNet's layers per block.
    let layers = if sdxl && layout == LoraLayout::Kohya {
        let config: Value = crate::loader::read_config(&model_dir.join("unet/config.json"))?;
        config["layers_per_block"]
            .as_u64()
            .ok_or_else(|| err("unet/config.json: no `layers_per_block` number"))? as usize
    } else {
        0
    };

    let factor_std = (LORA_DELTA_STD.sqrt() / (rank as f64).powf(0.25)) as f32;
    let mut rng = TorchRng::new(seed);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut draw = |n: usize, std: f32| -> Vec<f32> {
        rng.randn_vec(n).into_iter().map(|x| x * std).collect()
    };
    for (component, weights, targets) in components {
        let mut found = 0;
        for (name, shape) in read_header(&weights)? {
            let Some(module) = name
                .strip_suffix(".weight")
                .filter(|_| targets.iter().any(|t| name.ends_with(t)))
            else {
                continue;
            };
            let [out_dim, in_dim] = shape[..] else {
                continue;
            };
            found += 1;
            let down = draw(rank * in_dim, factor_std);
            let up = draw(out_dim * rank, factor_std);
            let (base, down_key, up_key, alpha) = match layout {
                LoraLayout::Diffusers if component == "unet" => (
                    format!("unet.{module}"),
                    "lora.down.weight",
                    "lora.up.weight",
                    false,
                ),
                LoraLayout::Diffusers => (
                    format!("{component}.{module}"),
                    "lora_linear_layer.down.weight",
                    "lora_linear_layer.up.weight",
                    false,
                ),
                LoraLayout::Peft => (
                    format!("{component}.{module}"),
                    "lora_A.weight",
                    "lora_B.weight",
                    false,
                ),
                LoraLayout::Kohya => {
                    let (prefix, module) = match component {
                        "unet" if sdxl => ("lora_unet", sgm_unet_name(module, layers)?),
                        "unet" => ("lora_unet", module.to_string()),
                        "text_encoder" if sdxl => ("lora_te1", module.to_string()),
                        "text_encoder" => ("lora_te", module.to_string()),
                        _ => ("lora_te2", module.to_string()),
                    };
                    (
                        format!("{prefix}_{}", module.replace('.', "_")),
                        "lora_down.weight",
                        "lora_up.weight",
                        true,
                    )
                }
            };
            tensors.insert(format!("{base}.{down_key}"), (vec![rank, in_dim], down));
            tensors.insert(format!("{base}.{up_key}"), (vec![out_dim, rank], up));
            if alpha {
                tensors.insert(format!("{base}.alpha"), (vec![], vec![rank as f32]));
            }
        }
        if found == 0 {
            return Err(err(format!(
                "{}: no attention projections to adapt",
                weights.display()
            )));
        }
    }

    let mut metadata = BTreeMap::new();
    match layout {
        LoraLayout::Diffusers | LoraLayout::Peft => {
            metadata.insert("format".to_string(), "pt".to_string());
        }
        LoraLayout::Kohya => {
            // OpenCLIP (`gelu`) marks SD 2.x, whose tiny model predicts v.
            let text: Value =
                crate::loader::read_config(&model_dir.join("text_encoder/config.json"))?;
            let v2 = !sdxl && text["hidden_act"] == "gelu";
            let (version, arch) = if sdxl {
                ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base")
            } else if v2 {
                ("sd_v2", "stable-diffusion-v2-768-v")
            } else {
                ("sd_v1", "stable-diffusion-v1")
            };
            let title = out
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("tiny-lora")
                .to_string();
            for (k, v) in [
                ("ss_network_module", "networks.lora".to_string()),
                ("ss_network_dim", rank.to_string()),
                ("ss_network_alpha", format!("{:.1}", rank as f64)),
                ("ss_base_model_version", version.to_string()),
                ("ss_v2", if v2 { "True" } else { "False" }.to_string()),
                ("ss_output_name", title.clone()),
                ("modelspec.sai_model_spec", "1.0.0".to_string()),
                ("modelspec.architecture", format!("{arch}/lora")),
                ("modelspec.title", title),
            ] {
                metadata.insert(k.to_string(), v);
            }
        }
    }
    write_safetensors(out, &tensors, &metadata)
}
