//! Stable Diffusion 1.x, 2.x and XL: the pipeline (`pipeline`), its UNet (`unet`; the VAE and
//! CLIP encoders are shared blocks of the crate), the original LDM / A1111 single-file layout
//! (`single_file`), the tiny-model writer (`tiny`), and the family rows: how a folder or a
//! checkpoint is recognised, the defaults and the preview projection of each variant.

pub mod pipeline;
pub mod single_file;
pub mod tiny;
pub mod unet;

use std::path::Path;

use candle_core::{DType, Device, Result};
use serde_json::Value;

use crate::engine::{self, Generation, Pixels};
use crate::family::{self, Dtypes, Family, Generator, Header, Preview};
use crate::lora::Lora;
use crate::rng::TorchRng;
use pipeline::{Pipeline, Request};

/// The SD variants, one family row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Sd15,
    Sd2,
    Sdxl,
    Inpaint,
}

impl Variant {
    pub const ALL: [Variant; 4] = [Variant::Sd15, Variant::Sd2, Variant::Sdxl, Variant::Inpaint];

    /// The family row of this variant.
    pub fn family(self) -> &'static Family {
        match self {
            Variant::Sd15 => &SD15_ROW,
            Variant::Sd2 => &SD2_ROW,
            Variant::Sdxl => &SDXL_ROW,
            Variant::Inpaint => &SD15_INPAINT_ROW,
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.family().id)
    }
}

const TASKS: &[&str] = &["txt2img", "img2img", "inpaint"];

/// Linear factors from the 4 latent channels to RGB in [-1, 1]: a least-squares fit of
/// decoded images on their latents, as the community's "approx cheap" previews use.
const SD1_PREVIEW: &[[f32; 3]] = &[
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
];
const SDXL_PREVIEW: &[[f32; 3]] = &[
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.0290, 0.0250],
    [0.1074, 0.0886, -0.0163],
    [-0.3730, -0.2499, -0.2088],
];

// Detection. A folder: the pipeline class of `model_index.json` (XL, inpainting, SD) and,
// for SD 2.x, its OpenCLIP text encoder (exact GELU, 1024-wide hidden states). A checkpoint: its key
// prefixes (SGM conditioner → XL, OpenCLIP → 2.x; SD 2.x inpainting stays `sd2`, the family
// names the text encoder) and the UNet's input channels (9 → inpainting).

fn is_sd_class(index: &Value) -> bool {
    family::pipeline_class(index).starts_with("StableDiffusion")
}

fn dir_is_xl(_: &Path, index: &Value) -> bool {
    is_sd_class(index) && family::pipeline_class(index).contains("XL")
}

fn dir_is_inpaint(dir: &Path, index: &Value) -> bool {
    is_sd_class(index)
        && (family::pipeline_class(index).contains("Inpaint")
            || family::component_value(dir, "unet", "in_channels") == Some(9.into()))
}

fn dir_is_sd2(dir: &Path, index: &Value) -> bool {
    // SD 2.x's OpenCLIP text encoder: exact GELU (CLIP ViT-L uses quick_gelu), 1024 wide.
    is_sd_class(index)
        && (family::component_value(dir, "text_encoder", "hidden_act") == Some("gelu".into())
            || family::component_value(dir, "text_encoder", "hidden_size") == Some(1024.into()))
}

fn dir_is_sd15(_: &Path, index: &Value) -> bool {
    is_sd_class(index)
}

fn has_prefix(h: &Header, prefix: &str) -> bool {
    h.range(prefix.to_string()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

fn file_is_xl(h: &Header) -> bool {
    has_prefix(h, "conditioner.embedders.1")
}

fn file_is_sd2(h: &Header) -> bool {
    !file_is_xl(h) && has_prefix(h, "cond_stage_model.model.")
}

fn unet_in_channels(h: &Header) -> Option<usize> {
    h.get("model.diffusion_model.input_blocks.0.0.weight")
        .and_then(|s| s.get(1).copied())
}

fn file_is_inpaint(h: &Header) -> bool {
    !file_is_xl(h) && !file_is_sd2(h) && unet_in_channels(h) == Some(9)
}

fn file_is_sd15(h: &Header) -> bool {
    !file_is_xl(h)
        && !file_is_sd2(h)
        && (has_prefix(h, "cond_stage_model.transformer.")
            || has_prefix(h, "model.diffusion_model."))
}

fn load_dir(
    dir: &Path,
    loras: &[(&Lora, f64)],
    dtypes: Dtypes,
    device: &Device,
) -> Result<Box<dyn Generator>> {
    Ok(Box::new(Pipeline::from_diffusers_dir(
        dir, loras, dtypes, device,
    )?))
}

fn load_file(
    file: &Path,
    support: &Path,
    loras: &[(&Lora, f64)],
    dtypes: Dtypes,
    device: &Device,
) -> Result<Box<dyn Generator>> {
    Ok(Box::new(Pipeline::from_single_file(
        file, support, loras, dtypes, device,
    )?))
}

pub static SD15_ROW: Family = SD15;

/// SD 1.5, and what the other variants share.
const SD15: Family = Family {
    id: family::SD15,
    aliases: &[],
    label: "Stable Diffusion 1.x",
    natural_size: 512,
    default_steps: 30,
    default_guidance: 7.5,
    latent_channels: 4,
    latent_scale: 8,
    tasks: TASKS,
    pag: false,
    detect_dir: dir_is_sd15,
    detect_file: file_is_sd15,
    default_scheduler: || single_file::default_scheduler_config(family::SD15),
    preview: Preview::Linear(SD1_PREVIEW),
    // UNet and CLIP at f16 as diffusers' `torch_dtype=torch.float16`; the VAE in f32 for
    // every SD family (Easel's choice: SDXL's VAE overflows f16, and diffusers' SDXL
    // pipelines upcast it; its SD 1.x/2.x pipelines decode in f16).
    f16: Dtypes {
        denoiser: DType::F16,
        text: DType::F16,
        vae: DType::F32,
    },
    tiny_vae: Some("taesd"),
    load_dir,
    load_file: Some(load_file),
    make_tiny: |dir, seed| tiny::make_tiny(Variant::Sd15, dir, seed),
    prompt_fit,
};

/// A prompt as the SD families encode it: A1111's weighted chunks of 75 tokens through the
/// CLIP tokenizer in `tokenizer/` (SDXL's second encoder shares its vocabulary and chunks).
fn prompt_fit(dir: &std::path::Path, prompt: &str) -> candle_core::Result<family::PromptFit> {
    use crate::prompt::{tokenize_weighted, CHUNK_LEN};
    let tok = crate::tokenizer::ClipTokenizer::from_dir(&dir.join("tokenizer"))
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let w = tokenize_weighted(&tok, prompt);
    let tokens = w
        .chunks
        .iter()
        .map(|c| {
            c.ids
                .iter()
                .skip(1)
                .take_while(|&&id| id != tok.eos())
                .count()
        })
        .sum();
    Ok(family::PromptFit {
        tokens,
        window: CHUNK_LEN,
        chunks: w.chunks.len(),
        truncated: 0,
        weighted: true,
    })
}

pub static SD15_INPAINT_ROW: Family = Family {
    id: family::SD15_INPAINT,
    aliases: &["inpaint"],
    label: "Stable Diffusion 1.x inpainting",
    detect_dir: dir_is_inpaint,
    detect_file: file_is_inpaint,
    default_scheduler: || single_file::default_scheduler_config(family::SD15_INPAINT),
    make_tiny: |dir, seed| tiny::make_tiny(Variant::Inpaint, dir, seed),
    ..SD15
};

pub static SD2_ROW: Family = Family {
    id: family::SD2,
    aliases: &[],
    label: "Stable Diffusion 2.x",
    detect_dir: dir_is_sd2,
    detect_file: file_is_sd2,
    default_scheduler: || single_file::default_scheduler_config(family::SD2),
    make_tiny: |dir, seed| tiny::make_tiny(Variant::Sd2, dir, seed),
    ..SD15
};

pub static SDXL_ROW: Family = Family {
    id: family::SDXL,
    aliases: &[],
    label: "Stable Diffusion XL",
    natural_size: 1024,
    default_guidance: 5.0,
    detect_dir: dir_is_xl,
    detect_file: file_is_xl,
    default_scheduler: || single_file::default_scheduler_config(family::SDXL),
    preview: Preview::Linear(SDXL_PREVIEW),
    tiny_vae: Some("taesdxl"),
    make_tiny: |dir, seed| tiny::make_tiny(Variant::Sdxl, dir, seed),
    ..SD15
};

impl Generator for Pipeline {
    fn generate(
        &self,
        g: &Generation,
        on_step: &mut dyn FnMut(usize, usize, &candle_core::Tensor) -> bool,
    ) -> Result<Option<Pixels>> {
        let (init, mask) = engine::image_inputs(g, self.device())?;
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
            tiny_vae: g.tiny_vae,
        };
        let Some(run) = self.run(&req, &mut TorchRng::new(g.seed), on_step)? else {
            return Ok(None);
        };
        engine::to_pixels(&run.image).map(Some)
    }

    fn scheduler_kind(&self) -> crate::schedulers::SchedulerKind {
        Pipeline::scheduler_kind(self)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        Pipeline::embed_texts(self, texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Generation;
    use crate::pixels::psnr;

    /// A pipeline loaded at bf16 runs its layers in bf16 (the image changes) and stays close
    /// to the f32 image.
    #[test]
    fn bf16_generations_stay_close_to_f32() {
        use crate::engine::Precision;
        let dir = tempfile::tempdir().unwrap();
        tiny::make_tiny(Variant::Sd15, dir.path(), 0).unwrap();
        let g = Generation {
            prompt: "a fox in the snow",
            negative_prompt: None,
            width: 64,
            height: 64,
            steps: 4,
            guidance: 5.0,
            scheduler: None,
            init_image: None,
            mask: None,
            strength: 1.0,
            seed: 3,
            pag: None,
            tiny_vae: None,
        };
        let run = |device: engine::Device| {
            engine::Pipeline::load_dir(dir.path(), &[], &device)
                .unwrap()
                .generate(&g, &mut |_| true)
                .unwrap()
                .unwrap()
                .data
        };
        let full = run(engine::Device::cpu());
        let half = engine::Device::cpu()
            .with_precision(Precision::Bf16)
            .unwrap();
        assert_eq!(half.precision(), Precision::Bf16);
        let half = run(half);
        let db = psnr(&full, &half);
        eprintln!("bf16 vs f32: PSNR {db:.1} dB");
        assert!(full != half, "the bf16 pipeline computed in f32");
        assert!(db > 30.0, "PSNR {db:.1} dB");
    }

    /// The rows' f16 dtypes (what a GPU loads under `--precision f16`), run here through
    /// candle's own f16 ops on the CPU: the UNet and CLIP compute in f16, the VAE in f32, the
    /// pipeline between them in f32; the image differs from the f32 one and stays close to it
    /// — for txt2img, img2img (the VAE's encoder) and SDXL (its second encoder and added
    /// conditioning), from a folder and from a single file.
    #[test]
    fn half_dtypes_stay_close_to_f32() {
        let init = Pixels {
            width: 64,
            height: 64,
            data: (0..64 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect(),
        };
        for (variant, row, with_init) in [
            (Variant::Sd15, &SD15_ROW, false),
            (Variant::Sd15, &SD15_ROW, true),
            (Variant::Sdxl, &SDXL_ROW, false),
        ] {
            assert_eq!(
                row.f16,
                Dtypes {
                    denoiser: DType::F16,
                    text: DType::F16,
                    vae: DType::F32
                }
            );
            let dir = tempfile::tempdir().unwrap();
            tiny::make_tiny(variant, dir.path(), 0).unwrap();
            let g = Generation {
                prompt: "a fox in the snow",
                negative_prompt: Some("blurry"),
                width: 64,
                height: 64,
                steps: 3,
                guidance: 5.0,
                scheduler: None,
                init_image: with_init.then_some(&init),
                mask: None,
                strength: 0.7,
                seed: 3,
                pag: None,
                tiny_vae: None,
            };
            let p = Pipeline::from_diffusers_dir(dir.path(), &[], row.f16, &Device::Cpu).unwrap();
            assert_eq!(p.dtypes(), row.f16);
            let generate =
                |p: &dyn Generator| p.generate(&g, &mut |_, _, _| true).unwrap().unwrap();
            let half = generate(&p);
            let full = generate(
                &*(row.load_dir)(dir.path(), &[], DType::F32.into(), &Device::Cpu).unwrap(),
            );
            let db = psnr(&full.data, &half.data);
            eprintln!(
                "{} f16 (init image: {with_init}) vs f32: PSNR {db:.1} dB",
                row.id
            );
            assert!(full.data != half.data, "the f16 parts computed in f32");
            assert!(db > 30.0, "{}: PSNR {db:.1} dB", row.id);

            // The same model as one file, its parts built at their own dtypes.
            let file = dir.path().join("model.safetensors");
            single_file::write_single_file(dir.path(), &file).unwrap();
            let p =
                Pipeline::from_single_file(&file, dir.path(), &[], row.f16, &Device::Cpu).unwrap();
            assert_eq!(p.dtypes(), row.f16);
            // Its VAE weights went through f16 (the checkpoint is read at the UNet's dtype).
            let db = psnr(&half.data, &generate(&p).data);
            assert!(
                db > 40.0,
                "{}: single file against folder: {db:.1} dB",
                row.id
            );
        }
    }

    /// The image API gives the pixels the tensor API gives, and refuses images of the wrong
    /// size.
    #[test]
    fn generations_in_pixels_match_the_tensor_path() {
        let dir = tempfile::tempdir().unwrap();
        tiny::make_tiny(Variant::Sd15, dir.path(), 0).unwrap();
        let p = Pipeline::from_diffusers_dir(dir.path(), &[], DType::F32, &Device::Cpu).unwrap();
        let e = engine::Pipeline::load_dir(dir.path(), &[], &engine::Device::cpu()).unwrap();
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
            pag: None,
            tiny_vae: None,
        };
        let mut steps = Vec::new();
        let out = e
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
            tiny_vae: None,
        };
        let run = p
            .run(&req, &mut TorchRng::new(7), &mut |_, _, _| true)
            .unwrap()
            .unwrap();
        assert_eq!(out, engine::to_pixels(&run.image).unwrap());
        // Canceled at the first step.
        assert!(e.generate(&g, &mut |_| false).unwrap().is_none());
        // An init image of another size is refused.
        let small = Pixels {
            width: 8,
            height: 8,
            data: vec![0; 8 * 8 * 3],
        };
        let img2img = Generation {
            init_image: Some(&small),
            strength: 0.5,
            scheduler: None,
            ..g
        };
        assert!(e.generate(&img2img, &mut |_| true).is_err());

        // With a tiny autoencoder attached, previews come at full resolution, and a
        // generation that asks for it decodes with it (the same latents, other pixels).
        let models = tempfile::tempdir().unwrap();
        let taesd_dir = models.path().join(crate::taesd::FOLDER).join("taesd");
        crate::taesd::make_tiny(&taesd_dir, 4, 1).unwrap();
        let found = crate::taesd::find(models.path(), SD15_ROW.tiny_vae.unwrap()).unwrap();
        e.attach_tiny_vae(&found, &engine::Device::cpu()).unwrap();
        let mut previews = Vec::new();
        let same = e
            .generate(&g, &mut |s| {
                previews.push(s.preview().map(|p| (p.width, p.height)));
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(same, out, "the VAE still decodes unless asked");
        assert!(
            previews.iter().all(|p| *p == Some((64, 64))),
            "{previews:?}"
        );
        let tiny = e.tiny_vae().unwrap();
        let fast = Generation {
            tiny_vae: Some(&*tiny),
            scheduler: None,
            ..g
        };
        let fast_out = e.generate(&fast, &mut |_| true).unwrap().unwrap();
        assert_eq!((fast_out.width, fast_out.height), (64, 64));
        assert_ne!(fast_out.data, out.data);
        let want = tiny.latents_to_image(&run.final_latents).unwrap();
        assert_eq!(fast_out, engine::to_pixels(&want).unwrap());
        // One made for other latents is refused, naming both.
        let other = models.path().join("sixteen");
        crate::taesd::make_tiny(&other, 16, 1).unwrap();
        let msg = e
            .attach_tiny_vae(&other, &engine::Device::cpu())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("16 latent channels") && msg.contains("4"),
            "{msg}"
        );
    }

    /// Checkpoint detection from key prefixes and the UNet's input channels.
    #[test]
    fn checkpoints_detect_by_keys() {
        let h = |names: &[&str], ch: Option<usize>| {
            let mut h: Header = names.iter().map(|n| (n.to_string(), vec![1])).collect();
            if let Some(c) = ch {
                h.insert(
                    "model.diffusion_model.input_blocks.0.0.weight".into(),
                    vec![320, c, 3, 3],
                );
            }
            family::detect_file(&h).map(|f| f.id)
        };
        let unet = "model.diffusion_model.out.2.weight";
        assert_eq!(
            h(&["cond_stage_model.transformer.x", unet], Some(4)),
            Some(family::SD15)
        );
        assert_eq!(h(&[unet], Some(9)), Some(family::SD15_INPAINT));
        assert_eq!(
            h(&["cond_stage_model.model.x", unet], Some(9)),
            Some(family::SD2)
        );
        assert_eq!(
            h(&["conditioner.embedders.1.model.x", unet], Some(4)),
            Some(family::SDXL)
        );
        assert_eq!(h(&["lora_unet_x.lora_down.weight"], None), None);
    }
}
