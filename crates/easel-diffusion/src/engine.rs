//! The engine's API for the rest of Easel, in images and numbers: a device opened by name,
//! pipelines loaded onto it, generations that take 8-bit images and give 8-bit images, step
//! callbacks with an RGB preview. No tensor crosses it, so no other crate depends on candle
//! (a test of the `easel` crate checks the dependency graph).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

use crate::family::{self, Family, Generator, Preview};
use crate::lora::Lora;
use crate::schedulers::SchedulerKind;
use crate::taesd::TinyVae;
use crate::{device, kernels, pixels};

pub use crate::kernels::Precision;

/// A compute device (`cpu`, `cuda`, `cuda:1`, `metal`, `auto`), and the precision of the
/// models loaded onto it.
#[derive(Clone)]
pub struct Device(pub(crate) candle_core::Device, Precision);

impl Device {
    /// The device a spec names (see `device::device`), in `f32`.
    pub fn open(spec: &str) -> Result<Device> {
        device::device(spec).map(|d| Device(d, Precision::F32))
    }

    pub fn cpu() -> Device {
        Device(candle_core::Device::Cpu, Precision::F32)
    }

    /// The device with pipelines loaded at `precision` from now on.
    ///
    /// On the CPU, `bf16` keeps the weights of the layers built on the engine's kernels
    /// (`kernels::Conv2d`, `kernels::Linear`) in bf16 and runs their products in bf16 with
    /// `f32` sums (see `kernels::bf16`); `f16` is refused there (the CPU kernels have no f16
    /// products: bf16 is the CPU's half precision).
    ///
    /// On a GPU, the parts load as candle tensors of that dtype: `bf16` every part; `f16`
    /// the parts the family's row allows ([`Family::f16`]: SD's UNet and CLIP, with its VAE
    /// in f32).
    pub fn with_precision(self, precision: Precision) -> Result<Device> {
        if precision == Precision::F16 && self.0.is_cpu() {
            candle_core::bail!(
                "precision f16 runs on GPUs only; on the CPU use bf16 (half the memory, \
                 bf16 products) or f32"
            );
        }
        Ok(Device(self.0, precision))
    }

    /// The dtypes `family`'s parts load at on this device and precision.
    pub fn dtypes(&self, family: &Family) -> family::Dtypes {
        part_dtypes(self.0.is_cpu(), self.1, family)
    }

    pub fn precision(&self) -> Precision {
        self.1
    }
}

/// The dtypes `family`'s parts load at on the CPU (`cpu`) or a GPU at `precision`.
fn part_dtypes(cpu: bool, precision: Precision, family: &Family) -> family::Dtypes {
    match (cpu, precision) {
        // The CPU's bf16 is the kernels' weight layout, under f32 tensors.
        (true, _) | (false, Precision::F32) => family::Dtypes::all(DType::F32),
        (false, Precision::F16) => family.f16,
        (false, Precision::Bf16) => family::Dtypes::all(DType::BF16),
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
    /// Perturbed-attention guidance scale, for families that apply it (`Family::pag`);
    /// `None` or 0: off.
    pub pag: Option<f64>,
    /// Decode the final image with this tiny autoencoder (the pipeline's own,
    /// [`Pipeline::tiny_vae`]) instead of the model's VAE: several times faster, lower
    /// quality. `None`: the VAE.
    pub tiny_vae: Option<&'a TinyVae>,
}

/// One finished scheduler step, as a generation reports it.
pub struct Step<'a> {
    /// Steps done, 1-based.
    pub index: usize,
    pub total: usize,
    latents: &'a Tensor,
    preview: Preview,
    tiny: Option<&'a TinyVae>,
}

impl Step<'_> {
    /// An RGB preview of the latents: decoded by the pipeline's tiny autoencoder at full
    /// resolution when it has one, else the family's cheap projection at latent resolution.
    pub fn preview(&self) -> Option<Pixels> {
        if let Some(t) = self.tiny {
            if let Ok(p) = t.latents_to_image(self.latents).and_then(|x| to_pixels(&x)) {
                return Some(p);
            }
        }
        let (width, height, data) = pixels::latent_preview(self.latents, self.preview).ok()?;
        Some(Pixels {
            width,
            height,
            data,
        })
    }
}

/// A generation's init image and mask as `[1, C, H, W]` tensors in [0, 1], after checking
/// their sizes against the generation's.
pub(crate) fn image_inputs(
    g: &Generation,
    dev: &candle_core::Device,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
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
    Ok((init, mask))
}

/// The first image of a `[N, 3, H, W]` tensor in [0, 1] as pixels.
pub(crate) fn to_pixels(images: &Tensor) -> Result<Pixels> {
    let (width, height, data) = pixels::tensor_to_rgb8(images, 0)?;
    Ok(Pixels {
        width,
        height,
        data,
    })
}

/// A loaded model of any family.
pub struct Pipeline {
    family: &'static Family,
    inner: Box<dyn Generator>,
    /// Attached after loading, possibly while generations run (a TAESD installed later).
    tiny: std::sync::RwLock<Option<Arc<TinyVae>>>,
    /// The tiny autoencoder last tried ([`Pipeline::attach_tiny_vae`]), loaded or not: its
    /// path and modification time.
    tiny_tried: std::sync::Mutex<Option<(std::path::PathBuf, Option<std::time::SystemTime>)>>,
    /// Last, so it drops after the weights: gives their memory back to the system.
    _release: ReleaseOnDrop,
}

/// Returns the allocator's free memory to the system when dropped (see [`crate::memory`]).
#[derive(Default)]
struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        crate::memory::release_freed_memory();
    }
}

/// When a file or folder last changed (a folder: when an entry was added, removed or renamed,
/// as a pull that replaces one does).
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether a tiny autoencoder decodes `f`'s latents (channels and upsampling; `taesd` and
/// `taesdxl` cannot be told apart this way).
fn check_tiny(f: &Family, t: &TinyVae) -> Result<()> {
    let c = t.config();
    if f.tiny_vae.is_none() {
        candle_core::bail!("{} models have no tiny autoencoder", f.label);
    }
    if c.latent_channels != f.latent_channels || c.scale() != f.latent_scale {
        candle_core::bail!(
            "a tiny autoencoder for {} latent channels and {}x upsampling, not {}'s {} and {}x",
            c.latent_channels,
            c.scale(),
            f.label,
            f.latent_channels,
            f.latent_scale
        );
    }
    Ok(())
}

impl Pipeline {
    /// Load a diffusers folder onto `device` at its precision ([`Device::dtypes`]), with
    /// LoRAs merged; its family comes from the family table.
    pub fn load_dir(dir: &Path, loras: &[(&Lora, f64)], device: &Device) -> Result<Pipeline> {
        let family = family::detect_dir(dir).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{} is not a diffusers folder of a family this engine runs ({})",
                dir.display(),
                family::FAMILIES
                    .iter()
                    .map(|f| f.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let inner = kernels::with_precision(device.1, || {
            (family.load_dir)(dir, loras, device.dtypes(family), &device.0)
        })?;
        Ok(Pipeline {
            family,
            inner,
            tiny: Default::default(),
            tiny_tried: Default::default(),
            _release: ReleaseOnDrop,
        })
    }

    /// Load a single-file checkpoint at `device`'s precision with the tokenizers and configs
    /// of `support`.
    pub fn load_file(
        file: &Path,
        support: &Path,
        loras: &[(&Lora, f64)],
        device: &Device,
    ) -> Result<Pipeline> {
        let header = family::read_header(file)?;
        let family = family::detect_file(&header).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{} is not a checkpoint of a family this engine runs",
                file.display()
            ))
        })?;
        let load = family.load_file.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{} models load from diffusers folders only",
                family.label
            ))
        })?;
        let inner = kernels::with_precision(device.1, || {
            load(file, support, loras, device.dtypes(family), &device.0)
        })?;
        Ok(Pipeline {
            family,
            inner,
            tiny: Default::default(),
            tiny_tried: Default::default(),
            _release: ReleaseOnDrop,
        })
    }

    /// Load the tiny autoencoder at `path` (see [`crate::taesd`]) for previews and
    /// [`Generation::tiny_vae`], after checking it decodes this family's latents.
    pub fn attach_tiny_vae(&self, path: &Path, device: &Device) -> Result<()> {
        *self.tiny_tried.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((path.to_path_buf(), modified(path)));
        let t = kernels::with_precision(device.1, || TinyVae::load_path(path, &device.0))?;
        check_tiny(self.family, &t)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        *self.tiny.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(t));
        Ok(())
    }

    /// Whether `path` (as it is now on disk) is the tiny autoencoder last tried, attached or
    /// refused: trying it again would change nothing.
    pub fn tried_tiny_vae(&self, path: &Path) -> bool {
        let tried = self.tiny_tried.lock().unwrap_or_else(|e| e.into_inner());
        tried
            .as_ref()
            .is_some_and(|(p, t)| p == path && *t == modified(path))
    }

    /// The tiny autoencoder attached with [`Pipeline::attach_tiny_vae`].
    pub fn tiny_vae(&self) -> Option<Arc<TinyVae>> {
        self.tiny.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn family(&self) -> &'static Family {
        self.family
    }

    /// The scheduler the model ships.
    pub fn scheduler_kind(&self) -> SchedulerKind {
        self.inner.scheduler_kind()
    }

    /// Generate one image. `on_step` runs after every scheduler step; returning false
    /// cancels (`Ok(None)`).
    pub fn generate(
        &self,
        g: &Generation,
        on_step: &mut dyn FnMut(Step) -> bool,
    ) -> Result<Option<Pixels>> {
        if let Some(t) = g.tiny_vae {
            check_tiny(self.family, t)?;
        }
        let attached = self.tiny_vae();
        let (preview, tiny) = (self.family.preview, attached.as_deref());
        self.inner.generate(g, &mut |index, total, latents| {
            on_step(Step {
                index,
                total,
                latents,
                preview,
                tiny,
            })
        })
    }

    /// Pooled text embeddings and token counts (CLIP families).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        self.inner.embed_texts(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU keeps f32 tensors at every precision (bf16 lives in the kernels' weights) and
    /// refuses f16; a GPU loads each part at the precision's dtype, f16 as the family's row
    /// says.
    #[test]
    fn precisions_map_to_part_dtypes() {
        use family::Dtypes;
        let sd = family::by_name("sd15").unwrap();
        let sana = family::by_name("sana").unwrap();
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(part_dtypes(true, p, sd), Dtypes::all(DType::F32));
        }
        assert_eq!(
            part_dtypes(false, Precision::F32, sd),
            Dtypes::all(DType::F32)
        );
        assert_eq!(
            part_dtypes(false, Precision::Bf16, sana),
            Dtypes::all(DType::BF16)
        );
        assert_eq!(part_dtypes(false, Precision::F16, sd), sd.f16);
        assert_eq!(part_dtypes(false, Precision::F16, sana), sana.f16);
        assert_eq!(sd.f16.vae, DType::F32, "SD's VAE decodes in f32");

        let e = Device::cpu()
            .with_precision(Precision::F16)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("GPUs only") && e.contains("bf16"), "{e}");
        let cpu = Device::cpu().with_precision(Precision::Bf16).unwrap();
        assert_eq!(cpu.dtypes(sd), Dtypes::all(DType::F32));
        assert_eq!("fp16".parse::<Precision>(), Ok(Precision::F16));
        assert_eq!(Precision::F16.to_string(), "f16");
    }
}
