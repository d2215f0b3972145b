//! Tiny models with random weights, in exactly the layout real ones ship: a diffusers folder
//! (`model_index.json`, `scheduler/`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, and for
//! SDXL `text_encoder_2/` + `tokenizer_2/`) with real-looking configs, for tests, benchmarks and
//! `easel models make-tiny`. A 64×64 image takes a few milliseconds.
//!
//! Per family, what a released model of that family has, scaled down:
//!
//! - `sd15`: CLIP ViT-L-like text encoder (`quick_gelu`), conv projections, 8 heads per UNet
//!   level, PNDM;
//! - `inpaint`: `sd15` with a 9-channel UNet (`StableDiffusionInpaintPipeline`);
//! - `sd2`: OpenCLIP-like text encoder (`gelu`, pad token `!`), linear projections,
//!   per-level `attention_head_dim`, DDIM with v-prediction;
//! - `sdxl`: two text encoders (the second with `text_projection`, pad `!`), `text_time`
//!   added embedding, a first level without attention, deeper transformers below, Euler,
//!   `force_zeros_for_empty_prompt`.
//!
//! The sizes follow the rules `single_file` uses for what weights do not say (8-wide heads
//! below 64 channels, 8 norm groups below 32), so a tiny model converted with
//! [`write_single_file`] loads back to the same model.
//!
//! The tokenizer is generated too: CLIP's byte-level BPE (the 256 byte symbols, the same with
//! `</w>`, merges learned from a built-in list of common prompt words, `<|startoftext|>`,
//! `<|endoftext|>`). Weights are f32, drawn with `TorchRng` from the seed: normal with std
//! 0.02, norm weights 1 and norm biases 0. The same seed gives the same files.
//!
//! [`make_tiny_lora`] writes a LoRA for such a model (its attention layers, found in the
//! weights files' headers) in the key layout of diffusers, of PEFT or of kohya-ss; the three
//! layouts hold the same numbers for the same seed and rank.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use serde_json::{json, Value};

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::rng::TorchRng;
use crate::unet::{Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};

pub use crate::single_file::write_single_file;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// A model family `make_tiny` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TinyFamily {
    Sd15,
    Sd2,
    Sdxl,
    Inpaint,
}

impl TinyFamily {
    pub const ALL: [TinyFamily; 4] = [
        TinyFamily::Sd15,
        TinyFamily::Sd2,
        TinyFamily::Sdxl,
        TinyFamily::Inpaint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TinyFamily::Sd15 => "sd15",
            TinyFamily::Sd2 => "sd2",
            TinyFamily::Sdxl => "sdxl",
            TinyFamily::Inpaint => "inpaint",
        }
    }

    /// The `easel_core::model::family` name of models of this kind.
    pub fn model_family(self) -> &'static str {
        use easel_core::model::family;
        match self {
            TinyFamily::Sd15 => family::SD15,
            TinyFamily::Sd2 => family::SD2,
            TinyFamily::Sdxl => family::SDXL,
            TinyFamily::Inpaint => family::SD15_INPAINT,
        }
    }
}

impl std::fmt::Display for TinyFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a tiny family.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown model family `{0}` (expected sd15, sd2, sdxl or inpaint)")]
pub struct UnknownFamily(pub String);

impl FromStr for TinyFamily {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        TinyFamily::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFamily(s.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Random weights.

/// A VarBuilder backend that makes every tensor a model asks for: `Init::Const(c)` with
/// c ≠ 0 (norm weights) or a `*bias` with `Const(0)` (norm biases) as asked, anything else
/// normal(0, 0.02) from the generator, in the order the model asks.
struct RandomWeights {
    state: Mutex<(TorchRng, HashMap<String, Tensor>)>,
    /// Whether `text_projection.weight` exists (CLIP loads it only when present).
    projection: bool,
}

struct Shared(Arc<RandomWeights>);

impl SimpleBackend for Shared {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = state.1.get(name) {
            if t.shape() != &s {
                return Err(err(format!(
                    "{name} asked for as {s:?} and as {:?}",
                    t.shape()
                )));
            }
            return t.to_dtype(dtype);
        }
        let t = match h {
            Init::Const(c) if c != 0.0 || name.ends_with("bias") => {
                Tensor::full(c as f32, s, &Device::Cpu)?
            }
            _ => {
                let v: Vec<f32> = state
                    .0
                    .randn_vec(s.elem_count())
                    .into_iter()
                    .map(|x| x * 0.02)
                    .collect();
                Tensor::from_vec(v, s, &Device::Cpu)?
            }
        };
        state.1.insert(name.to_string(), t.clone());
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        Err(err(format!(
            "random weights: `{name}` asked for without a shape"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        name != "text_projection.weight" || self.0.projection
    }
}

/// Build a component on random weights and write `dir/config.json` and `dir/<weights>`.
fn write_component(
    dir: &Path,
    config: &Value,
    weights: &str,
    seed: u64,
    projection: bool,
    build: impl FnOnce(VarBuilder) -> Result<()>,
) -> Result<()> {
    write_json(&dir.join("config.json"), config)?;
    let backend = Arc::new(RandomWeights {
        state: Mutex::new((TorchRng::new(seed), HashMap::new())),
        projection,
    });
    build(VarBuilder::from_backend(
        Box::new(Shared(backend.clone())),
        DType::F32,
        Device::Cpu,
    ))?;
    let tensors = std::mem::take(&mut backend.state.lock().unwrap_or_else(|e| e.into_inner()).1);
    let path = dir.join(weights);
    candle_core::safetensors::save(&tensors, &path)
        .map_err(|e| err(format!("writing {}: {e}", path.display())))
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    write_text(
        path,
        &(serde_json::to_string_pretty(value).map_err(|e| err(e.to_string()))? + "\n"),
    )
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| err(format!("writing {}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// Tokenizer.

/// Words the merges are learned from (lower case ASCII letters).
const WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "and",
    "in",
    "on",
    "with",
    "at",
    "by",
    "for",
    "from",
    "to",
    "under",
    "over",
    "photo",
    "photograph",
    "picture",
    "painting",
    "drawing",
    "illustration",
    "portrait",
    "landscape",
    "render",
    "sketch",
    "art",
    "artwork",
    "style",
    "cat",
    "cats",
    "dog",
    "dogs",
    "bird",
    "horse",
    "fish",
    "lion",
    "tiger",
    "bear",
    "rabbit",
    "fox",
    "wolf",
    "owl",
    "dragon",
    "man",
    "woman",
    "girl",
    "boy",
    "child",
    "people",
    "person",
    "face",
    "eyes",
    "hair",
    "hands",
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "black",
    "white",
    "gray",
    "brown",
    "golden",
    "silver",
    "dark",
    "light",
    "bright",
    "colorful",
    "beautiful",
    "pretty",
    "cute",
    "small",
    "large",
    "big",
    "tiny",
    "old",
    "young",
    "new",
    "ancient",
    "modern",
    "futuristic",
    "city",
    "street",
    "house",
    "castle",
    "tower",
    "bridge",
    "road",
    "forest",
    "tree",
    "trees",
    "flower",
    "flowers",
    "garden",
    "grass",
    "field",
    "mountain",
    "mountains",
    "river",
    "lake",
    "sea",
    "ocean",
    "beach",
    "island",
    "sky",
    "cloud",
    "clouds",
    "sun",
    "sunset",
    "sunrise",
    "moon",
    "star",
    "stars",
    "night",
    "day",
    "morning",
    "evening",
    "rain",
    "snow",
    "winter",
    "summer",
    "spring",
    "autumn",
    "fire",
    "water",
    "stone",
    "wood",
    "glass",
    "metal",
    "gold",
    "detailed",
    "highly",
    "high",
    "quality",
    "resolution",
    "sharp",
    "focus",
    "cinematic",
    "lighting",
    "dramatic",
    "soft",
    "warm",
    "cold",
    "studio",
    "professional",
    "realistic",
    "photorealistic",
    "hyperrealistic",
    "digital",
    "oil",
    "watercolor",
    "pencil",
    "concept",
    "fantasy",
    "science",
    "fiction",
    "trending",
    "masterpiece",
    "best",
    "vibrant",
    "epic",
    "view",
    "background",
    "foreground",
    "wide",
    "angle",
    "close",
    "up",
    "shot",
    "camera",
    "lens",
    "depth",
    "field",
    "blurry",
    "blur",
    "ugly",
    "bad",
    "worst",
    "low",
    "deformed",
    "extra",
    "fingers",
    "text",
    "watermark",
    "signature",
    "sitting",
    "standing",
    "running",
    "flying",
    "walking",
    "holding",
    "wearing",
    "looking",
    "hat",
    "dress",
    "shirt",
    "coat",
    "armor",
    "sword",
    "robot",
    "car",
    "boat",
    "ship",
    "train",
    "space",
    "planet",
    "galaxy",
    "room",
    "window",
    "door",
    "table",
    "chair",
    "book",
    "cup",
    "coffee",
    "food",
    "apple",
    "cake",
    "bread",
    "music",
    "dance",
    "smile",
    "happy",
    "sad",
    "alone",
    "together",
];

/// At most this many merges are learned; the word list needs fewer (about 590) to make every
/// word one token, which gives a vocabulary of about 1100.
const MERGES: usize = 1000;

/// GPT-2's reversible byte → printable character table (as the tokenizer's).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are valid chars");
            next += 1;
            c
        };
    }
    table
}

/// Byte-pair merges learned from `words`: each round merges the most frequent adjacent pair
/// (ties: the smallest pair), as BPE training does.
fn learn_merges(words: &[&str], n: usize) -> Vec<(String, String)> {
    let mut seqs: Vec<Vec<String>> = words
        .iter()
        .map(|w| {
            let mut s: Vec<String> = w.chars().map(String::from).collect();
            if let Some(last) = s.last_mut() {
                last.push_str("</w>");
            }
            s
        })
        .collect();
    let mut merges = Vec::new();
    while merges.len() < n {
        let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for s in &seqs {
            for p in s.windows(2) {
                *counts.entry((&p[0], &p[1])).or_default() += 1;
            }
        }
        // Highest count; among equals the first (smallest) pair.
        let Some(((a, b), _)) = counts
            .into_iter()
            .rev()
            .max_by(|x, y| x.1.cmp(&y.1))
            .map(|((a, b), c)| ((a.to_string(), b.to_string()), c))
        else {
            break;
        };
        let merged = format!("{a}{b}");
        for s in &mut seqs {
            let mut out = Vec::with_capacity(s.len());
            let mut i = 0;
            while i < s.len() {
                if i + 1 < s.len() && s[i] == a && s[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(std::mem::take(&mut s[i]));
                    i += 1;
                }
            }
            *s = out;
        }
        merges.push((a, b));
    }
    merges
}

/// CLIP's vocabulary order: the byte symbols (printable bytes first, as `bytes_to_unicode`
/// lists them), the same with `</w>`, the merged tokens, then the two special tokens.
struct Vocabulary {
    tokens: Vec<String>,
    merges: Vec<(String, String)>,
}

impl Vocabulary {
    fn build() -> Vocabulary {
        let table = bytes_to_unicode();
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let order: Vec<u8> = (0..=255u8)
            .filter(|&b| printable(b))
            .chain((0..=255u8).filter(|&b| !printable(b)))
            .collect();
        let mut tokens: Vec<String> = order
            .iter()
            .map(|&b| table[b as usize].to_string())
            .collect();
        tokens.extend(order.iter().map(|&b| format!("{}</w>", table[b as usize])));
        let merges = learn_merges(WORDS, MERGES);
        let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
        for (a, b) in &merges {
            let m = format!("{a}{b}");
            if seen.insert(m.clone()) {
                tokens.push(m);
            }
        }
        tokens.push("<|startoftext|>".into());
        tokens.push("<|endoftext|>".into());
        Vocabulary { tokens, merges }
    }

    fn id(&self, token: &str) -> usize {
        self.tokens
            .iter()
            .position(|t| t == token)
            .expect("special tokens are in the vocabulary")
    }

    /// `vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json` as
    /// diffusers repositories ship them; `pad`: `<|endoftext|>` (CLIP) or `!` (OpenCLIP).
    fn write(&self, dir: &Path, pad: &str) -> Result<()> {
        let mut vocab = String::from("{");
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                vocab.push_str(", ");
            }
            vocab.push_str(&serde_json::to_string(t).map_err(|e| err(e.to_string()))?);
            vocab.push_str(&format!(": {i}"));
        }
        vocab.push_str("}\n");
        write_text(&dir.join("vocab.json"), &vocab)?;
        let mut merges = String::from("#version: 0.2\n");
        for (a, b) in &self.merges {
            merges.push_str(&format!("{a} {b}\n"));
        }
        write_text(&dir.join("merges.txt"), &merges)?;
        let added = |content: &str| {
            json!({"__type": "AddedToken", "content": content, "lstrip": false,
                   "normalized": true, "rstrip": false, "single_word": false})
        };
        write_json(
            &dir.join("tokenizer_config.json"),
            &json!({
                "add_prefix_space": false,
                "bos_token": added("<|startoftext|>"),
                "clean_up_tokenization_spaces": true,
                "do_lower_case": true,
                "eos_token": added("<|endoftext|>"),
                "errors": "replace",
                "model_max_length": 77,
                "pad_token": pad,
                "tokenizer_class": "CLIPTokenizer",
                "unk_token": added("<|endoftext|>"),
            }),
        )?;
        let plain = |content: &str| {
            json!({"content": content, "lstrip": false, "normalized": true, "rstrip": false,
                   "single_word": false})
        };
        write_json(
            &dir.join("special_tokens_map.json"),
            &json!({
                "bos_token": plain("<|startoftext|>"),
                "eos_token": plain("<|endoftext|>"),
                "pad_token": pad,
                "unk_token": plain("<|endoftext|>"),
            }),
        )
    }
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

fn unet_config(family: TinyFamily, cross: usize, pooled: usize) -> Value {
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
        "in_channels": if family == TinyFamily::Inpaint { 9 } else { 4 },
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
        TinyFamily::Sd15 | TinyFamily::Inpaint => json!({}),
        // SD 2.x: heads per level (64-wide in the real model, 8-wide at this size), linear
        // projections.
        TinyFamily::Sd2 => json!({
            "attention_head_dim": [4, 8],
            "use_linear_projection": true,
        }),
        // SDXL: no attention on the first level, two transformer blocks on the second, the
        // `text_time` embedding of the pooled text and six size/crop numbers.
        TinyFamily::Sdxl => json!({
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

fn vae_config(family: TinyFamily) -> Value {
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
        "scaling_factor": if family == TinyFamily::Sdxl { 0.13025 } else { 0.18215 },
        "shift_factor": null,
        "up_block_types": vec!["UpDecoderBlock2D"; 4],
        "use_post_quant_conv": true,
        "use_quant_conv": true,
    })
}

const DIFFUSERS_VERSION: &str = "0.30.0";

fn model_index(family: TinyFamily, scheduler: &str) -> Value {
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
        TinyFamily::Sdxl => json!({
            "_class_name": "StableDiffusionXLPipeline",
            "force_zeros_for_empty_prompt": true,
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": tok,
        }),
        _ => json!({
            "_class_name": if family == TinyFamily::Inpaint {
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
pub fn make_tiny(dir: &Path, family: TinyFamily, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    // One generator per component, all from the seed.
    let component_seed = |k: u64| seed.wrapping_mul(8).wrapping_add(k);
    let vocab = Vocabulary::build();
    let open_clip = family == TinyFamily::Sd2;
    let text = TextSpec {
        hidden: 32,
        heads: 4,
        layers: 2,
        act: if open_clip { "gelu" } else { "quick_gelu" },
        projection: None,
        pad: if open_clip { "!" } else { "<|endoftext|>" },
    };
    // SDXL's second encoder (OpenCLIP bigG-like).
    let text2 = (family == TinyFamily::Sdxl).then_some(TextSpec {
        hidden: 48,
        heads: 6,
        layers: 2,
        act: "gelu",
        projection: Some(40),
        pad: "!",
    });

    let mut scheduler = crate::single_file::default_scheduler_config(family.model_family());
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

/// Tensor names and shapes from a safetensors file's header (the data is not read).
fn safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    use std::io::Read;
    let bad = |e: &dyn std::fmt::Display| err(format!("reading {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(&e))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(&format!("a header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| bad(&e))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| bad(&e))?;
    let mut out = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape = info["shape"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(&format!("`{name}` has no shape")))?;
        out.insert(name, shape);
    }
    Ok(out)
}

/// Write f32 tensors (name → shape, values) and string metadata as a safetensors file.
fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0usize;
    for (name, (shape, values)) in tensors {
        let end = offset + 4 * values.len();
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_string(&header).map_err(|e| err(e.to_string()))?;
    // The data starts 8-aligned, as the reference writer pads it.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for (_, values) in tensors.values() {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
    }
    std::fs::write(path, bytes).map_err(|e| err(format!("writing {}: {e}", path.display())))
}

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
        for (name, shape) in safetensors_shapes(&weights)? {
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
