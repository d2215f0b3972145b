//! `TorchRng` against PyTorch's own draws (`torch-rng/` in the parity fixtures).
//!
//! `randn.safetensors` holds `torch.randn` made with the x86-64 vectorized kernel;
//! `randn_scalar_path.safetensors` holds the small ones made with the scalar libm kernel.
//! The fixtures are found through `EASEL_PARITY_DIR`, else `<repo>/../shared/fixtures/parity`;
//! without them the tests print a line and pass.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use easel_diffusion::noise::NoiseSource;
use easel_diffusion::rng::TorchRng;
use serde_json::Value;

/// The acceptance bar for every reference value.
const TOLERANCE: f32 = 2e-6;

fn rng_fixtures() -> Option<PathBuf> {
    let root = match std::env::var_os("EASEL_PARITY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity"),
    };
    let dir = root.join("torch-rng");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: parity fixtures not found at {}", dir.display());
        None
    }
}

struct Entry {
    name: String,
    seed: u64,
    shape: Vec<usize>,
    draw_index: usize,
    in_scalar_path_file: bool,
}

fn entries(dir: &std::path::Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("randn.json")).expect("read randn.json");
    let json: Value = serde_json::from_str(&text).expect("parse randn.json");
    json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| Entry {
            name: e["tensor"].as_str().expect("tensor").to_string(),
            seed: e["seed"].as_u64().expect("seed"),
            shape: e["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect(),
            draw_index: e["draw_index"].as_u64().expect("draw_index") as usize,
            in_scalar_path_file: e["in_scalar_path_file"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// (max |a - b|, number of values whose bits differ)
fn compare(ours: &[f32], theirs: &[f32]) -> (f32, usize) {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .fold((0f32, 0), |(max, differ), (a, b)| {
            (
                max.max((a - b).abs()),
                differ + usize::from(a.to_bits() != b.to_bits()),
            )
        })
}

#[test]
fn every_reference_draw_matches() {
    let Some(dir) = rng_fixtures() else { return };
    let vectorized =
        candle_core::safetensors::load(dir.join("randn.safetensors"), &Device::Cpu).unwrap();
    let scalar_path =
        candle_core::safetensors::load(dir.join("randn_scalar_path.safetensors"), &Device::Cpu)
            .unwrap();
    let mut entries = entries(&dir);
    assert!(!entries.is_empty());
    // `seq_seed0_draw3_17` is the 4th draw of the generator `seq_seed0`; other names stand alone.
    let stream = |e: &Entry| e.name.split("_draw").next().unwrap().to_string();
    entries.sort_by_key(|e| (stream(e), e.draw_index));

    let mut generators: HashMap<String, (TorchRng, usize)> = HashMap::new();
    let mut worst = [0f32; 2];
    let mut failures = Vec::new();
    for e in &entries {
        let key = stream(e);
        if e.draw_index == 0 {
            generators.insert(key.clone(), (TorchRng::new(e.seed), 0));
        }
        let (rng, next_draw) = generators.get_mut(&key).expect("draws start at index 0");
        assert_eq!(*next_draw, e.draw_index, "{}: draws out of order", e.name);
        *next_draw += 1;

        let ours = rng.randn(&e.shape, &Device::Cpu).unwrap();
        assert_eq!(ours.dims(), e.shape.as_slice(), "{}", e.name);
        let ours = values(&ours);
        let n = ours.len();

        let reference = &vectorized[&e.name];
        assert_eq!(reference.dims(), e.shape.as_slice(), "{}", e.name);
        let (max_v, differ_v) = compare(&ours, &values(reference));
        worst[0] = worst[0].max(max_v);
        let mut line = format!(
            "{:<26} n={n:<6} randn: max |diff| {max_v:.3e} ({differ_v} values differ in bits)",
            e.name
        );
        // Large draws are pure IEEE float32 arithmetic here and in PyTorch's kernel: exact.
        if max_v > TOLERANCE || (n >= 16 && differ_v > 0) {
            failures.push(format!("{} vs randn.safetensors", e.name));
        }
        if e.in_scalar_path_file {
            let (max_s, differ_s) = compare(&ours, &values(&scalar_path[&e.name]));
            worst[1] = worst[1].max(max_s);
            line += &format!("; scalar path: max |diff| {max_s:.3e} ({differ_s} differ)");
            if max_s > TOLERANCE {
                failures.push(format!("{} vs randn_scalar_path.safetensors", e.name));
            }
        }
        println!("{line}");
    }
    println!(
        "{} entries; worst max |diff|: randn {:.3e}, scalar path {:.3e}",
        entries.len(),
        worst[0],
        worst[1]
    );
    assert!(failures.is_empty(), "mismatches: {failures:?}");
    // Every tensor of the files was checked.
    assert_eq!(vectorized.len(), entries.len());
    assert_eq!(
        scalar_path.len(),
        entries.iter().filter(|e| e.in_scalar_path_file).count()
    );
}

#[test]
fn a_generator_continues_its_stream_across_calls() {
    // Independent of the fixtures. Blocks of 16 take consecutive uniforms, so two draws of 64
    // from one generator are one draw of 128.
    let mut rng = TorchRng::new(1234);
    let mut two = rng.randn_vec(64);
    two.extend(rng.randn_vec(64));
    assert_eq!(two, TorchRng::new(1234).randn_vec(128));
    // Generators with one seed agree call by call, whatever the sizes.
    let mut a = TorchRng::new(42);
    let mut b = TorchRng::new(42);
    for n in [64, 3, 17, 1, 256, 5, 0] {
        assert_eq!(a.randn_vec(n), b.randn_vec(n));
    }
}
