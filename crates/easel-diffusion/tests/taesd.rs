//! TAESD parity: the decoder of `tests/fixtures/taesd/model` (written by diffusers'
//! `AutoencoderTiny`, see `scripts/make_taesd_fixture.py`) decodes every case's latents to
//! diffusers' output within 1e-4 relative to its largest magnitude.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use common::{max_abs, max_diff};
use easel_diffusion::taesd::TinyVae;

#[test]
fn decode_matches_diffusers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/taesd");
    let dev = Device::Cpu;
    let vae = TinyVae::load_path(&dir.join("model"), &dev).unwrap();
    assert_eq!(vae.config().num_decoder_blocks, [2, 1, 1, 1]);
    let cases = candle_core::safetensors::load(dir.join("cases.safetensors"), &dev).unwrap();
    let mut n = 0;
    for i in 0.. {
        let Some(z) = cases.get(&format!("latents_{i}")) else {
            break;
        };
        let want = &cases[&format!("decoded_{i}")];
        let got = vae.forward(z).unwrap().affine(2.0, -1.0).unwrap();
        assert_eq!(got.dims(), want.dims(), "case {i}");
        let (diff, scale) = (max_diff(&got, want), max_abs(want));
        println!(
            "case {i} {:?}: max abs {diff:.2e} (scale {scale:.2})",
            z.dims()
        );
        assert!(diff <= 1e-4 * scale, "case {i}: {diff} (scale {scale})");
        // The clamped image is the pipeline's: (x / 2 + 0.5) clamped to [0, 1].
        let image = vae.latents_to_image(z).unwrap();
        let min = image.flatten_all().unwrap().min(0).unwrap();
        assert!(
            min.to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                >= 0.0
        );
        n += 1;
    }
    assert_eq!(n, 3, "the fixture's cases");
}
