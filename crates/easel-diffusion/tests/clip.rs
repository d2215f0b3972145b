//! CLIP text encoder parity: for every fixture case, the recorded token ids give the recorded
//! prompt embeddings (SD: last hidden state; SDXL: both encoders' penultimate states
//! concatenated, and the second encoder's pooled projection) within 1e-4.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{cases, max_diff, parity_dir};
use easel_diffusion::clip::ClipTextModel;

#[test]
fn text_embeddings_match_diffusers() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let mut models: HashMap<PathBuf, ClipTextModel> = HashMap::new();
    for m in std::fs::read_dir(dir.join("models")).unwrap().flatten() {
        for sub in ["text_encoder", "text_encoder_2"] {
            let p = m.path().join(sub);
            if p.is_dir() {
                models.insert(
                    p.clone(),
                    ClipTextModel::from_dir(&p, sub, &[], DType::F32, &dev).unwrap(),
                );
            }
        }
    }
    let load = |p: PathBuf| -> &ClipTextModel { &models[&p] };
    let mut checked = 0;
    for case in cases(&dir) {
        let (name, t) = (&case.name, &case.tensors);
        let model = case.model_dir(&dir);
        let sdxl = model.join("text_encoder_2").is_dir();
        for (ids, ids2, embeds, pooled) in [
            (
                "input_ids",
                "input_ids_2",
                "prompt_embeds",
                "pooled_prompt_embeds",
            ),
            (
                "negative_input_ids",
                "negative_input_ids_2",
                "negative_prompt_embeds",
                "negative_pooled_prompt_embeds",
            ),
        ] {
            let (Some(ids), Some(want)) = (t.get(ids), t.get(embeds)) else {
                continue;
            };
            let te = load(model.join("text_encoder"));
            let out = te.forward(ids).unwrap();
            let (got, pooled_got) = if sdxl {
                let te2 = load(model.join("text_encoder_2"));
                let out2 = te2.forward(&t[ids2]).unwrap();
                (
                    Tensor::cat(&[&out.penultimate, &out2.penultimate], 2).unwrap(),
                    Some(out2.pooled),
                )
            } else {
                (out.last_hidden_state, None)
            };
            let d = max_diff(&got, want);
            println!("{name} {embeds}: max abs {d:.2e}");
            assert!(d <= 1e-4, "{name} {embeds}: {d}");
            if let (Some(p), Some(want)) = (pooled_got, t.get(pooled)) {
                let d = max_diff(&p, want);
                println!("{name} {pooled}: max abs {d:.2e}");
                assert!(d <= 1e-4, "{name} {pooled}: {d}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} prompt embeddings checked");
}

#[test]
fn a_batch_encodes_like_its_rows() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let te = ClipTextModel::from_dir(
        &dir.join("models/tiny-sd/text_encoder"),
        "text_encoder",
        &[],
        DType::F32,
        &dev,
    )
    .unwrap();
    let a: Vec<u32> = [613, 320, 521, 515, 614]
        .into_iter()
        .chain(std::iter::repeat(614))
        .take(77)
        .collect();
    let b: Vec<u32> = [613, 275, 273, 66, 64, 83, 338, 614]
        .into_iter()
        .chain(std::iter::repeat(614))
        .take(77)
        .collect();
    let batch = Tensor::new(vec![a.clone(), b.clone()], &dev).unwrap();
    let out = te.forward(&batch).unwrap();
    for (i, row) in [a, b].into_iter().enumerate() {
        let single = te.forward(&Tensor::new(vec![row], &dev).unwrap()).unwrap();
        let d = max_diff(
            &out.last_hidden_state.get(i).unwrap(),
            &single.last_hidden_state.get(0).unwrap(),
        );
        assert!(d < 1e-6, "row {i}: {d}");
    }
}
