//! Reading a diffusers or transformers component folder: its `config.json`, and its weights
//! (one `.safetensors` file or the shards its index lists; the default name, else the `fp16`,
//! else the `bf16` variant), read straight into memory in parallel, optionally with LoRA
//! deltas merged in. Every family's loaders find and read their weights here.

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

/// Weights of one component, read into memory (see [`read_tensors`]), with each LoRA's
/// `W + scale * delta` merged into the tensors it targets. `component` names the model part
/// in LoRA files (`unet`, `text_encoder`, `text_encoder_2`).
pub fn var_builder(
    weights: &[PathBuf],
    component: &str,
    loras: &[(&Lora, f64)],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let mut tensors = read_tensors(weights, dtype, device)?;
    merge_loras(&mut tensors, component, loras, device)?;
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

/// One tensor's entry in a safetensors header.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    len: usize,
}

/// A safetensors header: its JSON object (tensor name → `dtype`, `shape`, `data_offsets`,
/// plus `__metadata__`) and its length in bytes. Refuses headers over 100 MB.
pub fn header_json(
    path: &Path,
    file: &std::fs::File,
) -> Result<(serde_json::Map<String, serde_json::Value>, u64)> {
    use std::os::unix::fs::FileExt;
    let bad = |e: &dyn std::fmt::Display| err(format!("reading {}: {e}", path.display()));
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0).map_err(|e| bad(&e))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(&format!("a header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact_at(&mut header, 8).map_err(|e| bad(&e))?;
    let header = serde_json::from_slice(&header).map_err(|e| bad(&e))?;
    Ok((header, len))
}

/// A tensor's shape from its header entry.
pub fn entry_shape(name: &str, info: &serde_json::Value) -> Result<Vec<usize>> {
    info["shape"]
        .as_array()
        .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or_else(|| err(format!("`{name}` has no shape")))
}

fn header_entries(path: &Path, file: &std::fs::File) -> Result<Vec<Entry>> {
    let bad = |e: &dyn std::fmt::Display| err(format!("reading {}: {e}", path.display()));
    let (header, len) = header_json(path, file)?;
    let size = file.metadata().map_err(|e| bad(&e))?.len();
    let mut out = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info["dtype"].as_str() {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some("I64") => DType::I64,
            Some("I32") => DType::I32,
            Some("U32") => DType::U32,
            Some("U8") => DType::U8,
            other => return Err(bad(&format!("`{name}` has dtype {other:?}"))),
        };
        let shape = entry_shape(&name, &info).map_err(|e| bad(&e))?;
        let offsets = info["data_offsets"]
            .as_array()
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
            .filter(|o| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| bad(&format!("`{name}` has no data_offsets")))?;
        let (start, end) = (8 + len + offsets[0], 8 + len + offsets[1]);
        let elems: usize = shape.iter().product();
        if end > size || (end - start) as usize != elems * dtype.size_in_bytes() {
            return Err(bad(&format!("`{name}`'s bytes do not match its shape")));
        }
        out.push(Entry {
            name,
            dtype,
            shape,
            start,
            len: (end - start) as usize,
        });
    }
    Ok(out)
}

/// Read `len` bytes at `start` straight into a fresh `Vec<T>` (no intermediate buffer).
fn read_as<T: candle_core::WithDType>(file: &std::fs::File, e: &Entry) -> std::io::Result<Vec<T>> {
    use std::os::unix::fs::FileExt;
    let n = e.len / std::mem::size_of::<T>();
    let mut v: Vec<T> = vec![T::from_f64(0.0); n];
    huge_pages(v.as_mut_ptr() as *mut u8, e.len);
    // SAFETY: `T` is a plain numeric type (f32, f16, bf16, ...) for which every bit pattern is
    // a value; the byte view covers exactly the vector's initialised elements.
    let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, e.len) };
    file.read_exact_at(bytes, e.start)?;
    Ok(v)
}

/// Ask Linux to back a large fresh buffer with transparent huge pages (where the system
/// allows them on request): one page fault per 2 MB instead of per 4 KB while it is filled.
fn huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: advice only, on whole pages inside this allocation.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Every tensor of the safetensors `files`, read in parallel straight into its final buffer
/// (floating-point tensors as `dtype`, others as stored), then moved to `device`.
///
/// No memory map outlives the call and no tensor is held twice: the weights count once in
/// the process's memory, and loading is as fast as the page cache and the cores allow.
pub fn read_tensors(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    read_tensors_where(files, dtype, device, &|_| true)
}

/// [`read_tensors`], of the tensors whose name `keep` accepts (the others are never read).
pub fn read_tensors_where(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<HashMap<String, Tensor>> {
    use rayon::prelude::*;
    let mut work = Vec::new();
    for path in files {
        let file = std::fs::File::open(path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        let file = std::sync::Arc::new(file);
        for e in header_entries(path, &file)? {
            if keep(&e.name) {
                work.push((path.clone(), file.clone(), e));
            }
        }
    }
    // Largest first, so the threads finish together.
    work.sort_by_key(|w| std::cmp::Reverse(w.2.len));
    let read = |(path, file, e): &(PathBuf, std::sync::Arc<std::fs::File>, Entry)| {
        let io = |x: std::io::Error| err(format!("reading {}: {x}", path.display()));
        let float = e.dtype.is_float();
        let cpu = &Device::Cpu;
        let t = match (e.dtype, float && e.dtype != dtype) {
            (DType::F32, false) => Tensor::from_vec(
                read_as::<f32>(file, e).map_err(io)?,
                e.shape.as_slice(),
                cpu,
            )?,
            (DType::F16, false) => Tensor::from_vec(
                read_as::<half::f16>(file, e).map_err(io)?,
                e.shape.as_slice(),
                cpu,
            )?,
            (DType::BF16, false) => Tensor::from_vec(
                read_as::<half::bf16>(file, e).map_err(io)?,
                e.shape.as_slice(),
                cpu,
            )?,
            (_, convert) => {
                let raw = read_as::<u8>(file, e).map_err(io)?;
                let t = Tensor::from_raw_buffer(&raw, e.dtype, &e.shape, cpu)?;
                if convert {
                    t.to_dtype(dtype)?
                } else {
                    t
                }
            }
        };
        Ok((e.name.clone(), t.to_device(device)?))
    };
    work.par_iter().map(read).collect()
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
