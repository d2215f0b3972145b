//! Building blocks shared by the VAE and the UNet: diffusers' `ResnetBlock2D` (with an
//! optional time-embedding projection), spatial self-attention over a feature map, and the
//! 2x down/up samplers.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::kernels::{self, Conv2d, GroupNorm, Linear};

pub fn conv3x3(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    Conv2d::load(cin, cout, 3, cfg, true, vb)
}

pub fn conv1x1(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::load(cin, cout, 1, Default::default(), true, vb)
}

pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    GroupNorm::load(groups, channels, eps, vb)
}

/// `norm1 → SiLU → conv1 (+ time embedding) → norm2 → SiLU → conv2`, plus the (1x1
/// projected) input.
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// `temb_channels`: size of the time embedding (UNet), `None` in the VAE.
    pub fn load(
        cin: usize,
        cout: usize,
        groups: usize,
        eps: f64,
        temb_channels: Option<usize>,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(ResnetBlock {
            norm1: group_norm(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv3x3(cin, cout, vb.pp("conv1"))?,
            time_emb_proj: temb_channels
                .map(|t| Linear::load(t, cout, true, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: group_norm(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv3x3(cout, cout, vb.pp("conv2"))?,
            shortcut: (cin != cout)
                .then(|| conv1x1(cin, cout, vb.pp("conv_shortcut")))
                .transpose()?,
        })
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&t.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        self.conv2.forward_add(&self.norm2.forward_silu(&h)?, &skip)
    }
}

/// Single-head self-attention over the pixels of a feature map, with a residual connection
/// (the VAE's mid-block attention). Reads diffusers' `to_q/to_k/to_v/to_out.0` names and the
/// older `query/key/value/proj_attn`.
pub struct SpatialSelfAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl SpatialSelfAttention {
    pub fn load(channels: usize, groups: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let (q, k, v, o) = if vb.contains_tensor("to_q.weight") {
            ("to_q", "to_k", "to_v", "to_out.0")
        } else {
            ("query", "key", "value", "proj_attn")
        };
        Ok(SpatialSelfAttention {
            norm: group_norm(groups, channels, eps, vb.pp("group_norm"))?,
            q: Linear::load(channels, channels, true, vb.pp(q))?,
            k: Linear::load(channels, channels, true, vb.pp(k))?,
            v: Linear::load(channels, channels, true, vb.pp(v))?,
            out: Linear::load(channels, channels, true, vb.pp(o))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let y = self
            .norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let (q, k, v) = (
            self.q.forward(&y)?,
            self.k.forward(&y)?,
            self.v.forward(&y)?,
        );
        let attn = kernels::attention(&q, &k, &v, 1, (c as f64).powf(-0.5), false)?;
        let out = self
            .out
            .forward(&attn)?
            .transpose(1, 2)?
            .reshape((b, c, h, w))?;
        x + out
    }
}

/// Stride-2 3x3 convolution. `pad_right_bottom`: the VAE pads (0, 1, 0, 1) and uses no conv
/// padding; the UNet uses padding 1.
pub struct Downsample {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample {
    pub fn load(cin: usize, cout: usize, pad_right_bottom: bool, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride: 2,
            padding: if pad_right_bottom { 0 } else { 1 },
            ..Default::default()
        };
        Ok(Downsample {
            conv: Conv2d::load(cin, cout, 3, cfg, true, vb.pp("conv"))?,
            pad_right_bottom,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.pad_right_bottom {
            let x = x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour 2x upsampling followed by a 3x3 convolution.
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn load(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Upsample {
            conv: conv3x3(channels, channels, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        self.conv.forward(&x.upsample_nearest2d(h * 2, w * 2)?)
    }
}
