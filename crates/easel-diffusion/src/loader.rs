//! Reading a diffusers or transformers component folder: its `config.json`, and its weights
//! (one `.safetensors` file or the shards its index lists; the default name, else the `fp16`,
//! else the `bf16` variant), memory-mapped, optionally with LoRA deltas merged in. Every
//! family's loaders find their weights here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use crate::lora::Lora;

fn err(msg: String) -> candle_core::Error {
    candle_core::Error::Msg(msg)
}

/// Parse a JSON config file, naming the file in errors.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// The first of `stem.safetensors`, `stem.fp16.safetensors` present in `dir`: for the
/// writers that read one whole file (single-file export, tiny LoRAs); loaders use
/// [`weight_files`].
pub fn find_weights(dir: &Path, stem: &str) -> Result<PathBuf> {
    [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ]
    .iter()
    .map(|f| dir.join(f))
    .find(|p| p.exists())
    .ok_or_else(|| {
        err(format!(
            "no {stem}.safetensors (or .fp16 variant) in {}",
            dir.display()
        ))
    })
}

/// The weights files of a component folder. For each variant in turn (none, `fp16`,
/// `bf16`): the single `stem[.variant].safetensors`, else the shards that
/// `stem.safetensors.index[.variant].json` lists in its `weight_map` (as `easel models pull`
/// saves them).
pub fn weight_files(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    for variant in ["", ".fp16", ".bf16"] {
        let single = dir.join(format!("{stem}{variant}.safetensors"));
        if single.is_file() {
            return Ok(vec![single]);
        }
        let index = dir.join(format!("{stem}.safetensors.index{variant}.json"));
        if !index.is_file() {
            continue;
        }
        let v: serde_json::Value = read_config(&index)?;
        let map = v["weight_map"]
            .as_object()
            .ok_or_else(|| err(format!("{}: no weight_map", index.display())))?;
        let mut files = Vec::new();
        for f in map.values() {
            let name = f
                .as_str()
                .filter(|n| !n.is_empty() && !n.contains('/') && !n.contains('\\') && *n != "..")
                .ok_or_else(|| err(format!("{}: a shard is not a file name", index.display())))?;
            files.push(dir.join(name));
        }
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(err(format!(
        "no {stem}.safetensors or {stem}.safetensors.index.json (or fp16/bf16 variant) in {}",
        dir.display()
    )))
}

/// Weights of one component. Without LoRAs they are memory-mapped (no copy); with LoRAs the
/// targeted tensors get `W + scale * delta` and the result lives in memory.
/// `component` names the model part in LoRA files (`unet`, `text_encoder`, `text_encoder_2`).
pub fn var_builder(
    weights: &[PathBuf],
    component: &str,
    loras: &[(&Lora, f64)],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    if loras.is_empty() {
        // SAFETY: mapped read-only; the file is not modified while the model lives.
        return unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, device) };
    }
    // SAFETY: as above; tensors are copied out before the map is dropped.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights)? };
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, _) in st.tensors() {
        let t = st.load(&name, device)?;
        tensors.insert(name, t);
    }
    merge_loras(&mut tensors, component, loras, device)?;
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

/// Add each LoRA's `scale * delta` to the tensors it targets.
pub fn merge_loras(
    tensors: &mut HashMap<String, Tensor>,
    component: &str,
    loras: &[(&Lora, f64)],
    device: &Device,
) -> Result<()> {
    for (lora, scale) in loras {
        let names: Vec<String> = tensors.keys().cloned().collect();
        for (key, delta) in lora.deltas(component, &names, device)? {
            let w = &tensors[&key];
            let merged = (w.to_dtype(DType::F32)? + (delta.reshape(w.shape())? * *scale)?)?
                .to_dtype(w.dtype())?;
            tensors.insert(key, merged);
        }
    }
    Ok(())
}

#[cfg(test)]
mod weight_file_tests {
    use super::*;

    #[test]
    fn single_files_then_shards_by_variant() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let touch = |n: &str, body: &str| std::fs::write(d.join(n), body).unwrap();
        assert!(weight_files(d, "model").is_err());
        touch(
            "model.safetensors.index.bf16.json",
            r#"{"weight_map": {"a": "model.bf16-00002-of-00002.safetensors",
                "b": "model.bf16-00001-of-00002.safetensors", "c": "model.bf16-00001-of-00002.safetensors"}}"#,
        );
        assert_eq!(
            weight_files(d, "model").unwrap(),
            vec![
                d.join("model.bf16-00001-of-00002.safetensors"),
                d.join("model.bf16-00002-of-00002.safetensors")
            ]
        );
        touch("model.fp16.safetensors", "");
        assert_eq!(
            weight_files(d, "model").unwrap(),
            vec![d.join("model.fp16.safetensors")]
        );
        touch(
            "model.safetensors.index.json",
            r#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#,
        );
        let e = weight_files(d, "model").unwrap_err().to_string();
        assert!(e.contains("not a file name"), "{e}");
        touch("model.safetensors", "");
        assert_eq!(
            weight_files(d, "model").unwrap(),
            vec![d.join("model.safetensors")]
        );
    }
}
