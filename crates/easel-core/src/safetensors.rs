//! The safetensors format, checked from its bytes without loading a tensor: what a file
//! uploaded as a model must be before the server keeps it. A safetensors file is an 8-byte
//! little-endian header length, a JSON header (each tensor's `dtype`, `shape` and
//! `data_offsets` into the data that follows, plus an optional `__metadata__` map of
//! strings) and the data. Nothing in it runs code, unlike PyTorch's pickles (`.ckpt`,
//! `.pt`, `.bin`), which are refused, and named as such when a file that is no safetensors
//! file starts as one does.
//!
//! [`check`] proves the header is whole and honest — every tensor's bytes match its dtype
//! and shape, and the tensors tile the data exactly (no gap, no overlap, nothing past the
//! end). [`lora_key`] reads a LoRA tensor's name in each layout the engine merges
//! (`easel_diffusion::lora` uses it), [`check_lora`] proves a file is a LoRA the engine can
//! merge, and [`is_lora`] is the quick look of the models folder's scan.

use crate::error::{Error, Result};

/// The largest header read (the format's own limit: beyond it a file is refused, not
/// parsed).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// Bytes per element of each dtype the format defines.
fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

fn bad(message: impl Into<String>) -> Error {
    Error::invalid("file", message)
}

/// Check that `bytes` are a whole safetensors file; the tensors it holds, by name. Errors
/// are 422 naming `file` and say what is wrong (a file that starts as a PyTorch pickle or
/// zip does is named as one).
pub fn check(bytes: &[u8]) -> Result<Vec<TensorInfo>> {
    parse(bytes).map_err(|e| {
        if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
            bad(
                "a PyTorch pickle (.ckpt, .pt, .bin): only .safetensors files are accepted, \
                 since loading a pickle can run code",
            )
        } else {
            e
        }
    })
}

fn parse(bytes: &[u8]) -> Result<Vec<TensorInfo>> {
    if bytes.len() < 8 {
        return Err(bad(
            "not a safetensors file: shorter than its header length",
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES || n > (bytes.len() - 8) as u64 {
        return Err(bad(format!(
            "not a safetensors file: a header of {n} bytes in a file of {}",
            bytes.len()
        )));
    }
    let header_end = 8 + n as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).map_err(|e| {
            bad(format!(
                "not a safetensors file: its header is not a JSON object ({e})"
            ))
        })?;
    let data_len = (bytes.len() - header_end) as u64;
    let mut tensors = Vec::new();
    let mut spans = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            let strings = v
                .as_object()
                .is_some_and(|m| m.values().all(serde_json::Value::is_string));
            if !strings {
                return Err(bad("`__metadata__` must map names to strings"));
            }
            continue;
        }
        let what = |m: &str| bad(format!("tensor `{name}`: {m}"));
        let dtype = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| what("no `dtype`"))?;
        let size = dtype_bytes(dtype).ok_or_else(|| what(&format!("unknown dtype `{dtype}`")))?;
        let shape: Vec<u64> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(serde_json::Value::as_u64).collect())
            .ok_or_else(|| what("`shape` must be a list of sizes"))?;
        let offsets: Vec<u64> = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(serde_json::Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| what("`data_offsets` must be [begin, end]"))?;
        let expected = shape
            .iter()
            .try_fold(size, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| what("its shape overflows"))?;
        let (begin, end) = (offsets[0], offsets[1]);
        if end < begin || end - begin != expected {
            return Err(what(&format!(
                "its data ({} bytes) does not match its dtype and shape ({expected} bytes)",
                end.saturating_sub(begin)
            )));
        }
        if end > data_len {
            return Err(what("its data lies past the end of the file"));
        }
        spans.push((begin, end));
        tensors.push(TensorInfo {
            name,
            dtype: dtype.to_string(),
            shape,
        });
    }
    spans.sort_unstable();
    let mut at = 0;
    for (begin, end) in spans {
        if begin != at {
            return Err(bad(
                "not a safetensors file: its tensors overlap or leave gaps in the data",
            ));
        }
        at = end;
    }
    if at != data_len {
        return Err(bad(format!(
            "not a safetensors file: {} bytes after the last tensor",
            data_len - at
        )));
    }
    Ok(tensors)
}

/// What a LoRA tensor is, by its name: the component it adapts (`unet`, `text_encoder`,
/// `text_encoder_2`, or a diffusers prefix), the module (dotted, or underscored in kohya's
/// layout) and its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraKey {
    pub component: String,
    pub module: String,
    pub part: LoraPart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraPart {
    Down,
    Up,
    Alpha,
}

/// The components whose LoRA weights the engine merges.
pub const LORA_COMPONENTS: &[&str] = &["unet", "text_encoder", "text_encoder_2"];

/// Read a LoRA tensor's name in the three layouts: diffusers (`unet.<module>.lora.down.
/// weight`, legacy `.lora_linear_layer.`), PEFT (`.lora_A.weight`/`.lora_B.weight`) and
/// kohya-ss (`lora_unet_<module>.lora_down.weight`, `lora_te_`/`lora_te1_`/`lora_te2_`,
/// `.alpha`). `None`: not a LoRA tensor.
pub fn lora_key(key: &str) -> Option<LoraKey> {
    let (comp, rest) = if let Some(r) = key.strip_prefix("lora_unet_") {
        ("unet", r)
    } else if let Some(r) = key.strip_prefix("lora_te2_") {
        ("text_encoder_2", r)
    } else if let Some(r) = key
        .strip_prefix("lora_te1_")
        .or_else(|| key.strip_prefix("lora_te_"))
    {
        ("text_encoder", r)
    } else {
        key.split_once('.')?
    };
    for (suffix, part) in [
        (".lora.down.weight", LoraPart::Down),
        (".lora.up.weight", LoraPart::Up),
        (".lora_linear_layer.down.weight", LoraPart::Down),
        (".lora_linear_layer.up.weight", LoraPart::Up),
        (".lora_A.weight", LoraPart::Down),
        (".lora_B.weight", LoraPart::Up),
        (".lora_down.weight", LoraPart::Down),
        (".lora_up.weight", LoraPart::Up),
        (".alpha", LoraPart::Alpha),
    ] {
        if let Some(module) = rest.strip_suffix(suffix) {
            return Some(LoraKey {
                component: comp.to_string(),
                module: module.to_string(),
                part,
            });
        }
    }
    None
}

/// The dtypes a LoRA's tensors may have (those the engine reads as floats).
const LORA_DTYPES: &[&str] = &["F16", "BF16", "F32", "F64"];

/// The dtypes the engine's loader reads at all (any tensor of a LoRA file is loaded).
const LOADED_DTYPES: &[&str] = &["U8", "U32", "I64", "F16", "BF16", "F32", "F64"];

/// Check that the tensors of a (whole) file are a LoRA the engine can merge: at least one
/// module of an engine component with both its down and up weights, each pair of the same
/// rank (1 or more: down `[rank, …]`, up `[out, rank, …]`), every alpha one number, every
/// LoRA tensor a float. Returns how many modules it adapts. Errors name `file`.
pub fn check_lora(tensors: &[TensorInfo]) -> Result<usize> {
    use std::collections::BTreeMap;
    let mut modules: BTreeMap<(String, String), [Option<&TensorInfo>; 3]> = BTreeMap::new();
    for t in tensors {
        if !LOADED_DTYPES.contains(&t.dtype.as_str()) {
            return Err(bad(format!(
                "tensor `{}`: the engine does not read {} tensors",
                t.name, t.dtype
            )));
        }
        let Some(k) = lora_key(&t.name) else {
            continue;
        };
        if !LORA_DTYPES.contains(&t.dtype.as_str()) {
            return Err(bad(format!(
                "tensor `{}`: a LoRA's weights are F16, BF16, F32 or F64, not {}",
                t.name, t.dtype
            )));
        }
        let slot = match k.part {
            LoraPart::Down => 0,
            LoraPart::Up => 1,
            LoraPart::Alpha => 2,
        };
        modules.entry((k.component, k.module)).or_default()[slot] = Some(t);
    }
    let mut merged = 0;
    for ((component, _), [down, up, alpha]) in &modules {
        if let Some(a) = alpha {
            if a.shape.iter().product::<u64>() != 1 {
                return Err(bad(format!("tensor `{}`: an alpha is one number", a.name)));
            }
        }
        let (Some(down), Some(up)) = (down, up) else {
            continue;
        };
        let rank = down.shape.first().copied().unwrap_or(0);
        if down.shape.len() < 2 || up.shape.len() < 2 || rank == 0 || up.shape[1] != rank {
            return Err(bad(format!(
                "tensors `{}` and `{}` do not pair: down is [rank, …] and up [out, rank, …] \
                 with the same rank, at least 1 ({:?} and {:?})",
                down.name, up.name, down.shape, up.shape
            )));
        }
        if LORA_COMPONENTS.contains(&component.as_str()) {
            merged += 1;
        }
    }
    if merged == 0 {
        return Err(bad(format!(
            "the file holds no LoRA weights the engine merges: no down and up pair for {} \
             in the diffusers, PEFT or kohya layout",
            LORA_COMPONENTS.join(", ")
        )));
    }
    Ok(merged)
}

/// Whether a file with these tensor names is a LoRA adapter: any name is a LoRA tensor's
/// ([`lora_key`]).
pub fn is_lora<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    names.any(|n| lora_key(n).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `tensors` (name, dtype, shape), each filled with zeros, in order.
    fn file(tensors: &[(&str, &str, &[u64])]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        for (name, dtype, shape) in tensors {
            let n = shape.iter().product::<u64>() * dtype_bytes(dtype).unwrap();
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
            );
            offset += n;
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend(h);
        bytes.extend(vec![0u8; offset as usize]);
        bytes
    }

    fn message(bytes: &[u8]) -> String {
        let e = check(bytes).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("file"));
        e.message
    }

    #[test]
    fn whole_files_pass_and_list_their_tensors() {
        let f = file(&[
            ("lora_unet_x.lora_down.weight", "F16", &[4, 8]),
            ("lora_unet_x.lora_up.weight", "F32", &[8, 4]),
            ("lora_unet_x.alpha", "F32", &[]),
        ]);
        let t = check(&f).unwrap();
        assert_eq!(t.len(), 3);
        assert!(is_lora(t.iter().map(|t| t.name.as_str())));
        let plain = file(&[("model.diffusion_model.out.2.weight", "F16", &[4])]);
        let t = check(&plain).unwrap();
        assert!(!is_lora(t.iter().map(|t| t.name.as_str())));
        // With metadata, and an empty file of no tensors.
        let mut header = br#"{"__metadata__":{"format":"pt"}}"#.to_vec();
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.append(&mut header);
        assert!(check(&f).unwrap().is_empty());
    }

    #[test]
    fn pickles_and_damaged_files_are_refused_saying_why() {
        assert!(message(b"PK\x03\x04rest").contains("pickle"));
        assert!(message(&[0x80, 2, 0x7d, 0x71]).contains("pickle"));
        assert!(message(b"abc").contains("shorter"));
        // A header longer than the file.
        let mut f = file(&[("a", "F32", &[2])]);
        let len = f.len() as u64;
        f[..8].copy_from_slice(&len.to_le_bytes());
        assert!(message(&f).contains("header of"));
        // Not JSON.
        let mut f = 4u64.to_le_bytes().to_vec();
        f.extend(b"nope");
        assert!(message(&f).contains("JSON"));
        // Data cut short, and bytes left over.
        let f = file(&[("a", "F32", &[2])]);
        assert!(message(&f[..f.len() - 1]).contains("past the end"));
        let mut long = f.clone();
        long.push(0);
        assert!(message(&long).contains("after the last tensor"));
        // A shape its bytes do not match; an unknown dtype.
        let f = String::from_utf8_lossy(&file(&[("a", "F32", &[2])])).replace("[2]", "[3]");
        assert!(message(f.as_bytes()).contains("does not match"));
        let f = String::from_utf8_lossy(&file(&[("a", "F32", &[2])])).replace("F32", "F99");
        assert!(message(f.as_bytes()).contains("unknown dtype"));
        // Two tensors over the same bytes.
        let f = file(&[("a", "F32", &[2]), ("b", "F32", &[2])]);
        let f = String::from_utf8_lossy(&f).replace("[8,16]", "[0,8] ");
        assert!(message(f.as_bytes()).contains("overlap"));
    }

    #[test]
    fn a_header_length_that_starts_like_a_pickle_is_still_a_file() {
        // Pad the header (JSON allows spaces) until its length is 128 mod 256: the file's
        // first byte is then 0x80, as a pickle's.
        let f = file(&[("a", "F32", &[2])]);
        let n = u64::from_le_bytes(f[..8].try_into().unwrap()) as usize;
        let pad = (128 + 256 - n % 256) % 256;
        let mut header = f[8..8 + n].to_vec();
        header.extend(std::iter::repeat_n(b' ', pad));
        let mut g = ((n + pad) as u64).to_le_bytes().to_vec();
        g.extend(header);
        g.extend(&f[8 + n..]);
        assert_eq!(g[0], 0x80);
        assert_eq!(check(&g).unwrap().len(), 1);
    }

    #[test]
    fn loras_the_engine_merges_and_files_it_would_not() {
        let ok = |t: &[(&str, &str, &[u64])]| check_lora(&check(&file(t)).unwrap());
        let m = "lora_unet_down_blocks_0_attentions_0_proj_in";
        let down = format!("{m}.lora_down.weight");
        let up = format!("{m}.lora_up.weight");
        let alpha = format!("{m}.alpha");
        assert_eq!(
            ok(&[
                (&down, "F16", &[4, 8]),
                (&up, "F16", &[8, 4]),
                (&alpha, "F32", &[])
            ])
            .unwrap(),
            1
        );
        // A convolution's pair.
        assert_eq!(
            ok(&[(&down, "F32", &[4, 8, 3, 3]), (&up, "F32", &[8, 4, 1, 1])]).unwrap(),
            1
        );
        for (t, says) in [
            (
                vec![(down.as_str(), "F16", &[4u64, 8][..])],
                "no LoRA weights",
            ),
            (vec![(alpha.as_str(), "F32", &[][..])], "no LoRA weights"),
            (
                vec![
                    ("transformer.x.lora_A.weight", "F16", &[4, 8][..]),
                    ("transformer.x.lora_B.weight", "F16", &[8, 4][..]),
                ],
                "no LoRA weights",
            ),
            (
                vec![
                    (down.as_str(), "F16", &[4, 8][..]),
                    (up.as_str(), "F16", &[8, 3][..]),
                ],
                "do not pair",
            ),
            (
                vec![
                    (down.as_str(), "F16", &[0, 8][..]),
                    (up.as_str(), "F16", &[8, 0][..]),
                ],
                "do not pair",
            ),
            (
                vec![
                    (down.as_str(), "F16", &[4, 8][..]),
                    (up.as_str(), "F16", &[8, 4][..]),
                    (alpha.as_str(), "F32", &[0][..]),
                ],
                "one number",
            ),
            (
                vec![
                    (down.as_str(), "U8", &[4, 8][..]),
                    (up.as_str(), "F16", &[8, 4][..]),
                ],
                "not U8",
            ),
            (
                vec![
                    (down.as_str(), "F16", &[4, 8][..]),
                    (up.as_str(), "F16", &[8, 4][..]),
                    ("extra", "BOOL", &[2][..]),
                ],
                "does not read BOOL",
            ),
        ] {
            let e = ok(&t).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("file"));
            assert!(e.message.contains(says), "{t:?}: {}", e.message);
        }
    }

    #[test]
    fn lora_keys_in_every_layout() {
        let m = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
        let key = |c: &str, module: &str, part| {
            Some(LoraKey {
                component: c.into(),
                module: module.into(),
                part,
            })
        };
        assert_eq!(
            lora_key(&format!("unet.{m}.lora.down.weight")),
            key("unet", m, LoraPart::Down)
        );
        assert_eq!(
            lora_key(&format!("unet.{m}.lora_B.weight")),
            key("unet", m, LoraPart::Up)
        );
        let k = m.replace('.', "_");
        assert_eq!(
            lora_key(&format!("lora_unet_{k}.alpha")),
            key("unet", &k, LoraPart::Alpha)
        );
        assert_eq!(
            lora_key("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight")
                .unwrap()
                .component,
            "text_encoder"
        );
        assert_eq!(lora_key("unet.conv_in.weight"), None);
        for k in [
            "lora_unet_down_blocks_0.lora_down.weight",
            "lora_te1_text_model.lora_up.weight",
            "unet.down_blocks.0.to_q.lora_A.weight",
            "unet.down_blocks.0.to_q.lora.down.weight",
            "text_encoder.x.lora_B.weight",
        ] {
            assert!(lora_key(k).is_some(), "{k}");
        }
        for k in ["model.diffusion_model.out.2.weight", "first_stage_model.x"] {
            assert!(lora_key(k).is_none(), "{k}");
        }
    }
}
