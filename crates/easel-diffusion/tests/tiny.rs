//! `make_tiny` builds a working model of every family in the real diffusers layout, and
//! `write_single_file` turns it into an LDM / A1111 checkpoint that loads back, without any
//! config folder, to exactly the same weights and images.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use easel_diffusion::pipeline::{Pipeline, PromptMode, Request};
use easel_diffusion::rng::TorchRng;
use easel_diffusion::schedulers::PredictionType;
use easel_diffusion::single_file::{self, SingleFileOptions};
use easel_diffusion::tiny::{make_tiny, write_single_file, TinyFamily};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}

/// [1, 3, 64, 64] in [0, 1]: a diagonal gradient.
fn init_image() -> Tensor {
    let v: Vec<f32> = (0..3 * 64 * 64)
        .map(|i| {
            let (c, y, x) = (i / 4096, (i / 64) % 64, i % 64);
            ((x + y) as f32 / 126.0 + c as f32 * 0.1).min(1.0)
        })
        .collect();
    Tensor::from_vec(v, (1, 3, 64, 64), &Device::Cpu).unwrap()
}

/// [1, 1, 64, 64]: repaint the left half.
fn mask() -> Tensor {
    let v: Vec<f32> = (0..64 * 64)
        .map(|i| if i % 64 < 32 { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (1, 1, 64, 64), &Device::Cpu).unwrap()
}

fn request<'a>(init: Option<&'a Tensor>, mask: Option<&'a Tensor>, strength: f64) -> Request<'a> {
    Request {
        prompt: "a red cat in the garden",
        negative_prompt: None,
        width: 64,
        height: 64,
        steps: 2,
        guidance: 5.0,
        scheduler: None,
        init_image: init,
        mask,
        strength,
        prompt_mode: PromptMode::Diffusers,
    }
}

fn draw(p: &Pipeline, req: &Request, seed: u64) -> Tensor {
    p.run(req, &mut TorchRng::new(seed), &mut |_, _, _| true)
        .unwrap()
        .unwrap()
        .image
}

fn load_dir(dir: &Path) -> Pipeline {
    Pipeline::from_diffusers_dir(dir, &[], DType::F32, &Device::Cpu).unwrap()
}

fn load_file(file: &Path, support: &Path) -> Pipeline {
    Pipeline::from_single_file(file, support, &[], DType::F32, &Device::Cpu).unwrap()
}

fn weights(dir: &Path, file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join(file), &Device::Cpu).unwrap()
}

fn config(dir: &Path, file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

fn assert_same_tensors(what: &str, got: &HashMap<String, Tensor>, want: &HashMap<String, Tensor>) {
    let mut missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    missing.sort();
    let mut extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.dims(), w.dims(), "{what} {k}");
        assert_eq!(g.dtype(), w.dtype(), "{what} {k}");
        assert_eq!(max_diff(g, w), 0.0, "{what} {k}");
    }
}

/// The keys of `want` that `got` must hold with the same value (`got` is the config read off
/// the weights, `want` the folder's).
fn assert_config_fits(
    what: &str,
    got: &serde_json::Value,
    want: &serde_json::Value,
    keys: &[&str],
) {
    for k in keys {
        assert_eq!(got[k], want[k], "{what} config `{k}`");
    }
}

/// A folder with only the tokenizer(s): what a single file needs at the least.
fn tokenizers_only(from: &Path, to: &Path) {
    for sub in ["tokenizer", "tokenizer_2"] {
        let src = from.join(sub);
        if !src.is_dir() {
            continue;
        }
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
        }
    }
}

fn family_round_trip(family: TinyFamily) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(family.name());
    make_tiny(&dir, family, 7).unwrap();
    let index = config(&dir, "model_index.json");
    let expected_class = match family {
        TinyFamily::Sdxl => "StableDiffusionXLPipeline",
        TinyFamily::Inpaint => "StableDiffusionInpaintPipeline",
        _ => "StableDiffusionPipeline",
    };
    assert_eq!(index["_class_name"], expected_class);

    let a = load_dir(&dir);
    assert_eq!(a.is_sdxl(), family == TinyFamily::Sdxl);
    let (init, mask) = (init_image(), mask());
    let main = if family == TinyFamily::Inpaint {
        request(Some(&init), Some(&mask), 1.0)
    } else {
        request(None, None, 1.0)
    };
    let x1 = draw(&a, &main, 1);
    let x2 = draw(&a, &main, 2);
    for x in [&x1, &x2] {
        assert_eq!(x.dims(), &[1, 3, 64, 64]);
        assert!(all_finite(x), "{family}: non-finite pixels");
    }
    assert!(
        max_diff(&x1, &x2) > 0.0,
        "{family}: seeds give the same image"
    );
    let flat = x1.flatten_all().unwrap();
    let spread = (flat.max(0).unwrap().to_scalar::<f32>().unwrap()
        - flat.min(0).unwrap().to_scalar::<f32>().unwrap())
    .abs();
    assert!(spread > 0.0, "{family}: a constant image");
    if family != TinyFamily::Inpaint {
        let img2img = request(Some(&init), None, 0.75);
        let y = draw(&a, &img2img, 1);
        assert_eq!(y.dims(), &[1, 3, 64, 64]);
        assert!(all_finite(&y));
    }

    // Single file: the same weights, the same configs, the same pictures.
    let file = tmp.path().join(format!("{}.safetensors", family.name()));
    write_single_file(&dir, &file).unwrap();
    let conv = single_file::convert(&file, &Device::Cpu).unwrap();
    assert_eq!(conv.family, family.model_family());
    assert_same_tensors(
        "unet",
        &conv.unet,
        &weights(&dir, "unet/diffusion_pytorch_model.safetensors"),
    );
    assert_same_tensors(
        "vae",
        &conv.vae,
        &weights(&dir, "vae/diffusion_pytorch_model.safetensors"),
    );
    assert_same_tensors(
        "text_encoder",
        &conv.text_encoder,
        &weights(&dir, "text_encoder/model.safetensors"),
    );
    match &conv.text_encoder_2 {
        Some(te2) => assert_same_tensors(
            "text_encoder_2",
            te2,
            &weights(&dir, "text_encoder_2/model.safetensors"),
        ),
        None => assert!(!dir.join("text_encoder_2").exists()),
    }
    assert_config_fits(
        "unet",
        &conv.configs.unet,
        &config(&dir, "unet/config.json"),
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
            "addition_time_embed_dim",
            "projection_class_embeddings_input_dim",
        ],
    );
    assert_config_fits(
        "vae",
        &conv.configs.vae,
        &config(&dir, "vae/config.json"),
        &[
            "block_out_channels",
            "layers_per_block",
            "latent_channels",
            "norm_num_groups",
            "scaling_factor",
        ],
    );
    let text_keys = [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "hidden_act",
    ];
    assert_config_fits(
        "text_encoder",
        &conv.configs.text_encoder,
        &config(&dir, "text_encoder/config.json"),
        &text_keys,
    );
    if let Some(c) = &conv.configs.text_encoder_2 {
        assert_config_fits(
            "text_encoder_2",
            c,
            &config(&dir, "text_encoder_2/config.json"),
            &text_keys,
        );
        assert_eq!(c["projection_dim"], 40);
    }
    let v = family == TinyFamily::Sd2;
    assert_eq!(
        conv.prediction_type,
        v.then_some(PredictionType::VPrediction),
        "{family}: prediction type from the file"
    );

    let b = load_file(&file, &dir);
    assert_eq!(b.is_sdxl(), family == TinyFamily::Sdxl);
    assert_eq!(
        max_diff(&draw(&b, &main, 1), &x1),
        0.0,
        "{family}: single file"
    );

    // Only the tokenizers: the family's default scheduler is the one make_tiny wrote.
    let bare = tmp.path().join("bare");
    tokenizers_only(&dir, &bare);
    let c = load_file(&file, &bare);
    assert_eq!(
        max_diff(&draw(&c, &main, 1), &x1),
        0.0,
        "{family}: tokenizers only"
    );
}

#[test]
fn sd15_round_trip() {
    family_round_trip(TinyFamily::Sd15);
}

#[test]
fn sd2_round_trip() {
    family_round_trip(TinyFamily::Sd2);
}

#[test]
fn sdxl_round_trip() {
    family_round_trip(TinyFamily::Sdxl);
}

#[test]
fn inpaint_round_trip() {
    family_round_trip(TinyFamily::Inpaint);
}

#[test]
fn family_names_parse() {
    for f in TinyFamily::ALL {
        assert_eq!(f.name().parse::<TinyFamily>().unwrap(), f);
        assert_eq!(f.to_string(), f.name());
    }
    let e = "sd3".parse::<TinyFamily>().unwrap_err().to_string();
    assert!(e.contains("sd3") && e.contains("sd15"), "{e}");
}

#[test]
fn the_same_seed_writes_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    make_tiny(&a, TinyFamily::Sd15, 5).unwrap();
    make_tiny(&b, TinyFamily::Sd15, 5).unwrap();
    make_tiny(&c, TinyFamily::Sd15, 6).unwrap();
    for f in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "tokenizer/special_tokens_map.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs for the same seed");
    }
    let (x, y) = (
        std::fs::read(a.join("unet/diffusion_pytorch_model.safetensors")).unwrap(),
        std::fs::read(c.join("unet/diffusion_pytorch_model.safetensors")).unwrap(),
    );
    assert!(x != y, "another seed gives the same weights");
}

#[test]
fn the_tokenizer_is_a_clip_bpe() {
    let tmp = tempfile::tempdir().unwrap();
    make_tiny(tmp.path(), TinyFamily::Sdxl, 0).unwrap();
    let t =
        easel_diffusion::tokenizer::ClipTokenizer::from_dir(&tmp.path().join("tokenizer")).unwrap();
    let t2 = easel_diffusion::tokenizer::ClipTokenizer::from_dir(&tmp.path().join("tokenizer_2"))
        .unwrap();
    let n = t.vocab_size();
    assert!((900..=1200).contains(&n), "vocabulary of {n}");
    assert_eq!(t.token_id("!"), Some(0));
    assert_eq!(t.token_id("<|startoftext|>"), Some(n as u32 - 2));
    assert_eq!(t.eos(), n as u32 - 1);
    assert_eq!(t.pad(), t.eos());
    assert_eq!(t2.pad(), 0, "the OpenCLIP tokenizer pads with `!`");
    // The built-in words are single tokens; others fall back to smaller pieces.
    let ids = t.encode("a photo of a cat");
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(t.id_to_token(ids[1]), Some("photo</w>"));
    assert!(t.encode("zyzzyva").len() > 3);
    let cfg = config(tmp.path(), "text_encoder/config.json");
    assert_eq!(cfg["vocab_size"], n);
}

#[test]
fn broken_and_unknown_files_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sdxl");
    make_tiny(&dir, TinyFamily::Sdxl, 1).unwrap();
    let good = tmp.path().join("good.safetensors");
    write_single_file(&dir, &good).unwrap();
    let dev = Device::Cpu;
    let load_err = |file: &Path, support: &Path| {
        Pipeline::from_single_file(file, support, &[], DType::F32, &dev)
            .err()
            .expect("should fail")
            .to_string()
    };

    // Not a safetensors file at all, and one cut short.
    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    let e = load_err(&garbage, &dir);
    assert!(
        e.contains("reading checkpoint") && e.contains("garbage.safetensors"),
        "{e}"
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&cut, &dir);
    assert!(
        e.contains("reading checkpoint") && e.contains("cut.safetensors"),
        "{e}"
    );

    // Unknown layout.
    let save = |name: &str, tensors: HashMap<String, Tensor>| {
        let p = tmp.path().join(name);
        candle_core::safetensors::save(&tensors, &p).unwrap();
        p
    };
    let z = Tensor::zeros(4, DType::F32, &dev).unwrap();
    let unknown = save(
        "unknown.safetensors",
        HashMap::from([("encoder.layer.0.weight".to_string(), z.clone())]),
    );
    let e = load_err(&unknown, &dir);
    assert!(e.contains("not a Stable Diffusion checkpoint"), "{e}");

    let all = candle_core::safetensors::load(&good, &dev).unwrap();
    let subset = |keep: &dyn Fn(&str) -> bool| -> HashMap<String, Tensor> {
        all.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect()
    };
    // A UNet and VAE without text encoders.
    let bare = save(
        "bare.safetensors",
        subset(&|k| !k.starts_with("conditioner.")),
    );
    let e = load_err(&bare, &dir);
    assert!(e.contains("no text encoder"), "{e}");
    // No VAE.
    let no_vae = save(
        "no_vae.safetensors",
        subset(&|k| !k.starts_with("first_stage_model.")),
    );
    let e = load_err(&no_vae, &dir);
    assert!(e.contains("no VAE weights"), "{e}");
    // A stray key inside the UNet's namespace.
    let mut stray = subset(&|_| true);
    stray.insert(
        "model.diffusion_model.input_blocks.1.0.mystery.weight".into(),
        z.clone(),
    );
    let stray = save("stray.safetensors", stray);
    let e = load_err(&stray, &dir);
    assert!(
        e.contains("unexpected UNet key `model.diffusion_model.input_blocks.1.0.mystery.weight`"),
        "{e}"
    );
    // A missing tensor is named.
    let missing = save(
        "missing.safetensors",
        subset(&|k| k != "model.diffusion_model.out.2.bias"),
    );
    let e = load_err(&missing, &dir);
    assert!(e.contains("conv_out.bias"), "{e}");

    // The support folder lacks the second tokenizer.
    let one_tok = tmp.path().join("one_tokenizer");
    tokenizers_only(&dir, &one_tok);
    std::fs::remove_dir_all(one_tok.join("tokenizer_2")).unwrap();
    let e = load_err(&good, &one_tok);
    assert!(e.contains("tokenizer_2/") && e.contains("sdxl"), "{e}");

    // A tokenizer larger than the text encoder's vocabulary.
    let other = tmp.path().join("other");
    make_tiny(&other, TinyFamily::Sd15, 1).unwrap();
    let sd15 = tmp.path().join("sd15.safetensors");
    write_single_file(&other, &sd15).unwrap();
    let mut small = HashMap::new();
    for (k, t) in candle_core::safetensors::load(&sd15, &dev).unwrap() {
        let t = if k.ends_with("token_embedding.weight") {
            t.narrow(0, 0, 600).unwrap()
        } else {
            t
        };
        small.insert(k, t);
    }
    let small = save("small_vocab.safetensors", small);
    let e = load_err(&small, &other);
    assert!(e.contains("tokenizer") && e.contains("600"), "{e}");
}

#[test]
fn the_prediction_type_comes_from_the_file_the_config_or_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let sd2 = tmp.path().join("sd2");
    make_tiny(&sd2, TinyFamily::Sd2, 3).unwrap();
    let file = tmp.path().join("sd2.safetensors");
    write_single_file(&sd2, &file).unwrap();
    let conv = single_file::convert(&file, &Device::Cpu).unwrap();
    let bare = tmp.path().join("bare");
    tokenizers_only(&sd2, &bare);

    // The `v_pred` marker wins over an epsilon scheduler config...
    let eps_dir = tmp.path().join("eps");
    tokenizers_only(&sd2, &eps_dir);
    let mut sched = config(&sd2, "scheduler/scheduler_config.json");
    sched["prediction_type"] = "epsilon".into();
    std::fs::create_dir_all(eps_dir.join("scheduler")).unwrap();
    std::fs::write(
        eps_dir.join("scheduler/scheduler_config.json"),
        serde_json::to_string(&sched).unwrap(),
    )
    .unwrap();
    let s = single_file::scheduler_config(&conv, &eps_dir, &SingleFileOptions::default()).unwrap();
    assert_eq!(s["prediction_type"], "v_prediction");
    // ...and the caller wins over both.
    let opts = SingleFileOptions {
        prediction_type: Some(PredictionType::Epsilon),
    };
    let s = single_file::scheduler_config(&conv, &bare, &opts).unwrap();
    assert_eq!(s["prediction_type"], "epsilon");
    assert_eq!(s["_class_name"], "DDIMScheduler");
    let p = Pipeline::from_single_file_with(&file, &bare, &opts, &[], DType::F32, &Device::Cpu)
        .unwrap();
    let v = load_file(&file, &bare);
    let req = request(None, None, 1.0);
    assert!(max_diff(&draw(&p, &req, 1), &draw(&v, &req, 1)) > 0.0);

    // Without a marker, the scheduler config decides; without one, the family default.
    let sd15 = tmp.path().join("sd15");
    make_tiny(&sd15, TinyFamily::Sd15, 3).unwrap();
    let file15 = tmp.path().join("sd15.safetensors");
    write_single_file(&sd15, &file15).unwrap();
    let conv15 = single_file::convert(&file15, &Device::Cpu).unwrap();
    assert_eq!(conv15.prediction_type, None);
    let bare15 = tmp.path().join("bare15");
    tokenizers_only(&sd15, &bare15);
    let s = single_file::scheduler_config(&conv15, &bare15, &SingleFileOptions::default()).unwrap();
    assert_eq!(s["_class_name"], "PNDMScheduler");
    assert_eq!(s["prediction_type"], "epsilon");
    let s =
        single_file::scheduler_config(&conv15, &eps_dir, &SingleFileOptions::default()).unwrap();
    assert_eq!(s["_class_name"], "DDIMScheduler");
    assert_eq!(s["prediction_type"], "epsilon");
}
