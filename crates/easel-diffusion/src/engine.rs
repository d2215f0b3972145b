//! The engine's API for the rest of Easel, in images and numbers: a device opened by name,
//! pipelines loaded onto it, generations that take 8-bit images and give 8-bit images, step
//! callbacks with an RGB preview. No tensor crosses it, so no other crate depends on candle
//! (a test of the `easel` crate checks the dependency graph).

use std::path::Path;

use candle_core::{DType, Result};

use crate::lora::Lora;
use crate::pipeline::{Pipeline, Request};
use crate::rng::TorchRng;
use crate::schedulers::SchedulerKind;
use crate::{device, pixels};

/// A compute device (`cpu`, `cuda`, `cuda:1`, `metal`, `auto`).
#[derive(Clone)]
pub struct Device(pub(crate) candle_core::Device);

impl Device {
    /// The device a spec names (see `device::device`).
    pub fn open(spec: &str) -> Result<Device> {
        device::device(spec).map(Device)
    }

    pub fn cpu() -> Device {
        Device(candle_core::Device::Cpu)
    }
}

/// Packed 8-bit pixels, row by row: 3 bytes a pixel for images, 1 for masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// What to generate (the images at the generation's size).
pub struct Generation<'a> {
    pub prompt: &'a str,
    /// `None`: the empty prompt (SDXL with `force_zeros_for_empty_prompt`: zero embeddings).
    pub negative_prompt: Option<&'a str>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Guidance scale; 1 or less turns classifier-free guidance off.
    pub guidance: f64,
    /// Scheduler class and config keys put over the model's `scheduler_config.json`.
    pub scheduler: Option<(SchedulerKind, serde_json::Value)>,
    /// img2img / inpaint input: RGB, `width` × `height`.
    pub init_image: Option<&'a Pixels>,
    /// Inpaint mask: grey, `width` × `height`, 255 = repaint.
    pub mask: Option<&'a Pixels>,
    /// How much of the init image to repaint, 0..1.
    pub strength: f64,
    /// Noise seed (PyTorch's CPU generator, so seeds match diffusers).
    pub seed: u64,
}

/// One finished scheduler step, as a generation reports it.
pub struct Step<'a> {
    /// Steps done, 1-based.
    pub index: usize,
    pub total: usize,
    latents: &'a candle_core::Tensor,
    sdxl: bool,
}

impl Step<'_> {
    /// The cheap RGB preview of the latents (latent resolution, no VAE).
    pub fn preview(&self) -> Option<Pixels> {
        let (width, height, data) = pixels::latent_preview(self.latents, self.sdxl).ok()?;
        Some(Pixels {
            width,
            height,
            data,
        })
    }
}

impl Pipeline {
    /// Load a diffusers folder (f32) onto `device`, with LoRAs merged.
    pub fn load_dir(dir: &Path, loras: &[(&Lora, f64)], device: &Device) -> Result<Pipeline> {
        Pipeline::from_diffusers_dir(dir, loras, DType::F32, &device.0)
    }

    /// Load a single-file checkpoint (f32) with the tokenizers of `support`.
    pub fn load_file(
        file: &Path,
        support: &Path,
        loras: &[(&Lora, f64)],
        device: &Device,
    ) -> Result<Pipeline> {
        Pipeline::from_single_file(file, support, loras, DType::F32, &device.0)
    }

    /// Generate one image. `on_step` runs after every scheduler step; returning false
    /// cancels (`Ok(None)`).
    pub fn generate(
        &self,
        g: &Generation,
        on_step: &mut dyn FnMut(Step) -> bool,
    ) -> Result<Option<Pixels>> {
        let dev = self.device();
        let check = |p: &Pixels, channels: usize, what: &str| {
            if p.width != g.width
                || p.height != g.height
                || p.data.len() != p.width * p.height * channels
            {
                candle_core::bail!(
                    "the {what} must be {}x{} with {channels} bytes a pixel",
                    g.width,
                    g.height
                );
            }
            Ok(())
        };
        let init = match g.init_image {
            Some(p) => {
                check(p, 3, "init image")?;
                Some(pixels::rgb8_to_tensor(p.width, p.height, &p.data, dev)?)
            }
            None => None,
        };
        let mask = match g.mask {
            Some(p) => {
                check(p, 1, "mask")?;
                Some(pixels::grey8_to_tensor(p.width, p.height, &p.data, dev)?)
            }
            None => None,
        };
        let req = Request {
            prompt: g.prompt,
            negative_prompt: g.negative_prompt,
            width: g.width,
            height: g.height,
            steps: g.steps,
            guidance: g.guidance,
            scheduler: g.scheduler.clone(),
            init_image: init.as_ref(),
            mask: mask.as_ref(),
            strength: g.strength,
            prompt_mode: Default::default(),
        };
        let sdxl = self.is_sdxl();
        let mut rng = TorchRng::new(g.seed);
        let mut step = |index: usize, total: usize, latents: &candle_core::Tensor| {
            on_step(Step {
                index,
                total,
                latents,
                sdxl,
            })
        };
        let Some(run) = self.run(&req, &mut rng, &mut step)? else {
            return Ok(None);
        };
        let (width, height, data) = pixels::tensor_to_rgb8(&run.image, 0)?;
        Ok(Some(Pixels {
            width,
            height,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::{make_tiny, TinyFamily};

    /// The image API gives the pixels the tensor API gives, and refuses images of the wrong
    /// size.
    #[test]
    fn generations_in_pixels_match_the_tensor_path() {
        let dir = tempfile::tempdir().unwrap();
        make_tiny(dir.path(), TinyFamily::Sd15, 0).unwrap();
        let dev = Device::cpu();
        let p = Pipeline::load_dir(dir.path(), &[], &dev).unwrap();
        let g = Generation {
            prompt: "a fox",
            negative_prompt: None,
            width: 64,
            height: 64,
            steps: 2,
            guidance: 5.0,
            scheduler: None,
            init_image: None,
            mask: None,
            strength: 1.0,
            seed: 7,
        };
        let mut steps = Vec::new();
        let out = p
            .generate(&g, &mut |s| {
                steps.push((s.index, s.total, s.preview().map(|p| (p.width, p.height))));
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (64, 64, 64 * 64 * 3)
        );
        let total = steps[0].1;
        assert_eq!(steps.len(), total, "one report per scheduler step");
        assert_eq!(
            steps.iter().map(|s| s.0).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert_eq!(steps[0].2, Some((8, 8)), "previews at latent resolution");
        let req = Request {
            prompt: "a fox",
            negative_prompt: None,
            width: 64,
            height: 64,
            steps: 2,
            guidance: 5.0,
            scheduler: None,
            init_image: None,
            mask: None,
            strength: 1.0,
            prompt_mode: Default::default(),
        };
        let run = p
            .run(&req, &mut TorchRng::new(7), &mut |_, _, _| true)
            .unwrap()
            .unwrap();
        let (_, _, direct) = pixels::tensor_to_rgb8(&run.image, 0).unwrap();
        assert_eq!(out.data, direct);
        // Canceled at the first step.
        assert!(p.generate(&g, &mut |_| false).unwrap().is_none());
        // An init image of another size is refused.
        let small = Pixels {
            width: 8,
            height: 8,
            data: vec![0; 8 * 8 * 3],
        };
        let img2img = Generation {
            init_image: Some(&small),
            strength: 0.5,
            ..g
        };
        assert!(p.generate(&img2img, &mut |_| true).is_err());
    }
}
