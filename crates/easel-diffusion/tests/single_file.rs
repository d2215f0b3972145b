//! A single-file checkpoint (original LDM / A1111 layout) converts to exactly the weights of
//! the diffusers folder it was made from, with the shapes the folder's configs say.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_diff, parity_dir};
use easel_diffusion::sd::single_file;

#[test]
fn single_file_gives_the_folder_weights() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let conv = single_file::convert(
        &dir.join("models/tiny-sd-single-file.safetensors"),
        DType::F32,
        &dev,
    )
    .unwrap();
    assert_eq!(conv.family, "sd15");
    let folder = dir.join("models/tiny-sd");
    for (name, got, file) in [
        (
            "unet",
            &conv.unet,
            "unet/diffusion_pytorch_model.safetensors",
        ),
        ("vae", &conv.vae, "vae/diffusion_pytorch_model.safetensors"),
        (
            "text_encoder",
            &conv.text_encoder,
            "text_encoder/model.safetensors",
        ),
    ] {
        let want = candle_core::safetensors::load(folder.join(file), &dev).unwrap();
        let mut missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        missing.sort();
        let mut extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        extra.sort();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (k, w) in &want {
            let g: &Tensor = &got[k];
            assert_eq!(g.dims(), w.dims(), "{name} {k}");
            let d = max_diff(g, w);
            assert_eq!(d, 0.0, "{name} {k} differs by {d}");
        }
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("unet/config.json")).unwrap())
            .unwrap();
    let i = &conv.inferred;
    assert_eq!(i.in_channels as u64, cfg["in_channels"].as_u64().unwrap());
    assert_eq!(
        i.layers_per_block as u64,
        cfg["layers_per_block"].as_u64().unwrap()
    );
    assert_eq!(
        i.cross_attention_dim as u64,
        cfg["cross_attention_dim"].as_u64().unwrap()
    );
    let blocks: Vec<usize> = cfg["block_out_channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(i.block_out_channels, blocks);
    let attention: Vec<bool> = cfg["down_block_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().starts_with("CrossAttn"))
        .collect();
    assert_eq!(i.attention, attention);
}

#[test]
fn other_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("encoder.weight".to_string(), t)]),
        &p,
    )
    .unwrap();
    let e = single_file::convert(&p, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a Stable Diffusion checkpoint"), "{e}");
}

#[test]
fn a_pipeline_from_the_single_file_draws_what_the_folder_draws() {
    use candle_core::DType;
    use easel_diffusion::rng::TorchRng;
    use easel_diffusion::sd::pipeline::{Pipeline, PromptMode, Request};
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let folder = dir.join("models/tiny-sd");
    let file = dir.join("models/tiny-sd-single-file.safetensors");
    let a = Pipeline::from_diffusers_dir(&folder, &[], DType::F32, &dev).unwrap();
    // The folder as the support folder: only its tokenizer and scheduler are read.
    let b = Pipeline::from_single_file(&file, &folder, &[], DType::F32, &dev).unwrap();
    // A support folder with nothing but those two.
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["tokenizer", "scheduler"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        for e in std::fs::read_dir(folder.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), tmp.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    let c = Pipeline::from_single_file(&file, tmp.path(), &[], DType::F32, &dev).unwrap();
    let req = Request {
        prompt: "a red cat",
        negative_prompt: Some("blurry"),
        width: 64,
        height: 64,
        steps: 4,
        guidance: 7.5,
        scheduler: None,
        init_image: None,
        mask: None,
        strength: 1.0,
        prompt_mode: PromptMode::Diffusers,
        tiny_vae: None,
    };
    let draw = |p: &Pipeline| {
        p.run(&req, &mut TorchRng::new(3), &mut |_, _, _| true)
            .unwrap()
            .unwrap()
            .image
    };
    let ia = draw(&a);
    assert_eq!(max_diff(&ia, &draw(&b)), 0.0);
    assert_eq!(max_diff(&ia, &draw(&c)), 0.0);
}

#[test]
fn the_configs_read_off_the_weights_are_the_folders() {
    let Some(dir) = parity_dir() else { return };
    let conv = single_file::convert(
        &dir.join("models/tiny-sd-single-file.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let folder = dir.join("models/tiny-sd");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(folder.join(f)).unwrap()).unwrap()
    };
    for (what, got, want, keys) in [
        (
            "unet",
            &conv.configs.unet,
            read("unet/config.json"),
            &[
                "in_channels",
                "out_channels",
                "block_out_channels",
                "down_block_types",
                "up_block_types",
                "layers_per_block",
                "attention_head_dim",
                "cross_attention_dim",
                "transformer_layers_per_block",
                "norm_num_groups",
                "use_linear_projection",
                "addition_embed_type",
            ][..],
        ),
        (
            "vae",
            &conv.configs.vae,
            read("vae/config.json"),
            &[
                "block_out_channels",
                "layers_per_block",
                "latent_channels",
                "norm_num_groups",
                "scaling_factor",
                "in_channels",
                "out_channels",
            ][..],
        ),
        (
            "text_encoder",
            &conv.configs.text_encoder,
            read("text_encoder/config.json"),
            &[
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "hidden_act",
                "max_position_embeddings",
            ][..],
        ),
    ] {
        for k in keys {
            assert_eq!(got[k], want[k], "{what} `{k}`");
        }
    }
    assert!(conv.configs.text_encoder_2.is_none());
    assert_eq!(conv.prediction_type, None);
}

#[test]
fn writing_the_folder_gives_what_diffusers_wrote() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny-sd.safetensors");
    single_file::write_single_file(&dir.join("models/tiny-sd"), &out).unwrap();
    let ours = candle_core::safetensors::load(&out, &dev).unwrap();
    let theirs =
        candle_core::safetensors::load(dir.join("models/tiny-sd-single-file.safetensors"), &dev)
            .unwrap();
    let mut missing: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    missing.sort();
    let mut extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, t) in &theirs {
        assert_eq!(ours[k].dims(), t.dims(), "{k}");
        assert_eq!(max_diff(&ours[k], t), 0.0, "{k}");
    }
}

#[test]
fn every_fixture_folder_survives_the_round_trip() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    for (model, family) in [
        ("tiny-sd", "sd15"),
        ("tiny-sd-inpaint", "sd15-inpaint"),
        ("tiny-sdxl", "sdxl"),
    ] {
        let folder = dir.join("models").join(model);
        let out = tmp.path().join(format!("{model}.safetensors"));
        single_file::write_single_file(&folder, &out).unwrap();
        let conv = single_file::convert(&out, DType::F32, &dev).unwrap();
        assert_eq!(conv.family, family);
        let mut parts = vec![
            (
                "unet",
                &conv.unet,
                "unet/diffusion_pytorch_model.safetensors",
            ),
            ("vae", &conv.vae, "vae/diffusion_pytorch_model.safetensors"),
            (
                "text_encoder",
                &conv.text_encoder,
                "text_encoder/model.safetensors",
            ),
        ];
        if let Some(te2) = &conv.text_encoder_2 {
            parts.push(("text_encoder_2", te2, "text_encoder_2/model.safetensors"));
        }
        for (name, got, file) in parts {
            let want = candle_core::safetensors::load(folder.join(file), &dev).unwrap();
            let want: std::collections::HashMap<_, _> = want
                .into_iter()
                .filter(|(k, _)| !k.ends_with("position_ids"))
                .collect();
            assert_eq!(got.len(), want.len(), "{model} {name}");
            for (k, w) in &want {
                let g: &Tensor = got
                    .get(k)
                    .unwrap_or_else(|| panic!("{model} {name}: no {k}"));
                assert_eq!(g.dims(), w.dims(), "{model} {name} {k}");
                assert_eq!(max_diff(g, w), 0.0, "{model} {name} {k}");
            }
        }
    }
}
