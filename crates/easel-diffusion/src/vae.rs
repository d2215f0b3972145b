//! The VAE (diffusers' `AutoencoderKL`): encodes images to latent distributions and decodes
//! latents to images. Configured from the folder's `config.json`.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::blocks::{
    conv1x1, conv3x3, group_norm, Downsample, ResnetBlock, SpatialSelfAttention, Upsample,
};
use crate::kernels::{Conv2d, GroupNorm};
use crate::loader;

const EPS: f64 = 1e-6;

#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "sd_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    #[serde(default = "default_act")]
    pub act_fn: String,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn sd_scale() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}
fn default_act() -> String {
    "silu".into()
}

struct MidBlock {
    res1: ResnetBlock,
    attn: Option<SpatialSelfAttention>,
    res2: ResnetBlock,
}

impl MidBlock {
    fn load(c: usize, cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let g = cfg.norm_num_groups;
        Ok(MidBlock {
            res1: ResnetBlock::load(c, c, g, EPS, None, vb.pp("resnets.0"))?,
            attn: cfg
                .mid_block_add_attention
                .then(|| SpatialSelfAttention::load(c, g, EPS, vb.pp("attentions.0")))
                .transpose()?,
            res2: ResnetBlock::load(c, c, g, EPS, None, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.res1.forward(x, None)?;
        if let Some(a) = &self.attn {
            x = a.forward(&x)?;
        }
        self.res2.forward(&x, None)
    }
}

struct Level {
    resnets: Vec<ResnetBlock>,
    down: Option<Downsample>,
    up: Option<Upsample>,
}

pub struct Encoder {
    conv_in: Conv2d,
    levels: Vec<Level>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    levels: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub struct Vae {
    pub config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    /// The weights' dtype: what the encoder and decoder compute in.
    dtype: DType,
}

/// The latent distribution of an encoded image.
pub struct Posterior {
    pub mean: Tensor,
    /// Clamped to [-30, 20] as diffusers does.
    pub logvar: Tensor,
}

impl Posterior {
    /// `mean + std * noise` (diffusers' default `latent_dist.sample()`).
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean
            .add(&(self.logvar.affine(0.5, 0.0)?.exp()? * noise)?)
    }
}

impl Vae {
    pub fn load(vb: VarBuilder, cfg: VaeConfig) -> Result<Vae> {
        if cfg.act_fn != "silu" {
            return Err(candle_core::Error::Msg(format!(
                "unsupported VAE act_fn `{}`",
                cfg.act_fn
            )));
        }
        let g = cfg.norm_num_groups;
        let ch = &cfg.block_out_channels;
        let last = *ch
            .last()
            .ok_or_else(|| candle_core::Error::Msg("empty block_out_channels".into()))?;
        let lat = cfg.latent_channels;

        let e = vb.pp("encoder");
        let mut levels = Vec::new();
        let mut cin = ch[0];
        for (i, &cout) in ch.iter().enumerate() {
            let b = e.pp(format!("down_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock::load(
                        if j == 0 { cin } else { cout },
                        cout,
                        g,
                        EPS,
                        None,
                        b.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let down = (i + 1 < ch.len())
                .then(|| Downsample::load(cout, cout, true, b.pp("downsamplers.0")))
                .transpose()?;
            levels.push(Level {
                resnets,
                down,
                up: None,
            });
            cin = cout;
        }
        let encoder = Encoder {
            conv_in: conv3x3(cfg.in_channels, ch[0], e.pp("conv_in"))?,
            levels,
            mid: MidBlock::load(last, &cfg, e.pp("mid_block"))?,
            norm_out: group_norm(g, last, EPS, e.pp("conv_norm_out"))?,
            conv_out: conv3x3(last, 2 * lat, e.pp("conv_out"))?,
        };

        let d = vb.pp("decoder");
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut levels = Vec::new();
        let mut cin = last;
        for (i, &cout) in rev.iter().enumerate() {
            let b = d.pp(format!("up_blocks.{i}"));
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock::load(
                        if j == 0 { cin } else { cout },
                        cout,
                        g,
                        EPS,
                        None,
                        b.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let up = (i + 1 < rev.len())
                .then(|| Upsample::load(cout, b.pp("upsamplers.0")))
                .transpose()?;
            levels.push(Level {
                resnets,
                down: None,
                up,
            });
            cin = cout;
        }
        let decoder = Decoder {
            conv_in: conv3x3(lat, last, d.pp("conv_in"))?,
            mid: MidBlock::load(last, &cfg, d.pp("mid_block"))?,
            levels,
            norm_out: group_norm(g, ch[0], EPS, d.pp("conv_norm_out"))?,
            conv_out: conv3x3(ch[0], cfg.out_channels, d.pp("conv_out"))?,
        };
        Ok(Vae {
            quant_conv: cfg
                .use_quant_conv
                .then(|| conv1x1(2 * lat, 2 * lat, vb.pp("quant_conv")))
                .transpose()?,
            post_quant_conv: cfg
                .use_post_quant_conv
                .then(|| conv1x1(lat, lat, vb.pp("post_quant_conv")))
                .transpose()?,
            config: cfg,
            encoder,
            decoder,
            dtype: vb.dtype(),
        })
    }

    /// Load a diffusers `vae/` folder (`config.json` + `diffusion_pytorch_model.safetensors`
    /// or its `.fp16` variant), read in parallel into memory.
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Vae> {
        let cfg: VaeConfig = loader::read_config(&dir.join("config.json"))?;
        let weights = loader::weight_files(dir, "diffusion_pytorch_model")?;
        Vae::load(
            loader::var_builder(&weights, "vae", &[], dtype, device)?,
            cfg,
        )
    }

    /// The dtype the autoencoder computes in (its weights').
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Encode images in [-1, 1] ([B, 3, H, W]) to their latent distribution (unscaled), in
    /// `x`'s dtype (computed in the autoencoder's).
    pub fn encode(&self, x: &Tensor) -> Result<Posterior> {
        let e = &self.encoder;
        let mut h = e.conv_in.forward(&x.to_dtype(self.dtype)?)?;
        for l in &e.levels {
            for r in &l.resnets {
                h = r.forward(&h, None)?;
            }
            if let Some(d) = &l.down {
                h = d.forward(&h)?;
            }
        }
        let h = e.mid.forward(&h)?;
        let mut h = e.conv_out.forward(&e.norm_out.forward_silu(&h)?)?;
        if let Some(q) = &self.quant_conv {
            h = q.forward(&h)?;
        }
        let lat = self.config.latent_channels;
        let h = h.to_dtype(x.dtype())?;
        Ok(Posterior {
            mean: h.narrow(1, 0, lat)?,
            logvar: h.narrow(1, lat, lat)?.clamp(-30f32, 20f32)?,
        })
    }

    /// Decode unscaled latents to images in [-1, 1], in `z`'s dtype (computed in the
    /// autoencoder's).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let out_dtype = z.dtype();
        let z = z.to_dtype(self.dtype)?;
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(&z)?,
            None => z,
        };
        let d = &self.decoder;
        let mut h = d.mid.forward(&d.conv_in.forward(&z)?)?;
        for l in &d.levels {
            for r in &l.resnets {
                h = r.forward(&h, None)?;
            }
            if let Some(u) = &l.up {
                h = u.forward(&h)?;
            }
        }
        d.conv_out
            .forward(&d.norm_out.forward_silu(&h)?)?
            .to_dtype(out_dtype)
    }

    /// Latents as the pipeline keeps them → image in [0, 1]:
    /// `clamp(decode(latents / scaling (+ shift)) / 2 + 0.5, 0, 1)`.
    pub fn latents_to_image(&self, latents: &Tensor) -> Result<Tensor> {
        let z = latents.affine(
            1.0 / self.config.scaling_factor,
            self.config.shift_factor.unwrap_or(0.0),
        )?;
        self.decode(&z)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)
    }

    /// Encoded posterior sample → latents as the pipeline keeps them.
    pub fn scale_latents(&self, z: &Tensor) -> Result<Tensor> {
        z.affine(1.0, -self.config.shift_factor.unwrap_or(0.0))?
            .affine(self.config.scaling_factor, 0.0)
    }
}
