//! `make_tiny` builds a working model of every family in the real diffusers layout, and
//! `write_single_file` turns it into an LDM / A1111 checkpoint that loads back, without any
//! config folder, to exactly the same weights and images. `make_tiny_lora` writes LoRAs for
//! them in the diffusers, PEFT and kohya layouts that load, merge alike and change the images.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use easel_diffusion::lora::Lora;
use easel_diffusion::rng::TorchRng;
use easel_diffusion::schedulers::PredictionType;
use easel_diffusion::sd::pipeline::{Pipeline, PromptMode, Request};
use easel_diffusion::sd::single_file::{self, SingleFileOptions};
use easel_diffusion::sd::tiny::{make_tiny, make_tiny_lora, write_single_file, LoraLayout};
use easel_diffusion::sd::Variant;

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
        tiny_vae: None,
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

fn family_round_trip(family: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(family.family().id);
    make_tiny(family, &dir, 7).unwrap();
    let index = config(&dir, "model_index.json");
    let expected_class = match family {
        Variant::Sdxl => "StableDiffusionXLPipeline",
        Variant::Inpaint => "StableDiffusionInpaintPipeline",
        _ => "StableDiffusionPipeline",
    };
    assert_eq!(index["_class_name"], expected_class);

    let a = load_dir(&dir);
    assert_eq!(a.has_second_encoder(), family == Variant::Sdxl);
    let (init, mask) = (init_image(), mask());
    let main = if family == Variant::Inpaint {
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
    if family != Variant::Inpaint {
        let img2img = request(Some(&init), None, 0.75);
        let y = draw(&a, &img2img, 1);
        assert_eq!(y.dims(), &[1, 3, 64, 64]);
        assert!(all_finite(&y));
    }

    // Single file: the same weights, the same configs, the same pictures.
    let file = tmp
        .path()
        .join(format!("{}.safetensors", family.family().id));
    write_single_file(&dir, &file).unwrap();
    let conv = single_file::convert(&file, candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(conv.family, family.family().id);
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
    let v = family == Variant::Sd2;
    assert_eq!(
        conv.prediction_type,
        v.then_some(PredictionType::VPrediction),
        "{family}: prediction type from the file"
    );

    let b = load_file(&file, &dir);
    assert_eq!(b.has_second_encoder(), family == Variant::Sdxl);
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
    family_round_trip(Variant::Sd15);
}

#[test]
fn sd2_round_trip() {
    family_round_trip(Variant::Sd2);
}

#[test]
fn sdxl_round_trip() {
    family_round_trip(Variant::Sdxl);
}

#[test]
fn inpaint_round_trip() {
    family_round_trip(Variant::Inpaint);
}

#[test]
fn family_names_parse() {
    for v in Variant::ALL {
        let f = v.family();
        assert_eq!(easel_diffusion::family::parse(f.id).unwrap(), f);
    }
    let e = easel_diffusion::tiny::make_tiny(std::path::Path::new("/nonexistent"), "sd3", 0)
        .unwrap_err()
        .to_string();
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
    make_tiny(Variant::Sd15, &a, 5).unwrap();
    make_tiny(Variant::Sd15, &b, 5).unwrap();
    make_tiny(Variant::Sd15, &c, 6).unwrap();
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
    make_tiny(Variant::Sdxl, tmp.path(), 0).unwrap();
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
    make_tiny(Variant::Sdxl, &dir, 1).unwrap();
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
    make_tiny(Variant::Sd15, &other, 1).unwrap();
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
    make_tiny(Variant::Sd2, &sd2, 3).unwrap();
    let file = tmp.path().join("sd2.safetensors");
    write_single_file(&sd2, &file).unwrap();
    let conv = single_file::convert(&file, candle_core::DType::F32, &Device::Cpu).unwrap();
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
    make_tiny(Variant::Sd15, &sd15, 3).unwrap();
    let file15 = tmp.path().join("sd15.safetensors");
    write_single_file(&sd15, &file15).unwrap();
    let conv15 = single_file::convert(&file15, candle_core::DType::F32, &Device::Cpu).unwrap();
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

// ---------------------------------------------------------------------------------------------
// LoRAs.

/// A safetensors file's JSON header.
fn header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

/// The weights files of a diffusers folder's LoRA-adaptable components.
fn components(dir: &Path) -> Vec<(&'static str, &'static str)> {
    [
        ("unet", "unet/diffusion_pytorch_model.safetensors"),
        ("text_encoder", "text_encoder/model.safetensors"),
        ("text_encoder_2", "text_encoder_2/model.safetensors"),
    ]
    .into_iter()
    .filter(|(_, f)| dir.join(f).is_file())
    .collect()
}

/// Every component's weights with `loras` merged (the loader's own merge).
fn merged(dir: &Path, loras: &[(&Lora, f64)]) -> Vec<(&'static str, HashMap<String, Tensor>)> {
    components(dir)
        .into_iter()
        .map(|(comp, file)| {
            let mut t = weights(dir, file);
            easel_diffusion::loader::merge_loras(&mut t, comp, loras, &Device::Cpu).unwrap();
            (comp, t)
        })
        .collect()
}

/// Whether a weight name is one `make_tiny_lora` adapts.
fn is_target(name: &str) -> bool {
    [
        ".to_q.weight",
        ".to_k.weight",
        ".to_v.weight",
        ".to_out.0.weight",
        ".self_attn.q_proj.weight",
        ".self_attn.k_proj.weight",
        ".self_attn.v_proj.weight",
        ".self_attn.out_proj.weight",
    ]
    .iter()
    .any(|s| name.ends_with(s))
}

fn lora_file(tmp: &Path, layout: LoraLayout) -> std::path::PathBuf {
    tmp.join(format!("lora-{layout}.safetensors"))
}

fn load_with(dir: &Path, loras: &[(&Lora, f64)]) -> Pipeline {
    Pipeline::from_diffusers_dir(dir, loras, DType::F32, &Device::Cpu).unwrap()
}

fn lora_layouts_merge_alike(family: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(family.family().id);
    make_tiny(family, &dir, 11).unwrap();
    let targets: usize = components(&dir)
        .iter()
        .map(|(_, f)| weights(&dir, f).keys().filter(|k| is_target(k)).count())
        .sum();
    assert!(targets >= 40, "{family}: {targets} attention projections");

    let mut loras = Vec::new();
    for layout in LoraLayout::ALL {
        let path = lora_file(tmp.path(), layout);
        make_tiny_lora(&dir, &path, layout, 4, 3).unwrap();
        let lora = Lora::load(&path).unwrap_or_else(|e| panic!("{family} {layout}: {e}"));
        assert_eq!(lora.len(), targets, "{family} {layout}: adapted modules");
        loras.push((layout, lora));
    }

    // The three layouts merge to the same weights, bit for bit; every target changes and
    // nothing else does.
    let base = merged(&dir, &[]);
    let reference = merged(&dir, &[(&loras[0].1, 1.0)]);
    for (layout, lora) in &loras[1..] {
        for ((comp, got), (_, want)) in merged(&dir, &[(lora, 1.0)]).iter().zip(&reference) {
            assert_same_tensors(
                &format!("{family} {layout} vs diffusers: {comp}"),
                got,
                want,
            );
        }
    }
    for ((comp, m), (_, b)) in reference.iter().zip(&base) {
        for (k, w) in b {
            let d = max_diff(&m[k], w);
            if is_target(k) {
                assert!(d > 1e-2, "{family} {comp} {k}: the LoRA changed it by {d}");
            } else {
                assert_eq!(d, 0.0, "{family} {comp} {k} is no LoRA target");
            }
        }
    }

    // Images: the LoRA changes them, each layout alike; scale 0 gives the base image exactly.
    let req = request(None, None, 1.0);
    let base_img = draw(&load_dir(&dir), &req, 1);
    let lora_img = draw(&load_with(&dir, &[(&loras[0].1, 1.0)]), &req, 1);
    assert!(
        all_finite(&lora_img),
        "{family}: non-finite pixels with the LoRA"
    );
    let d = max_diff(&lora_img, &base_img);
    let mean = (&lora_img - &base_img)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        d > 0.1 && mean > 0.005,
        "{family}: the LoRA barely changes the image (max {d}, mean {mean})"
    );
    for (layout, lora) in &loras[1..] {
        let img = draw(&load_with(&dir, &[(lora, 1.0)]), &req, 1);
        assert_eq!(
            max_diff(&img, &lora_img),
            0.0,
            "{family}: {layout} draws another image"
        );
    }
    let zero = draw(&load_with(&dir, &[(&loras[2].1, 0.0)]), &req, 1);
    assert_eq!(max_diff(&zero, &base_img), 0.0, "{family}: scale 0");

    // Two LoRAs at once: the merged weights are the sum of both scaled deltas.
    let other_path = tmp.path().join("other.safetensors");
    make_tiny_lora(&dir, &other_path, LoraLayout::Kohya, 2, 9).unwrap();
    let other = Lora::load(&other_path).unwrap();
    let (a, b) = (&loras[1].1, &other);
    let both = merged(&dir, &[(a, 0.5), (b, 1.0)]);
    let only_a = merged(&dir, &[(a, 1.0)]);
    let only_b = merged(&dir, &[(b, 1.0)]);
    for (i, (comp, m)) in both.iter().enumerate() {
        for (k, w) in &base[i].1 {
            let want = ((w + ((&only_a[i].1[k] - w).unwrap() * 0.5).unwrap()).unwrap()
                + (&only_b[i].1[k] - w).unwrap())
            .unwrap();
            let d = max_diff(&m[k], &want);
            assert!(d < 1e-5, "{family} {comp} {k}: two LoRAs off by {d}");
        }
    }
    let two = draw(&load_with(&dir, &[(a, 0.5), (b, 1.0)]), &req, 1);
    assert!(
        all_finite(&two),
        "{family}: non-finite pixels with two LoRAs"
    );
    let b_img = draw(&load_with(&dir, &[(b, 1.0)]), &req, 1);
    for (what, img) in [
        ("base", &base_img),
        ("the first", &lora_img),
        ("the second", &b_img),
    ] {
        assert!(
            max_diff(&two, img) > 1e-3,
            "{family}: two LoRAs draw what {what} draws"
        );
    }
}

#[test]
fn sd15_lora_layouts() {
    lora_layouts_merge_alike(Variant::Sd15);
}

#[test]
fn sdxl_lora_layouts() {
    lora_layouts_merge_alike(Variant::Sdxl);
}

/// The keys and metadata of each layout, as the tools that write them spell them; the same
/// numbers under each; and kohya's SDXL UNet names are the SGM ones a single file uses for the
/// same weights.
#[test]
fn lora_files_use_the_real_key_names() {
    let tmp = tempfile::tempdir().unwrap();
    let names = |path: &Path| -> Vec<String> {
        let h = header(path);
        let mut k: Vec<String> = h.as_object().unwrap().keys().cloned().collect();
        k.retain(|k| k != "__metadata__");
        k
    };
    let attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
    let te = "text_model.encoder.layers.0.self_attn";
    let sd15 = tmp.path().join("sd15");
    make_tiny(Variant::Sd15, &sd15, 2).unwrap();
    let expect = [
        (
            LoraLayout::Diffusers,
            vec![
                format!("unet.{attn}.to_q.lora.down.weight"),
                format!("unet.{attn}.to_out.0.lora.up.weight"),
                format!("text_encoder.{te}.q_proj.lora_linear_layer.down.weight"),
                format!("text_encoder.{te}.out_proj.lora_linear_layer.up.weight"),
            ],
        ),
        (
            LoraLayout::Peft,
            vec![
                format!("unet.{attn}.to_q.lora_A.weight"),
                format!("unet.{attn}.to_out.0.lora_B.weight"),
                format!("text_encoder.{te}.q_proj.lora_A.weight"),
                format!("text_encoder.{te}.out_proj.lora_B.weight"),
            ],
        ),
        (
            LoraLayout::Kohya,
            vec![
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight".into(),
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight".into(),
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.alpha".into(),
                "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight".into(),
                "lora_te_text_model_encoder_layers_1_self_attn_out_proj.alpha".into(),
            ],
        ),
    ];
    let mut files = HashMap::new();
    for (layout, keys) in &expect {
        let path = lora_file(tmp.path(), *layout);
        make_tiny_lora(&sd15, &path, *layout, 4, 1).unwrap();
        let got = names(&path);
        for k in keys {
            assert!(got.contains(k), "{layout}: no `{k}` in {got:?}");
        }
        let pairs = if *layout == LoraLayout::Kohya { 3 } else { 2 };
        assert_eq!(got.len() % pairs, 0, "{layout}");
        files.insert(*layout, path);
    }
    let meta = |l: LoraLayout| header(&files[&l])["__metadata__"].clone();
    assert_eq!(meta(LoraLayout::Diffusers)["format"], "pt");
    assert_eq!(meta(LoraLayout::Peft)["format"], "pt");
    let k = meta(LoraLayout::Kohya);
    assert_eq!(k["ss_network_module"], "networks.lora");
    assert_eq!(k["ss_network_dim"], "4");
    assert_eq!(k["ss_network_alpha"], "4.0");
    assert_eq!(k["ss_base_model_version"], "sd_v1");
    assert_eq!(k["modelspec.architecture"], "stable-diffusion-v1/lora");
    let kohya = weights(tmp.path(), "lora-kohya.safetensors");
    let alpha = &kohya[&format!("lora_te_{}_q_proj.alpha", te.replace('.', "_"))];
    assert_eq!(alpha.dims(), &[] as &[usize]);
    assert_eq!(alpha.to_scalar::<f32>().unwrap(), 4.0);

    // The same numbers under every layout's names; the same seed writes the same bytes.
    let peft = weights(tmp.path(), "lora-peft.safetensors");
    let diffusers = weights(tmp.path(), "lora-diffusers.safetensors");
    let q = format!("{te}.q_proj");
    assert_eq!(
        max_diff(
            &peft[&format!("text_encoder.{q}.lora_A.weight")],
            &diffusers[&format!("text_encoder.{q}.lora_linear_layer.down.weight")]
        ),
        0.0
    );
    assert_eq!(
        max_diff(
            &peft[&format!("unet.{attn}.to_out.0.lora_B.weight")],
            &kohya[&format!(
                "lora_unet_{}_to_out_0.lora_up.weight",
                attn.replace('.', "_")
            )]
        ),
        0.0
    );
    // (The same file name: kohya's metadata names the file.)
    let again = tmp.path().join("again/lora-kohya.safetensors");
    make_tiny_lora(&sd15, &again, LoraLayout::Kohya, 4, 1).unwrap();
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&files[&LoraLayout::Kohya]).unwrap());
    make_tiny_lora(&sd15, &again, LoraLayout::Kohya, 4, 2).unwrap();
    assert!(std::fs::read(&again).unwrap() != std::fs::read(&files[&LoraLayout::Kohya]).unwrap());

    // SDXL: two text encoders, and SGM names for kohya's UNet modules.
    let xl = tmp.path().join("sdxl");
    make_tiny(Variant::Sdxl, &xl, 2).unwrap();
    let xl_peft = tmp.path().join("xl-peft.safetensors");
    let xl_kohya = tmp.path().join("xl-kohya.safetensors");
    make_tiny_lora(&xl, &xl_peft, LoraLayout::Peft, 2, 5).unwrap();
    make_tiny_lora(&xl, &xl_kohya, LoraLayout::Kohya, 2, 5).unwrap();
    let got = names(&xl_kohya);
    for k in [
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight",
        "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q.alpha",
        "lora_unet_output_blocks_2_1_transformer_blocks_0_attn1_to_out_0.lora_up.weight",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
        "lora_te2_text_model_encoder_layers_1_self_attn_out_proj.lora_up.weight",
    ] {
        assert!(got.contains(&k.to_string()), "sdxl kohya: no `{k}`");
    }
    assert!(!got.iter().any(|k| k.contains("down_blocks")), "{got:?}");
    assert!(names(&xl_peft).contains(
        &"text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj.lora_A.weight".into()
    ));
    let xk = header(&xl_kohya);
    assert_eq!(
        xk["__metadata__"]["ss_base_model_version"],
        "sdxl_base_v1-0"
    );
    assert_eq!(
        xk["__metadata__"]["modelspec.architecture"],
        "stable-diffusion-xl-v1-base/lora"
    );

    // Each kohya UNet module is, in the single file, the weight its PEFT twin (the same
    // numbers) targets in the diffusers folder.
    let single = tmp.path().join("sdxl.safetensors");
    write_single_file(&xl, &single).unwrap();
    let single = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let by_underscores: HashMap<String, &Tensor> = single
        .iter()
        .filter_map(|(k, t)| {
            let k = k
                .strip_prefix("model.diffusion_model.")?
                .strip_suffix(".weight")?;
            Some((k.replace('.', "_"), t))
        })
        .collect();
    let (xp, xk) = (
        weights(tmp.path(), "xl-peft.safetensors"),
        weights(tmp.path(), "xl-kohya.safetensors"),
    );
    let unet = weights(&xl, "unet/diffusion_pytorch_model.safetensors");
    let mut checked = 0;
    for (key, down) in &xk {
        let Some(module) = key
            .strip_prefix("lora_unet_")
            .and_then(|k| k.strip_suffix(".lora_down.weight"))
        else {
            continue;
        };
        let twin = xp
            .iter()
            .find(|(k, t)| {
                k.ends_with(".lora_A.weight") && t.dims() == down.dims() && max_diff(t, down) == 0.0
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("no PEFT twin of {key}"));
        let diffusers_name = format!(
            "{}.weight",
            twin.strip_prefix("unet.")
                .unwrap()
                .strip_suffix(".lora_A.weight")
                .unwrap()
        );
        let in_single = by_underscores
            .get(module)
            .unwrap_or_else(|| panic!("{module} is no single-file UNet weight"));
        assert_eq!(
            max_diff(in_single, &unet[&diffusers_name]),
            0.0,
            "{module} vs {diffusers_name}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "{checked} kohya UNet modules");
}

#[test]
fn lora_layout_names_parse() {
    for l in LoraLayout::ALL {
        assert_eq!(l.name().parse::<LoraLayout>().unwrap(), l);
        assert_eq!(l.to_string(), l.name());
    }
    let e = "lycoris".parse::<LoraLayout>().unwrap_err().to_string();
    assert!(e.contains("lycoris") && e.contains("kohya"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    make_tiny(Variant::Sd15, tmp.path(), 0).unwrap();
    let out = tmp.path().join("x.safetensors");
    assert!(make_tiny_lora(tmp.path(), &out, LoraLayout::Peft, 0, 0).is_err());
    let e = make_tiny_lora(&tmp.path().join("nowhere"), &out, LoraLayout::Peft, 4, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere"), "{e}");
}
