//! The engine's pipeline cache: hits return the loaded pipeline, misses load, and the least
//! recently used pipelines are unloaded under `max_loaded_models` and `memory_budget`.

use std::path::PathBuf;
use std::sync::Arc;

use easel_diffusion::tiny::make_tiny;
use easel_providers::diffusion::{find_support, Engine, EngineConfig, LoadSpec};

fn models(n: usize) -> (tempfile::TempDir, Vec<LoadSpec>) {
    let dir = tempfile::tempdir().unwrap();
    let specs = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("m{i}"));
            make_tiny(&p, "sd15", i as u64).unwrap();
            LoadSpec {
                source: p,
                support: None,
                family: "sd15".into(),
                loras: vec![],
            }
        })
        .collect();
    (dir, specs)
}

fn sources(e: &Engine) -> Vec<PathBuf> {
    e.loaded().into_iter().map(|s| s.source).collect()
}

#[test]
fn lru_under_max_loaded_models() {
    let (_dir, m) = models(3);
    let e = Engine::new(EngineConfig {
        max_loaded_models: 2,
        ..Default::default()
    })
    .unwrap();
    let a = e.pipeline(&m[0]).unwrap();
    let b = e.pipeline(&m[1]).unwrap();
    assert_eq!(sources(&e), [m[0].source.clone(), m[1].source.clone()]);
    // A hit returns the same pipeline and makes it the most recent.
    let a2 = e.pipeline(&m[0]).unwrap();
    assert!(Arc::ptr_eq(&a, &a2));
    assert_eq!(sources(&e), [m[1].source.clone(), m[0].source.clone()]);
    // A third model unloads the least recently used (m1).
    e.pipeline(&m[2]).unwrap();
    assert_eq!(sources(&e), [m[0].source.clone(), m[2].source.clone()]);
    let b2 = e.pipeline(&m[1]).unwrap();
    assert!(!Arc::ptr_eq(&b, &b2), "m1 was unloaded and loaded again");
}

#[test]
fn memory_budget_unloads_to_fit() {
    let (_dir, m) = models(2);
    let size: u64 = walk(&m[0].source);
    assert!(size > 0);
    let e = Engine::new(EngineConfig {
        max_loaded_models: 8,
        memory_budget: Some(size + size / 2),
        ..Default::default()
    })
    .unwrap();
    e.pipeline(&m[0]).unwrap();
    e.pipeline(&m[1]).unwrap();
    assert_eq!(sources(&e), [m[1].source.clone()], "both do not fit");
    // A budget below one model still loads it, alone.
    let e = Engine::new(EngineConfig {
        max_loaded_models: 8,
        memory_budget: Some(1),
        ..Default::default()
    })
    .unwrap();
    e.pipeline(&m[0]).unwrap();
    assert_eq!(sources(&e).len(), 1);
}

#[test]
fn a_different_lora_set_is_a_different_pipeline_and_errors_are_clear() {
    let (dir, m) = models(1);
    let e = Engine::new(EngineConfig::default()).unwrap();
    let mut with_lora = m[0].clone();
    with_lora.loras = vec![(dir.path().join("missing.safetensors"), 0.5)];
    let err = e.pipeline(&with_lora).err().expect("fails");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");
    assert_eq!(err.field.as_deref(), Some("input.loras"));
    let broken = LoadSpec {
        source: dir.path().join("nothing-here"),
        ..m[0].clone()
    };
    let err = e.pipeline(&broken).err().expect("fails");
    assert!(err.to_string().contains("nothing-here"), "{err}");
    assert!(Engine::new(EngineConfig {
        device: "quantum".into(),
        ..Default::default()
    })
    .is_err());
}

#[test]
fn single_files_find_their_tokenizer_beside_them() {
    let (dir, m) = models(1);
    let file = dir.path().join("m0-single-file.safetensors");
    easel_diffusion::sd::single_file::write_single_file(&m[0].source, &file).unwrap();
    assert_eq!(find_support(&file, "sd15"), Some(m[0].source.clone()));
    assert_eq!(find_support(&file, "sdxl"), None);
    let e = Engine::new(EngineConfig::default()).unwrap();
    e.pipeline(&LoadSpec {
        source: file.clone(),
        support: None,
        family: "sd15".into(),
        loras: vec![],
    })
    .unwrap();
    // Alone in a folder, a clear error says what is missing.
    let lonely = tempfile::tempdir().unwrap();
    let f2 = lonely.path().join("x.safetensors");
    std::fs::copy(&file, &f2).unwrap();
    let err = e
        .pipeline(&LoadSpec {
            source: f2,
            support: None,
            family: "sd15".into(),
            loras: vec![],
        })
        .err()
        .expect("fails");
    assert!(err.to_string().contains("tokenizer"), "{err}");
}

fn walk(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else if p.extension().is_some_and(|x| x == "safetensors") {
                std::fs::metadata(&p).unwrap().len()
            } else {
                0
            }
        })
        .sum()
}

/// `decoder: taesd`: refused, naming the field and where to put one, until a tiny autoencoder
/// is in the models folder's `vae_approx/`; then found (also after the model loaded) and
/// used: other pixels than the VAE's from the same seed, recorded in the image's parameters.
#[test]
fn the_tiny_autoencoder_decodes_when_asked_and_installed() {
    use easel_core::generate::{Decoder, GenerateInput};
    use easel_core::limits::Limits;
    use easel_providers::diffusion::{generate, Prepared};
    use easel_queue::{RunContext, RunError};

    let (dir, m) = models(1);
    let e = Engine::new(EngineConfig {
        model_roots: vec![dir.path().to_path_buf()],
        ..Default::default()
    })
    .unwrap();
    let job = |decoder| {
        let mut input = GenerateInput {
            prompt: "a fox".into(),
            width: Some(64),
            height: Some(64),
            steps: Some(2),
            seed: Some(3),
            decoder,
            ..Default::default()
        };
        input.fill_defaults(
            "txt2img",
            &easel_providers::family::defaults("sd15"),
            &Default::default(),
            None,
            0,
        );
        Prepared {
            input,
            task: "txt2img".into(),
            model_name: "m0".into(),
            model_family: "sd15".into(),
            load: m[0].clone(),
            init: None,
            mask: None,
            init_id: None,
        }
    };
    let run = |p: &Prepared| generate(&e, p, &Limits::default(), &RunContext::detached());
    let vae = run(&job(None)).unwrap();
    let Err(RunError::Failed(err)) = run(&job(Some(Decoder::Taesd))) else {
        panic!("refused without a tiny autoencoder")
    };
    assert!(
        err.message.contains("vae_approx/") && err.message.contains("taesd"),
        "{err:?}"
    );

    easel_diffusion::taesd::make_tiny(
        &dir.path()
            .join(easel_diffusion::taesd::FOLDER)
            .join("taesd"),
        4,
        9,
    )
    .unwrap();
    let fast = run(&job(Some(Decoder::Taesd))).unwrap();
    assert_eq!((fast[0].width, fast[0].height), (64, 64));
    let pixels = |o: &easel_queue::OutputImage| {
        easel_imageops::decode(&o.bytes, 1 << 30)
            .unwrap()
            .to_rgb8()
            .into_raw()
    };
    assert_ne!(pixels(&fast[0]), pixels(&vae[0]));
    assert_eq!(fast[0].metadata["decoder"], "taesd");
    let params = fast[0].metadata["parameters"].as_str().unwrap();
    assert!(params.ends_with(", VAE: taesd"), "{params}");
    // Asking for the VAE still gives the VAE's image.
    let again = run(&job(Some(Decoder::Vae))).unwrap();
    assert_eq!(pixels(&again[0]), pixels(&vae[0]));
    // Replaced on disk (as a pull with --force does): the next job decodes with the new one.
    let taesd = dir
        .path()
        .join(easel_diffusion::taesd::FOLDER)
        .join("taesd");
    std::fs::remove_dir_all(&taesd).unwrap();
    easel_diffusion::taesd::make_tiny(&taesd, 4, 10).unwrap();
    let replaced = run(&job(Some(Decoder::Taesd))).unwrap();
    assert_ne!(pixels(&replaced[0]), pixels(&fast[0]));
}
