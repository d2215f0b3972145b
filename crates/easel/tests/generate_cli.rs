//! `easel models make-tiny` and `easel generate`, run as the binary: a tiny model written in
//! the diffusers and single-file layouts, then images generated from each, from the folder
//! name under `<data-dir>/models/` and from a path.

use std::process::Command;

fn easel(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .env("EASEL_DATA_DIR", data_dir)
        .env_remove("EASEL_CONFIG")
        .output()
        .expect("runs")
}

fn ok(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string() + &stderr
}

#[test]
fn make_tiny_then_generate_from_folder_and_single_file() {
    let data = tempfile::tempdir().unwrap();
    let models = data.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let dir = models.join("tiny");
    let dir_s = dir.to_str().unwrap();
    ok(&easel(
        &[
            "models",
            "make-tiny",
            dir_s,
            "--family",
            "sd15",
            "--single-file",
        ],
        data.path(),
    ));
    assert!(dir.join("model_index.json").is_file());
    let single = models.join("tiny-single-file.safetensors");
    assert!(single.is_file());
    // Refuses to overwrite.
    let again = easel(&["models", "make-tiny", dir_s], data.path());
    assert!(!again.status.success());
    let bad = easel(
        &[
            "models",
            "make-tiny",
            "/tmp/x-easel-never",
            "--family",
            "sd9",
        ],
        data.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("sd9"));

    // By name, two images, seed 5: files out-0.png and out-1.png with the seeds recorded.
    let out = data.path().join("out.png");
    let log = ok(&easel(
        &[
            "generate",
            "a red fox",
            "--model",
            "tiny",
            "-o",
            out.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--seed",
            "5",
            "--count",
            "2",
            "--scheduler",
            "dpmpp_2m_karras",
        ],
        data.path(),
    ));
    assert!(log.contains("step 4/4"), "{log}");
    let a = std::fs::read(data.path().join("out-0.png")).unwrap();
    let b = std::fs::read(data.path().join("out-1.png")).unwrap();
    let text = easel_imageops::read_png_text(&a);
    let params = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
    assert!(params.contains("Seed: 5,"), "{params}");
    assert!(params.contains("Sampler: dpmpp_2m_karras"), "{params}");
    assert!(easel_imageops::read_png_text(&b)
        .iter()
        .any(|(k, v)| k == "parameters" && v.contains("Seed: 6,")));

    // The single file gives the same pixels as the folder (same weights, same seed).
    let one = data.path().join("one.png");
    let from_file = data.path().join("file.png");
    for (model, path) in [(dir_s, &one), (single.to_str().unwrap(), &from_file)] {
        ok(&easel(
            &[
                "generate",
                "a red fox",
                "--model",
                model,
                "-o",
                path.to_str().unwrap(),
                "--width",
                "64",
                "--height",
                "64",
                "--steps",
                "2",
                "--seed",
                "5",
            ],
            data.path(),
        ));
    }
    let px = |p: &std::path::Path| image::open(p).unwrap().to_rgb8().into_raw();
    assert_eq!(px(&one), px(&from_file));

    // img2img from a file, then a clear error for a missing model and a bad scheduler.
    let img = data.path().join("img.png");
    let log = ok(&easel(
        &[
            "generate",
            "a boat",
            "--model",
            "tiny",
            "-o",
            img.to_str().unwrap(),
            "--init-image",
            one.to_str().unwrap(),
            "--strength",
            "0.5",
            "--steps",
            "4",
        ],
        data.path(),
    ));
    assert!(log.contains("img2img"), "{log}");
    assert_eq!(image::open(&img).unwrap().width(), 64);
    // A LoRA file with a scale (made by make-tiny --lora) changes the image.
    let other = data.path().join("lt");
    ok(&easel(
        &[
            "models",
            "make-tiny",
            other.to_str().unwrap(),
            "--lora",
            "kohya",
        ],
        data.path(),
    ));
    let lora = data.path().join("lt-lora.safetensors");
    let (plain, styled) = (data.path().join("p.png"), data.path().join("s.png"));
    for (path, extra) in [
        (&plain, None),
        (&styled, Some(format!("{}:0.8", lora.display()))),
    ] {
        let mut args = vec![
            "generate",
            "x",
            "--model",
            other.to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--seed",
            "1",
        ];
        if let Some(l) = &extra {
            args.extend(["--lora", l.as_str()]);
        }
        ok(&easel(&args, data.path()));
    }
    assert_ne!(px(&plain), px(&styled));

    let missing = easel(&["generate", "x", "--model", "nope"], data.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no model `nope`"));
    let bad = easel(
        &["generate", "x", "--model", "tiny", "--scheduler", "warp"],
        data.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("scheduler"));
    let bad = easel(
        &["generate", "x", "--model", "tiny", "--precision", "fp8"],
        data.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected `f32`, `bf16` or `f16`"));
    // bf16 weights and products run end to end (its pixels against f32: `sd::tests`).
    let half = data.path().join("half.png");
    ok(&easel(
        &[
            "generate",
            "a red fox",
            "--model",
            "tiny",
            "-o",
            half.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--precision",
            "bf16",
        ],
        data.path(),
    ));
    assert_eq!(px(&half).len(), 64 * 64 * 3);

    // An existing output is refused before anything runs, unless --force; an expected error
    // is one line, even with backtraces asked for.
    let again = [
        "generate",
        "x",
        "--model",
        "tiny",
        "-o",
        one.to_str().unwrap(),
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "1",
    ];
    let refused = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(again)
        .env("EASEL_DATA_DIR", data.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let before = std::fs::read(&one).unwrap();
    let mut forced = again.to_vec();
    forced.push("--force");
    ok(&easel(&forced, data.path()));
    assert_ne!(std::fs::read(&one).unwrap(), before, "replaced");
}

/// `make-tiny --tiny-vae` writes the family's TAESD where the engine looks, and
/// `generate --decoder taesd` decodes with it (other pixels, recorded in the parameters);
/// without one, the refusal says where to put it.
#[test]
fn the_tiny_autoencoder_from_make_tiny_decodes_when_asked() {
    let data = tempfile::tempdir().unwrap();
    let models = data.path().join("models");
    let dir = models.join("tiny");
    let gen = |out: &std::path::Path, decoder: &str| {
        easel(
            &[
                "generate",
                "a red fox",
                "--model",
                "tiny",
                "-o",
                out.to_str().unwrap(),
                "--width",
                "64",
                "--height",
                "64",
                "--steps",
                "2",
                "--seed",
                "5",
                "--decoder",
                decoder,
            ],
            data.path(),
        )
    };
    ok(&easel(
        &["models", "make-tiny", dir.to_str().unwrap()],
        data.path(),
    ));
    let refused = gen(&data.path().join("no.png"), "taesd");
    assert!(!refused.status.success());
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("vae_approx/") && msg.contains("`taesd`"),
        "{msg}"
    );

    let dir2 = models.join("tiny2");
    let log = ok(&easel(
        &["models", "make-tiny", dir2.to_str().unwrap(), "--tiny-vae"],
        data.path(),
    ));
    assert!(log.contains("tiny autoencoder"), "{log}");
    assert!(models.join("vae_approx/taesd/config.json").is_file());
    // A second one keeps it.
    let log = ok(&easel(
        &[
            "models",
            "make-tiny",
            models.join("tiny3").to_str().unwrap(),
            "--tiny-vae",
        ],
        data.path(),
    ));
    assert!(log.contains("kept"), "{log}");
    let sana = easel(
        &[
            "models",
            "make-tiny",
            "/tmp/x-easel-never",
            "--family",
            "sana",
            "--tiny-vae",
        ],
        data.path(),
    );
    assert!(!sana.status.success());

    let (vae, fast) = (data.path().join("vae.png"), data.path().join("fast.png"));
    ok(&gen(&vae, "vae"));
    ok(&gen(&fast, "taesd"));
    let px = |p: &std::path::Path| image::open(p).unwrap().to_rgb8().into_raw();
    assert_ne!(px(&vae), px(&fast));
    let text = easel_imageops::read_png_text(&std::fs::read(&fast).unwrap());
    let params = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
    assert!(params.ends_with("VAE: taesd"), "{params}");
    let bad = gen(&data.path().join("bad.png"), "tiny");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("decoder"));
}
