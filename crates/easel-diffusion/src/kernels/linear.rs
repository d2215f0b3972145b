//! A linear layer (`y = x·Wᵀ + b` over the last dimension), drop-in for candle's `Linear`:
//! any leading dimensions are one product `[rows, in]`. On the CPU the bias — and, through
//! [`Linear::forward_add`], a residual — is written into the output buffer first and the
//! product (the `gemm` crate, as candle's) adds onto it, so neither costs a pass over the
//! output or a second output-sized buffer of its own: in SD 1.5's UNet at 512², 2 threads,
//! that was about a tenth of a denoiser step (the feed-forward's 8192×2560 bias add alone took
//! a third as long as its product). Other devices and dtypes take candle's ops.
//!
//! [`Linear::input_major`] keeps the weight `[out, in]` as `[in, out]` in memory (the same
//! tensor seen through a transpose) on the CPU in `f32`: the product then reads `Wᵀ` row by
//! row, which the multiply packs with straight copies instead of a gather down every column.
//! It pays where the weight is large against the rows multiplied — CLIP's text encode of
//! 2×77 tokens, about a third faster on 2 threads — and not measurably in the UNet, whose
//! thousands of tokens amortise the packing, so only the text encoder asks for it. The price:
//! those weights become heap copies made at load (a parallel transpose, [`transpose`]) instead
//! of views of the mapped file — about 0.34 GB and 0.4 s for CLIP-L in f32 — and the stored
//! tensors stay alive until the model's loader returns.
//!
//! Built under [`super::Precision::Bf16`], a CPU `f32` layer keeps its weight in bf16 only
//! ([`super::bf16`]), and computes `yᵀ = W·xᵀ` with `x` read through strides.

use candle_core::{CpuStorage, Module, Result, Storage, Tensor, D};
use candle_nn::VarBuilder;

use super::{bf16, math};
use super::{cpu_f32, with_slice, Precision, Weight};

#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`; input-major in memory after [`Linear::input_major`].
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// The layer; under [`Precision::Bf16`] ([`super::with_precision`]) a CPU `f32` weight is
    /// converted to bf16.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        weight.dims2()?;
        Ok(Linear {
            weight: Weight::new(weight, true)?,
            bias,
        })
    }

    /// The layer with its weight stored input-major on the CPU in `f32`; unchanged on other
    /// devices and dtypes, and when the weight is not contiguous (already relaid, or a view).
    pub fn input_major(self) -> Result<Self> {
        let Weight::F32(w) = &self.weight else {
            return Ok(self);
        };
        if !cpu_f32(w) || !w.is_contiguous() {
            return Ok(self);
        }
        let (out, cin) = w.dims2()?;
        let t = {
            let (storage, layout) = w.storage_and_layout();
            match &*storage {
                Storage::Cpu(CpuStorage::F32(data)) => {
                    let at = layout.start_offset();
                    Some(transpose(&data[at..at + out * cin], out, cin))
                }
                _ => None,
            }
        };
        let Some(t) = t else {
            return Ok(self);
        };
        let weight = Tensor::from_vec(t, (cin, out), w.device())?.t()?;
        Ok(Linear {
            weight: Weight::F32(weight),
            ..self
        })
    }

    /// `weight` `[out, in]` and, when `bias`, `bias` `[out]` from `vb`, with candle's
    /// initialisation hints for builders that create tensors (random-weight writers).
    pub fn load(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let lin = if bias {
            candle_nn::linear(cin, cout, vb)?
        } else {
            candle_nn::linear_no_bias(cin, cout, vb)?
        };
        Linear::new(lin.weight().clone(), lin.bias().cloned())
    }

    /// `[out, in]` (input-major in memory after [`Linear::input_major`]; for a bf16 layer,
    /// its bf16 values in `f32`).
    pub fn weight(&self) -> Tensor {
        self.weight.tensor()
    }

    /// The precision the layer's products run at.
    pub fn precision(&self) -> Precision {
        self.weight.precision()
    }

    /// `residual + x·Wᵀ + b`, with the residual and the bias written into the output before
    /// the product accumulates onto it (no pass of their own). `residual` has the output's
    /// shape.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.apply(x, Some(residual))
    }

    fn apply(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let cin = x.dim(D::Minus1)?;
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let nout = match &self.weight {
            Weight::F32(w) => w.dim(0)?,
            Weight::Bf16(p, _) => p.rows(),
        };
        *dims
            .last_mut()
            .expect("a linear layer takes at least one dimension") = nout;
        if let Some(r) = residual {
            if r.dims() != dims.as_slice() {
                candle_core::bail!("linear: residual {:?}, output {dims:?}", r.dims());
            }
        }
        let cpu = [Some(x), residual, self.bias.as_ref()]
            .into_iter()
            .flatten()
            .all(cpu_f32)
            && match &self.weight {
                Weight::F32(w) => cpu_f32(w),
                Weight::Bf16(..) => true,
            };
        if !cpu {
            // Other devices and dtypes: candle's ops.
            let y = x.reshape((rows, cin))?.matmul(&self.weight().t()?)?;
            let y = match &self.bias {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            };
            let y = y.reshape(dims)?;
            return match residual {
                Some(r) => r + y,
                None => Ok(y),
            };
        }
        let x = x.contiguous()?;
        let (mut out, acc) = self.start(rows, nout, residual)?;
        with_slice(&x, |xs| {
            if xs.len() != rows * cin {
                candle_core::bail!("linear: {nout} outputs, got {:?}", x.dims());
            }
            match &self.weight {
                Weight::F32(w) => {
                    let (storage, layout) = w.storage_and_layout();
                    let (Storage::Cpu(CpuStorage::F32(data)), [s0, s1]) =
                        (&*storage, layout.stride())
                    else {
                        candle_core::bail!("linear: a CPU f32 matrix weight");
                    };
                    if w.dim(1)? != cin {
                        candle_core::bail!("linear: {cin} inputs to a {:?} weight", w.dims());
                    }
                    let wp = data[layout.start_offset()..].as_ptr();
                    // SAFETY: x (rows × cin, row-major), Wᵀ (cin × nout: element (k, j) is
                    // W(j, k), through the weight's own strides) and the output (rows × nout,
                    // row-major, its own buffer) lie inside their buffers.
                    unsafe {
                        super::matmul(
                            (rows, nout, cin),
                            (out.as_mut_ptr(), nout, 1),
                            (xs.as_ptr(), cin, 1),
                            (wp, *s1, *s0),
                            acc,
                            1.0,
                            true,
                        )
                    };
                }
                Weight::Bf16(packed, _) => {
                    if packed.cols() != cin {
                        candle_core::bail!(
                            "linear: {cin} inputs, the weight takes {}",
                            packed.cols()
                        );
                    }
                    // SAFETY: xᵀ (cin × rows, strides 1 and cin) and yᵀ (nout × rows, strides
                    // 1 and nout) lie inside their buffers, which are distinct.
                    unsafe {
                        bf16::matmul(
                            packed,
                            (xs.as_ptr(), 1, cin),
                            rows,
                            (out.as_mut_ptr(), 1, nout),
                            acc,
                        )
                    };
                }
            }
            Ok(())
        })?;
        Tensor::from_vec(out, dims, x.device())
    }

    /// The output buffer before the product, and whether the product adds onto it: the
    /// residual plus the bias in every row, or the bias alone, or nothing (zeros, overwritten).
    fn start(
        &self,
        rows: usize,
        nout: usize,
        residual: Option<&Tensor>,
    ) -> Result<(Vec<f32>, bool)> {
        use rayon::prelude::*;
        let mut out = match residual {
            Some(r) => with_slice(&r.contiguous()?, |r| Ok(r.to_vec()))?,
            None => vec![0f32; rows * nout],
        };
        let Some(bias) = &self.bias else {
            return Ok((out, residual.is_some()));
        };
        if nout == 0 {
            return Ok((out, true));
        }
        with_slice(&bias.contiguous()?, |b| {
            if b.len() != nout {
                candle_core::bail!("linear: a bias of {} for {nout} outputs", b.len());
            }
            // Bands of whole rows (about 64 K floats each) in parallel.
            let band = (65_536 / nout.max(1)).max(1) * nout;
            out.par_chunks_mut(band).for_each(|o| {
                for row in o.chunks_exact_mut(nout) {
                    if residual.is_some() {
                        math::add_in_place(row, b);
                    } else {
                        row.copy_from_slice(b);
                    }
                }
            });
            Ok(())
        })?;
        Ok((out, true))
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// `Linear::load(cin, cout, true, vb)` (candle_nn's `linear`).
pub fn linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::load(cin, cout, true, vb)
}

/// `Linear::load(cin, cout, bias, vb)` (candle_nn's `linear_b`).
pub fn linear_b(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    Linear::load(cin, cout, bias, vb)
}

impl Module for Linear {
    /// `x·Wᵀ + b`; on the CPU the bias is written into the output before the product adds
    /// onto it.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, None)
    }
}

/// `src` `[rows, cols]` → `[cols, rows]`, in parallel bands of 64 source columns (each
/// task writes its own 64 destination rows; a source row's 64 values are one read).
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const B: usize = 64;
    assert_eq!(src.len(), rows * cols);
    let mut dst = vec![0f32; rows * cols];
    if dst.is_empty() {
        return dst;
    }
    dst.par_chunks_mut(B * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * B;
            let cw = B.min(cols - c0);
            for r in 0..rows {
                let row = &src[r * cols + c0..r * cols + c0 + cw];
                for (c, &v) in row.iter().enumerate() {
                    out[c * rows + r] = v;
                }
            }
        });
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};

    #[test]
    fn matches_candle_with_and_without_bias_over_any_leading_dimensions() {
        for (i, (shape, bias)) in [
            (vec![5usize, 7], true),
            (vec![2, 9, 7], false),
            (vec![2, 3, 4, 7], true),
        ]
        .into_iter()
        .enumerate()
        {
            let x = rand(&shape, 10 + i as u64);
            let w = rand(&[6, 7], 20 + i as u64);
            let b = bias.then(|| rand(&[6], 30 + i as u64));
            let want = candle_nn::Linear::new(w.clone(), b.clone())
                .forward(&x)
                .unwrap();
            let lin = Linear::new(w.clone(), b).unwrap();
            let got = lin.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert!(max_rel(&got, &want) < 1e-6, "case {i}");
            // Input-major in memory, the same values and the same products.
            let lin = lin.input_major().unwrap();
            assert!(!lin.weight().is_contiguous() && lin.weight().t().unwrap().is_contiguous());
            assert_eq!(max_rel(&lin.weight(), &w), 0.0);
            assert!(max_rel(&lin.forward(&x).unwrap(), &want) < 1e-6, "case {i}");
        }
    }
}

#[cfg(test)]
mod fused_tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};

    #[test]
    fn residual_and_bias_are_added_in_the_product() {
        for (i, (shape, bias, input_major)) in [
            (vec![5usize, 7], true, false),
            (vec![2, 9, 7], false, false),
            (vec![2, 300, 7], true, true),
        ]
        .into_iter()
        .enumerate()
        {
            let x = rand(&shape, 40 + i as u64);
            let w = rand(&[6, 7], 50 + i as u64);
            let b = bias.then(|| rand(&[6], 60 + i as u64));
            let mut out_shape = shape.clone();
            *out_shape.last_mut().unwrap() = 6;
            let r = rand(&out_shape, 65 + i as u64);
            let want = (candle_nn::Linear::new(w.clone(), b.clone())
                .forward(&x)
                .unwrap()
                + &r)
                .unwrap();
            let mut lin = Linear::new(w, b).unwrap();
            if input_major {
                lin = lin.input_major().unwrap();
            }
            let got = lin.forward_add(&x, &r).unwrap();
            assert!(max_rel(&got, &want) < 1e-6, "case {i}");
            // A residual read through strides.
            let rt = r.t().unwrap().contiguous().unwrap().t().unwrap();
            assert!(!rt.is_contiguous());
            assert!(max_rel(&lin.forward_add(&x, &rt).unwrap(), &want) < 1e-6);
            // A residual of another shape is refused, not broadcast.
            assert!(lin.forward_add(&x, &r.narrow(0, 0, 1).unwrap()).is_err());
            // Other dtypes take candle's ops, with the same results.
            let f64 = |t: &Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
            let lin64 = Linear::new(f64(&lin.weight()), lin.bias().map(f64)).unwrap();
            let got = lin64.forward_add(&f64(&x), &f64(&r)).unwrap();
            let got = got.to_dtype(candle_core::DType::F32).unwrap();
            assert!(max_rel(&got, &want) < 1e-6, "case {i}, f64");
        }
        // A bias of the wrong length is an error, not a panic.
        let lin = Linear::new(rand(&[6, 7], 1), Some(rand(&[5], 2))).unwrap();
        assert!(lin.forward(&rand(&[3, 7], 3)).is_err());
        // No outputs: an empty result.
        let lin = Linear::new(rand(&[0, 7], 1), Some(rand(&[0], 2))).unwrap();
        assert_eq!(lin.forward(&rand(&[3, 7], 3)).unwrap().dims(), &[3, 0]);
    }
}

#[cfg(test)]
mod bf16_tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand, rounded};
    use crate::kernels::with_precision;

    #[test]
    fn bf16_layers_match_candle_on_rounded_operands() {
        for (i, (shape, cout, bias)) in [
            (vec![5usize, 7], 6, true),
            (vec![2, 77, 96], 40, false),
            (vec![2, 3, 33, 64], 70, true),
        ]
        .into_iter()
        .enumerate()
        {
            let cin = *shape.last().unwrap();
            let x = rand(&shape, 70 + i as u64);
            let w = rand(&[cout, cin], 80 + i as u64);
            let b = bias.then(|| rand(&[cout], 90 + i as u64));
            let lin = with_precision(Precision::Bf16, || Linear::new(w.clone(), b.clone()))
                .unwrap()
                .input_major()
                .unwrap();
            assert_eq!(lin.precision(), Precision::Bf16);
            assert_eq!(max_rel(&lin.weight(), &rounded(&w)), 0.0);
            let want = candle_nn::Linear::new(rounded(&w), b)
                .forward(&rounded(&x))
                .unwrap();
            let got = lin.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let e = max_rel(&got, &want);
            assert!(e < 1e-5, "case {i}: {e}");
        }
    }
}

#[cfg(test)]
mod transpose_tests {
    #[test]
    fn transposes_every_shape_around_the_block_size() {
        for (rows, cols) in [
            (0, 5),
            (1, 1),
            (3, 200),
            (130, 7),
            (64, 64),
            (65, 129),
            (200, 3),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = super::transpose(&src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
