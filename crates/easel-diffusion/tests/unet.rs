//! UNet parity: at every recorded step of every fixture case, the recorded UNet input (with
//! the recorded text conditioning) gives the recorded UNet output within 1e-4 of its range.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{cases, max_abs, parity_dir};
use easel_diffusion::lora::Lora;
use easel_diffusion::sd::unet::{AddedCond, Unet};

#[test]
fn unet_outputs_match_diffusers() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let mut unets: HashMap<String, Unet> = HashMap::new();
    let mut steps = 0;
    for case in cases(&dir) {
        let (name, t, meta) = (&case.name, &case.tensors, &case.meta);
        // A LoRA case runs on the base model with the case's LoRA file merged at its scale.
        let lora = case.lora(&dir);
        let unet = unets.entry(case.model_key()).or_insert_with(|| {
            let loras: Vec<(&Lora, f64)> = lora.iter().map(|(l, s)| (l, *s)).collect();
            Unet::from_dir(&case.model_dir(&dir).join("unet"), &loras, DType::F32, &dev).unwrap()
        });
        let cfg = t.contains_key("negative_prompt_embeds")
            && meta["do_classifier_free_guidance"]
                .as_bool()
                .unwrap_or(true);
        let context = if cfg {
            Tensor::cat(&[&t["negative_prompt_embeds"], &t["prompt_embeds"]], 0).unwrap()
        } else {
            t["prompt_embeds"].clone()
        };
        let (text_embeds, time_ids) = match (t.get("pooled_prompt_embeds"), t.get("add_time_ids")) {
            (Some(p), Some(ids)) if cfg => (
                Some(Tensor::cat(&[&t["negative_pooled_prompt_embeds"], p], 0).unwrap()),
                Some(Tensor::cat(&[&t["negative_add_time_ids"], ids], 0).unwrap()),
            ),
            (Some(p), Some(ids)) => (Some(p.clone()), Some(ids.clone())),
            _ => (None, None),
        };
        let loop_t = t["loop_timesteps"].to_vec1::<f32>().unwrap();
        let mut worst = 0f32;
        for (i, &ts) in loop_t.iter().enumerate() {
            let input = &t[&format!("unet_input_step_{i}")];
            let want = &t[&format!("unet_output_step_{i}")];
            let added = match (&text_embeds, &time_ids) {
                (Some(te), Some(ids)) => Some(AddedCond {
                    text_embeds: te,
                    time_ids: ids,
                }),
                _ => None,
            };
            let got = unet.forward(input, ts as f64, &context, added).unwrap();
            let d = max_abs(&(&got - want).unwrap()) / max_abs(want);
            worst = worst.max(d);
            steps += 1;
        }
        println!(
            "{name}: {} steps, max normalized diff {worst:.2e}",
            loop_t.len()
        );
        assert!(worst <= 1e-4, "{name}: {worst}");
    }
    assert!(steps > 50, "only {steps} steps checked");
}

#[test]
fn every_lora_layout_merges_to_the_same_weights() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let unet_dir = dir.join("models/tiny-sd/unet");
    let weights =
        easel_diffusion::loader::find_weights(&unet_dir, "diffusion_pytorch_model").unwrap();
    let tensors = candle_core::safetensors::load(&weights, &dev).unwrap();
    let lora_dir = dir.join("models/tiny-sd-lora");
    let files = [
        "pytorch_lora_weights.safetensors",
        "pytorch_lora_weights_peft_keys.safetensors",
        "tiny-sd-lora-kohya.safetensors",
    ];
    let mut all: Vec<HashMap<String, Tensor>> = Vec::new();
    for f in files {
        let lora = Lora::load(&lora_dir.join(f)).unwrap();
        assert_eq!(lora.len(), 48, "{f}");
        all.push(
            lora.deltas("unet", &tensors, &dev)
                .unwrap()
                .into_iter()
                .collect(),
        );
    }
    for other in &all[1..] {
        assert_eq!(other.len(), all[0].len());
        for (k, d) in &all[0] {
            let diff = max_abs(&(d - &other[k]).unwrap());
            assert!(diff <= 1e-6 * max_abs(d).max(1.0), "{k}: {diff}");
        }
    }
}
