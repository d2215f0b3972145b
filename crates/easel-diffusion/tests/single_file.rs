//! A single-file checkpoint (original LDM / A1111 layout) converts to exactly the weights of
//! the diffusers folder it was made from, with the shapes the folder's configs say.

mod common;

use candle_core::{Device, Tensor};
use common::{max_diff, parity_dir};
use easel_diffusion::single_file;

#[test]
fn single_file_gives_the_folder_weights() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let conv =
        single_file::convert(&dir.join("models/tiny-sd-single-file.safetensors"), &dev).unwrap();
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
    let e = single_file::convert(&p, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a Stable Diffusion checkpoint"), "{e}");
}

#[test]
fn a_pipeline_from_the_single_file_draws_what_the_folder_draws() {
    use candle_core::DType;
    use easel_diffusion::pipeline::{Pipeline, Request};
    use easel_diffusion::rng::TorchRng;
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let folder = dir.join("models/tiny-sd");
    let a = Pipeline::from_diffusers_dir(&folder, &[], DType::F32, &dev).unwrap();
    let b = Pipeline::from_single_file(
        &dir.join("models/tiny-sd-single-file.safetensors"),
        &folder,
        &[],
        DType::F32,
        &dev,
    )
    .unwrap();
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
    };
    let ia = a
        .run(&req, &mut TorchRng::new(3), &mut |_, _, _| true)
        .unwrap()
        .unwrap()
        .image;
    let ib = b
        .run(&req, &mut TorchRng::new(3), &mut |_, _, _| true)
        .unwrap()
        .unwrap()
        .image;
    let d = max_diff(&ia, &ib);
    assert_eq!(d, 0.0);
}
