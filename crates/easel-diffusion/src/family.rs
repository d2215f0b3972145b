//! The family table: one row per model family the engine runs, and the only place the rest
//! of Easel learns what a family is. Discovery (`easel-providers`' models-folder scan) asks it
//! which family a diffusers folder or a single-file checkpoint holds; request validation asks
//! it for a family's natural size and default steps and guidance; the engine loads a model
//! through its row; `easel models make-tiny --family` writes a family's tiny model through it;
//! previews project latents with the row's projection.
//!
//! Each family's code lives in its own folder (`sd/`, `sana/`): its pipeline, its detection
//! rules and its tiny-model writer, exposed as the functions its rows point at. Adding a
//! family is a new folder and a row in [`FAMILIES`].
//!
//! Detection runs the rows in table order and takes the first that matches, so a more specific
//! row (SDXL, inpainting) comes before the general one it would otherwise fall under.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Result};
use serde_json::Value;

use crate::engine::{Generation, Pixels};
use crate::lora::Lora;

pub const SD15: &str = "sd15";
pub const SD15_INPAINT: &str = "sd15-inpaint";
pub const SD2: &str = "sd2";
pub const SDXL: &str = "sdxl";
pub const SANA: &str = "sana";

/// How a step's latents become a cheap RGB preview (no VAE).
#[derive(Debug, Clone, Copy)]
pub enum Preview {
    /// RGB = latentsᵀ · factors (one row of 3 per latent channel), then `x / 2 + 0.5`.
    Linear(&'static [[f32; 3]]),
    /// The first three latent channels, each stretched to its own min..max: a rough view of
    /// the layout for latent spaces without a published projection.
    Stretched,
}

/// A safetensors file's header: tensor name → shape (no weights read).
pub type Header = BTreeMap<String, Vec<usize>>;

/// A loaded model of some family, ready to generate.
pub trait Generator: Send + Sync {
    /// Generate one image; `on_step(done, total, latents)` runs after every scheduler step
    /// and cancels by returning false (`Ok(None)`). The engine turns it into a `Step` with the
    /// family's preview projection.
    fn generate(
        &self,
        g: &Generation,
        on_step: &mut dyn FnMut(usize, usize, &candle_core::Tensor) -> bool,
    ) -> Result<Option<Pixels>>;

    /// The scheduler the model ships (its `scheduler_config.json`).
    fn scheduler_kind(&self) -> crate::schedulers::SchedulerKind;

    /// Text embeddings (pooled vectors and each text's token count), for families whose text
    /// encoder gives them.
    fn embed_texts(&self, _texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        candle_core::bail!("this model's text encoder gives no pooled embeddings")
    }
}

/// The dtypes a pipeline's parts load at: the denoiser (UNet or transformer), the text
/// encoders and the autoencoder. Each part computes in its own dtype; the pipelines convert
/// between them, so what runs between the parts (noise, scheduler, guidance) stays `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtypes {
    pub denoiser: DType,
    pub text: DType,
    pub vae: DType,
}

impl Dtypes {
    /// Every part at `d`.
    pub const fn all(d: DType) -> Dtypes {
        Dtypes {
            denoiser: d,
            text: d,
            vae: d,
        }
    }
}

impl From<DType> for Dtypes {
    fn from(d: DType) -> Dtypes {
        Dtypes::all(d)
    }
}

/// Loads a diffusers folder with LoRAs merged.
pub type LoadDir = fn(&Path, &[(&Lora, f64)], Dtypes, &Device) -> Result<Box<dyn Generator>>;
/// Loads a single-file checkpoint, with the tokenizers and configs of a support folder.
pub type LoadFile =
    fn(&Path, &Path, &[(&Lora, f64)], Dtypes, &Device) -> Result<Box<dyn Generator>>;

/// One model family.
pub struct Family {
    /// The id stored in model records (`sd15`, `sana`).
    pub id: &'static str,
    /// Other names accepted where a family is named (`easel models make-tiny --family`).
    pub aliases: &'static [&'static str],
    pub label: &'static str,
    /// The side of the square images the family's models were trained at: the default size,
    /// and the area large init images are scaled down to.
    pub natural_size: u32,
    pub default_steps: u32,
    pub default_guidance: f64,
    pub latent_channels: usize,
    /// Image pixels per latent pixel.
    pub latent_scale: usize,
    /// The tasks the local engine runs for this family.
    pub tasks: &'static [&'static str],
    /// Whether the family's pipeline applies perturbed-attention guidance.
    pub pag: bool,
    /// Whether a diffusers folder (with its parsed `model_index.json`) is of this family.
    pub detect_dir: fn(&Path, &Value) -> bool,
    /// Whether a single-file checkpoint (its header) is of this family.
    pub detect_file: fn(&Header) -> bool,
    /// The scheduler config the family's released models ship (for folders without one).
    pub default_scheduler: fn() -> Value,
    pub preview: Preview,
    /// The parts' dtypes when a GPU runs the family at f16 (`--precision f16`): the parts
    /// whose activations overflow f16's range stay wider.
    pub f16: Dtypes,
    /// The name of the family's tiny autoencoder (TAESD) in the models folder's
    /// `vae_approx/` (see [`crate::taesd`]), where one exists for its latent space.
    pub tiny_vae: Option<&'static str>,
    pub load_dir: LoadDir,
    pub load_file: Option<LoadFile>,
    /// Writes a tiny random-weight model of the family (a diffusers folder) from a seed.
    pub make_tiny: fn(&Path, u64) -> Result<()>,
    /// How a prompt fits the family's text encoder, from the tokenizer in a folder laid out
    /// as the family's diffusers folders (`tokenizer/`): nothing else is loaded.
    pub prompt_fit: fn(&Path, &str) -> Result<PromptFit>,
}

/// How a prompt fits a text encoder: what a prompt check reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptFit {
    /// The prompt's tokens (special tokens left out).
    pub tokens: usize,
    /// How many tokens the encoder takes at once.
    pub window: usize,
    /// The windows the prompt is encoded in (SD's longer prompts are encoded in several, as
    /// A1111's; none of their tokens is dropped).
    pub chunks: usize,
    /// Tokens past what the encoder takes: dropped.
    pub truncated: usize,
    /// Whether the family reads A1111's emphasis (`(word:1.3)`); otherwise it is text.
    pub weighted: bool,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Family) -> bool {
        self.id == other.id
    }
}

/// Every family, in detection order.
pub static FAMILIES: &[&Family] = &[
    &crate::sd::SDXL_ROW,
    &crate::sd::SD15_INPAINT_ROW,
    &crate::sd::SD2_ROW,
    &crate::sd::SD15_ROW,
    &crate::sana::SANA_ROW,
];

/// The family with this id or alias.
pub fn by_name(name: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.id == name || f.aliases.contains(&name))
}

/// A name that is not a family.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown model family `{name}` (expected one of: {known})")]
pub struct UnknownFamily {
    pub name: String,
    pub known: String,
}

/// [`by_name`], or an error listing the families.
pub fn parse(name: &str) -> std::result::Result<&'static Family, UnknownFamily> {
    by_name(name).ok_or_else(|| UnknownFamily {
        name: name.to_string(),
        known: FAMILIES.iter().map(|f| f.id).collect::<Vec<_>>().join(", "),
    })
}

/// The family of a diffusers folder (one with `model_index.json`), if the engine knows it.
pub fn detect_dir(dir: &Path) -> Option<&'static Family> {
    let index = crate::loader::read_config(&dir.join("model_index.json")).ok()?;
    FAMILIES
        .iter()
        .copied()
        .find(|f| (f.detect_dir)(dir, &index))
}

/// The family of a single-file checkpoint from its header, if the engine knows it.
pub fn detect_file(header: &Header) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| (f.detect_file)(header))
}

/// A family's defaults for requests (plain numbers; an unknown family, e.g. a remote model's
/// free-text one, gets SD 1.5's).
pub fn defaults(id: &str) -> easel_core::generate::FamilyDefaults {
    let f = by_name(id).unwrap_or(&crate::sd::SD15_ROW);
    easel_core::generate::FamilyDefaults {
        natural_size: f.natural_size,
        steps: f.default_steps,
        guidance: f.default_guidance as f32,
    }
}

/// Tensor names and shapes from a safetensors file's header (the data is not read). Refuses
/// headers over 100 MB.
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |e: &dyn std::fmt::Display| {
        candle_core::Error::Msg(format!("reading {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let (header, _) = crate::loader::header_json(path, &file)?;
    let mut out = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape = crate::loader::entry_shape(&name, &info).map_err(|e| bad(&e))?;
        out.insert(name, shape);
    }
    Ok(out)
}

/// The `_class_name` of a parsed `model_index.json` ("" when absent).
pub(crate) fn pipeline_class(index: &Value) -> &str {
    index
        .get("_class_name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

/// A value from a component's `config.json` in a diffusers folder.
pub(crate) fn component_value(dir: &Path, component: &str, key: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(component).join("config.json")).ok()?;
    let mut config: Value = serde_json::from_str(&text).ok()?;
    Some(config.get_mut(key)?.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_aliases_are_unique() {
        let mut names: Vec<&str> = FAMILIES
            .iter()
            .flat_map(|f| std::iter::once(f.id).chain(f.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(parse("inpaint").unwrap().id, SD15_INPAINT);
        let e = parse("flux").unwrap_err().to_string();
        assert!(e.contains("sd15") && e.contains("sana"), "{e}");
    }

    #[test]
    fn rows_are_consistent() {
        for f in FAMILIES {
            if let Preview::Linear(m) = f.preview {
                assert_eq!(m.len(), f.latent_channels, "{}", f.id);
            }
            assert!(f.natural_size % f.latent_scale as u32 == 0, "{}", f.id);
            if f.tiny_vae.is_some() {
                // The TAESD releases upsample 8x.
                assert_eq!(f.latent_scale, 8, "{}", f.id);
            }
            let s = (f.default_scheduler)();
            let class = s["_class_name"].as_str().unwrap();
            assert!(
                crate::schedulers::SchedulerKind::from_class_name(class).is_some(),
                "{}: {class}",
                f.id
            );
        }
        assert_eq!(defaults("sdxl").natural_size, 1024);
        assert_eq!(defaults("some-remote-thing").natural_size, 512);
    }

    /// Every family's tiny model tells how a prompt fits: a short one in one window, nothing
    /// dropped; a long one in several chunks (SD) or truncated (Sana).
    #[test]
    fn prompts_fit_each_familys_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a red fox in the snow, ".repeat(60);
        for f in FAMILIES {
            let m = dir.path().join(f.id);
            (f.make_tiny)(&m, 0).unwrap();
            let short = (f.prompt_fit)(&m, "a red fox").unwrap();
            assert!(
                short.tokens >= 3 && short.tokens < short.window,
                "{}: {short:?}",
                f.id
            );
            assert_eq!((short.chunks, short.truncated), (1, 0), "{}", f.id);
            let fit = (f.prompt_fit)(&m, &long).unwrap();
            assert!(fit.tokens > fit.window, "{}: {fit:?}", f.id);
            if f.id == SANA {
                assert_eq!(fit.truncated, fit.tokens - fit.window, "{fit:?}");
            } else {
                assert_eq!(fit.truncated, 0, "{}: {fit:?}", f.id);
                assert!(
                    fit.chunks * fit.window >= fit.tokens && fit.chunks > 1,
                    "{}: {fit:?}",
                    f.id
                );
            }
            assert!(
                (f.prompt_fit)(dir.path(), "x").is_err(),
                "{}: no tokenizer",
                f.id
            );
        }
    }

    /// Every family's tiny model is detected as that family and loads.
    #[test]
    fn tiny_models_detect_as_their_family() {
        for f in FAMILIES {
            let dir = tempfile::tempdir().unwrap();
            (f.make_tiny)(dir.path(), 1).unwrap();
            assert_eq!(detect_dir(dir.path()), Some(*f), "{}", f.id);
            (f.load_dir)(dir.path(), &[], Dtypes::all(DType::F32), &Device::Cpu).unwrap();
        }
    }
}
