//! Sana's denoiser: diffusers' `SanaTransformer2DModel` (the linear-attention DiT of Sana 1.0,
//! Sana 1.5 and Sana-Sprint), loaded from a diffusers `transformer/` folder.
//!
//! One forward pass, with the latent `x` as `[B, C, h, w]`:
//!
//! 1. patch embedding: a `p x p` stride-`p` convolution (done here as a linear map over
//!    patchified pixels), plus a fixed 2D sin-cos position table when the config sets
//!    `interpolation_scale` (PixArt's `PatchEmbed` with `pos_embed_type` "sincos");
//! 2. adaLN-single: `e = linear_2(silu(linear_1(sinusoid_256(t))))` (flip_sin_to_cos, shift 0),
//!    block modulation `linear(silu(e))` = 6 x D; with `guidance_embeds` (Sana-Sprint) a second
//!    embedder of the guidance value is added to `e` first;
//! 3. caption: `linear_2(gelu_tanh(linear_1(c)))`, then RMSNorm (eps 1e-5, weight);
//! 4. blocks: `h += gate_msa * attn1(LN(h) * (1 + scale_msa) + shift_msa)`, then
//!    `h += attn2(h, caption)` on the **un-normalised** stream (no norm, no modulation), then
//!    `h += gate_mlp * MixFFN(norm2(h) * (1 + scale_mlp) + shift_mlp)`, the six modulation
//!    rows being the block's `scale_shift_table` plus the time modulation;
//! 5. output: LayerNorm, `(1 + scale) x + shift` from the top-level `scale_shift_table + e`,
//!    `proj_out`, unpatchify.
//!
//! Non-obvious points, all as diffusers computes them:
//! - `attn1` is ReLU-kernel linear attention, computed in f32 whatever the model dtype: per head,
//!   `[v; 1] k^T q` (a row of ones appended to `v` yields the normaliser), then
//!   `num / (den + 1e-15)`;
//! - `attn2` is softmax attention (scale `head_dim^-0.5`) with the caption key mask turned into
//!   the additive bias `(1 - mask) * -10000`;
//! - the Mix-FFN (GLUMBConv) is a 1x1 conv to 2 x hidden (+bias), SiLU, a 3x3 depthwise conv
//!   (+bias), `a * silu(gate)` over the two channel halves and a 1x1 conv back (no bias); it runs
//!   here on the channel-last token grid (1x1 convs as linear maps, the depthwise conv through
//!   `kernels::depthwise` in its channels-last layout), the same arithmetic without layout
//!   changes;
//! - `qk_norm` "rms_norm_across_heads" (Sana 1.5, Sprint) is an RMSNorm over all heads of q and
//!   k before the ReLU (attn1) or before the softmax (attn2), eps 1e-5, with a weight;
//! - `timestep_scale` and `guidance_embeds_scale` are read by the pipelines, not by the model:
//!   callers multiply the timestep / guidance themselves.
//!
//! Perturbed-attention guidance is built in: [`Perturbed`] names the blocks whose self-attention
//! becomes the identity (`to_out(to_v(x))`) for the batch rows from `first_row` on, which is
//! what diffusers' `PAGCFGSanaLinearAttnProcessor2_0` / `PAGIdentitySanaLinearAttnProcessor2_0`
//! do to the perturbed chunk. (Those processors skip `qk_norm` on the unperturbed rows; a
//! model with `qk_norm` keeps its norm here, the model being trained with it.)

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kernels::{
    self,
    linear::{linear, linear_b, Linear},
};
use crate::loader::read_config;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Config.

/// `transformer/config.json` of a Sana model, with diffusers' defaults for absent keys (the
/// defaults are Sana 1600M's). Unknown keys (older exports carry `use_pe`, `activation_fn`, ...)
/// are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SanaTransformerConfig {
    pub in_channels: usize,
    /// `null` means `in_channels`.
    pub out_channels: Option<usize>,
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub num_layers: usize,
    pub num_cross_attention_heads: Option<usize>,
    pub cross_attention_head_dim: Option<usize>,
    pub cross_attention_dim: Option<usize>,
    pub caption_channels: usize,
    pub mlp_ratio: f64,
    pub dropout: f64,
    /// Biases of attn1's q/k/v (attn2 always has them).
    pub attention_bias: bool,
    pub sample_size: usize,
    pub patch_size: usize,
    /// Affine `norm2` (the feed-forward's LayerNorm); `norm1` never has one.
    pub norm_elementwise_affine: bool,
    pub norm_eps: f64,
    /// Set: add the sin-cos position table (grid scaled by `sample_size / patch_size` and this).
    pub interpolation_scale: Option<f64>,
    /// Sana-Sprint: a guidance-value embedder beside the timestep embedder.
    pub guidance_embeds: bool,
    /// Read by the Sprint pipeline (guidance is multiplied by it before the model).
    pub guidance_embeds_scale: f64,
    /// `null` or "rms_norm_across_heads".
    pub qk_norm: Option<String>,
    /// Read by `SanaPipeline` (timestep is multiplied by it before the model).
    pub timestep_scale: f64,
}

impl Default for SanaTransformerConfig {
    fn default() -> Self {
        SanaTransformerConfig {
            in_channels: 32,
            out_channels: Some(32),
            num_attention_heads: 70,
            attention_head_dim: 32,
            num_layers: 20,
            num_cross_attention_heads: Some(20),
            cross_attention_head_dim: Some(112),
            cross_attention_dim: Some(2240),
            caption_channels: 2304,
            mlp_ratio: 2.5,
            dropout: 0.0,
            attention_bias: false,
            sample_size: 32,
            patch_size: 1,
            norm_elementwise_affine: false,
            norm_eps: 1e-6,
            interpolation_scale: None,
            guidance_embeds: false,
            guidance_embeds_scale: 0.1,
            qk_norm: None,
            timestep_scale: 1.0,
        }
    }
}

impl SanaTransformerConfig {
    /// Width of the residual stream: heads x head dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Channels of the Mix-FFN's gated half: `int(mlp_ratio * D)`.
    pub fn ff_hidden(&self) -> usize {
        (self.mlp_ratio * self.inner_dim() as f64) as usize
    }

    /// Cross-attention heads and head dim (`null` read as diffusers' defaults 20 and 112).
    fn cross_heads(&self) -> (usize, usize) {
        (
            self.num_cross_attention_heads.unwrap_or(20),
            self.cross_attention_head_dim.unwrap_or(112),
        )
    }

    /// Errors for what this implementation (or diffusers itself) cannot run.
    pub fn validate(&self) -> Result<()> {
        let d = self.inner_dim();
        if d == 0 || self.num_layers == 0 || self.in_channels == 0 || self.patch_size == 0 {
            return Err(err(
                "Sana transformer config: zero heads, head dim, layers, channels or patch size",
            ));
        }
        match self.cross_attention_dim {
            None => return Err(err(
                "Sana transformer config: cross_attention_dim null (no cross-attention) is not \
                     supported (diffusers' block cannot run without it either)",
            )),
            Some(c) if c != d => {
                return Err(err(format!(
                    "Sana transformer config: cross_attention_dim {c} differs from the inner dim \
                     {d} (the projected caption has the inner dim)"
                )))
            }
            _ => {}
        }
        let (heads, dim) = self.cross_heads();
        if heads == 0 || dim == 0 {
            return Err(err("Sana transformer config: zero cross-attention heads"));
        }
        match self.qk_norm.as_deref() {
            None | Some("rms_norm_across_heads") => {}
            Some(other) => {
                return Err(err(format!(
                    "Sana transformer config: qk_norm \"{other}\" is not supported (only null and \
                     \"rms_norm_across_heads\", which the released Sana models use)"
                )))
            }
        }
        if self.interpolation_scale.is_some() && !d.is_multiple_of(4) {
            return Err(err(format!(
                "Sana transformer config: the sin-cos position table needs an inner dim divisible \
                 by 4, not {d}"
            )));
        }
        if self.ff_hidden() == 0 {
            return Err(err(
                "Sana transformer config: mlp_ratio gives no hidden channels",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Small pieces.

/// LayerNorm over the last axis without affine, in f32.
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dt = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?
        .to_dtype(dt)
}

/// LayerNorm, optionally with weight and bias.
struct Norm {
    eps: f64,
    affine: Option<(Tensor, Tensor)>,
}

impl Norm {
    fn load(dim: usize, eps: f64, affine: bool, vb: VarBuilder) -> Result<Self> {
        let affine = if affine {
            Some((
                vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
                vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            ))
        } else {
            None
        };
        Ok(Norm { eps, affine })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = layer_norm(x, self.eps)?;
        match &self.affine {
            None => Ok(y),
            Some((w, b)) => y.broadcast_mul(w)?.broadcast_add(b),
        }
    }
}

/// diffusers' `RMSNorm` with a weight: `x * rsqrt(mean(x^2) + eps) * w`, the statistics in f32.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let ms = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x32.broadcast_mul(&(ms + self.eps)?.sqrt()?.recip()?)?;
        y.to_dtype(dt)?.broadcast_mul(&self.weight)
    }
}

/// `linear_2(silu(linear_1(x)))` (diffusers' `TimestepEmbedding`).
struct Mlp {
    linear_1: Linear,
    linear_2: Linear,
}

impl Mlp {
    fn load(cin: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            linear_1: linear(cin, dim, vb.pp("linear_1"))?,
            linear_2: linear(dim, dim, vb.pp("linear_2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// The 256-wide sinusoid of diffusers' `Timesteps(256, flip_sin_to_cos=True, shift=0)`:
/// `[cos(t f_k), sin(t f_k)]` with `f_k = exp(-ln(10000) k / 128)`, rounded to f32 as torch
/// rounds each step.
fn sinusoid_256(values: &[f32]) -> Vec<f32> {
    const HALF: usize = 128;
    let ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..HALF)
        .map(|k| (((ln * k as f32) / HALF as f32) as f64).exp() as f32)
        .collect();
    let mut out = Vec::with_capacity(values.len() * 2 * HALF);
    for &t in values {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
    }
    out
}

/// `[B]` (or `[1]`, broadcast) f32 values of a timestep-like tensor.
fn per_row_values(t: &Tensor, b: usize, what: &str) -> Result<Vec<f32>> {
    let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    match v.len() {
        n if n == b => Ok(v),
        1 => Ok(vec![v[0]; b]),
        n => Err(err(format!(
            "Sana transformer: {what} has {n} values for a batch of {b}"
        ))),
    }
}

/// PixArt's 2D sin-cos table for a `gh x gw` grid, row-major tokens: first half of each row
/// encodes the column coordinate, second half the row coordinate (diffusers' `meshgrid`
/// order), each as `[sin(pos w_k), cos(pos w_k)]` with `w_k = 10000^(-k / (D/4))` in f64.
fn sincos_table(dim: usize, gh: usize, gw: usize, base: usize, interp: f64) -> Vec<f32> {
    let coords = |n: usize| -> Vec<f32> {
        let step = (n as f64 / base as f64) as f32;
        (0..n).map(|i| (i as f32) / step / interp as f32).collect()
    };
    let (hc, wc) = (coords(gh), coords(gw));
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / (dim / 4) as f64))
        .collect();
    let one_d = |pos: f32, out: &mut Vec<f32>| {
        let p = pos as f64;
        out.extend(omega.iter().map(|w| (p * w).sin() as f32));
        out.extend(omega.iter().map(|w| (p * w).cos() as f32));
    };
    let mut out = Vec::with_capacity(gh * gw * dim);
    for &y in &hc {
        for &x in &wc {
            one_d(x, &mut out);
            one_d(y, &mut out);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Attention.

/// Self-attention `attn1`: ReLU linear attention.
struct LinearAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    heads: usize,
    head_dim: usize,
}

impl LinearAttention {
    fn load(cfg: &SanaTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.inner_dim();
        let bias = cfg.attention_bias;
        let qk_norm = cfg
            .qk_norm
            .is_some()
            .then(|| -> Result<_> {
                Ok((
                    RmsNorm::load(d, 1e-5, vb.pp("norm_q"))?,
                    RmsNorm::load(d, 1e-5, vb.pp("norm_k"))?,
                ))
            })
            .transpose()?;
        Ok(LinearAttention {
            to_q: linear_b(d, d, bias, vb.pp("to_q"))?,
            to_k: linear_b(d, d, bias, vb.pp("to_k"))?,
            to_v: linear_b(d, d, bias, vb.pp("to_v"))?,
            to_out: linear(d, d, vb.pp("to_out.0"))?,
            qk_norm,
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
        })
    }

    /// Rows `first_perturbed..` (if any) take the identity path `to_out(to_v(x))`.
    fn forward(&self, x: &Tensor, first_perturbed: Option<usize>) -> Result<Tensor> {
        let b = x.dim(0)?;
        match first_perturbed {
            None => self.attend(x),
            Some(r) if r >= b => self.attend(x),
            Some(0) => self.identity(x),
            Some(r) => Tensor::cat(
                &[
                    &self.attend(&x.narrow(0, 0, r)?)?,
                    &self.identity(&x.narrow(0, r, b - r)?)?,
                ],
                0,
            ),
        }
    }

    fn identity(&self, x: &Tensor) -> Result<Tensor> {
        self.to_out.forward(&self.to_v.forward(x)?)
    }

    fn attend(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let mut q = self.to_q.forward(x)?;
        let mut k = self.to_k.forward(x)?;
        let v = self.to_v.forward(x)?;
        if let Some((nq, nk)) = &self.qk_norm {
            q = nq.forward(&q)?;
            k = nk.forward(&k)?;
        }
        // q, v: [B, H, d, N]; k: [B, H, N, d]; all f32.
        let q = q
            .relu()?
            .to_dtype(DType::F32)?
            .reshape((b, n, h, d))?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        let k = k
            .relu()?
            .to_dtype(DType::F32)?
            .reshape((b, n, h, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = v
            .to_dtype(DType::F32)?
            .reshape((b, n, h, d))?
            .permute((0, 2, 3, 1))?;
        let ones = Tensor::ones((b, h, 1, n), DType::F32, x.device())?;
        let v = Tensor::cat(&[&v, &ones], 2)?.contiguous()?;
        let out = v.matmul(&k)?.matmul(&q)?; // [B, H, d + 1, N]
        let num = out.narrow(2, 0, d)?;
        let den = (out.narrow(2, d, 1)? + 1e-15)?;
        let out = num
            .broadcast_div(&den)?
            .reshape((b, h * d, n))?
            .transpose(1, 2)?
            .to_dtype(x.dtype())?
            // candle 0.11's `Linear` mis-multiplies a non-contiguous 3D input when B > 1.
            .contiguous()?;
        self.to_out.forward(&out)
    }
}

/// Cross-attention `attn2`: softmax attention on the projected caption with a key bias.
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    heads: usize,
    head_dim: usize,
}

impl CrossAttention {
    fn load(cfg: &SanaTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.inner_dim();
        let (heads, head_dim) = cfg.cross_heads();
        let inner = heads * head_dim;
        let ctx = cfg.cross_attention_dim.unwrap_or(d);
        let qk_norm = cfg
            .qk_norm
            .is_some()
            .then(|| -> Result<_> {
                Ok((
                    RmsNorm::load(inner, 1e-5, vb.pp("norm_q"))?,
                    RmsNorm::load(inner, 1e-5, vb.pp("norm_k"))?,
                ))
            })
            .transpose()?;
        Ok(CrossAttention {
            to_q: linear(d, inner, vb.pp("to_q"))?,
            to_k: linear(ctx, inner, vb.pp("to_k"))?,
            to_v: linear(ctx, inner, vb.pp("to_v"))?,
            to_out: linear(inner, d, vb.pp("to_out.0"))?,
            qk_norm,
            heads,
            head_dim,
        })
    }

    /// Split `[B, len, H·d]` into f32 heads `[B, H, len, d]`.
    fn heads(&self, t: Tensor) -> Result<Tensor> {
        let (b, len, _) = t.dims3()?;
        t.to_dtype(DType::F32)?
            .reshape((b, len, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// The keys and values of the projected caption `ctx` (f32 heads): the same at every step.
    fn keys_values(&self, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut k = self.to_k.forward(ctx)?;
        if let Some((_, nk)) = &self.qk_norm {
            k = nk.forward(&k)?;
        }
        Ok((self.heads(k)?, self.heads(self.to_v.forward(ctx)?)?))
    }

    /// `(k, v)` from [`keys_values`](Self::keys_values); `bias`: `[B, 1, 1, M]` f32 additive
    /// key bias.
    fn forward(&self, x: &Tensor, (k, v): &(Tensor, Tensor), bias: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let mut q = self.to_q.forward(x)?;
        if let Some((nq, _)) = &self.qk_norm {
            q = nq.forward(&q)?;
        }
        let q = self.heads(q)?;
        let scores = (q.matmul(&k.t()?)? * (d as f64).powf(-0.5))?.broadcast_add(bias)?;
        let out = candle_nn::ops::softmax_last_dim(&scores)?
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((b, n, h * d))?
            .to_dtype(x.dtype())?;
        self.to_out.forward(&out)
    }
}

// ---------------------------------------------------------------------------------------------
// Mix-FFN.

/// GLUMBConv on the channel-last token grid.
struct MixFfn {
    inverted: Linear,
    /// `[2 * hidden, 9]`: each channel's depthwise taps, row-major over the 3x3 kernel.
    depth_taps: Tensor,
    depth_bias: Tensor,
    point: Linear,
    hidden: usize,
}

impl MixFfn {
    fn load(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let c = 2 * hidden;
        let vi = vb.pp("conv_inverted");
        let inv_w = vi.get((c, dim, 1, 1), "weight")?.reshape((c, dim))?;
        let inv_b = vi.get_with_hints(c, "bias", Init::Const(0.0))?;
        let vd = vb.pp("conv_depth");
        let taps = vd.get((c, 1, 3, 3), "weight")?.reshape((c, 9))?;
        let depth_bias = vd.get_with_hints(c, "bias", Init::Const(0.0))?;
        let point_w = vb
            .pp("conv_point")
            .get((dim, hidden, 1, 1), "weight")?
            .reshape((dim, hidden))?;
        Ok(MixFfn {
            inverted: Linear::new(inv_w, Some(inv_b))?,
            depth_taps: taps,
            depth_bias,
            point: Linear::new(point_w, None)?,
            hidden,
        })
    }

    /// `x`: `[B, h * w, D]` tokens of an `h x w` grid, row-major.
    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let y = self.inverted.forward(x)?.silu()?;
        let c = 2 * self.hidden;
        let y = kernels::depthwise(
            &y.reshape((b, h, w, c))?,
            &self.depth_taps,
            Some(&self.depth_bias),
            3,
            true,
        )?;
        let a = y.narrow(3, 0, self.hidden)?;
        let gate = y.narrow(3, self.hidden, self.hidden)?;
        let z = (a * gate.silu()?)?.reshape((b, n, self.hidden))?;
        self.point.forward(&z)
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks and model.

struct Block {
    attn1: LinearAttention,
    attn2: CrossAttention,
    norm1_eps: f64,
    norm2: Norm,
    ff: MixFfn,
    /// `[6, D]`: shift, scale, gate (attention), shift, scale, gate (feed-forward).
    scale_shift_table: Tensor,
}

impl Block {
    fn load(cfg: &SanaTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.inner_dim();
        Ok(Block {
            attn1: LinearAttention::load(cfg, vb.pp("attn1"))?,
            attn2: CrossAttention::load(cfg, vb.pp("attn2"))?,
            norm1_eps: cfg.norm_eps,
            norm2: Norm::load(d, cfg.norm_eps, cfg.norm_elementwise_affine, vb.pp("norm2"))?,
            ff: MixFfn::load(d, cfg.ff_hidden(), vb.pp("ff"))?,
            scale_shift_table: vb.get((6, d), "scale_shift_table")?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        kv: &(Tensor, Tensor),
        bias: &Tensor,
        h: usize,
        w: usize,
        first_perturbed: Option<usize>,
    ) -> Result<Tensor> {
        let (b, _, d) = x.dims3()?;
        let m = self
            .scale_shift_table
            .unsqueeze(0)?
            .broadcast_add(&temb.reshape((b, 6, d))?)?;
        let row = |i: usize| m.narrow(1, i, 1);
        let (shift_msa, scale_msa, gate_msa) = (row(0)?, row(1)?, row(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (row(3)?, row(4)?, row(5)?);

        let nx = layer_norm(x, self.norm1_eps)?
            .broadcast_mul(&(scale_msa + 1.0)?)?
            .broadcast_add(&shift_msa)?;
        let a = self.attn1.forward(&nx, first_perturbed)?;
        let x = (x + a.broadcast_mul(&gate_msa)?)?;
        let x = (self.attn2.forward(&x, kv, bias)? + &x)?;

        let nx = self
            .norm2
            .forward(&x)?
            .broadcast_mul(&(scale_mlp + 1.0)?)?
            .broadcast_add(&shift_mlp)?;
        let f = self.ff.forward(&nx, h, w)?;
        x + f.broadcast_mul(&gate_mlp)?
    }
}

/// The time (and Sprint guidance) embedding.
struct TimeEmbed {
    timestep_embedder: Mlp,
    guidance_embedder: Option<Mlp>,
    linear: Linear,
}

impl TimeEmbed {
    fn load(cfg: &SanaTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.inner_dim();
        // AdaLayerNormSingle nests the embedder under `emb.`; Sprint's combined module doesn't.
        let (timestep_embedder, guidance_embedder) = if cfg.guidance_embeds {
            (
                Mlp::load(256, d, vb.pp("timestep_embedder"))?,
                Some(Mlp::load(256, d, vb.pp("guidance_embedder"))?),
            )
        } else {
            (Mlp::load(256, d, vb.pp("emb.timestep_embedder"))?, None)
        };
        Ok(TimeEmbed {
            timestep_embedder,
            guidance_embedder,
            linear: linear(d, 6 * d, vb.pp("linear"))?,
        })
    }

    /// `(modulation [B, 6D], embedded timestep [B, D])`.
    fn forward(
        &self,
        t: &[f32],
        guidance: Option<&[f32]>,
        dtype: DType,
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let b = t.len();
        let proj = |v: &[f32]| -> Result<Tensor> {
            Tensor::from_vec(sinusoid_256(v), (b, 256), dev)?.to_dtype(dtype)
        };
        let mut e = self.timestep_embedder.forward(&proj(t)?)?;
        match (&self.guidance_embedder, guidance) {
            (Some(g_emb), Some(g)) => e = (e + g_emb.forward(&proj(g)?)?)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(err(
                    "Sana transformer: this model embeds guidance (guidance_embeds); pass a guidance value",
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "Sana transformer: guidance given to a model without guidance_embeds",
                ))
            }
        }
        Ok((self.linear.forward(&e.silu()?)?, e))
    }
}

/// The PAG perturbation of one forward pass: in `blocks`' self-attention, batch rows from
/// `first_row` on use the identity attention `to_out(to_v(x))`; other rows and other blocks
/// are untouched.
#[derive(Debug, Clone, Copy)]
pub struct Perturbed<'a> {
    pub first_row: usize,
    pub blocks: &'a [usize],
}

/// The caption side of a forward pass, which no denoising step changes: computed once per
/// generation ([`SanaTransformer::caption`]) and reused by every step.
pub struct Caption {
    /// Each block's cross-attention keys and values, f32 `[B, H, M, d]`.
    kv: Vec<(Tensor, Tensor)>,
    /// `[B, 1, 1, M]` f32 additive key bias from the mask.
    bias: Tensor,
    batch: usize,
}

/// diffusers' `SanaTransformer2DModel`.
pub struct SanaTransformer {
    config: SanaTransformerConfig,
    patch_embed: Linear,
    time_embed: TimeEmbed,
    caption_1: Linear,
    caption_2: Linear,
    caption_norm: RmsNorm,
    blocks: Vec<Block>,
    /// `[2, D]`: shift, scale of the output norm.
    scale_shift_table: Tensor,
    proj_out: Linear,
    dtype: DType,
    device: Device,
    /// Last position table: `(h, w)` of the patch grid and `[1, h * w, D]`.
    pos_cache: Mutex<Option<((usize, usize), Tensor)>>,
}

impl SanaTransformer {
    /// Load a diffusers `transformer/` folder at `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config: SanaTransformerConfig = read_config(&dir.join("config.json"))?;
        let files = crate::loader::weight_files(dir, "diffusion_pytorch_model")?;
        let vb = crate::loader::var_builder(&files, "", &[], dtype, device)?;
        Self::new(config, vb)
    }

    /// Build from a config and weights under diffusers' names.
    pub fn new(config: SanaTransformerConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let d = config.inner_dim();
        let p = config.patch_size;
        let cin = config.in_channels;
        let pe = vb.pp("patch_embed.proj");
        let pe_w = pe
            .get((d, cin, p, p), "weight")?
            .reshape((d, cin * p * p))?;
        let pe_b = pe.get_with_hints(d, "bias", Init::Const(0.0))?;
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(&config, vb.pp(format!("transformer_blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(SanaTransformer {
            patch_embed: Linear::new(pe_w, Some(pe_b))?,
            time_embed: TimeEmbed::load(&config, vb.pp("time_embed"))?,
            caption_1: linear(
                config.caption_channels,
                d,
                vb.pp("caption_projection.linear_1"),
            )?,
            caption_2: linear(d, d, vb.pp("caption_projection.linear_2"))?,
            caption_norm: RmsNorm::load(d, 1e-5, vb.pp("caption_norm"))?,
            blocks,
            scale_shift_table: vb.get((2, d), "scale_shift_table")?,
            proj_out: linear(d, p * p * config.out_channels(), vb.pp("proj_out"))?,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            pos_cache: Mutex::new(None),
            config,
        })
    }

    pub fn config(&self) -> &SanaTransformerConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Velocity prediction `[B, out_channels, h, w]` for latents `x` `[B, in_channels, h, w]`,
    /// timesteps `[B]` (or `[1]`), caption embeddings `[B, M, caption_channels]` and their
    /// key mask `[B, M]` (1 keep, 0 drop; any numeric dtype).
    pub fn forward(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        encoder_hidden_states: &Tensor,
        encoder_mask: &Tensor,
        perturbed: Option<Perturbed>,
    ) -> Result<Tensor> {
        let caption = self.caption(encoder_hidden_states, encoder_mask)?;
        self.run(x, timestep, None, &caption, perturbed, None)
    }

    /// [`forward`](Self::forward) with the caption side prepared once by
    /// [`caption`](Self::caption), as a denoising loop runs it.
    pub fn forward_with_caption(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        caption: &Caption,
        perturbed: Option<Perturbed>,
    ) -> Result<Tensor> {
        self.run(x, timestep, None, caption, perturbed, None)
    }

    /// The caption side of the forward pass for caption embeddings `[B, M,
    /// caption_channels]` and their key mask `[B, M]` (1 keep, 0 drop): the projected,
    /// normalised caption's keys and values in every block, and the mask's bias.
    pub fn caption(
        &self,
        encoder_hidden_states: &Tensor,
        encoder_mask: &Tensor,
    ) -> Result<Caption> {
        self.caption_traced(encoder_hidden_states, encoder_mask, None)
    }

    fn caption_traced(
        &self,
        ctx: &Tensor,
        mask: &Tensor,
        mut trace: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Caption> {
        let (b, m, _) = ctx.dims3()?;
        if mask.dims() != [b, m] {
            return Err(err(format!(
                "Sana transformer: caption {:?}, mask {:?}",
                ctx.dims(),
                mask.dims()
            )));
        }
        let ctx = ctx.to_dtype(self.dtype)?;
        let ctx = self
            .caption_2
            .forward(&self.caption_1.forward(&ctx)?.gelu()?)?;
        let projected = ctx.clone();
        let ctx = self.caption_norm.forward(&ctx)?;
        if let Some(tr) = trace.as_mut() {
            tr.push(("caption_projection_output".into(), projected));
            tr.push(("caption_norm_output".into(), ctx.clone()));
        }
        let bias =
            ((mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * -10000.0)?.reshape((b, 1, 1, m))?;
        let kv = self
            .blocks
            .iter()
            .map(|block| block.attn2.keys_values(&ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Caption { kv, bias, batch: b })
    }

    /// [`forward`](Self::forward) for a `guidance_embeds` model (Sana-Sprint): `guidance` `[B]`
    /// (or `[1]`) is the value the pipeline passes, already multiplied by
    /// `guidance_embeds_scale`.
    pub fn forward_with_guidance(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        guidance: &Tensor,
        encoder_hidden_states: &Tensor,
        encoder_mask: &Tensor,
        perturbed: Option<Perturbed>,
    ) -> Result<Tensor> {
        let caption = self.caption(encoder_hidden_states, encoder_mask)?;
        self.run(x, timestep, Some(guidance), &caption, perturbed, None)
    }

    /// [`forward`](Self::forward), also returning the intermediate results under the names of
    /// the parity fixtures' `debug.safetensors` without their `transformer_` prefix
    /// (`patch_embed_output`, `time_embed_output_0`/`_1`, `caption_projection_output`,
    /// `caption_norm_output`, `block_<k>_output`, `norm_out_output`).
    pub fn forward_traced(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        encoder_hidden_states: &Tensor,
        encoder_mask: &Tensor,
        perturbed: Option<Perturbed>,
    ) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let mut trace = Vec::new();
        let caption = self.caption_traced(encoder_hidden_states, encoder_mask, Some(&mut trace))?;
        let out = self.run(x, timestep, None, &caption, perturbed, Some(&mut trace))?;
        Ok((out, trace))
    }

    fn position_table(&self, gh: usize, gw: usize) -> Result<Option<Tensor>> {
        let Some(interp) = self.config.interpolation_scale else {
            return Ok(None);
        };
        let mut cache = self.pos_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, t)) = cache.as_ref() {
            if *key == (gh, gw) {
                return Ok(Some(t.clone()));
            }
        }
        let d = self.config.inner_dim();
        let base = self.config.sample_size / self.config.patch_size;
        let table = Tensor::from_vec(
            sincos_table(d, gh, gw, base.max(1), interp),
            (1, gh * gw, d),
            &self.device,
        )?
        .to_dtype(self.dtype)?;
        *cache = Some(((gh, gw), table.clone()));
        Ok(Some(table))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        guidance: Option<&Tensor>,
        caption: &Caption,
        perturbed: Option<Perturbed>,
        mut trace: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, c, h, w) = x.dims4()?;
        let p = cfg.patch_size;
        if c != cfg.in_channels {
            return Err(err(format!(
                "Sana transformer: input has {c} channels, the model takes {}",
                cfg.in_channels
            )));
        }
        if h % p != 0 || w % p != 0 {
            return Err(err(format!(
                "Sana transformer: latent {h}x{w} is not a multiple of the patch size {p}"
            )));
        }
        let (gh, gw) = (h / p, w / p);
        if caption.batch != b {
            return Err(err(format!(
                "Sana transformer: batch {b}, caption batch {}",
                caption.batch
            )));
        }
        let first_perturbed = match perturbed {
            None => None,
            Some(pt) => {
                if let Some(&k) = pt.blocks.iter().find(|&&k| k >= cfg.num_layers) {
                    return Err(err(format!(
                        "Sana transformer: PAG block {k} of a {}-block model",
                        cfg.num_layers
                    )));
                }
                Some(pt)
            }
        };
        let mut record = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };

        // 1. Patches: [B, C, gh, p, gw, p] -> [B, gh * gw, C * p * p] (the conv weight's order).
        let x = x.to_dtype(self.dtype)?;
        let patches = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, gh * gw, c * p * p))?;
        let mut hs = self.patch_embed.forward(&patches)?;
        if let Some(pos) = self.position_table(gh, gw)? {
            hs = hs.broadcast_add(&pos)?;
        }
        record("patch_embed_output".into(), &hs);

        // 2. Time.
        let t = per_row_values(timestep, b, "timestep")?;
        let g = guidance
            .map(|g| per_row_values(g, b, "guidance"))
            .transpose()?;
        let (temb, embedded) =
            self.time_embed
                .forward(&t, g.as_deref(), self.dtype, &self.device)?;
        record("time_embed_output_0".into(), &temb);
        record("time_embed_output_1".into(), &embedded);

        // 3. Blocks (the caption side was prepared once: `caption`).
        for (k, block) in self.blocks.iter().enumerate() {
            let fp = first_perturbed
                .filter(|pt| pt.blocks.contains(&k))
                .map(|pt| pt.first_row);
            hs = block.forward(&hs, &temb, &caption.kv[k], &caption.bias, gh, gw, fp)?;
            record(format!("block_{k}_output"), &hs);
        }

        // 4. Output.
        let mo = self
            .scale_shift_table
            .unsqueeze(0)?
            .broadcast_add(&embedded.unsqueeze(1)?)?; // [B, 2, D]
        let (shift, scale) = (mo.narrow(1, 0, 1)?, mo.narrow(1, 1, 1)?);
        let hs = layer_norm(&hs, 1e-6)?
            .broadcast_mul(&(scale + 1.0)?)?
            .broadcast_add(&shift)?;
        record("norm_out_output".into(), &hs);
        let out = self.proj_out.forward(&hs)?;
        let co = cfg.out_channels();
        out.reshape((b, gh, gw, p, p, co))?
            .permute((0, 5, 1, 3, 2, 4))?
            .reshape((b, co, h, w))
    }
}

// ---------------------------------------------------------------------------------------------
// Tiny random-weight model.

/// A small config in the shape of Sana 1.0 (4 heads of 8, 2 layers, 8 latent channels, caption
/// width 48), the base of [`write_tiny`] in tests.
pub fn tiny_config() -> SanaTransformerConfig {
    SanaTransformerConfig {
        in_channels: 8,
        out_channels: Some(8),
        num_attention_heads: 4,
        attention_head_dim: 8,
        num_layers: 2,
        num_cross_attention_heads: Some(2),
        cross_attention_head_dim: Some(16),
        cross_attention_dim: Some(32),
        caption_channels: 48,
        ..SanaTransformerConfig::default()
    }
}

/// Write `dir/config.json` and `dir/diffusion_pytorch_model.safetensors` for `config` with
/// random f32 weights drawn from `seed` (the same seed gives the same files; see
/// [`crate::tiny`] for the distribution), under diffusers' key names.
pub fn write_tiny(dir: &Path, seed: u64, config: &SanaTransformerConfig) -> Result<()> {
    config.validate()?;
    let mut value = serde_json::to_value(config).map_err(|e| err(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("_class_name".into(), json!("SanaTransformer2DModel"));
        obj.insert("_diffusers_version".into(), json!("0.42.1"));
    }
    crate::tiny::write_component(
        dir,
        &value,
        "diffusion_pytorch_model.safetensors",
        seed,
        false,
        |vb| SanaTransformer::new(config.clone(), vb).map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_layout_is_cos_then_sin() {
        let e = sinusoid_256(&[0.0, 1.0]);
        assert_eq!(e.len(), 512);
        assert!(e[..128].iter().all(|&v| v == 1.0));
        assert!(e[128..256].iter().all(|&v| v == 0.0));
        // k = 0: frequency 1.
        assert!((e[256] - 1f32.cos()).abs() < 1e-7);
        assert!((e[256 + 128] - 1f32.sin()).abs() < 1e-7);
    }

    #[test]
    fn sincos_table_halves() {
        // 2x3 grid, base 2, scale 1: column coords 0, 2/3, 4/3; row coords 0, 1.
        let t = sincos_table(8, 2, 3, 2, 1.0);
        assert_eq!(t.len(), 2 * 3 * 8);
        let tok = |i: usize, j: usize| &t[(i * 3 + j) * 8..(i * 3 + j + 1) * 8];
        // First half: column coordinate; w_0 = 1, w_1 = 1/100.
        let x = (1f32 / (3f64 / 2f64) as f32) as f64;
        assert!((tok(1, 1)[0] as f64 - x.sin()).abs() < 1e-6);
        assert!((tok(1, 1)[2] as f64 - x.cos()).abs() < 1e-6);
        // Second half: row coordinate 1.
        assert!((tok(1, 1)[4] as f64 - 1f64.sin()).abs() < 1e-6);
        assert!((tok(1, 0)[5] as f64 - 0.01f64.sin()).abs() < 1e-6);
    }
}
