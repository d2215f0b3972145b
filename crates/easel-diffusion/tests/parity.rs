//! The correctness bar: every case directory of the parity fixtures (or `EASEL_PARITY_DIR`)
//! is run through the whole pipeline from its recorded inputs (prompt, seed, size, steps,
//! guidance, scheduler, init image and mask) and compared stage by stage with diffusers:
//! token ids exact; embeddings ≤ 1e-4 abs; latents ≤ 1e-4 of the reference's max at every
//! step; image ≤ 1e-3 abs. A case the pipeline cannot run fails.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{cases, max_abs, parity_dir};
use easel_diffusion::lora::Lora;
use easel_diffusion::rng::TorchRng;
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
fn whole_pipeline_matches_diffusers() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let cases = cases(&dir);
    assert!(!cases.is_empty());
    let mut pipelines: HashMap<String, Pipeline> = HashMap::new();
    for case in &cases {
        let (name, t, meta) = (&case.name, &case.tensors, &case.meta);
        let lora = case.lora(&dir);
        let pipe = pipelines.entry(case.model_key()).or_insert_with(|| {
            let loras: Vec<(&Lora, f64)> = lora.iter().map(|(l, s)| (l, *s)).collect();
            Pipeline::from_diffusers_dir(&case.model_dir(&dir), &loras, DType::F32, &dev).unwrap()
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
