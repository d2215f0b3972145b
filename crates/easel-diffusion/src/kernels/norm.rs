//! GroupNorm over `[B, C, ...]`, optionally followed by SiLU in the same pass (the ResNet
//! blocks' `norm → SiLU`), as one parallel kernel: per (batch, group) the mean and variance
//! (two passes, `f64` accumulation), then each channel's `x·a + b` (and SiLU) in place.
//! candle's version is about eight separate full passes plus one for SiLU.

use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::{cpu_f32, math, slice};

#[derive(Clone, Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        channels: usize,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) || weight.elem_count() != channels {
            candle_core::bail!("GroupNorm: {groups} groups over {channels} channels");
        }
        Ok(GroupNorm {
            weight,
            bias,
            groups,
            eps,
        })
    }

    /// `weight` and `bias` `[channels]` from `vb` (1 and 0 when a model initialises them).
    pub fn load(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?;
        GroupNorm::new(weight, bias, channels, groups, eps)
    }

    /// `silu(groupnorm(x))`.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if !(cpu_f32(x) && cpu_f32(&self.weight) && cpu_f32(&self.bias)) || x.rank() < 3 {
            // candle's GroupNorm (it shares these tensors; nothing is copied).
            let channels = self.weight.elem_count();
            let y = candle_nn::GroupNorm::new(
                self.weight.clone(),
                self.bias.clone(),
                channels,
                self.groups,
                self.eps,
            )?
            .forward(x)?;
            return if silu { y.silu() } else { Ok(y) };
        }
        let op = NormOp {
            groups: self.groups,
            eps: self.eps,
            silu,
        };
        x.contiguous()?
            .apply_op3_no_bwd(&self.weight, &self.bias, &op)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }
}

struct NormOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

impl CustomOp3 for NormOp {
    fn name(&self) -> &'static str {
        "easel-group-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = xl.dims();
        let c = dims[1];
        if !c.is_multiple_of(self.groups) {
            candle_core::bail!(
                "GroupNorm: {} groups do not divide {c} channels",
                self.groups
            );
        }
        let plane: usize = dims[2..].iter().product();
        let (x, w, b) = (slice(xs, xl)?, slice(ws, wl)?, slice(bs, bl)?);
        if w.len() != c || b.len() != c {
            candle_core::bail!(
                "GroupNorm: {c} channels, {} weights, {} biases",
                w.len(),
                b.len()
            );
        }
        let cg = c / self.groups;
        let len = cg * plane;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(len)
            .zip(x.par_chunks(len))
            .enumerate()
            .for_each(|(i, (dst, chunk))| {
                let g = i % self.groups;
                let n = len as f64;
                let (sum, _) = math::sum_and_sq_dev(chunk, 0.0);
                let mean = sum / n;
                let (_, sq) = math::sum_and_sq_dev(chunk, mean as f32);
                let rstd = 1.0 / (sq / n + self.eps).sqrt();
                for (j, (d, src)) in dst.chunks_mut(plane).zip(chunk.chunks(plane)).enumerate() {
                    let cidx = g * cg + j;
                    let a = rstd * w[cidx] as f64;
                    let shift = b[cidx] as f64 - mean * a;
                    math::scale_shift(src, d, a as f32, shift as f32, self.silu);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_with_and_without_silu() {
        for (b, c, h, w, groups) in [(2, 32, 6, 5, 8), (1, 12, 4, 4, 3), (2, 8, 7, 1, 8)] {
            let x = Tensor::randn(0f32, 1., (b, c, h, w), &Device::Cpu)
                .unwrap()
                .affine(3.0, 1.5)
                .unwrap();
            let weight = Tensor::randn(0f32, 1., c, &Device::Cpu).unwrap();
            let bias = Tensor::randn(0f32, 1., c, &Device::Cpu).unwrap();
            let gn = GroupNorm::new(weight.clone(), bias.clone(), c, groups, 1e-5).unwrap();
            let reference = candle_nn::GroupNorm::new(weight, bias, c, groups, 1e-5).unwrap();
            let want = reference.forward(&x).unwrap();
            let e = super::super::testutil::max_rel(&gn.forward(&x).unwrap(), &want);
            assert!(e < 1e-5, "{e}");
            let e = super::super::testutil::max_rel(
                &gn.forward_silu(&x).unwrap(),
                &want.silu().unwrap(),
            );
            assert!(e < 1e-5, "{e}");
            // A transposed (strided) input reads the same values.
            let xt = x.transpose(2, 3).unwrap();
            let e = super::super::testutil::max_rel(
                &gn.forward(&xt).unwrap(),
                &reference.forward(&xt.contiguous().unwrap()).unwrap(),
            );
            assert!(e < 1e-5, "{e}");
        }
    }
}
