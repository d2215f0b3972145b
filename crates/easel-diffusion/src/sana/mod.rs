//! Sana (NVIDIA's linear-attention DiT; diffusers' `SanaPipeline` / `SanaPAGPipeline`): the
//! Gemma-2 prompt encoding with the complex human instruction (`text`, on the crate's
//! `gemma` and `tokenizer_json`), the transformer (`transformer`), the DC-AE autoencoder
//! (`dcae`), perturbed-attention guidance (`pag`), resolution binning (`binning`), the
//! pipeline (`pipeline`), the tiny-model writer (`tiny`) and the family row.

pub mod binning;
pub mod dcae;
pub mod pag;
pub mod pipeline;
pub mod text;
pub mod tiny;
pub mod transformer;

use std::path::Path;

use candle_core::{DType, Device, Result};
use serde_json::{json, Value};

use crate::engine::{self, Generation, Pixels};
use crate::family::{self, Dtypes, Family, Generator, Header, Preview};
use crate::lora::Lora;
use crate::rng::TorchRng;
use pipeline::{Request, SanaPipeline};

/// `SanaPipeline` and `SanaPAGPipeline` folders (not Sana-Sprint's, which distils guidance
/// into the model and runs another loop).
fn detect_dir(_: &Path, index: &Value) -> bool {
    let class = family::pipeline_class(index);
    class.starts_with("Sana") && !class.starts_with("SanaSprint") && !class.contains("Video")
}

fn detect_file(_: &Header) -> bool {
    false
}

/// The scheduler the released Sana repos ship: DPM-Solver++ (2M) on flow sigmas.
pub fn default_scheduler() -> Value {
    json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver++",
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "final_sigmas_type": "zero",
        "flow_shift": 3.0,
        "lower_order_final": true,
        "num_train_timesteps": 1000,
        "prediction_type": "flow_prediction",
        "solver_order": 2,
        "solver_type": "midpoint",
        "timestep_spacing": "linspace",
        "use_flow_sigmas": true,
    })
}

fn load_dir(
    dir: &Path,
    loras: &[(&Lora, f64)],
    dtypes: Dtypes,
    device: &Device,
) -> Result<Box<dyn Generator>> {
    if !loras.is_empty() {
        candle_core::bail!("LoRAs are not supported on Sana models yet");
    }
    Ok(Box::new(SanaPipeline::load(dir, dtypes, device)?))
}

pub static SANA_ROW: Family = Family {
    id: family::SANA,
    aliases: &[],
    label: "Sana",
    natural_size: 1024,
    default_steps: 20,
    default_guidance: 4.5,
    latent_channels: 32,
    latent_scale: 32,
    tasks: &["txt2img", "img2img"],
    pag: true,
    detect_dir,
    detect_file,
    default_scheduler,
    // DC-AE's 32 channels have no published RGB projection.
    preview: Preview::Stretched,
    // The transformer at f16; Gemma and DC-AE in bf16, as diffusers' Sana documentation
    // runs them (Gemma-2's activations overflow f16).
    f16: Dtypes {
        denoiser: DType::F16,
        text: DType::BF16,
        vae: DType::BF16,
    },
    // No tiny autoencoder is published for DC-AE.
    tiny_vae: None,
    load_dir,
    load_file: None,
    make_tiny: tiny::make_tiny,
    prompt_fit,
};

/// A prompt as Sana encodes it: after the default instruction, through the Gemma tokenizer
/// in `tokenizer/`, keeping `max_sequence_length - 2` of its tokens.
fn prompt_fit(dir: &Path, prompt: &str) -> candle_core::Result<crate::family::PromptFit> {
    let tokenizer =
        crate::tokenizer_json::TokenizerJson::from_file(&dir.join("tokenizer/tokenizer.json"))
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let (tokens, window) = text::prompt_count(
        &tokenizer,
        prompt,
        &text::DEFAULT_COMPLEX_HUMAN_INSTRUCTION,
        text::DEFAULT_MAX_SEQUENCE_LENGTH,
    );
    Ok(crate::family::PromptFit {
        tokens,
        window,
        chunks: 1,
        truncated: tokens.saturating_sub(window),
        weighted: false,
    })
}

impl Generator for SanaPipeline {
    fn generate(
        &self,
        g: &Generation,
        on_step: &mut dyn FnMut(usize, usize, &candle_core::Tensor) -> bool,
    ) -> Result<Option<Pixels>> {
        if g.mask.is_some() {
            candle_core::bail!("Sana models do not inpaint");
        }
        if g.tiny_vae.is_some() {
            candle_core::bail!("Sana models have no tiny autoencoder");
        }
        let (init, _) = engine::image_inputs(g, self.device())?;
        let req = Request {
            negative_prompt: g.negative_prompt,
            guidance: g.guidance,
            pag_scale: g.pag.unwrap_or(0.0),
            scheduler: g.scheduler.clone(),
            init_image: init.as_ref(),
            strength: g.strength,
            ..Request::new(g.prompt, g.width, g.height, g.steps)
        };
        let Some(run) = self.run(&req, &mut TorchRng::new(g.seed), on_step)? else {
            return Ok(None);
        };
        engine::to_pixels(&run.image).map(Some)
    }

    fn scheduler_kind(&self) -> crate::schedulers::SchedulerKind {
        SanaPipeline::scheduler_kind(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Device, Generation, Pipeline, Pixels};

    /// Mixed dtypes as a GPU's `--precision f16` loads them (the transformer f16, Gemma
    /// bf16, DC-AE narrower than f32), run here through candle's own ops on the CPU: the
    /// image differs from the f32 one and stays close to it, img2img too (DC-AE's encoder).
    #[test]
    fn half_dtypes_stay_close_to_f32() {
        use crate::family::Generator;
        use candle_core::DType;
        let dir = tempfile::tempdir().unwrap();
        crate::tiny::make_tiny(dir.path(), "sana", 3).unwrap();
        let half = super::SANA_ROW.f16;
        assert_eq!(
            (half.denoiser, half.text, half.vae),
            (DType::F16, DType::BF16, DType::BF16)
        );
        // candle's CPU convolution has no bf16 product, so DC-AE runs f16 here (a GPU runs
        // the row's bf16).
        let half = crate::family::Dtypes {
            vae: DType::F16,
            ..half
        };
        let p = super::SanaPipeline::load(dir.path(), half, &candle_core::Device::Cpu).unwrap();
        assert_eq!(p.transformer.dtype(), DType::F16);
        assert_eq!(p.vae.dtype(), DType::F16);
        let f32 =
            super::SanaPipeline::load(dir.path(), DType::F32, &candle_core::Device::Cpu).unwrap();
        let init = Pixels {
            width: 64,
            height: 64,
            data: (0..64 * 64 * 3).map(|i| (i * 5 % 251) as u8).collect(),
        };
        let mut images = vec![];
        for init in [None, Some(&init)] {
            let g = Generation {
                prompt: "a red fox in the snow",
                negative_prompt: None,
                width: 64,
                height: 64,
                steps: 3,
                guidance: 4.5,
                scheduler: None,
                init_image: init,
                mask: None,
                strength: 0.7,
                seed: 11,
                pag: Some(2.0),
                tiny_vae: None,
            };
            let run = |p: &dyn Generator| p.generate(&g, &mut |_, _, _| true).unwrap().unwrap();
            let (a, b) = (run(&f32).data, run(&p).data);
            let db = crate::pixels::psnr(&a, &b);
            eprintln!(
                "sana f16 (init image: {}) vs f32: PSNR {db:.1} dB",
                init.is_some()
            );
            assert!(a != b, "the half parts computed in f32");
            assert!(db > 25.0, "PSNR {db:.1} dB");
            images.push(b);
        }
        assert_ne!(images[0], images[1], "the init image was used");
    }

    /// Through the engine's image API: the family comes from the table; PAG changes the
    /// pixels; a seed gives the same pixels; binning gives the requested size back; img2img
    /// runs; previews come at latent resolution; a mask is refused.
    #[test]
    fn a_tiny_sana_generates_through_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        crate::tiny::make_tiny(dir.path(), "sana", 3).unwrap();
        let p = Pipeline::load_dir(dir.path(), &[], &Device::cpu()).unwrap();
        assert_eq!(p.family().id, "sana");
        let g = Generation {
            prompt: "a red fox in the snow",
            negative_prompt: None,
            width: 96,
            height: 64,
            steps: 3,
            guidance: 4.5,
            scheduler: None,
            init_image: None,
            mask: None,
            strength: 1.0,
            seed: 11,
            pag: None,
            tiny_vae: None,
        };
        let mut previews = vec![];
        let plain = p
            .generate(&g, &mut |s| {
                previews.push(s.preview().map(|p| (p.width, p.height)));
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            (plain.width, plain.height),
            (96, 64),
            "binned, then resized back"
        );
        // 96x64 (ratio 0.67) snaps to the 512 table's 608x416 bin: latents of 152x104 (DC-AE
        // compresses 4x here).
        assert_eq!(previews, vec![Some((152, 104)); 3]);
        let again = p.generate(&g, &mut |_| true).unwrap().unwrap();
        assert_eq!(plain, again, "the same seed gives the same pixels");
        let pag = Generation {
            pag: Some(2.0),
            scheduler: None,
            ..g
        };
        let with_pag = p.generate(&pag, &mut |_| true).unwrap().unwrap();
        assert_ne!(plain.data, with_pag.data, "PAG changes the image");
        let other = Generation {
            seed: 12,
            scheduler: None,
            ..g
        };
        assert_ne!(
            plain.data,
            p.generate(&other, &mut |_| true).unwrap().unwrap().data
        );

        let init = Pixels {
            width: 96,
            height: 64,
            data: (0..96 * 64 * 3).map(|i| (i % 251) as u8).collect(),
        };
        let img2img = Generation {
            init_image: Some(&init),
            strength: 0.5,
            scheduler: None,
            ..g
        };
        let mut steps = 0;
        let out = p
            .generate(&img2img, &mut |_| {
                steps += 1;
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!((out.width, out.height), (96, 64));
        assert!(steps < 3, "img2img at strength 0.5 skips the first steps");
        let mask = Pixels {
            width: 96,
            height: 64,
            data: vec![255; 96 * 64],
        };
        let inpaint = Generation {
            mask: Some(&mask),
            ..img2img
        };
        assert!(p.generate(&inpaint, &mut |_| true).is_err());
        assert!(p.generate(&g, &mut |_| false).unwrap().is_none());
    }
}
