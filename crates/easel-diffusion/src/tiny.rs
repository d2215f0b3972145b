//! The random-weight writer every family's tiny models are made with (`easel models
//! make-tiny`, tests, benchmarks): a candle `VarBuilder` backend that creates each tensor a
//! model's loader asks for, drawn with `TorchRng` from a seed (normal with std 0.02, norm
//! weights 1 and norm biases 0) and written as the component's safetensors file beside its
//! `config.json`; plain safetensors and JSON writers; and the CLIP tokenizer files the SD
//! family's tiny models ship (byte-level BPE: the 256 byte symbols, the same with `</w>`,
//! merges learned from a built-in list of common prompt words, `<|startoftext|>`,
//! `<|endoftext|>`). A family's own writer (`<family>/tiny.rs`) builds its configs on these;
//! [`make_tiny`] reaches it through the family table.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use serde_json::{json, Value};

use crate::rng::TorchRng;

/// Write a tiny random-weight model of the family named `family` (an id or alias of the
/// family table) into `dir` (created if needed), drawn from `seed`.
pub fn make_tiny(dir: &Path, family: &str, seed: u64) -> Result<()> {
    let f = crate::family::parse(family).map_err(|e| err(e.to_string()))?;
    (f.make_tiny)(dir, seed)
}

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
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
pub(crate) fn write_component(
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
    crate::loader::save_safetensors(&tensors, &path)
}

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    write_text(
        path,
        &(serde_json::to_string_pretty(value).map_err(|e| err(e.to_string()))? + "\n"),
    )
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
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
pub(crate) struct Vocabulary {
    pub(crate) tokens: Vec<String>,
    merges: Vec<(String, String)>,
}

impl Vocabulary {
    pub(crate) fn build() -> Vocabulary {
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

    pub(crate) fn id(&self, token: &str) -> usize {
        self.tokens
            .iter()
            .position(|t| t == token)
            .expect("special tokens are in the vocabulary")
    }

    /// `vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json` as
    /// diffusers repositories ship them; `pad`: `<|endoftext|>` (CLIP) or `!` (OpenCLIP).
    pub(crate) fn write(&self, dir: &Path, pad: &str) -> Result<()> {
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

/// Write f32 tensors (name → shape, values) and string metadata as a safetensors file.
pub(crate) fn write_safetensors(
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
    crate::loader::replace_file(path, |tmp| {
        std::fs::write(tmp, &bytes).map_err(|e| e.to_string())
    })
}
