//! Sana transformer and guidance parity: at every recorded step of every Sana fixture case, the
//! recorded transformer input (with the case's caption batch, mask, timestep and PAG blocks)
//! gives the recorded output within `1e-4 * max|ref|`; the guidance functions turn the recorded
//! outputs into the recorded `noise_pred_step_i`; PAG layer selection agrees with every entry of
//! `pag-layer-selection.json`; and a tiny written model loads and runs.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{cases, max_abs, max_diff, Case};
use easel_diffusion::sana::pag::{self, PagLayerError};
use easel_diffusion::sana::transformer::{
    tiny_config, write_tiny, Perturbed, SanaTransformer, SanaTransformerConfig,
};
use serde_json::Value;

/// `EASEL_PARITY_SANA_DIR`, else `../shared/fixtures/parity-sana` beside the checkout.
fn sana_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EASEL_PARITY_SANA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity-sana")
        });
    if dir.join("cases").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: Sana fixtures not found at {}", dir.display());
        None
    }
}

/// What one case feeds the transformer besides latents and timestep.
struct Conditioning {
    layout: Vec<String>,
    embeds: Tensor,
    mask: Tensor,
    /// PAG blocks and the first perturbed row.
    pag: Option<(Vec<usize>, usize)>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Repeat a `[1, ...]` tensor to `n` rows (the pipelines' `num_images_per_prompt`).
fn rows(t: &Tensor, n: usize) -> Tensor {
    if t.dim(0).unwrap() == n {
        t.clone()
    } else {
        Tensor::cat(&vec![t; n], 0).unwrap()
    }
}

fn conditioning(case: &Case, num_layers: usize) -> Conditioning {
    let (t, meta) = (&case.tensors, &case.meta);
    let n = meta["num_images_per_prompt"].as_u64().unwrap_or(1) as usize;
    let layout = strings(&meta["guidance"]["batch_layout"]);
    let (mut embeds, mut masks) = (Vec::new(), Vec::new());
    for chunk in &layout {
        let (e, m) = match chunk.as_str() {
            "uncond" => ("negative_prompt_embeds", "negative_attention_mask"),
            "cond" | "perturbed" => ("prompt_embeds", "prompt_attention_mask"),
            other => panic!("{}: unknown chunk {other}", case.name),
        };
        embeds.push(rows(&t[e], n));
        masks.push(rows(&t[m], n));
    }
    let pag = meta.get("pag").filter(|p| p.is_object()).map(|p| {
        let patterns = strings(&p["pag_applied_layers"]);
        let blocks = pag::select_layers(&patterns, num_layers).unwrap();
        let resolved: Vec<String> = blocks
            .iter()
            .map(|k| format!("transformer_blocks.{k}.attn1"))
            .collect();
        assert_eq!(
            resolved,
            strings(&p["resolved_self_attention_modules"]),
            "{}",
            case.name
        );
        let first = layout.iter().position(|c| c == "perturbed").unwrap() * n;
        assert_eq!(first, pag::perturbed_first_row(n, layout.len() == 3));
        (blocks, first)
    });
    Conditioning {
        layout,
        embeds: Tensor::cat(&embeds, 0).unwrap(),
        mask: Tensor::cat(&masks, 0).unwrap(),
        pag,
    }
}

fn loop_timesteps(case: &Case) -> Vec<f32> {
    case.tensors["loop_timesteps"].to_vec1::<f32>().unwrap()
}

fn load_model(dir: &std::path::Path, case: &Case) -> SanaTransformer {
    SanaTransformer::load(
        &case.model_dir(dir).join("transformer"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn transformer_outputs_match_diffusers() {
    let Some(dir) = sana_dir() else { return };
    let all = cases(&dir);
    assert!(!all.is_empty());
    let model = load_model(&dir, &all[0]);
    let mut checked = 0;
    let mut worst = 0f32;
    for case in &all {
        assert_eq!(case.meta["model"], all[0].meta["model"]);
        let cond = conditioning(case, model.config().num_layers);
        let ts = loop_timesteps(case);
        for (i, &t) in ts.iter().enumerate() {
            let x = &case.tensors[&format!("transformer_input_step_{i}")];
            let reference = &case.tensors[&format!("transformer_output_step_{i}")];
            let b = x.dim(0).unwrap();
            let timestep = Tensor::full(t, b, &Device::Cpu).unwrap();
            let perturbed = cond.pag.as_ref().map(|(blocks, first)| Perturbed {
                first_row: *first,
                blocks,
            });
            let out = model
                .forward(x, &timestep, &cond.embeds, &cond.mask, perturbed)
                .unwrap();
            assert_eq!(out.dims(), reference.dims());
            let (d, m) = (max_diff(&out, reference), max_abs(reference));
            println!(
                "{} step {i} (t={t}, layout {:?}): max|diff| {d:.3e}, max|ref| {m:.3e}, ratio {:.3e}",
                case.name,
                cond.layout,
                d / m
            );
            assert!(
                d <= 1e-4 * m,
                "{} step {i}: transformer output differs by {d} (max|ref| {m})",
                case.name
            );
            worst = worst.max(d / m);
            checked += 1;
        }
    }
    println!("{checked} transformer calls, worst max|diff|/max|ref| {worst:.3e}");
}

#[test]
fn guidance_reproduces_noise_pred() {
    let Some(dir) = sana_dir() else { return };
    for case in cases(&dir) {
        let g = &case.meta["guidance"];
        let cfg_scale = g["classifier_free_guidance"]
            .as_bool()
            .unwrap()
            .then(|| g["guidance_scale"].as_f64().unwrap());
        let p = case.meta.get("pag").filter(|p| p.is_object());
        let layout = strings(&g["batch_layout"]);
        let expected: Vec<String> = pag::batch_layout(cfg_scale.is_some(), p.is_some())
            .iter()
            .map(|c| match c {
                pag::Chunk::Uncond => "uncond",
                pag::Chunk::Cond => "cond",
                pag::Chunk::Perturbed => "perturbed",
            })
            .map(String::from)
            .collect();
        assert_eq!(layout, expected, "{}", case.name);
        for (i, &t) in loop_timesteps(&case).iter().enumerate() {
            let pag_scale = p.map(|p| {
                pag::pag_scale_at(
                    p["pag_scale"].as_f64().unwrap(),
                    p["pag_adaptive_scale"].as_f64().unwrap(),
                    t as f64,
                )
            });
            let out = &case.tensors[&format!("transformer_output_step_{i}")];
            let reference = &case.tensors[&format!("noise_pred_step_{i}")];
            let ours = pag::combine(out, cfg_scale, pag_scale).unwrap();
            let (d, m) = (max_diff(&ours, reference), max_abs(reference));
            println!(
                "{} step {i}: guidance max|diff| {d:.3e}, max|ref| {m:.3e}",
                case.name
            );
            assert!(
                d <= 1e-4 * m,
                "{} step {i}: guidance differs by {d}",
                case.name
            );
        }
    }
}

/// The first transformer call of `sana-pag`, stage by stage against `debug.safetensors`.
#[test]
fn transformer_stages_match_debug_tensors() {
    let Some(dir) = sana_dir() else { return };
    let all = cases(&dir);
    let case = all
        .iter()
        .find(|c| c.name == "sana-pag")
        .expect("sana-pag case");
    let debug =
        candle_core::safetensors::load(dir.join("cases/sana-pag/debug.safetensors"), &Device::Cpu)
            .unwrap();
    let mut keys: Vec<&String> = debug
        .keys()
        .filter(|k| k.starts_with("transformer_"))
        .collect();
    keys.sort();
    println!("debug transformer tensors: {keys:?}");
    let model = load_model(&dir, case);
    let cond = conditioning(case, model.config().num_layers);
    let x = &case.tensors["transformer_input_step_0"];
    let t = loop_timesteps(case)[0];
    let timestep = Tensor::full(t, x.dim(0).unwrap(), &Device::Cpu).unwrap();
    let (blocks, first) = cond.pag.clone().unwrap();
    let (_, trace) = model
        .forward_traced(
            x,
            &timestep,
            &cond.embeds,
            &cond.mask,
            Some(Perturbed {
                first_row: first,
                blocks: &blocks,
            }),
        )
        .unwrap();
    let mut seen = 0;
    for (name, ours) in &trace {
        let key = format!("transformer_{name}");
        let Some(reference) = debug.get(&key) else {
            panic!("no debug tensor {key}");
        };
        let (d, m) = (max_diff(ours, reference), max_abs(reference));
        println!("{key}: max|diff| {d:.3e}, max|ref| {m:.3e}");
        assert!(d <= 1e-4 * m, "{key} differs by {d} (max|ref| {m})");
        seen += 1;
    }
    assert_eq!(seen, keys.len(), "every transformer debug tensor compared");
}

#[test]
fn pag_layer_selection_matches_diffusers() {
    let Some(dir) = sana_dir() else { return };
    let text = std::fs::read_to_string(dir.join("pag-layer-selection.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        let patterns = strings(&e["pag_applied_layers"]);
        let n = e["num_layers"].as_u64().unwrap() as usize;
        let got = pag::select_layers(&patterns, n);
        match e.get("error").and_then(|x| x.as_str()) {
            Some(error) => {
                let message = error.trim_start_matches("ValueError: ");
                match got {
                    Err(err @ PagLayerError::NoMatch { .. }) => assert!(
                        err.to_string().contains(message),
                        "{patterns:?} on {n}: {err} vs {error}"
                    ),
                    other => panic!("{patterns:?} on {n}: expected {error}, got {other:?}"),
                }
            }
            None => {
                let want: Vec<usize> = e["blocks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(got.unwrap(), want, "{patterns:?} on {n} blocks");
            }
        }
    }
    println!("{} PAG selection entries agree", entries.len());
}

/// Released configs (Sana 1600M 1024px, its older export with extra keys, Sana-Sprint 0.6B)
/// parse with the defaults and pass validation.
#[test]
fn released_configs_load() {
    let sana_1600m = r#"{"_class_name": "SanaTransformer2DModel", "_diffusers_version": "0.32.0.dev0",
        "attention_bias": false, "attention_head_dim": 32, "caption_channels": 2304,
        "cross_attention_dim": 2240, "cross_attention_head_dim": 112, "dropout": 0.0,
        "in_channels": 32, "mlp_ratio": 2.5, "norm_elementwise_affine": false, "norm_eps": 1e-06,
        "num_attention_heads": 70, "num_cross_attention_heads": 20, "num_layers": 20,
        "out_channels": 32, "patch_size": 1, "sample_size": 32}"#;
    let older_export = r#"{"_class_name": "SanaTransformer2DModel", "activation_fn": ["silu", "silu", null],
        "attention_bias": false, "attention_head_dim": 32, "attention_type": "default",
        "caption_channels": 2304, "caption_norm_scale_factor": 0.1, "cross_attention_dim": 2240,
        "cross_attention_head_dim": 112, "dropout": 0.0, "expand_ratio": 2.5,
        "ff_bias": [true, true, false], "ff_norm": [null, null, null], "in_channels": 32,
        "interpolation_scale": null, "norm_elementwise_affine": false, "norm_eps": 1e-06,
        "norm_num_groups": 32, "norm_type": "ada_norm_single", "num_attention_heads": 70,
        "num_cross_attention_heads": 20, "num_embeds_ada_norm": 1000, "num_layers": 20,
        "out_channels": 32, "patch_size": 1, "sample_size": 32, "upcast_attention": false,
        "use_additional_conditions": false, "use_caption_norm": true, "use_pe": false}"#;
    let sprint = r#"{"_class_name": "SanaTransformer2DModel", "_diffusers_version": "0.33.0.dev0",
        "attention_bias": false, "attention_head_dim": 32, "caption_channels": 2304,
        "cross_attention_dim": 1152, "cross_attention_head_dim": 72, "dropout": 0.0,
        "guidance_embeds": true, "guidance_embeds_scale": 0.1, "in_channels": 32,
        "interpolation_scale": null, "mlp_ratio": 2.5, "norm_elementwise_affine": false,
        "norm_eps": 1e-06, "num_attention_heads": 36, "num_cross_attention_heads": 16,
        "num_layers": 28, "out_channels": 32, "patch_size": 1,
        "qk_norm": "rms_norm_across_heads", "sample_size": 32, "timestep_scale": 1.0}"#;
    for (name, text, dim, layers, hidden) in [
        ("1600M", sana_1600m, 2240, 20, 5600),
        ("1600M older export", older_export, 2240, 20, 5600),
        ("Sprint 0.6B", sprint, 1152, 28, 2880),
    ] {
        let c: SanaTransformerConfig = serde_json::from_str(text).unwrap();
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (c.inner_dim(), c.num_layers, c.ff_hidden()),
            (dim, layers, hidden),
            "{name}"
        );
    }
    let bad: SanaTransformerConfig = serde_json::from_str(r#"{"qk_norm": "layer_norm"}"#).unwrap();
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("layer_norm"));
}

/// Deterministic test values: `sin(k * i)` over the flat index.
fn wave<S: Into<candle_core::Shape>>(shape: S, k: f32) -> Tensor {
    let shape = shape.into();
    let v: Vec<f32> = (0..shape.elem_count())
        .map(|i| (k * i as f32).sin())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn run_tiny(model: &SanaTransformer, guidance: bool, perturbed: Option<Perturbed>) -> Tensor {
    let c = model.config();
    let dev = Device::Cpu;
    let b = 3;
    let x = wave((b, c.in_channels, 4, 6), 0.37);
    let t = Tensor::new(&[999f32, 500.0, 10.0], &dev).unwrap();
    let enc = wave((b, 5, c.caption_channels), 0.11);
    let mask = Tensor::new(
        &[
            [1f32, 1., 1., 0., 0.],
            [1., 0., 0., 0., 0.],
            [1., 1., 1., 1., 1.],
        ],
        &dev,
    )
    .unwrap();
    let out = if guidance {
        let g = Tensor::new(&[0.45f32], &dev).unwrap();
        model.forward_with_guidance(&x, &t, &g, &enc, &mask, perturbed)
    } else {
        model.forward(&x, &t, &enc, &mask, perturbed)
    }
    .unwrap();
    assert_eq!(out.dims(), [b, c.out_channels(), 4, 6]);
    assert!(out
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite()));
    out
}

#[test]
fn tiny_model_writes_loads_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("transformer");
    write_tiny(&dir, 7, &tiny_config()).unwrap();
    let again = tmp.path().join("again");
    write_tiny(&again, 7, &tiny_config()).unwrap();
    let weights = "diffusion_pytorch_model.safetensors";
    assert_eq!(
        std::fs::read(dir.join(weights)).unwrap(),
        std::fs::read(again.join(weights)).unwrap(),
        "same seed, same weights"
    );
    let model = SanaTransformer::load(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.config(), &tiny_config());

    // The same inputs with and without PAG on block 1 for rows 2..: rows 0-1 agree.
    let plain = run_tiny(&model, false, None);
    let blocks = [1usize];
    let pag = run_tiny(
        &model,
        false,
        Some(Perturbed {
            first_row: 2,
            blocks: &blocks,
        }),
    );
    let head = |t: &Tensor| t.narrow(0, 0, 2).unwrap();
    let tail = |t: &Tensor| t.narrow(0, 2, 1).unwrap();
    assert!(max_diff(&head(&plain), &head(&pag)) < 1e-6);
    assert!(max_diff(&tail(&plain), &tail(&pag)) > 0.0);
    assert!(run_tiny_err(&model, &[2]).contains("PAG block 2"));

    // Loaded at f16 it computes in f16 (linear attention in f32) and stays close.
    let half = SanaTransformer::load(&dir, DType::F16, &Device::Cpu).unwrap();
    assert_eq!(half.dtype(), DType::F16);
    let out = run_tiny(&half, false, None);
    assert_eq!(out.dtype(), DType::F16);
    let out = out.to_dtype(DType::F32).unwrap();
    let (d, m) = (max_diff(&out, &plain), max_abs(&plain));
    println!("tiny f16 vs f32: max|diff| {d:.3e}, max|f32| {m:.3e}");
    assert!(d <= 1e-2 * m, "f16 off by {d}");
}

fn run_tiny_err(model: &SanaTransformer, blocks: &[usize]) -> String {
    let dev = Device::Cpu;
    let c = model.config();
    let x = Tensor::zeros((1, c.in_channels, 2, 2), DType::F32, &dev).unwrap();
    let t = Tensor::new(&[1f32], &dev).unwrap();
    let enc = Tensor::zeros((1, 3, c.caption_channels), DType::F32, &dev).unwrap();
    let mask = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
    model
        .forward(
            &x,
            &t,
            &enc,
            &mask,
            Some(Perturbed {
                first_row: 0,
                blocks,
            }),
        )
        .unwrap_err()
        .to_string()
}

/// The optional parts: 2x2 patches with the sin-cos position table, qk RMSNorm, an affine
/// `norm2` and Sprint's guidance embedder.
#[test]
fn tiny_model_with_optional_parts_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SanaTransformerConfig {
        patch_size: 2,
        interpolation_scale: Some(1.0),
        sample_size: 8,
        qk_norm: Some("rms_norm_across_heads".into()),
        norm_elementwise_affine: true,
        guidance_embeds: true,
        ..tiny_config()
    };
    write_tiny(tmp.path(), 3, &config).unwrap();
    let model = SanaTransformer::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let names = candle_core::safetensors::load(
        tmp.path().join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    for key in [
        "time_embed.guidance_embedder.linear_1.weight",
        "time_embed.timestep_embedder.linear_2.bias",
        "transformer_blocks.0.attn1.norm_q.weight",
        "transformer_blocks.1.attn2.norm_k.weight",
        "transformer_blocks.0.norm2.bias",
    ] {
        assert!(names.contains_key(key), "{key} written");
    }
    assert_eq!(
        names["patch_embed.proj.weight"].dims(),
        [32, config.in_channels, 2, 2]
    );
    run_tiny(&model, true, None);
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 8, 4, 4), DType::F32, &dev).unwrap();
    let t = Tensor::new(&[1f32], &dev).unwrap();
    let enc = Tensor::zeros((1, 3, 48), DType::F32, &dev).unwrap();
    let mask = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
    let e = model.forward(&x, &t, &enc, &mask, None).unwrap_err();
    assert!(e.to_string().contains("guidance"), "{e}");
    let odd = Tensor::zeros((1, 8, 3, 4), DType::F32, &dev).unwrap();
    let e = model
        .forward_with_guidance(&odd, &t, &t, &enc, &mask, None)
        .unwrap_err();
    assert!(e.to_string().contains("patch size"), "{e}");
}
