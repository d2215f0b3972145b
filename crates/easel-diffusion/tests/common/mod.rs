//! Shared by the parity tests: where the fixtures are, their cases, tensor comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use easel_diffusion::lora::Lora;

/// `EASEL_PARITY_DIR`, else `../shared/fixtures/parity` beside the checkout; `None` (with a
/// line saying so) when it is not there.
pub fn parity_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EASEL_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
        });
    if dir.join("cases").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: parity fixtures not found at {}", dir.display());
        None
    }
}

/// The fixture folders the `parity` walker runs: `EASEL_PARITY_DIR` alone, else the SD and
/// Sana sets beside the checkout (each skipped with a line when absent).
pub fn parity_dirs() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os("EASEL_PARITY_DIR") {
        return vec![PathBuf::from(d)];
    }
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    ["parity", "parity-sana"]
        .iter()
        .map(|d| shared.join(d))
        .filter(|d| {
            let there = d.join("cases").is_dir();
            if !there {
                eprintln!("skipping: parity fixtures not found at {}", d.display());
            }
            there
        })
        .collect()
}

pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `max|a - b|`
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// One case directory: its `case.json` and `tensors.safetensors`.
pub struct Case {
    pub name: String,
    pub meta: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Case {
    /// The model folder the case ran on.
    pub fn model_dir(&self, parity: &Path) -> PathBuf {
        parity
            .join("models")
            .join(self.meta["model"].as_str().unwrap())
    }

    /// The case's LoRA file and scale, if it used one.
    pub fn lora(&self, parity: &Path) -> Option<(Lora, f64)> {
        let l = self.meta.get("lora").filter(|l| l.is_object())?;
        let file = parity
            .join("models")
            .join(l["model"].as_str().unwrap())
            .join(l["weight_name"].as_str().unwrap());
        Some((Lora::load(&file).unwrap(), l["scale"].as_f64().unwrap()))
    }

    /// A key naming the model and LoRA, for caching loaded models across cases.
    pub fn model_key(&self) -> String {
        format!("{}/{:?}", self.meta["model"], self.meta.get("lora"))
    }
}

/// Every case directory, sorted by name.
pub fn cases(parity: &Path) -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parity.join("cases"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|p| Case {
            name: p.file_name().unwrap().to_string_lossy().to_string(),
            meta: serde_json::from_str(&std::fs::read_to_string(p.join("case.json")).unwrap())
                .unwrap(),
            tensors: candle_core::safetensors::load(p.join("tensors.safetensors"), &Device::Cpu)
                .unwrap(),
        })
        .collect()
}
