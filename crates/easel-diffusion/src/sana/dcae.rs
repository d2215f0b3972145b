//! DC-AE, the deep-compression autoencoder of Sana (diffusers' `AutoencoderDC`): a
//! deterministic encoder (no posterior: `encode` returns the latent itself) and a decoder,
//! 32x spatial compression with 32 latent channels for the released Sana models.
//!
//! Structure (as diffusers builds it from `config.json`):
//! * stages of `ResBlock` (conv3x3, act, conv3x3 without bias, norm, residual) or
//!   `EfficientViTBlock` (multiscale linear attention then GLUMBConv, both with RMSNorm and a
//!   residual); between stages the encoder has `DCDownBlock2d` (stride-2 conv, or conv +
//!   pixel-unshuffle) and the decoder `DCUpBlock2d` (nearest 2x + conv, or conv +
//!   pixel-shuffle), each plus a parameter-free shortcut (space-to-channel then channel
//!   averaging down; channel repeat-interleave then channel-to-space up);
//! * the encoder ends with `conv_out` plus the channel average of its input (`out_shortcut`),
//!   the decoder starts with `conv_in` plus its input's channels repeat-interleaved
//!   (`in_shortcut`) and ends with RMSNorm over channels, an activation and `conv_out`.
//!
//! Non-obvious points:
//! * Attention: `to_q`, `to_k`, `to_v` (linear layers on channels) are concatenated as
//!   `[q of all heads, k of all heads, v of all heads]`, each multiscale branch (depthwise
//!   kxk conv, then 1x1 conv grouped by `3 * heads`) appends as many channels again, and the
//!   whole is cut into groups of `3 * head_dim` **consecutive** channels, each split into
//!   (q, k, v). With two or more heads that regroups across the to_q / to_k / to_v
//!   boundaries (it restores the original fused-qkv layout); it is done here by a plain
//!   reshape of the concatenation, never per projection.
//! * Linear attention (ReLU kernel) in f32 whatever the weights' dtype: a row of ones is
//!   appended to v so that `(v;1) k^T q` gives numerator and denominator at once,
//!   `out = num / (den + 1e-15)`. Its cost is O(HW * d^2): no HW x HW matrix is ever built.
//!   diffusers switches to quadratic (softmax-free, ReLU-normalized) attention only when
//!   `H * W <= head_dim`, i.e. for feature maps of a few pixels; that branch is kept.
//! * Every RMSNorm normalizes over channels (eps 1e-5, weight and bias), per pixel.
//! * Depthwise convolutions run on `kernels::depthwise`, not candle's grouped convolution
//!   (which loops over the groups one by one).
//! * `downsample_block_type` other than "pixel_unshuffle" (the released config says "Conv")
//!   and `upsample_block_type` other than "interpolate" mean the other kind, as in diffusers.
//! * Tiled decoding ([`AutoencoderDc::decode_tiled`]) follows diffusers' `tiled_decode`:
//!   overlapping latent tiles decoded one by one, each blended linearly into the one above
//!   and the one to its left (both already blended) over the overlap, then cropped to the
//!   stride. Attention is global within a tile, so a tiled decode is close to, not equal to,
//!   an untiled one. Only two rows of decoded tiles are held at a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Conv2dConfig, Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::kernels::{self, Conv2d};
use crate::loader;
use crate::rng::TorchRng;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

const NORM_EPS: f64 = 1e-5;
const ATTN_EPS: f64 = 1e-15;

// ---------------------------------------------------------------------------------------------
// Configuration.

/// A per-stage setting that `config.json` gives either once for all stages or as a list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PerStage {
    All(String),
    Each(Vec<String>),
}

impl PerStage {
    /// One value per stage (`n` stages); a list must cover every stage.
    pub fn resolve(&self, n: usize, what: &str) -> Result<Vec<String>> {
        match self {
            PerStage::All(s) => Ok(vec![s.clone(); n]),
            PerStage::Each(v) if v.len() >= n => Ok(v[..n].to_vec()),
            PerStage::Each(v) => Err(err(format!(
                "DC-AE config: {what} has {} entries for {n} stages",
                v.len()
            ))),
        }
    }
}

/// `config.json` of an `AutoencoderDC` folder, with diffusers' defaults for absent keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DcAeConfig {
    #[serde(default = "d_in_channels")]
    pub in_channels: usize,
    #[serde(default = "d_32")]
    pub latent_channels: usize,
    #[serde(default = "d_32")]
    pub attention_head_dim: usize,
    #[serde(default = "d_resblock")]
    pub encoder_block_types: PerStage,
    #[serde(default = "d_resblock")]
    pub decoder_block_types: PerStage,
    #[serde(default = "d_block_out_channels")]
    pub encoder_block_out_channels: Vec<usize>,
    #[serde(default = "d_block_out_channels")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "d_encoder_layers")]
    pub encoder_layers_per_block: Vec<usize>,
    #[serde(default = "d_decoder_layers")]
    pub decoder_layers_per_block: Vec<usize>,
    #[serde(default = "d_multiscales")]
    pub encoder_qkv_multiscales: Vec<Vec<usize>>,
    #[serde(default = "d_multiscales")]
    pub decoder_qkv_multiscales: Vec<Vec<usize>>,
    #[serde(default = "d_pixel_shuffle")]
    pub upsample_block_type: String,
    #[serde(default = "d_pixel_unshuffle")]
    pub downsample_block_type: String,
    #[serde(default = "d_rms_norm")]
    pub decoder_norm_types: PerStage,
    #[serde(default = "d_silu")]
    pub decoder_act_fns: PerStage,
    #[serde(default = "d_true")]
    pub encoder_out_shortcut: bool,
    #[serde(default = "d_true")]
    pub decoder_in_shortcut: bool,
    #[serde(default = "d_relu")]
    pub decoder_conv_act_fn: String,
    #[serde(default = "d_one")]
    pub scaling_factor: f64,
}

fn d_in_channels() -> usize {
    3
}
fn d_32() -> usize {
    32
}
fn d_resblock() -> PerStage {
    PerStage::All("ResBlock".into())
}
fn d_block_out_channels() -> Vec<usize> {
    vec![128, 256, 512, 512, 1024, 1024]
}
fn d_encoder_layers() -> Vec<usize> {
    vec![2, 2, 2, 3, 3, 3]
}
fn d_decoder_layers() -> Vec<usize> {
    vec![3; 6]
}
fn d_multiscales() -> Vec<Vec<usize>> {
    vec![vec![], vec![], vec![], vec![5], vec![5], vec![5]]
}
fn d_pixel_shuffle() -> String {
    "pixel_shuffle".into()
}
fn d_pixel_unshuffle() -> String {
    "pixel_unshuffle".into()
}
fn d_rms_norm() -> PerStage {
    PerStage::All("rms_norm".into())
}
fn d_silu() -> PerStage {
    PerStage::All("silu".into())
}
fn d_true() -> bool {
    true
}
fn d_relu() -> String {
    "relu".into()
}
fn d_one() -> f64 {
    1.0
}

impl Default for DcAeConfig {
    /// diffusers' constructor defaults (`AutoencoderDC()`).
    fn default() -> Self {
        serde_json::from_str("{}").expect("every DC-AE config key has a default")
    }
}

impl DcAeConfig {
    /// `2^(number of encoder stages - 1)`, as diffusers computes it (32 for Sana's DC-AE).
    pub fn spatial_compression(&self) -> usize {
        1 << self.encoder_block_out_channels.len().saturating_sub(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Layers.

#[derive(Debug, Clone, Copy)]
enum Act {
    Silu,
    Relu,
    Gelu,
    Mish,
}

impl Act {
    fn parse(name: &str) -> Result<Act> {
        match name {
            "silu" | "swish" => Ok(Act::Silu),
            "relu" => Ok(Act::Relu),
            "gelu" => Ok(Act::Gelu),
            "mish" => Ok(Act::Mish),
            _ => Err(err(format!("DC-AE: unsupported activation `{name}`"))),
        }
    }

    fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Silu => x.silu(),
            Act::Relu => x.relu(),
            Act::Gelu => kernels::gelu(x),
            // x * tanh(softplus(x)); softplus is x itself beyond 20, as torch's.
            Act::Mish => {
                let sp = x.exp()?.affine(1.0, 1.0)?.log()?;
                let big = x.ge(20.0)?;
                x * big.where_cond(x, &sp)?.tanh()?
            }
        }
    }
}

/// A per-channel normalization of an NCHW map.
enum Norm {
    /// RMS over the channels of each pixel, then `* weight + bias`.
    Rms { weight: Tensor, bias: Tensor },
    /// Inference batch norm folded to `x * scale + shift` (per channel).
    Batch { scale: Tensor, shift: Tensor },
}

impl Norm {
    fn load(kind: &str, c: usize, vb: VarBuilder) -> Result<Norm> {
        match kind {
            "rms_norm" => Ok(Norm::Rms {
                weight: vb.get_with_hints(c, "weight", Init::Const(1.0))?,
                bias: vb.get_with_hints(c, "bias", Init::Const(0.0))?,
            }),
            "batch_norm" => {
                let w = vb.get_with_hints(c, "weight", Init::Const(1.0))?;
                let b = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
                let mean = vb.get_with_hints(c, "running_mean", Init::Const(0.0))?;
                let var = vb.get_with_hints(c, "running_var", Init::Const(1.0))?;
                let dt = w.dtype();
                let (w, b, mean, var) = (
                    w.to_dtype(DType::F32)?,
                    b.to_dtype(DType::F32)?,
                    mean.to_dtype(DType::F32)?,
                    var.to_dtype(DType::F32)?,
                );
                let scale = (w / var.affine(1.0, NORM_EPS)?.sqrt()?)?;
                let shift = (b - (mean * &scale)?)?;
                Ok(Norm::Batch {
                    scale: scale.to_dtype(dt)?.reshape((1, c, 1, 1))?,
                    shift: shift.to_dtype(dt)?.reshape((1, c, 1, 1))?,
                })
            }
            _ => Err(err(format!("DC-AE: unsupported norm type `{kind}`"))),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Rms { weight, bias } => {
                let c = weight.dim(0)?;
                let dt = x.dtype();
                let xf = x.to_dtype(DType::F32)?;
                let inv = xf
                    .sqr()?
                    .mean_keepdim(1)?
                    .affine(1.0, NORM_EPS)?
                    .sqrt()?
                    .recip()?;
                xf.broadcast_mul(&inv)?
                    .to_dtype(dt)?
                    .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
                    .broadcast_add(&bias.reshape((1, c, 1, 1))?)
            }
            Norm::Batch { scale, shift } => x.broadcast_mul(scale)?.broadcast_add(shift),
        }
    }
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    bias: bool,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        ..Default::default()
    };
    Conv2d::load(cin, cout, k, cfg, bias, vb)
}

/// A depthwise k x k convolution (one filter per channel, "same" zero padding).
struct Depthwise {
    /// `[C, k*k]`: each channel's taps, row-major over the kernel.
    weight: Tensor,
    bias: Option<Tensor>,
    k: usize,
}

impl Depthwise {
    fn load(c: usize, k: usize, bias: bool, vb: VarBuilder) -> Result<Depthwise> {
        let weight = vb.get((c, 1, k, k), "weight")?.reshape((c, k * k))?;
        let bias = bias.then(|| vb.get(c, "bias")).transpose()?;
        Ok(Depthwise { weight, bias, k })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::depthwise(x, &self.weight, self.bias.as_ref(), self.k, false)
    }
}

/// `[out, in]` weights applied to the channels of an NCHW map (a linear layer on
/// channels-last, or a 1x1 convolution without bias); `groups` splits both sides.
struct Pointwise {
    /// [groups, out / groups, in / groups]
    weight: Tensor,
}

impl Pointwise {
    fn from_linear(w: Tensor) -> Result<Pointwise> {
        Ok(Pointwise {
            weight: w.unsqueeze(0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (g, o, i) = self.weight.dims3()?;
        if g * i != c {
            return Err(err(format!(
                "DC-AE: pointwise layer for {} channels given {c}",
                g * i
            )));
        }
        let x = x.reshape((b, g, i, h * w))?;
        let wt = self.weight.unsqueeze(0)?.broadcast_as((b, g, o, i))?;
        wt.contiguous()?.matmul(&x)?.reshape((b, g * o, h, w))
    }
}

/// `(B, C, H, W)` → `(B, C/4, 2H, 2W)` (torch's `pixel_shuffle`, factor 2).
fn pixel_shuffle(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c / 4, 2, 2, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((b, c / 4, 2 * h, 2 * w))
}

/// `(B, C, 2H, 2W)` → `(B, 4C, H, W)` (torch's `pixel_unshuffle`, factor 2).
fn pixel_unshuffle(x: &Tensor) -> Result<Tensor> {
    let (b, c, h2, w2) = x.dims4()?;
    let (h, w) = (h2 / 2, w2 / 2);
    x.reshape((b, c, h, 2, w, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((b, c * 4, h, w))
}

/// Each channel `r` times in place: `c0 c0 c1 c1 ...` (torch's `repeat_interleave` on dim 1).
fn repeat_channels(x: &Tensor, r: usize) -> Result<Tensor> {
    if r == 1 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, c, r, h, w))?
        .reshape((b, c * r, h, w))
}

/// The mean of each group of `g` consecutive channels (in f32).
fn average_channels(x: &Tensor, g: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.to_dtype(DType::F32)?
        .reshape((b, c / g, g, h, w))?
        .mean(2)?
        .to_dtype(x.dtype())
}

fn ratio(num: usize, den: usize, what: &str) -> Result<usize> {
    if den == 0 || !num.is_multiple_of(den) || num < den {
        return Err(err(format!(
            "DC-AE: {what}: {num} channels are not a multiple of {den}"
        )));
    }
    Ok(num / den)
}

struct ResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
    norm: Norm,
    act: Act,
}

impl ResBlock {
    fn load(c: usize, norm: &str, act: &str, vb: VarBuilder) -> Result<ResBlock> {
        Ok(ResBlock {
            conv1: conv(c, c, 3, 1, true, vb.pp("conv1"))?,
            conv2: conv(c, c, 3, 1, false, vb.pp("conv2"))?,
            norm: Norm::load(norm, c, vb.pp("norm"))?,
            act: Act::parse(act)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.act.forward(&self.conv1.forward(x)?)?;
        self.norm.forward(&self.conv2.forward(&h)?)? + x
    }
}

/// One multiscale branch: depthwise k x k, then 1x1 grouped by `3 * heads`.
struct MultiscaleBranch {
    proj_in: Depthwise,
    proj_out: Pointwise,
}

/// diffusers' `SanaMultiscaleLinearAttention` with its residual.
struct MultiscaleAttention {
    /// `[to_q; to_k; to_v]`, [3 * inner, in]
    qkv: Pointwise,
    branches: Vec<MultiscaleBranch>,
    to_out: Pointwise,
    norm: Norm,
    head_dim: usize,
}

impl MultiscaleAttention {
    fn load(
        c: usize,
        head_dim: usize,
        kernels: &[usize],
        norm: &str,
        vb: VarBuilder,
    ) -> Result<MultiscaleAttention> {
        let heads = c / head_dim;
        if heads == 0 {
            return Err(err(format!(
                "DC-AE: {c} channels hold no head of {head_dim}"
            )));
        }
        let inner = heads * head_dim;
        let qkv = Tensor::cat(
            &[
                vb.get((inner, c), "to_q.weight")?,
                vb.get((inner, c), "to_k.weight")?,
                vb.get((inner, c), "to_v.weight")?,
            ],
            0,
        )?;
        let branches = kernels
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let b = vb.pp(format!("to_qkv_multiscale.{i}"));
                let ch = 3 * inner;
                let groups = 3 * heads;
                let per = ch / groups;
                let w = b.get((ch, per, 1, 1), "proj_out.weight")?;
                Ok(MultiscaleBranch {
                    proj_in: Depthwise::load(ch, k, false, b.pp("proj_in"))?,
                    proj_out: Pointwise {
                        weight: w.reshape((groups, per, per))?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let to_out = vb.get((c, inner * (1 + kernels.len())), "to_out.weight")?;
        Ok(MultiscaleAttention {
            qkv: Pointwise::from_linear(qkv)?,
            branches,
            to_out: Pointwise::from_linear(to_out)?,
            norm: Norm::load(norm, c, vb.pp("norm_out"))?,
            head_dim,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let hw = h * w;
        let d = self.head_dim;
        let dt = x.dtype();
        let qkv = self.qkv.forward(x)?;
        let mut parts = vec![qkv.clone()];
        for br in &self.branches {
            parts.push(br.proj_out.forward(&br.proj_in.forward(&qkv)?)?);
        }
        let all = Tensor::cat(&parts, 1)?;
        let linear = hw > d;
        let all = if linear {
            all.to_dtype(DType::F32)?
        } else {
            all
        };
        let groups = all.dim(1)? / (3 * d);
        // Consecutive 3 * head_dim channels form one (q, k, v) group.
        let all = all.reshape((b, groups, 3 * d, hw))?;
        let q = all.narrow(2, 0, d)?.relu()?;
        let k = all.narrow(2, d, d)?.relu()?;
        let v = all.narrow(2, 2 * d, d)?.contiguous()?;
        let out = if linear {
            let ones = Tensor::ones((b, groups, 1, hw), DType::F32, x.device())?;
            let v1 = Tensor::cat(&[&v, &ones], 2)?;
            let vk = v1.matmul(&k.t()?)?; // [b, g, d + 1, d]
            let num = vk.matmul(&q)?; // [b, g, d + 1, hw]
            let den = num.narrow(2, d, 1)?.affine(1.0, ATTN_EPS)?;
            num.narrow(2, 0, d)?.broadcast_div(&den)?.to_dtype(dt)?
        } else {
            let scores = k.t()?.matmul(&q)?.to_dtype(DType::F32)?; // [b, g, hw(keys), hw]
            let sum = scores.sum_keepdim(2)?.affine(1.0, ATTN_EPS)?;
            let scores = scores.broadcast_div(&sum)?.to_dtype(dt)?;
            v.matmul(&scores)?
        };
        let out = out.reshape((b, groups * d, h, w))?;
        let out = self.to_out.forward(&out)?;
        self.norm.forward(&out)? + x
    }
}

/// diffusers' `GLUMBConv` (expand 4) with RMSNorm and residual.
struct GluMbConv {
    conv_inverted: Conv2d,
    conv_depth: Depthwise,
    conv_point: Conv2d,
    norm: Norm,
    hidden: usize,
}

impl GluMbConv {
    fn load(c: usize, vb: VarBuilder) -> Result<GluMbConv> {
        let hidden = 4 * c;
        Ok(GluMbConv {
            conv_inverted: conv(c, 2 * hidden, 1, 1, true, vb.pp("conv_inverted"))?,
            conv_depth: Depthwise::load(2 * hidden, 3, true, vb.pp("conv_depth"))?,
            conv_point: conv(hidden, c, 1, 1, false, vb.pp("conv_point"))?,
            norm: Norm::load("rms_norm", c, vb.pp("norm"))?,
            hidden,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv_inverted.forward(x)?.silu()?;
        let h = self.conv_depth.forward(&h)?;
        let a = h.narrow(1, 0, self.hidden)?;
        let gate = h.narrow(1, self.hidden, self.hidden)?.silu()?;
        let h = self.conv_point.forward(&(a * gate)?)?;
        self.norm.forward(&h)? + x
    }
}

struct UpBlock {
    conv: Conv2d,
    interpolate: bool,
    /// Channel repeats of the shortcut, `None` without one.
    shortcut: Option<usize>,
}

impl UpBlock {
    fn load(
        cin: usize,
        cout: usize,
        interpolate: bool,
        shortcut: bool,
        vb: VarBuilder,
    ) -> Result<UpBlock> {
        let conv_out = if interpolate { cout } else { 4 * cout };
        Ok(UpBlock {
            conv: conv(cin, conv_out, 3, 1, true, vb.pp("conv"))?,
            interpolate,
            shortcut: if shortcut {
                Some(ratio(4 * cout, cin, "up block shortcut")?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let y = if self.interpolate {
            self.conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)?
        } else {
            pixel_shuffle(&self.conv.forward(x)?)?
        };
        match self.shortcut {
            Some(r) => y + pixel_shuffle(&repeat_channels(x, r)?)?,
            None => Ok(y),
        }
    }
}

struct DownBlock {
    conv: Conv2d,
    unshuffle: bool,
    /// Channel-average group of the shortcut, `None` without one.
    shortcut: Option<usize>,
}

impl DownBlock {
    fn load(
        cin: usize,
        cout: usize,
        unshuffle: bool,
        shortcut: bool,
        vb: VarBuilder,
    ) -> Result<DownBlock> {
        let (conv_out, stride) = if unshuffle {
            (ratio(cout, 4, "pixel-unshuffle down block")?, 1)
        } else {
            (cout, 2)
        };
        Ok(DownBlock {
            conv: conv(cin, conv_out, 3, stride, true, vb.pp("conv"))?,
            unshuffle,
            shortcut: if shortcut {
                Some(ratio(4 * cin, cout, "down block shortcut")?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        let y = if self.unshuffle {
            pixel_unshuffle(&y)?
        } else {
            y
        };
        match self.shortcut {
            Some(g) => y + average_channels(&pixel_unshuffle(x)?, g)?,
            None => Ok(y),
        }
    }
}

enum Block {
    Conv(Conv2d),
    Res(ResBlock),
    Vit(MultiscaleAttention, GluMbConv),
    Up(UpBlock),
    Down(DownBlock),
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Block::Conv(c) => c.forward(x),
            Block::Res(r) => r.forward(x),
            Block::Vit(a, f) => f.forward(&a.forward(x)?),
            Block::Up(u) => u.forward(x),
            Block::Down(d) => d.forward(x),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stage_block(
    kind: &str,
    c: usize,
    head_dim: usize,
    norm: &str,
    act: &str,
    kernels: &[usize],
    vb: VarBuilder,
) -> Result<Block> {
    match kind {
        "ResBlock" => Ok(Block::Res(ResBlock::load(c, norm, act, vb)?)),
        "EfficientViTBlock" => Ok(Block::Vit(
            MultiscaleAttention::load(c, head_dim, kernels, norm, vb.pp("attn"))?,
            GluMbConv::load(c, vb.pp("conv_out"))?,
        )),
        _ => Err(err(format!("DC-AE: unsupported block type `{kind}`"))),
    }
}

fn stage_count(
    channels: &[usize],
    layers: &[usize],
    multiscales: &[Vec<usize>],
    side: &str,
) -> Result<usize> {
    let n = channels.len();
    if n == 0 || layers.len() < n || multiscales.len() < n {
        return Err(err(format!(
            "DC-AE config: {side} has {n} block_out_channels, {} layers_per_block, {} qkv_multiscales",
            layers.len(),
            multiscales.len()
        )));
    }
    if n == 1 && layers[0] == 0 {
        return Err(err(format!("DC-AE config: {side} has no layers")));
    }
    Ok(n)
}

struct Encoder {
    conv_in: Block,
    stages: Vec<Vec<Block>>,
    conv_out: Conv2d,
    out_shortcut: Option<usize>,
}

impl Encoder {
    fn load(cfg: &DcAeConfig, vb: VarBuilder) -> Result<Encoder> {
        let ch = &cfg.encoder_block_out_channels;
        let layers = &cfg.encoder_layers_per_block;
        let n = stage_count(ch, layers, &cfg.encoder_qkv_multiscales, "encoder")?;
        let kinds = cfg.encoder_block_types.resolve(n, "encoder_block_types")?;
        let unshuffle = cfg.downsample_block_type == "pixel_unshuffle";
        let conv_in = if layers[0] > 0 {
            Block::Conv(conv(cfg.in_channels, ch[0], 3, 1, true, vb.pp("conv_in"))?)
        } else {
            Block::Down(DownBlock::load(
                cfg.in_channels,
                ch[1],
                unshuffle,
                false,
                vb.pp("conv_in"),
            )?)
        };
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let s = vb.pp(format!("down_blocks.{i}"));
            let mut blocks = Vec::new();
            for j in 0..layers[i] {
                blocks.push(stage_block(
                    &kinds[i],
                    ch[i],
                    cfg.attention_head_dim,
                    "rms_norm",
                    "silu",
                    &cfg.encoder_qkv_multiscales[i],
                    s.pp(j.to_string()),
                )?);
            }
            if i + 1 < n && layers[i] > 0 {
                blocks.push(Block::Down(DownBlock::load(
                    ch[i],
                    ch[i + 1],
                    unshuffle,
                    true,
                    s.pp(layers[i].to_string()),
                )?));
            }
            stages.push(blocks);
        }
        let last = ch[n - 1];
        Ok(Encoder {
            conv_in,
            stages,
            conv_out: conv(last, cfg.latent_channels, 3, 1, true, vb.pp("conv_out"))?,
            out_shortcut: if cfg.encoder_out_shortcut {
                Some(ratio(last, cfg.latent_channels, "encoder out shortcut")?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for b in self.stages.iter().flatten() {
            h = b.forward(&h)?;
        }
        let y = self.conv_out.forward(&h)?;
        match self.out_shortcut {
            Some(g) => y + average_channels(&h, g)?,
            None => Ok(y),
        }
    }
}

struct Decoder {
    conv_in: Conv2d,
    in_shortcut: Option<usize>,
    /// Indexed as diffusers' `up_blocks` (stage 0 = full resolution); run last to first.
    stages: Vec<Vec<Block>>,
    norm_out: Norm,
    act: Act,
    conv_out: Block,
}

impl Decoder {
    fn load(cfg: &DcAeConfig, vb: VarBuilder) -> Result<Decoder> {
        let ch = &cfg.decoder_block_out_channels;
        let layers = &cfg.decoder_layers_per_block;
        let n = stage_count(ch, layers, &cfg.decoder_qkv_multiscales, "decoder")?;
        let kinds = cfg.decoder_block_types.resolve(n, "decoder_block_types")?;
        let norms = cfg.decoder_norm_types.resolve(n, "decoder_norm_types")?;
        let acts = cfg.decoder_act_fns.resolve(n, "decoder_act_fns")?;
        let interpolate = cfg.upsample_block_type == "interpolate";
        let last = ch[n - 1];
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let s = vb.pp(format!("up_blocks.{i}"));
            let mut blocks = Vec::new();
            let mut idx = 0;
            if i + 1 < n && layers[i] > 0 {
                blocks.push(Block::Up(UpBlock::load(
                    ch[i + 1],
                    ch[i],
                    interpolate,
                    true,
                    s.pp("0"),
                )?));
                idx = 1;
            }
            for j in 0..layers[i] {
                blocks.push(stage_block(
                    &kinds[i],
                    ch[i],
                    cfg.attention_head_dim,
                    &norms[i],
                    &acts[i],
                    &cfg.decoder_qkv_multiscales[i],
                    s.pp((idx + j).to_string()),
                )?);
            }
            stages.push(blocks);
        }
        let c = if layers[0] > 0 { ch[0] } else { ch[1] };
        let conv_out = if layers[0] > 0 {
            Block::Conv(conv(c, cfg.in_channels, 3, 1, true, vb.pp("conv_out"))?)
        } else {
            Block::Up(UpBlock::load(
                c,
                cfg.in_channels,
                interpolate,
                false,
                vb.pp("conv_out"),
            )?)
        };
        Ok(Decoder {
            conv_in: conv(cfg.latent_channels, last, 3, 1, true, vb.pp("conv_in"))?,
            in_shortcut: if cfg.decoder_in_shortcut {
                Some(ratio(last, cfg.latent_channels, "decoder in shortcut")?)
            } else {
                None
            },
            stages,
            norm_out: Norm::load("rms_norm", c, vb.pp("norm_out"))?,
            act: Act::parse(&cfg.decoder_conv_act_fn)?,
            conv_out,
        })
    }

    /// With `trace`, records `conv_in_output` (the convolution alone, before the shortcut),
    /// `up_block_<i>_output`, `norm_out_output` (NCHW) and `conv_out_output`.
    fn forward(&self, z: &Tensor, mut trace: Option<&mut Vec<(String, Tensor)>>) -> Result<Tensor> {
        let mut record = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };
        let c = self.conv_in.forward(z)?;
        record("conv_in_output".into(), &c);
        let mut h = match self.in_shortcut {
            Some(r) => (c + repeat_channels(z, r)?)?,
            None => c,
        };
        for (i, stage) in self.stages.iter().enumerate().rev() {
            for b in stage {
                h = b.forward(&h)?;
            }
            record(format!("up_block_{i}_output"), &h);
        }
        let h = self.norm_out.forward(&h)?;
        record("norm_out_output".into(), &h);
        let out = self.conv_out.forward(&self.act.forward(&h)?)?;
        record("conv_out_output".into(), &out);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

/// diffusers' `AutoencoderDC`. Tensors are NCHW; inputs are converted to the model's dtype and
/// outputs come out in it.
pub struct AutoencoderDc {
    config: DcAeConfig,
    encoder: Encoder,
    decoder: Decoder,
    dtype: DType,
}

impl AutoencoderDc {
    /// Build from weights in diffusers' key layout (`encoder.*`, `decoder.*`).
    pub fn new(config: DcAeConfig, vb: VarBuilder) -> Result<AutoencoderDc> {
        Ok(AutoencoderDc {
            encoder: Encoder::load(&config, vb.pp("encoder"))?,
            decoder: Decoder::load(&config, vb.pp("decoder"))?,
            dtype: vb.dtype(),
            config,
        })
    }

    /// Load a diffusers `vae/` folder (`config.json` + `diffusion_pytorch_model.safetensors`
    /// or its `.fp16` variant), read in parallel into memory, at `dtype`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<AutoencoderDc> {
        let config: DcAeConfig = loader::read_config(&dir.join("config.json"))?;
        let weights = loader::weight_files(dir, "diffusion_pytorch_model")?;
        AutoencoderDc::new(
            config,
            loader::var_builder(&weights, "vae", &[], dtype, device)?,
        )
    }

    pub fn config(&self) -> &DcAeConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Pixels per latent along each side (32 for Sana's DC-AE).
    pub fn spatial_compression(&self) -> usize {
        self.config.spatial_compression()
    }

    /// Images in [-1, 1] ([B, 3, H, W], H and W multiples of the compression) → latents
    /// ([B, latent_channels, H / r, W / r]), unscaled (the pipeline multiplies by
    /// `scaling_factor`).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.encoder.forward(&x.to_dtype(self.dtype)?)
    }

    /// Unscaled latents (the pipeline divides by `scaling_factor` first) → the decoder's raw
    /// output, images in about [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&z.to_dtype(self.dtype)?, None)
    }

    /// [`decode`](Self::decode) plus the decoder's intermediate maps, named as the parity
    /// fixtures' `vae_decoder_*` debug tensors (without the prefix); `norm_out_output` is NCHW.
    pub fn decode_traced(&self, z: &Tensor) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let mut trace = Vec::new();
        let out = self
            .decoder
            .forward(&z.to_dtype(self.dtype)?, Some(&mut trace))?;
        Ok((out, trace))
    }

    /// diffusers' default tiling (`tile_sample_min` 512, `tile_sample_stride` 448 pixels) as
    /// `(tile_latent, overlap)` for [`decode_tiled`](Self::decode_tiled): (16, 2) at r = 32.
    pub fn default_tiling(&self) -> (usize, usize) {
        let r = self.spatial_compression();
        ((512 / r).max(1), 64 / r)
    }

    /// [`decode`](Self::decode) in overlapping tiles of `tile_latent` x `tile_latent` latents
    /// advancing by `tile_latent - overlap`, blended linearly over `overlap * r` pixels
    /// (diffusers' `tiled_decode` with `tile_sample_min = tile_latent * r` and
    /// `tile_sample_stride = (tile_latent - overlap) * r`; its defaults 512 / 448 are
    /// `tile_latent = 512 / r`, `overlap = 64 / r`). Latents that fit in one tile are decoded
    /// whole. Memory: one tile's decoder activations plus two rows of decoded tiles and the
    /// output.
    pub fn decode_tiled(&self, z: &Tensor, tile_latent: usize, overlap: usize) -> Result<Tensor> {
        let r = self.spatial_compression();
        let (_, _, h, w) = z.dims4()?;
        if overlap >= tile_latent {
            return Err(err(format!(
                "DC-AE tiles: overlap {overlap} must be below the tile size {tile_latent}"
            )));
        }
        if h <= tile_latent && w <= tile_latent {
            return self.decode(z);
        }
        let stride = tile_latent - overlap;
        tiled(z, tile_latent, stride, overlap * r, stride * r, |t| {
            self.decode(t)
        })
    }

    /// [`encode`](Self::encode) in overlapping tiles of `tile_latent * r` pixels advancing by
    /// `(tile_latent - overlap) * r`, blended over `overlap` latents (diffusers'
    /// `tiled_encode`; edge tiles are zero-padded to a multiple of r, the result cropped to
    /// `H / r` x `W / r`). Images that fit in one tile are encoded whole.
    pub fn encode_tiled(&self, x: &Tensor, tile_latent: usize, overlap: usize) -> Result<Tensor> {
        let r = self.spatial_compression();
        let (_, _, h, w) = x.dims4()?;
        if overlap >= tile_latent {
            return Err(err(format!(
                "DC-AE tiles: overlap {overlap} must be below the tile size {tile_latent}"
            )));
        }
        if h <= tile_latent * r && w <= tile_latent * r {
            return self.encode(x);
        }
        let out = tiled(
            x,
            tile_latent * r,
            (tile_latent - overlap) * r,
            overlap,
            tile_latent - overlap,
            |t| {
                let (_, _, th, tw) = t.dims4()?;
                let t = t.pad_with_zeros(2, 0, (r - th % r) % r)?.pad_with_zeros(
                    3,
                    0,
                    (r - tw % r) % r,
                )?;
                self.encode(&t)
            },
        )?;
        out.narrow(2, 0, h / r)?.narrow(3, 0, w / r)
    }
}

/// diffusers' tile loop: tiles of `tile` input units starting every `stride` input units,
/// each mapped by `f`, blended with the (already blended) tile above and tile to its left over
/// `blend` output units, cropped to `crop` output units and concatenated.
fn tiled(
    x: &Tensor,
    tile: usize,
    stride: usize,
    blend: usize,
    crop: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let mut above: Vec<Tensor> = Vec::new();
    let mut strips = Vec::new();
    for y0 in (0..h).step_by(stride) {
        let rows = x.narrow(2, y0, tile.min(h - y0))?;
        let mut row: Vec<Tensor> = Vec::new();
        let mut crops = Vec::new();
        for (j, x0) in (0..w).step_by(stride).enumerate() {
            let mut t = f(&rows.narrow(3, x0, tile.min(w - x0))?)?;
            if let Some(a) = above.get(j) {
                t = blend_edge(a, &t, blend, 2)?;
            }
            if j > 0 {
                t = blend_edge(&row[j - 1], &t, blend, 3)?;
            }
            let (_, _, th, tw) = t.dims4()?;
            crops.push(t.narrow(2, 0, crop.min(th))?.narrow(3, 0, crop.min(tw))?);
            row.push(t);
        }
        strips.push(Tensor::cat(&crops, 3)?);
        above = row;
    }
    Tensor::cat(&strips, 2)
}

/// diffusers' `blend_v` (dim 2) / `blend_h` (dim 3): the first `extent` rows (columns) of `b`
/// become `a`'s last ones weighted `1 - y / extent` plus `b`'s weighted `y / extent`.
fn blend_edge(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let extent = extent.min(a.dim(dim)?).min(b.dim(dim)?);
    if extent == 0 {
        return Ok(b.clone());
    }
    let mut shape = vec![1usize; 4];
    shape[dim] = extent;
    let wb: Vec<f32> = (0..extent)
        .map(|y| (y as f64 / extent as f64) as f32)
        .collect();
    let wa: Vec<f32> = (0..extent)
        .map(|y| (1.0 - y as f64 / extent as f64) as f32)
        .collect();
    let wb = Tensor::from_vec(wb, shape.as_slice(), b.device())?.to_dtype(b.dtype())?;
    let wa = Tensor::from_vec(wa, shape.as_slice(), b.device())?.to_dtype(b.dtype())?;
    let n = b.dim(dim)?;
    let a_edge = a.narrow(dim, a.dim(dim)? - extent, extent)?;
    let b_edge = b.narrow(dim, 0, extent)?;
    let mixed = (a_edge.broadcast_mul(&wa)? + b_edge.broadcast_mul(&wb)?)?;
    if extent == n {
        return Ok(mixed);
    }
    Tensor::cat(&[&mixed, &b.narrow(dim, extent, n - extent)?], dim)
}

// ---------------------------------------------------------------------------------------------
// Tiny random-weight models.

/// Draws every tensor the model asks for, by name, in the order asked: norm weights (and
/// batch-norm running variances) `1 + 0.1 n`, biases and running means `0.1 n`, other weights
/// `n / sqrt(fan_in)`, with n standard normal from the seeded generator.
struct RandomDcAe {
    state: Mutex<(TorchRng, HashMap<String, Tensor>)>,
}

struct RandomBackend(Arc<RandomDcAe>);

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = state.1.get(name) {
            if t.shape() != &s {
                return Err(err(format!(
                    "{name} asked for as {s:?} and {:?}",
                    t.shape()
                )));
            }
            return t.to_dtype(dtype)?.to_device(dev);
        }
        let n = state.0.randn_vec(s.elem_count());
        let is_norm = name.contains("norm");
        let (scale, offset) = if name.ends_with("running_var") {
            (0.1, 1.0)
        } else if name.ends_with("bias") || name.ends_with("running_mean") {
            (0.1, 0.0)
        } else if is_norm && name.ends_with("weight") {
            (0.1, 1.0)
        } else {
            let fan_in: usize = s.dims().iter().skip(1).product();
            (1.0 / (fan_in.max(1) as f32).sqrt(), 0.0)
        };
        let v: Vec<f32> = n
            .into_iter()
            .map(|x| {
                let y = x * scale + offset;
                if name.ends_with("running_var") {
                    y.abs()
                } else {
                    y
                }
            })
            .collect();
        let t = Tensor::from_vec(v, s, &Device::Cpu)?;
        state.1.insert(name.to_string(), t.clone());
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        Err(err(format!(
            "random weights: `{name}` asked for without a shape"
        )))
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Write a random-weight `AutoencoderDC` folder: `dir/config.json` (every key, as diffusers
/// writes them) and `dir/diffusion_pytorch_model.safetensors` (f32, diffusers' key names),
/// deterministic from `seed`.
pub fn write_tiny(dir: &Path, seed: u64, config: &DcAeConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    let mut json = serde_json::to_value(config).map_err(|e| err(e.to_string()))?;
    if let Some(map) = json.as_object_mut() {
        map.insert("_class_name".into(), "AutoencoderDC".into());
    }
    let text = serde_json::to_string_pretty(&json).map_err(|e| err(e.to_string()))? + "\n";
    let path = dir.join("config.json");
    std::fs::write(&path, text).map_err(|e| err(format!("writing {}: {e}", path.display())))?;
    let backend = Arc::new(RandomDcAe {
        state: Mutex::new((TorchRng::new(seed), HashMap::new())),
    });
    AutoencoderDc::new(
        config.clone(),
        VarBuilder::from_backend(
            Box::new(RandomBackend(backend.clone())),
            DType::F32,
            Device::Cpu,
        ),
    )?;
    let tensors = std::mem::take(&mut backend.state.lock().unwrap_or_else(|e| e.into_inner()).1);
    let path = dir.join("diffusion_pytorch_model.safetensors");
    crate::loader::save_safetensors(&tensors, &path)
}

/// A small DC-AE configuration with every feature of the released one (ResBlock and
/// EfficientViT stages, multiscale attention with two heads, shortcuts, interpolate up, conv
/// down): 3 stages (compression 4), widths 8 / 16 / 32, 8 latent channels.
pub fn tiny_config() -> DcAeConfig {
    let stages = PerStage::Each(vec![
        "ResBlock".into(),
        "EfficientViTBlock".into(),
        "EfficientViTBlock".into(),
    ]);
    DcAeConfig {
        in_channels: 3,
        latent_channels: 8,
        attention_head_dim: 8,
        encoder_block_types: stages.clone(),
        decoder_block_types: stages,
        encoder_block_out_channels: vec![8, 16, 32],
        decoder_block_out_channels: vec![8, 16, 32],
        encoder_layers_per_block: vec![1, 1, 2],
        decoder_layers_per_block: vec![1, 2, 2],
        encoder_qkv_multiscales: vec![vec![], vec![5], vec![5]],
        decoder_qkv_multiscales: vec![vec![], vec![5], vec![5]],
        upsample_block_type: "interpolate".into(),
        downsample_block_type: "conv".into(),
        decoder_norm_types: PerStage::All("rms_norm".into()),
        decoder_act_fns: PerStage::All("silu".into()),
        encoder_out_shortcut: true,
        decoder_in_shortcut: true,
        decoder_conv_act_fn: "relu".into(),
        scaling_factor: 0.41407,
    }
}
