//! VAE parity: for every fixture case, decoding the final latents gives the recorded image
//! (≤ 1e-3 abs), and encoding an init image gives the recorded posterior (≤ 1e-4 abs).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use easel_diffusion::vae::Vae;

fn parity_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EASEL_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
        });
    if dir.join("cases").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: parity fixtures not found at {}", dir.display());
        None
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
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

#[test]
fn decode_and_encode_match_diffusers() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let (mut decoded, mut encoded) = (0, 0);
    for path in cases {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("case.json")).unwrap())
                .unwrap();
        let vae = Vae::from_dir(
            &dir.join("models")
                .join(meta["model"].as_str().unwrap())
                .join("vae"),
            DType::F32,
            &dev,
        )
        .unwrap();
        let t = candle_core::safetensors::load(path.join("tensors.safetensors"), &dev).unwrap();
        let image = vae.latents_to_image(&t["final_latents"]).unwrap();
        let d = max_abs(&image, &t["image"]);
        println!("{name} image: max abs {d:.2e}");
        assert!(d <= 1e-3, "{name} image: {d}");
        decoded += 1;
        for (input, mean, logvar) in [
            (
                "init_image",
                "image_posterior_mean",
                "image_posterior_logvar",
            ),
            (
                "",
                "masked_image_posterior_mean",
                "masked_image_posterior_logvar",
            ),
        ] {
            let Some(want_mean) = t.get(mean) else {
                continue;
            };
            let x = if input.is_empty() {
                // The inpaint pipeline encodes (2 * init - 1) where the mask is off.
                let init = t["init_image"].affine(2.0, -1.0).unwrap();
                let keep = t["mask"].lt(0.5f32).unwrap().to_dtype(DType::F32).unwrap();
                init.broadcast_mul(&keep).unwrap()
            } else {
                t[input].affine(2.0, -1.0).unwrap()
            };
            let post = vae.encode(&x).unwrap();
            let (dm, dl) = (
                max_abs(&post.mean, want_mean),
                max_abs(&post.logvar, &t[logvar]),
            );
            println!("{name} {mean}: {dm:.2e}, logvar {dl:.2e}");
            assert!(dm <= 1e-4 && dl <= 1e-4, "{name}: mean {dm}, logvar {dl}");
            encoded += 1;
        }
    }
    assert!(
        decoded >= 15 && encoded >= 2,
        "decoded {decoded}, encoded {encoded}"
    );
}
