//! Reading a diffusers component folder: its `config.json`, and its weights file (the fp32
//! name or the `.fp16` variant), memory-mapped, optionally with LoRA deltas merged in.

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

/// The first of `stem.safetensors`, `stem.fp16.safetensors` present in `dir`.
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

/// Weights of one component. Without LoRAs they are memory-mapped (no copy); with LoRAs the
/// targeted tensors get `W + scale * delta` and the result lives in memory.
/// `component` names the model part in LoRA files (`unet`, `text_encoder`, `text_encoder_2`).
pub fn var_builder(
    weights: &Path,
    component: &str,
    loras: &[(&Lora, f64)],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    if loras.is_empty() {
        // SAFETY: mapped read-only; the file is not modified while the model lives.
        return unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device) };
    }
    // SAFETY: as above; tensors are copied out before the map is dropped.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(weights)? };
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
