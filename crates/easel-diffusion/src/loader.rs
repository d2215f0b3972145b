//! Reading a diffusers or transformers component folder: its `config.json`, and its weights
//! (one `.safetensors` file or the shards its index lists; the default name, else the `fp16`,
//! else the `bf16` variant), mapped where the process allows it (`memory::map_file`) or read
//! straight into memory in parallel, optionally with LoRA deltas merged in. Every family's loaders find and read their weights here.

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
    // No two tensors may share bytes (a mapped file hands each tensor its bytes as its own).
    let mut ranges: Vec<(u64, u64, &str)> = out
        .iter()
        .filter(|e| e.len > 0)
        .map(|e| (e.start, e.start + e.len as u64, e.name.as_str()))
        .collect();
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(bad(&format!("`{}` and `{}` share bytes", w[0].2, w[1].2)));
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
/// Where the process maps weights ([`crate::memory::map_file`]), the tensors kept as stored
/// are views of the mapped files, with no copy; the others are read, and without mapping all
/// are. Either way no tensor is held twice: the weights count once in the process's memory.
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
    use std::sync::Arc;
    let mut work = Vec::new();
    for path in files {
        let io = |e: std::io::Error| err(format!("reading {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let entries = header_entries(path, &file)?;
        let size = file.metadata().map_err(io)?.len();
        let map = crate::memory::map_file(&file, size).map(Arc::new);
        let file = Arc::new(file);
        for e in entries {
            if keep(&e.name) {
                work.push((path.clone(), file.clone(), map.clone(), e));
            }
        }
    }
    // Largest first, so the threads finish together.
    work.sort_by_key(|w| std::cmp::Reverse(w.3.len));
    type Work = (
        PathBuf,
        Arc<std::fs::File>,
        Option<Arc<crate::memory::Mapped>>,
        Entry,
    );
    let read = |(path, file, map, e): &Work| {
        let io = |x: std::io::Error| err(format!("reading {}: {x}", path.display()));
        let float = e.dtype.is_float();
        let cpu = &Device::Cpu;
        if let Some(t) = map.as_deref().and_then(|m| mapped_tensor(m, e, dtype)) {
            return Ok((e.name.clone(), t?.to_device(device)?));
        }
        if let Some(t) = read_converted(file, e, dtype) {
            return Ok((e.name.clone(), t.map_err(io)?.to_device(device)?));
        }
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

/// `e` read and converted to `dtype` in one vectorised pass (`half`'s slice conversions, which
/// use F16C or AVX-512 where the CPU has them) when it converts between f32 and f16 or bf16
/// (an fp16 folder loaded at f32, an f32 one at a GPU's f16); `None` for the rest, which
/// candle converts. Rounds as candle's `to_dtype` does (to nearest, ties to even).
fn read_converted(
    file: &std::fs::File,
    e: &Entry,
    dtype: DType,
) -> Option<std::io::Result<Tensor>> {
    use half::slice::HalfFloatSliceExt;
    use half::{bf16, f16};
    let tensor = |r: std::io::Result<Result<Tensor>>| {
        r.and_then(|t| t.map_err(|x| std::io::Error::other(x.to_string())))
    };
    let shape = e.shape.as_slice();
    let cpu = &Device::Cpu;
    let widen = |h: &dyn Fn(&mut [f32])| {
        let mut v = vec![0f32; e.len / e.dtype.size_in_bytes()];
        h(&mut v);
        Tensor::from_vec(v, shape, cpu)
    };
    Some(tensor(match (e.dtype, dtype) {
        (DType::F16, DType::F32) => {
            read_as::<f16>(file, e).map(|h| widen(&|v: &mut [f32]| h.convert_to_f32_slice(v)))
        }
        (DType::BF16, DType::F32) => {
            read_as::<bf16>(file, e).map(|h| widen(&|v: &mut [f32]| h.convert_to_f32_slice(v)))
        }
        (DType::F32, DType::F16) => read_as::<f32>(file, e).map(|f| {
            let mut v = vec![f16::ZERO; f.len()];
            v.convert_from_f32_slice(&f);
            Tensor::from_vec(v, shape, cpu)
        }),
        (DType::F32, DType::BF16) => read_as::<f32>(file, e).map(|f| {
            let mut v = vec![bf16::ZERO; f.len()];
            v.convert_from_f32_slice(&f);
            Tensor::from_vec(v, shape, cpu)
        }),
        _ => return None,
    }))
}

/// The tensor of `e` over the mapped file's bytes, no copy, when it is kept as stored (its
/// type is `dtype`, or not floating point) and aligned; else `None` (the caller reads it).
fn mapped_tensor(map: &crate::memory::Mapped, e: &Entry, dtype: DType) -> Option<Result<Tensor>> {
    if e.dtype.is_float() && e.dtype != dtype {
        return None;
    }
    let (at, n) = (e.start as usize, e.len / e.dtype.size_in_bytes());
    let shape = e.shape.as_slice();
    let cpu = &Device::Cpu;
    // SAFETY (each): the tensors of one file never share bytes (`header_entries` refuses
    // such files), and each entry is taken once.
    Some(match e.dtype {
        DType::F32 => Tensor::from_vec(unsafe { map.vec::<f32>(at, n) }?, shape, cpu),
        DType::F16 => Tensor::from_vec(unsafe { map.vec::<half::f16>(at, n) }?, shape, cpu),
        DType::BF16 => Tensor::from_vec(unsafe { map.vec::<half::bf16>(at, n) }?, shape, cpu),
        _ => return None,
    })
}

/// Write `tensors` as a safetensors file at `path`: into a sibling temporary file, then
/// renamed over `path`, so a process that has the old file mapped keeps reading the old
/// file, never a half-written one.
pub fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    replace_file(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(|e| e.to_string())
    })
}

/// Write a file by `write`ing a sibling temporary file and renaming it over `path`.
pub fn replace_file(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| err(format!("writing {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // A unique sibling (removed on failure), synced before it replaces `path`.
    let tmp = tempfile::Builder::new()
        .prefix(".easel-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| fail(&e))?;
    write(tmp.path()).map_err(|e| fail(&e))?;
    // Readable as a file written in place would be (the temporary file starts private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| fail(&e))?;
    }
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

/// Add each LoRA's `scale * delta` to the tensors it targets.
pub fn merge_loras(
    tensors: &mut HashMap<String, Tensor>,
    component: &str,
    loras: &[(&Lora, f64)],
    device: &Device,
) -> Result<()> {
    for (lora, scale) in loras {
        for (key, delta) in lora.deltas(component, tensors, device)? {
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

#[cfg(test)]
mod read_tests {
    use super::*;

    fn storage_ptr(t: &Tensor) -> *const u8 {
        let (s, _) = t.storage_and_layout();
        match &*s {
            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v.as_ptr() as _,
            candle_core::Storage::Cpu(candle_core::CpuStorage::F16(v)) => v.as_ptr() as _,
            _ => panic!("a CPU f32 or f16 tensor"),
        }
    }

    #[test]
    fn tensors_kept_as_stored_are_views_of_the_mapped_file() {
        // This crate's unit tests install the mapping allocator (lib.rs).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let cpu = Device::Cpu;
        let big = Tensor::arange(0f32, 5000., &cpu)
            .unwrap()
            .reshape((50, 100))
            .unwrap();
        let half = Tensor::arange(0f32, 7., &cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let ids = Tensor::arange(0i64, 3, &cpu).unwrap();
        candle_core::safetensors::save(
            &HashMap::from([
                ("big".to_string(), big.clone()),
                ("half".to_string(), half.clone()),
                ("ids".to_string(), ids.clone()),
            ]),
            &path,
        )
        .unwrap();
        let files = [path];
        let t = read_tensors(&files, DType::F32, &cpu).unwrap();
        assert!(crate::memory::is_mapped(storage_ptr(&t["big"])));
        assert_eq!(
            t["big"].to_vec2::<f32>().unwrap(),
            big.to_vec2::<f32>().unwrap()
        );
        // Converted on the way in: a buffer of its own, with the values.
        assert_eq!(t["half"].dtype(), DType::F32);
        assert!(!crate::memory::is_mapped(storage_ptr(&t["half"])));
        assert_eq!(t["half"].to_vec1::<f32>().unwrap()[6], 6.0);
        assert_eq!(t["ids"].to_vec1::<i64>().unwrap(), vec![0, 1, 2]);
        // Kept as f16: a view too.
        let t16 = read_tensors(&files, DType::F16, &cpu).unwrap();
        assert!(crate::memory::is_mapped(storage_ptr(&t16["half"])));
        assert_eq!(
            t16["half"].to_vec1::<half::f16>().unwrap(),
            half.to_vec1::<half::f16>().unwrap()
        );
        // Arithmetic on views gives ordinary tensors; dropping the views releases the file.
        let twice = (&t["big"] + &t["big"]).unwrap();
        assert!(!crate::memory::is_mapped(storage_ptr(&twice)));
        assert_eq!(
            twice.to_vec2::<f32>().unwrap(),
            (&big * 2.).unwrap().to_vec2::<f32>().unwrap()
        );
        drop((t, t16));
    }

    #[test]
    fn replacing_a_weights_file_leaves_loaded_views_on_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let cpu = Device::Cpu;
        let write = |v: f32| {
            let t = Tensor::full(v, (64, 64), &cpu).unwrap();
            save_safetensors(&HashMap::from([("w".to_string(), t)]), &path).unwrap();
        };
        write(1.0);
        let old = read_tensors(std::slice::from_ref(&path), DType::F32, &cpu).unwrap();
        assert!(crate::memory::is_mapped(storage_ptr(&old["w"])));
        write(2.0);
        let new = read_tensors(std::slice::from_ref(&path), DType::F32, &cpu).unwrap();
        assert_eq!(old["w"].to_vec2::<f32>().unwrap()[63][63], 1.0);
        assert_eq!(new["w"].to_vec2::<f32>().unwrap()[63][63], 2.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn tensors_sharing_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 12]);
        std::fs::write(&path, bytes).unwrap();
        let e = read_tensors(&[path], DType::F32, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("share bytes"), "{e}");
    }
}

#[cfg(test)]
mod conversion_tests {
    use super::*;

    /// Reading at another float dtype gives exactly candle's `to_dtype` of the stored tensor,
    /// for every pair of f32, f16 and bf16 (the vectorised conversions and candle's), edge
    /// values included: signed zeros, subnormals, overflow, halfway cases.
    #[test]
    fn converted_reads_equal_candles_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let mut values: Vec<f32> = vec![
            0.0,
            -0.0,
            1e-8,
            -3e-7,
            6.1e-5,
            65504.0,
            65520.0,
            -1e6,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            1.0 + 1.0 / 256.0,
            3.0e38,
        ];
        let noise = Tensor::randn(0f32, 3f32, 1000, &Device::Cpu).unwrap();
        values.extend(noise.to_vec1::<f32>().unwrap());
        let base = Tensor::from_vec(values, (4, 253), &Device::Cpu).unwrap();
        let dtypes = [DType::F32, DType::F16, DType::BF16];
        let stored: HashMap<String, Tensor> = dtypes
            .iter()
            .map(|&d| (format!("{d:?}"), base.to_dtype(d).unwrap()))
            .collect();
        let path = dir.path().join("w.safetensors");
        save_safetensors(&stored, &path).unwrap();
        for want in dtypes {
            let read = read_tensors(std::slice::from_ref(&path), want, &Device::Cpu).unwrap();
            for (name, t) in &stored {
                let got = &read[name];
                assert_eq!(got.dtype(), want, "{name} at {want:?}");
                let bits = |t: &Tensor| -> Vec<u32> {
                    let v = t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
                    v.concat().iter().map(|x| x.to_bits()).collect()
                };
                assert_eq!(
                    bits(got),
                    bits(&t.to_dtype(want).unwrap()),
                    "{name} read at {want:?}"
                );
            }
        }
    }
}
