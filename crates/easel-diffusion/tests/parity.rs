//! The correctness bar: every case directory of the parity fixtures — the SD and the Sana
//! sets beside the checkout, or the one folder `EASEL_PARITY_DIR` names — is run through the
//! whole pipeline of its family (read from the case: no `family` is SD, `sana`/`sana-pag`
//! Sana; any other fails) from its recorded inputs (prompt, seed, size, steps,
//! guidance, scheduler, init image and mask) and compared stage by stage with diffusers:
//! token ids exact; embeddings ≤ 1e-4 abs; latents ≤ 1e-4 of the reference's max at every
//! step; image ≤ 1e-3 abs. A case the pipeline cannot run fails.

mod common;

/// The binary's allocator: the weights the walker loads are views of their mapped files, as
/// in the server (the other integration tests read weights into buffers).
#[global_allocator]
static ALLOCATOR: easel_diffusion::memory::Allocator = easel_diffusion::memory::Allocator;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{cases, max_abs, parity_dir, parity_dirs, Case};
use easel_diffusion::lora::Lora;
use easel_diffusion::rng::TorchRng;
use easel_diffusion::sana::pipeline::{Request as SanaRequest, SanaPipeline};
use easel_diffusion::schedulers::SchedulerKind;
use easel_diffusion::sd::pipeline::{Pipeline, PromptMode, Request};

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

#[test]
fn parity() {
    let dirs = parity_dirs();
    let mut sd = HashMap::new();
    let mut sana = HashMap::new();
    let mut ran = 0;
    for dir in &dirs {
        let cases = cases(dir);
        assert!(!cases.is_empty(), "{}: no cases", dir.display());
        for case in &cases {
            match case.meta["family"].as_str() {
                None => sd_case(dir, case, &mut sd),
                Some("sana" | "sana-pag") => sana_case(dir, case, &mut sana),
                Some(f) => panic!("{}: the engine cannot run family `{f}`", case.name),
            }
            ran += 1;
        }
    }
    println!("{ran} cases in {} folders", dirs.len());
}

/// An SD case: the whole pipeline from the case's inputs, stage by stage.
fn sd_case(dir: &Path, case: &Case, pipelines: &mut HashMap<String, Pipeline>) {
    let dev = Device::Cpu;
    let (name, t, meta) = (&case.name, &case.tensors, &case.meta);
    let lora = case.lora(dir);
    let pipe = pipelines.entry(case.model_key()).or_insert_with(|| {
        let loras: Vec<(&Lora, f64)> = lora.iter().map(|(l, s)| (l, *s)).collect();
        Pipeline::from_diffusers_dir(&case.model_dir(dir), &loras, DType::F32, &dev).unwrap()
    });
    let class = meta["scheduler"]["class_name"].as_str().unwrap();
    let kind = SchedulerKind::from_class_name(class)
        .unwrap_or_else(|| panic!("{name}: no scheduler {class}"));
    let mut sconf = meta["scheduler"]["config"].clone();
    if let Some(eta) = meta["eta"].as_f64() {
        sconf["eta"] = eta.into();
    }
    let req = Request {
        prompt: meta["prompt"].as_str().unwrap(),
        negative_prompt: meta["negative_prompt"].as_str(),
        width: meta["width"].as_u64().unwrap() as usize,
        height: meta["height"].as_u64().unwrap() as usize,
        steps: meta["num_inference_steps"].as_u64().unwrap() as usize,
        guidance: meta["guidance_scale"].as_f64().unwrap(),
        scheduler: Some((kind, sconf)),
        init_image: t.get("init_image"),
        mask: t.get("mask"),
        strength: meta["strength"].as_f64().unwrap_or(1.0),
        prompt_mode: PromptMode::Diffusers,
        tiny_vae: None,
    };
    let mut rng = TorchRng::new(meta["seed"].as_u64().unwrap());
    let run = pipe
        .run(&req, &mut rng, &mut |_, _, _| true)
        .unwrap()
        .expect("not canceled");

    assert_eq!(run.input_ids, ids(&t["input_ids"]), "{name}: input_ids");
    if let Some(neg) = t.get("negative_input_ids") {
        assert_eq!(
            run.negative_input_ids.as_ref(),
            Some(&ids(neg)),
            "{name}: negative_input_ids"
        );
    }
    let mut report = vec![];
    let d = max_abs(&(&run.prompt_embeds - &t["prompt_embeds"]).unwrap());
    report.push(format!("embeds {d:.1e}"));
    assert!(d <= 1e-4, "{name}: prompt_embeds {d}");
    if let Some(want) = t.get("negative_prompt_embeds") {
        let d = max_abs(&(run.negative_prompt_embeds.as_ref().unwrap() - want).unwrap());
        assert!(d <= 1e-4, "{name}: negative_prompt_embeds {d}");
    }
    let rel = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap()) / max_abs(b);
    let d = rel(&run.start_latents, &t["start_latents"]);
    report.push(format!("start {d:.1e}"));
    assert!(d <= 1e-4, "{name}: start_latents {d}");
    let iters = meta["schedule"]["num_loop_iterations"].as_u64().unwrap() as usize;
    assert_eq!(run.step_latents.len(), iters, "{name}: loop iterations");
    let mut worst = 0f32;
    for (i, got) in run.step_latents.iter().enumerate() {
        let d = rel(got, &t[&format!("latents_step_{i}")]);
        worst = worst.max(d);
        assert!(d <= 1e-4, "{name}: latents_step_{i} {d}");
    }
    report.push(format!("steps {worst:.1e}"));
    let d = rel(&run.final_latents, &t["final_latents"]);
    assert!(d <= 1e-4, "{name}: final_latents {d}");
    let d = max_abs(&(&run.image - &t["image"]).unwrap());
    report.push(format!("image {d:.1e}"));
    assert!(d <= 1e-3, "{name}: image {d}");
    println!("{name}: {}", report.join(", "));
}

/// A Sana case: the whole pipeline from the case's inputs (resolution binning off, as the
/// fixtures ran), stage by stage.
fn sana_case(dir: &Path, case: &Case, pipelines: &mut HashMap<String, SanaPipeline>) {
    let (name, t, meta) = (&case.name, &case.tensors, &case.meta);
    let pipe = pipelines.entry(case.model_key()).or_insert_with(|| {
        SanaPipeline::load(&case.model_dir(dir), DType::F32, &Device::Cpu).unwrap()
    });
    let pag = meta.get("pag").filter(|p| p.is_object());
    if let Some(p) = pag {
        let layers: Vec<String> = p["pag_applied_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        pipe.set_pag_layers(&layers).unwrap();
    }
    let class = meta["scheduler"]["class_name"].as_str().unwrap();
    let kind = SchedulerKind::from_class_name(class)
        .unwrap_or_else(|| panic!("{name}: no scheduler {class}"));
    let req = SanaRequest {
        negative_prompt: meta["negative_prompt"].as_str(),
        guidance: meta["guidance_scale"].as_f64().unwrap(),
        pag_scale: pag.map_or(0.0, |p| p["pag_scale"].as_f64().unwrap()),
        scheduler: Some((kind, meta["scheduler"]["config"].clone())),
        max_sequence_length: meta["text_encoding"]["max_sequence_length"]
            .as_u64()
            .unwrap() as usize,
        resolution_binning: false,
        ..SanaRequest::new(
            meta["prompt"].as_str().unwrap(),
            meta["width"].as_u64().unwrap() as usize,
            meta["height"].as_u64().unwrap() as usize,
            meta["num_inference_steps"].as_u64().unwrap() as usize,
        )
    };
    let mut rng = TorchRng::new(meta["seed"].as_u64().unwrap());
    let run = pipe
        .run(&req, &mut rng, &mut |_, _, _| true)
        .unwrap()
        .expect("not canceled");
    let tokens = &run.prompt.tokens;
    assert_eq!(tokens.input_ids, ids(&t["input_ids"]), "{name}: input_ids");
    assert_eq!(
        tokens.attention_mask,
        ids(&t["attention_mask"]),
        "{name}: attention_mask"
    );
    let select: Vec<u32> = tokens.select_index.iter().map(|&i| i as u32).collect();
    assert_eq!(select, ids(&t["select_index"]), "{name}: select_index");
    let mut report = vec![];
    let abs = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap());
    let rel = |a: &Tensor, b: &Tensor| abs(a, b) / max_abs(b);
    let d = abs(&run.prompt.text_encoder_output, &t["text_encoder_output"]);
    assert!(d <= 1e-4, "{name}: text_encoder_output {d}");
    let d = abs(&run.prompt.embeds, &t["prompt_embeds"]);
    report.push(format!("embeds {d:.1e}"));
    assert!(d <= 1e-4, "{name}: prompt_embeds {d}");
    match (t.get("negative_prompt_embeds"), &run.negative) {
        (Some(want), Some((got, _))) => {
            let d = abs(got, want);
            assert!(d <= 1e-4, "{name}: negative_prompt_embeds {d}");
        }
        (None, None) => {}
        _ => panic!("{name}: CFG on one side only"),
    }
    let d = rel(&run.start_latents, &t["start_latents"]);
    assert!(d <= 1e-4, "{name}: start_latents {d}");
    let iters = meta["schedule"]["num_loop_iterations"].as_u64().unwrap() as usize;
    assert_eq!(run.step_latents.len(), iters, "{name}: loop iterations");
    let mut worst = 0f32;
    for i in 0..iters {
        let d = rel(&run.noise_preds[i], &t[&format!("noise_pred_step_{i}")]);
        assert!(d <= 1e-4, "{name}: noise_pred_step_{i} {d}");
        let d = rel(&run.step_latents[i], &t[&format!("latents_step_{i}")]);
        assert!(d <= 1e-4, "{name}: latents_step_{i} {d}");
        worst = worst.max(d);
    }
    report.push(format!("steps {worst:.1e}"));
    let d = rel(&run.final_latents, &t["final_latents"]);
    assert!(d <= 1e-4, "{name}: final_latents {d}");
    let d = abs(&run.image, &t["image"]);
    report.push(format!("image {d:.1e}"));
    assert!(d <= 1e-3, "{name}: image {d}");
    println!("{name}: {}", report.join(", "));
}

#[test]
fn a_step_callback_can_cancel() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let pipe =
        Pipeline::from_diffusers_dir(&dir.join("models/tiny-sd"), &[], DType::F32, &dev).unwrap();
    let req = Request {
        prompt: "a red cat",
        negative_prompt: None,
        width: 64,
        height: 64,
        steps: 5,
        guidance: 7.5,
        scheduler: None,
        init_image: None,
        mask: None,
        strength: 1.0,
        prompt_mode: PromptMode::Diffusers,
        tiny_vae: None,
    };
    let mut seen = vec![];
    let out = pipe
        .run(&req, &mut TorchRng::new(1), &mut |i, n, _| {
            seen.push((i, n));
            i < 2
        })
        .unwrap();
    assert!(out.is_none());
    // The model's own scheduler (PNDM) runs steps + 1 iterations.
    assert_eq!(seen, [(1, 6), (2, 6)]);
    // Same seed, same image; another seed, another image.
    let a = pipe
        .run(&req, &mut TorchRng::new(1), &mut |_, _, _| true)
        .unwrap()
        .unwrap();
    let b = pipe
        .run(&req, &mut TorchRng::new(1), &mut |_, _, _| true)
        .unwrap()
        .unwrap();
    let c = pipe
        .run(&req, &mut TorchRng::new(2), &mut |_, _, _| true)
        .unwrap()
        .unwrap();
    assert_eq!(max_abs(&(&a.image - &b.image).unwrap()), 0.0);
    assert!(max_abs(&(&a.image - &c.image).unwrap()) > 1e-3);
}
