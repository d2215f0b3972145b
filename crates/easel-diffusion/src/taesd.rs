//! The tiny autoencoder's decoder (TAESD, diffusers' `AutoencoderTiny`): a small stack of
//! 3×3 ReLU convolutions trained to decode a family's latents about ten times faster than
//! its VAE, at lower quality (softer detail, slightly different colours). The engine uses it
//! for full-resolution step previews when one is installed for the model's family, and for
//! the final image when a request asks (`decoder: taesd`).
//!
//! Installed in the models folder's `vae_approx/` (the folder name ComfyUI uses), under the
//! name the family row gives (`taesd` for SD 1.x/2.x, `taesdxl` for SDXL), in either form:
//! - a diffusers folder `vae_approx/<name>/` (`config.json` with `_class_name`
//!   `AutoencoderTiny`, `diffusion_pytorch_model.safetensors` with `decoder.layers.N.*`), as
//!   `easel models pull madebyollin/taesd` or the Hub's `madebyollin/taesd` folder give it;
//! - the original release's decoder file `vae_approx/<name>_decoder.safetensors` (keys `N.*`,
//!   where layer 0 is the input clamp, so `N` is diffusers' index plus one), with the
//!   default configuration and the latent channels read from its first convolution.
//!
//! Decoding takes the latents as the diffusion model sees them (TAESD's `scaling_factor` is 1)
//! and matches diffusers' `AutoencoderTiny.decode` on `../shared/fixtures`-style cases the
//! tests write with diffusers (`tests/fixtures/taesd/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kernels::Conv2d;
use crate::loader;

/// The subfolder of the models folder that holds tiny autoencoders.
pub const FOLDER: &str = "vae_approx";

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// The decoder's part of an `AutoencoderTiny` `config.json` (diffusers' defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct TinyVaeConfig {
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "sixty_fours")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "decoder_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
    #[serde(default = "relu")]
    pub act_fn: String,
    #[serde(default = "nearest")]
    pub upsample_fn: String,
    #[serde(default = "one")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: f64,
}

fn four() -> usize {
    4
}
fn three() -> usize {
    3
}
fn two() -> usize {
    2
}
fn one() -> f64 {
    1.0
}
fn sixty_fours() -> Vec<usize> {
    vec![64; 4]
}
fn decoder_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn relu() -> String {
    "relu".into()
}
fn nearest() -> String {
    "nearest".into()
}

impl Default for TinyVaeConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("defaults")
    }
}

impl TinyVaeConfig {
    /// Image pixels per latent pixel.
    pub fn scale(&self) -> usize {
        self.upsampling_scaling_factor
            .pow(self.num_decoder_blocks.len().saturating_sub(1) as u32)
    }

    fn check(&self) -> Result<()> {
        if self.decoder_block_out_channels.len() != self.num_decoder_blocks.len()
            || self.num_decoder_blocks.is_empty()
        {
            return Err(err(
                "decoder_block_out_channels and num_decoder_blocks must be as long as each other",
            ));
        }
        if self
            .decoder_block_out_channels
            .iter()
            .any(|&c| c != self.decoder_block_out_channels[0])
        {
            return Err(err("every decoder block must have the same channel count"));
        }
        if !matches!(self.act_fn.as_str(), "relu" | "silu" | "swish") {
            return Err(err(format!(
                "act_fn `{}` (expected relu or silu)",
                self.act_fn
            )));
        }
        if self.upsample_fn != "nearest" {
            return Err(err(format!(
                "upsample_fn `{}` (expected nearest)",
                self.upsample_fn
            )));
        }
        if self.upsampling_scaling_factor == 0 {
            return Err(err("upsampling_scaling_factor must be positive"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Act {
    Relu,
    Silu,
}

impl Act {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Relu => x.relu(),
            Act::Silu => x.silu(),
        }
    }
}

/// `act(conv(act(conv(act(conv(x))))) + x)`, diffusers' `AutoencoderTinyBlock` with equal
/// input and output channels (the decoder's only kind).
struct Block {
    convs: [Conv2d; 3],
}

impl Block {
    fn forward(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        let h = act.apply(&self.convs[0].forward(x)?)?;
        let h = act.apply(&self.convs[1].forward(&h)?)?;
        let h = self.convs[2].forward(&h)?;
        // The block's output activation is a ReLU whatever `act_fn` is.
        (h + x)?.relu()
    }
}

enum Layer {
    Conv(Conv2d),
    Act,
    Block(Block),
    Upsample,
}

/// A loaded TAESD decoder.
pub struct TinyVae {
    config: TinyVaeConfig,
    layers: Vec<Layer>,
    act: Act,
}

impl std::fmt::Debug for TinyVae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinyVae")
            .field("config", &self.config)
            .finish()
    }
}

fn conv3x3(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    Conv2d::load(cin, cout, 3, cfg, bias, vb)
}

impl TinyVae {
    /// The decoder from weights named as diffusers' `DecoderTiny` names them (`layers.N.*`).
    pub fn load(vb: VarBuilder, config: TinyVaeConfig) -> Result<TinyVae> {
        config.check()?;
        let act = if config.act_fn == "relu" {
            Act::Relu
        } else {
            Act::Silu
        };
        let vb = vb.pp("layers");
        let c = config.decoder_block_out_channels[0];
        let mut layers = vec![
            Layer::Conv(conv3x3(config.latent_channels, c, true, vb.pp(0))?),
            Layer::Act,
        ];
        let n = config.num_decoder_blocks.len();
        for (i, &blocks) in config.num_decoder_blocks.iter().enumerate() {
            let last = i + 1 == n;
            for _ in 0..blocks {
                let b = vb.pp(layers.len()).pp("conv");
                layers.push(Layer::Block(Block {
                    convs: [
                        conv3x3(c, c, true, b.pp(0))?,
                        conv3x3(c, c, true, b.pp(2))?,
                        conv3x3(c, c, true, b.pp(4))?,
                    ],
                }));
            }
            if !last {
                layers.push(Layer::Upsample);
            }
            let cout = if last { config.out_channels } else { c };
            layers.push(Layer::Conv(conv3x3(c, cout, last, vb.pp(layers.len()))?));
        }
        Ok(TinyVae {
            config,
            layers,
            act,
        })
    }

    /// Load from a diffusers `AutoencoderTiny` folder or an original `*_decoder.safetensors`
    /// file (see the module docs), as f32 on `device`.
    pub fn load_path(path: &Path, device: &Device) -> Result<TinyVae> {
        if path.is_dir() {
            let config: Value = loader::read_config(&path.join("config.json"))?;
            let class = config["_class_name"].as_str().unwrap_or("");
            if class != "AutoencoderTiny" {
                return Err(err(format!(
                    "{}: `_class_name` is `{class}`, not AutoencoderTiny",
                    path.display()
                )));
            }
            let config: TinyVaeConfig = serde_json::from_value(config)
                .map_err(|e| err(format!("{}/config.json: {e}", path.display())))?;
            let files = loader::weight_files(path, "diffusion_pytorch_model")?;
            let tensors = loader::read_tensors_where(&files, DType::F32, device, &|n| {
                n.starts_with("decoder.")
            })?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            TinyVae::load(vb.pp("decoder"), config)
                .map_err(|e| err(format!("{}: {e}", path.display())))
        } else {
            let tensors = loader::read_tensors(&[path.to_path_buf()], DType::F32, device)?;
            let tensors = from_original_names(tensors)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            let config =
                original_config(&tensors).map_err(|e| err(format!("{}: {e}", path.display())))?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            TinyVae::load(vb, config).map_err(|e| err(format!("{}: {e}", path.display())))
        }
    }

    pub fn config(&self) -> &TinyVaeConfig {
        &self.config
    }

    /// Latents (as the diffusion model sees them) → images in [0, 1] before clamping
    /// (diffusers' `decode` output `x` is `2·this − 1`).
    pub fn forward(&self, latents: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let z = if c.scaling_factor != 1.0 || c.shift_factor != 0.0 {
            latents.affine(1.0 / c.scaling_factor, c.shift_factor)?
        } else {
            latents.clone()
        };
        // The input clamp: tanh(z / 3) · 3.
        let mut x = (z / 3.0)?.tanh()?.affine(3.0, 0.0)?;
        let f = c.upsampling_scaling_factor;
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(conv) => conv.forward(&x)?,
                Layer::Act => self.act.apply(&x)?,
                Layer::Block(b) => b.forward(&x, self.act)?,
                Layer::Upsample => {
                    let (_, _, h, w) = x.dims4()?;
                    x.upsample_nearest2d(h * f, w * f)?
                }
            };
        }
        Ok(x)
    }

    /// Latents → images in [0, 1], `[N, 3, H·scale, W·scale]`.
    pub fn latents_to_image(&self, latents: &Tensor) -> Result<Tensor> {
        self.forward(latents)?.clamp(0f32, 1f32)
    }
}

/// The original release's names (`N.rest`, with the clamp as layer 0) as diffusers'
/// (`layers.{N-1}.rest`).
fn from_original_names(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(name, t)| {
            let (index, rest) = name
                .split_once('.')
                .ok_or_else(|| err(format!("unexpected tensor `{name}`")))?;
            let index: usize = index.parse().ok().filter(|&i| i > 0).ok_or_else(|| {
                err(format!(
                    "unexpected tensor `{name}`; not a TAESD decoder file"
                ))
            })?;
            Ok((format!("layers.{}.{rest}", index - 1), t))
        })
        .collect()
}

/// The configuration of a decoder in diffusers' names without a `config.json`: channels from
/// the first and last convolutions, blocks per stage counted between the stage convolutions
/// (the released decoders are the default `[3, 3, 3, 1]` of 64 channels).
fn original_config(tensors: &HashMap<String, Tensor>) -> Result<TinyVaeConfig> {
    let first = tensors
        .get("layers.0.weight")
        .ok_or_else(|| err("no `1.weight` (the first convolution): not a TAESD decoder file"))?;
    let last_index = tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let mut blocks = Vec::new();
    let mut count = 0;
    let mut out_channels = 3;
    for i in 2..=last_index {
        if tensors.contains_key(&format!("layers.{i}.conv.0.weight")) {
            count += 1;
        } else if let Some(w) = tensors.get(&format!("layers.{i}.weight")) {
            blocks.push(count);
            count = 0;
            out_channels = w.dim(0)?;
        }
    }
    if blocks.is_empty() || count != 0 {
        return Err(err(
            "the layers do not end with a convolution: not a TAESD decoder file",
        ));
    }
    Ok(TinyVaeConfig {
        latent_channels: first.dim(1)?,
        out_channels,
        decoder_block_out_channels: vec![first.dim(0)?; blocks.len()],
        num_decoder_blocks: blocks,
        ..Default::default()
    })
}

/// The installed TAESD called `name` under `models_dir/vae_approx/`: the diffusers folder
/// `<name>/` if it is there, else `<name>_decoder.safetensors`.
pub fn find(models_dir: &Path, name: &str) -> Option<PathBuf> {
    let base = models_dir.join(FOLDER);
    let dir = base.join(name);
    if dir.join("config.json").is_file() {
        return Some(dir);
    }
    let file = base.join(format!("{name}_decoder.safetensors"));
    file.is_file().then_some(file)
}

/// Write a tiny random-weight TAESD (a diffusers `AutoencoderTiny` folder with an 8-channel
/// decoder and encoder config) for latents of `latent_channels` channels, 8× upsampling.
/// Only the decoder's weights are written: Easel never runs the encoder.
pub fn make_tiny(dir: &Path, latent_channels: usize, seed: u64) -> Result<()> {
    write_random(dir, tiny_config(latent_channels), seed)
}

/// The released TAESDs' configuration (64 channels, decoder blocks `[3, 3, 3, 1]`).
pub fn released_config(latent_channels: usize) -> Value {
    let mut c = tiny_config(latent_channels);
    c["decoder_block_out_channels"] = json!([64, 64, 64, 64]);
    c["encoder_block_out_channels"] = json!([64, 64, 64, 64]);
    c["num_decoder_blocks"] = json!([3, 3, 3, 1]);
    c["num_encoder_blocks"] = json!([1, 3, 3, 3]);
    c
}

fn tiny_config(latent_channels: usize) -> Value {
    json!({
        "_class_name": "AutoencoderTiny",
        "_diffusers_version": "0.42.1",
        "act_fn": "relu",
        "decoder_block_out_channels": [8, 8, 8, 8],
        "encoder_block_out_channels": [8, 8, 8, 8],
        "force_upcast": false,
        "in_channels": 3,
        "latent_channels": latent_channels,
        "latent_magnitude": 3,
        "latent_shift": 0.5,
        "num_decoder_blocks": [1, 1, 1, 1],
        "num_encoder_blocks": [1, 1, 1, 1],
        "out_channels": 3,
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
        "upsample_fn": "nearest",
        "upsampling_scaling_factor": 2,
    })
}

/// Write a random-weight `AutoencoderTiny` folder (decoder weights only) of `config`.
pub fn write_random(dir: &Path, config: Value, seed: u64) -> Result<()> {
    let parsed: TinyVaeConfig =
        serde_json::from_value(config.clone()).map_err(|e| err(e.to_string()))?;
    crate::tiny::write_component(
        dir,
        &config,
        "diffusion_pytorch_model.safetensors",
        seed,
        false,
        |vb| TinyVae::load(vb.pp("decoder"), parsed).map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_shift_by_one() {
        let t = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let m: HashMap<String, Tensor> = [("1.weight", &t), ("4.conv.2.bias", &t)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut got: Vec<String> = from_original_names(m).unwrap().into_keys().collect();
        got.sort();
        assert_eq!(got, ["layers.0.weight", "layers.3.conv.2.bias"]);
        let bad: HashMap<String, Tensor> = [("0.weight".to_string(), t.clone())].into();
        assert!(from_original_names(bad).is_err());
    }

    #[test]
    fn default_config_is_the_released_one() {
        let c = TinyVaeConfig::default();
        assert_eq!(c.decoder_block_out_channels, [64, 64, 64, 64]);
        assert_eq!(c.num_decoder_blocks, [3, 3, 3, 1]);
        assert_eq!(c.scale(), 8);
        assert_eq!(c.latent_channels, 4);
    }

    /// The tiny writer's folder and the same weights as an original-layout decoder file load
    /// to the same decoder, found under both names, and decode 8× the latent size.
    #[test]
    fn folder_and_original_file_agree() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join(FOLDER).join("taesd");
        make_tiny(&folder, 4, 7).unwrap();
        assert_eq!(find(root.path(), "taesd"), Some(folder.clone()));
        assert_eq!(find(root.path(), "taesdxl"), None);
        // Rewrite the decoder's weights as the original release names them.
        let dev = Device::Cpu;
        let w = loader::read_tensors(
            &[folder.join("diffusion_pytorch_model.safetensors")],
            DType::F32,
            &dev,
        )
        .unwrap();
        let original: HashMap<String, Tensor> = w
            .into_iter()
            .map(|(k, v)| {
                let rest = k.strip_prefix("decoder.layers.").unwrap();
                let (i, rest) = rest.split_once('.').unwrap();
                (format!("{}.{rest}", i.parse::<usize>().unwrap() + 1), v)
            })
            .collect();
        let file = root.path().join(FOLDER).join("taesdx_decoder.safetensors");
        candle_core::safetensors::save(&original, &file).unwrap();
        assert_eq!(find(root.path(), "taesdx"), Some(file.clone()));

        let a = TinyVae::load_path(&folder, &dev).unwrap();
        let z = (crate::kernels::testutil::rand(&[1, 4, 5, 6], 3) * 4.0).unwrap();
        let ya = a.latents_to_image(&z).unwrap();
        assert_eq!(ya.dims(), [1, 3, 40, 48]);
        let b = TinyVae::load_path(&file, &dev).unwrap();
        assert_eq!(b.config().num_decoder_blocks, [1, 1, 1, 1]);
        assert_eq!(b.config().decoder_block_out_channels, [8, 8, 8, 8]);
        let yb = b.latents_to_image(&z).unwrap();
        assert_eq!(crate::kernels::testutil::max_rel(&yb, &ya), 0.0);
        // Something else is refused, naming the file.
        let other = root.path().join("other.safetensors");
        let t = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
        candle_core::safetensors::save(&HashMap::from([("a.weight".to_string(), t)]), &other)
            .unwrap();
        let e = TinyVae::load_path(&other, &dev).unwrap_err().to_string();
        assert!(
            e.contains("other.safetensors") && e.contains("TAESD"),
            "{e}"
        );
    }
}
