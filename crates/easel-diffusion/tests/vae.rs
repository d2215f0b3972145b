//! VAE parity: for every fixture case, decoding the final latents gives the recorded image
//! (≤ 1e-3 abs), and encoding an init image gives the recorded posterior (≤ 1e-4 abs).

mod common;

use candle_core::{DType, Device};
use common::{cases, max_diff, parity_dir};
use easel_diffusion::vae::Vae;

#[test]
fn decode_and_encode_match_diffusers() {
    let Some(dir) = parity_dir() else { return };
    let dev = Device::Cpu;
    let (mut decoded, mut encoded) = (0, 0);
    for case in cases(&dir) {
        let (name, t) = (&case.name, &case.tensors);
        let vae = Vae::from_dir(&case.model_dir(&dir).join("vae"), DType::F32, &dev).unwrap();
        let image = vae.latents_to_image(&t["final_latents"]).unwrap();
        let d = max_diff(&image, &t["image"]);
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
                max_diff(&post.mean, want_mean),
                max_diff(&post.logvar, &t[logvar]),
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
