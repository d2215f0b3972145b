//! 2-D convolution for `f32` on the CPU: im2col into a reused buffer, filled in parallel,
//! then one matrix multiply per tile of output rows that writes straight into the NCHW
//! output, which starts as the broadcast bias (so the bias costs no extra pass) — plus, through
//! [`Conv2d::forward_add`], a residual (the ResNet blocks' skip connection), also added where
//! the output is written rather than in a pass and a buffer of its own. Inputs, weights, bias
//! and residual are read in place.
//!
//! 3×3 stride-1 layers with enough output pixels take Winograd's F(4×4, 3×3) or F(2×2, 3×3)
//! instead ([`super::winograd`]), which need 4× or 2.25× fewer multiplications.
//!
//! The weight needs no repacking: a contiguous `[out, in, kh, kw]` tensor already is the
//! `[out, in·kh·kw]` matrix the multiply wants. 1×1 convolutions with stride 1 and no
//! padding skip im2col: the input plane is the matrix. Other devices, dtypes, groups and
//! dilations take candle's `conv2d`.
//!
//! Built under [`super::Precision::Bf16`], a layer keeps its weight as that `[out, in·kh·kw]`
//! matrix in bf16 only ([`super::bf16`]) and every product runs in bf16: im2col's on the
//! rounded operands; Winograd's (3×3 stride-1 layers where f32 would take F(4×4), by
//! F(2×2, 3×3): F(4×4)'s larger transform entries amplify the rounding) on the transforms of
//! the bf16 weight and of the input, rounded to bf16 in turn (so not equal to a product of
//! the rounded operands, but within bf16's precision of the f32 convolution).

use std::cell::RefCell;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use rayon::prelude::*;

use super::bf16::{self, Packed};
use super::winograd::{self, Choice, F2, F4};
use super::{cpu_f32, math, matmul, with_opt, with_slice, Mat, Precision, Weight};

/// A convolution layer (weight, optional bias, stride and padding), drop-in for candle's
/// `Conv2d`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Weight,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

/// A layer's weight as one multiply sees it.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a Packed),
}

impl Weights<'_> {
    /// `dst ← (dst if accumulate) + W · rhs` for `W` `m × k` (this weight), `rhs` `k × n`.
    ///
    /// # Safety
    /// As [`matmul`]: `dst` `m × n` and `rhs` `k × n` valid through their strides, apart.
    unsafe fn product(
        self,
        (m, n, k): (usize, usize, usize),
        dst: Mat<*mut f32>,
        rhs: Mat<*const f32>,
        accumulate: bool,
    ) {
        match self {
            Weights::F32(w) => unsafe {
                matmul(
                    (m, n, k),
                    dst,
                    (w.as_ptr(), k, 1),
                    rhs,
                    accumulate,
                    1.0,
                    true,
                )
            },
            Weights::Bf16(p) => {
                debug_assert_eq!((p.rows(), p.cols()), (m, k));
                unsafe { bf16::matmul(p, rhs, n, dst, accumulate) }
            }
        }
    }
}

/// Floats of im2col buffer per tile (16 MB): bounds the scratch memory of a large layer
/// (the VAE's last 128-channel convolutions at 512² would need 1.2 GB at once).
const TILE_FLOATS: usize = 4 << 20;

impl Conv2d {
    /// The layer; under [`Precision::Bf16`] ([`super::with_precision`]) a CPU `f32` weight
    /// without groups or dilation is converted to bf16.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Result<Self> {
        weight.dims4()?;
        // `[cout, cin, kh, kw]`, contiguous; in bf16, the `[cout, cin·kh·kw]` matrix.
        let weight = Weight::new(weight.contiguous()?, cfg.groups == 1 && cfg.dilation == 1)?;
        Ok(Conv2d { weight, bias, cfg })
    }

    /// `weight` `[cout, cin / groups, k, k]` and `bias` `[cout]` from `vb`, with candle's
    /// initialisation hints (Kaiming-normal weights, uniform biases) for builders that create
    /// tensors (random-weight writers).
    pub fn load(
        cin: usize,
        cout: usize,
        k: usize,
        cfg: Conv2dConfig,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (cout, cin / cfg.groups, k, k),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bound = 1. / ((cin / cfg.groups * k * k) as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let bias = bias
            .then(|| vb.get_with_hints(cout, "bias", init))
            .transpose()?;
        Conv2d::new(weight, bias, cfg)
    }

    /// `[cout, cin / groups, kh, kw]` (for a bf16 layer, its bf16 values in `f32`).
    pub fn weight(&self) -> Tensor {
        self.weight.tensor()
    }

    /// `[cout, cin / groups, kh, kw]`.
    fn weight_dims(&self) -> [usize; 4] {
        let d = match &self.weight {
            Weight::F32(w) => w.dims(),
            Weight::Bf16(_, d) => d.as_slice(),
        };
        [d[0], d[1], d[2], d[3]]
    }

    /// The precision the layer's products run at.
    pub fn precision(&self) -> Precision {
        self.weight.precision()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// candle's own convolution: the path for GPUs and other dtypes, and the reference the
    /// tests compare against.
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let y = x.conv2d(&self.weight(), c.padding, c.stride, c.dilation, c.groups)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    fn op(&self) -> ConvOp {
        ConvOp {
            stride: self.cfg.stride,
            padding: self.cfg.padding,
            tile_floats: TILE_FLOATS,
            path: None,
        }
    }

    /// The layer through a chosen path for 3×3 stride-1 layers (for benchmarks and tests;
    /// `forward` chooses by [`winograd::choose`]); a bf16 layer maps it as `forward` does
    /// (F(4×4) → F(2×2) with bf16 products, F(2×2) → im2col). Layers the kernels do not take
    /// (groups, dilation, other devices or dtypes) run candle's convolution, as in `forward`.
    pub fn forward_by(&self, x: &Tensor, path: Choice) -> Result<Tensor> {
        if !self.takes(x) {
            return self.forward_candle(x);
        }
        self.apply(
            &x.contiguous()?,
            ConvOp {
                path: Some(path),
                ..self.op()
            },
        )
    }

    /// Whether the kernels take this layer on `x`: no groups or dilation, CPU `f32`.
    fn takes(&self, x: &Tensor) -> bool {
        let weight = match &self.weight {
            Weight::F32(w) => cpu_f32(w),
            Weight::Bf16(..) => true,
        };
        self.cfg.groups == 1 && self.cfg.dilation == 1 && cpu_f32(x) && weight
    }

    fn apply(&self, x: &Tensor, op: ConvOp) -> Result<Tensor> {
        self.run(x, op, None)
    }

    /// `residual + conv(x)`, the residual written into the output with the bias (no pass or
    /// buffer of its own); `residual` has the output's shape.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if !(self.takes(x) && cpu_f32(residual)) {
            return residual + self.forward_candle(x)?;
        }
        self.run(&x.contiguous()?, self.op(), Some(residual))
    }

    /// The layer on a contiguous CPU `f32` input, read in place with its weight, bias and
    /// residual.
    fn run(&self, x: &Tensor, op: ConvOp, residual: Option<&Tensor>) -> Result<Tensor> {
        if let Some(r) = residual {
            let w = self.weight_dims();
            let (b, c, h, w) = output_shape(x.dims4()?, [w[0], w[2], w[3]], op.stride, op.padding)?;
            if r.dims() != [b, c, h, w] {
                candle_core::bail!("conv2d: residual {:?}, output {:?}", r.dims(), (b, c, h, w));
            }
        }
        let bias = self.bias.as_ref().map(|b| b.contiguous()).transpose()?;
        let residual = residual.map(|r| r.contiguous()).transpose()?;
        let geometry = (op.stride, op.padding, op.tile_floats);
        let (out, shape) = with_slice(x, |xs| {
            with_opt(bias.as_ref(), |b| {
                with_opt(residual.as_ref(), |r| {
                    let x = (xs, x.dims4()?);
                    match &self.weight {
                        Weight::F32(w) => with_slice(w, |ws| {
                            let weights = (Weights::F32(ws), self.weight_dims());
                            convolve(x, weights, b, r, geometry, op.path)
                        }),
                        Weight::Bf16(p, _) => {
                            let weights = (Weights::Bf16(p), self.weight_dims());
                            convolve(x, weights, b, r, geometry, op.path)
                        }
                    }
                })
            })
        })?;
        Tensor::from_vec(out, shape, x.device())
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.takes(x) {
            return self.forward_candle(x);
        }
        self.apply(&x.contiguous()?, self.op())
    }
}

struct ConvOp {
    stride: usize,
    padding: usize,
    tile_floats: usize,
    /// The path of 3×3 stride-1 layers: `None` chooses by the output size
    /// ([`winograd::choose`]).
    path: Option<Choice>,
}

/// A 4-D shape: (batch, channels, height, width).
type Dims4 = (usize, usize, usize, usize);

/// The output shape of a `[cout, ·, kh, kw]` kernel over `(b, ·, h, w)` with stride `s` and
/// padding `p`.
fn output_shape(
    (b, _, h, w): Dims4,
    [cout, kh, kw]: [usize; 3],
    s: usize,
    p: usize,
) -> Result<Dims4> {
    if h + 2 * p < kh || w + 2 * p < kw {
        candle_core::bail!("conv2d: the input {h}x{w} is smaller than the kernel");
    }
    Ok((b, cout, (h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1))
}

/// The convolution of `x` (`[b, cin, h, w]`, contiguous) by `weights` (`[cout, cin, kh, kw]`)
/// plus `bias` plus `residual` (the output's shape), with `(stride, padding, im2col tile
/// floats)`; `path` for 3×3 stride-1 layers (`None`: [`winograd::choose`]; bf16 weights take
/// F(2×2) with bf16 products for F(4×4), im2col for F(2×2), and im2col on AMX, whose bf16
/// products outrun the transforms). Returns the NCHW output and its shape.
fn convolve(
    (x, (b, cin, h, w)): (&[f32], Dims4),
    (weights, [cout, wcin, kh, kw]): (Weights, [usize; 4]),
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    (s, p, tile_floats): (usize, usize, usize),
    path: Option<Choice>,
) -> Result<(Vec<f32>, Dims4)> {
    if wcin != cin {
        candle_core::bail!("conv2d: input has {cin} channels, the weight expects {wcin}");
    }
    let shape = output_shape((b, cin, h, w), [cout, kh, kw], s, p)?;
    let (oh, ow) = (shape.2, shape.3);
    let n = oh * ow;
    if residual.is_some_and(|r| r.len() != b * cout * n) {
        candle_core::bail!("conv2d: a residual of another size than the output {shape:?}");
    }
    if bias.is_some_and(|bb| bb.len() != cout) {
        candle_core::bail!("conv2d: a bias for {cout} output channels");
    }
    let k = cin * kh * kw;

    let geom = Geometry {
        cin,
        h,
        w,
        kh,
        kw,
        s,
        p,
        ow,
    };
    if kh == 3 && kw == 3 && s == 1 {
        let dims = (b, cin, h, w);
        let mut choice = path.unwrap_or_else(|| winograd::choose(b, cin, cout, oh, ow));
        // A bf16 weight is transformed from its f32 values and the products run in bf16, by
        // F(2×2, 3×3) only (F(4×4)'s transforms, entries up to 8, amplify bf16's rounding to
        // several percent of the output) and only on the planes where f32 would take F(4×4):
        // with fewer tiles the transforms cost more than bf16's im2col product (SD 1.5,
        // 2 threads, Zen 5: VAE decode −16% at 256², −25% at 512²; the UNet step ±5%). Not
        // on AMX (not measured there; its products are several times AVX-512 BF16's).
        let unpacked;
        let (wt, bf16) = match weights {
            Weights::F32(wt) => (wt, false),
            Weights::Bf16(p) if choice == Choice::F4 && bf16::kernel() != bf16::Kernel::Amx => {
                choice = Choice::F2;
                unpacked = p.to_f32();
                (unpacked.as_slice(), true)
            }
            Weights::Bf16(_) => {
                choice = Choice::Im2col;
                (&[][..], true)
            }
        };
        let out = match choice {
            Choice::F4 => Some(winograd::conv3x3::<4, 6, F4>(
                x,
                wt,
                bias,
                residual,
                dims,
                (cout, p),
                bf16,
            )),
            Choice::F2 => Some(winograd::conv3x3::<2, 4, F2>(
                x,
                wt,
                bias,
                residual,
                dims,
                (cout, p),
                bf16,
            )),
            Choice::Im2col => None,
        };
        if let Some(out) = out {
            return Ok((out, shape));
        }
    }
    if b > 1 && k * b * n <= tile_floats {
        return Ok((
            batched(x, weights, bias, residual, &geom, (b, cout, n)),
            shape,
        ));
    }
    let mut out = match residual {
        Some(r) => r.to_vec(),
        None => vec![0f32; b * cout * n],
    };
    if let Some(bias) = bias {
        out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            if residual.is_some() {
                math::add_scalar(row, bias[i % cout]);
            } else {
                row.fill(bias[i % cout]);
            }
        });
    }
    for bi in 0..b {
        let xb = &x[bi * cin * h * w..(bi + 1) * cin * h * w];
        let ob = &mut out[bi * cout * n..(bi + 1) * cout * n];
        if kh == 1 && kw == 1 && s == 1 && p == 0 {
            // SAFETY: W [cout, cin] · X [cin, n] → O [cout, n], all row-major in bounds.
            unsafe {
                weights.product(
                    (cout, n, k),
                    (ob.as_mut_ptr(), n, 1),
                    (xb.as_ptr(), n, 1),
                    true,
                )
            };
            continue;
        }
        let rows = (tile_floats / (k * ow)).clamp(1, oh);
        COLS.with(|cols| {
            let mut cols = cols.borrow_mut();
            if cols.len() < k * rows * ow {
                cols.resize(k * rows * ow, 0.0);
            }
            for oy0 in (0..oh).step_by(rows) {
                let r = rows.min(oh - oy0);
                let nt = r * ow;
                let tile = &mut cols[..k * nt];
                im2col(xb, &geom, oy0, r, tile, nt, 0);
                // SAFETY: W [cout, k] · cols [k, nt] → columns oy0·ow.. of O [cout, n].
                unsafe {
                    weights.product(
                        (cout, nt, k),
                        (ob.as_mut_ptr().add(oy0 * ow), n, 1),
                        (tile.as_ptr(), nt, 1),
                        true,
                    )
                };
            }
        });
    }
    Ok((out, shape))
}

thread_local! {
    /// The im2col buffer, kept between calls (at most `TILE_FLOATS`, or one output row).
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    ow: usize,
}

/// Small planes (the low-resolution levels, where the weights outweigh the pixels): the
/// whole batch as one multiply, so the weights are read and packed once, not once per image.
/// The product `[cout, b·n]` is then spread to NCHW with the bias and residual added.
fn batched(
    x: &[f32],
    weights: Weights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    g: &Geometry,
    (b, cout, n): (usize, usize, usize),
) -> Vec<f32> {
    let (k, bn) = (g.cin * g.kh * g.kw, b * n);
    let oh = n / g.ow;
    let mut prod = vec![0f32; cout * bn];
    COLS.with(|cols| {
        let mut cols = cols.borrow_mut();
        if cols.len() < k * bn {
            cols.resize(k * bn, 0.0);
        }
        let cols = &mut cols[..k * bn];
        let plane = g.cin * g.h * g.w;
        for bi in 0..b {
            im2col(&x[bi * plane..(bi + 1) * plane], g, 0, oh, cols, bn, bi * n);
        }
        // SAFETY: W [cout, k] · cols [k, b·n] → prod [cout, b·n], all in bounds.
        unsafe {
            weights.product(
                (cout, bn, k),
                (prod.as_mut_ptr(), bn, 1),
                (cols.as_ptr(), bn, 1),
                false,
            )
        };
    });
    let mut out = vec![0f32; b * cout * n];
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let (bi, co) = (i / cout, i % cout);
        let src = &prod[co * bn + bi * n..co * bn + (bi + 1) * n];
        let add = bias.map_or(0.0, |bb| bb[co]);
        for (d, v) in row.iter_mut().zip(src) {
            *d = v + add;
        }
        if let Some(r) = residual {
            math::add_in_place(row, &r[i * n..(i + 1) * n]);
        }
    });
    out
}

/// Write the receptive fields of output rows `oy0..oy0+r` into `cols`: row `kk` of the
/// `[cin·kh·kw, ·]` matrix starts at `kk·row_len + offset` and holds `r·ow` values.
fn im2col(
    x: &[f32],
    g: &Geometry,
    oy0: usize,
    r: usize,
    cols: &mut [f32],
    row_len: usize,
    offset: usize,
) {
    let nt = r * g.ow;
    debug_assert_eq!(cols.len(), g.cin * g.kh * g.kw * row_len);
    cols.par_chunks_mut(row_len)
        .with_min_len(8)
        .enumerate()
        .for_each(|(kk, dst)| {
            let dst = &mut dst[offset..offset + nt];
            let ci = kk / (g.kh * g.kw);
            let ky = (kk / g.kw) % g.kh;
            let kx = kk % g.kw;
            let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            // Output columns whose input column lies inside the image.
            let lo = g.p.saturating_sub(kx).div_ceil(g.s).min(g.ow);
            let hi = ((g.w + g.p).saturating_sub(kx))
                .div_ceil(g.s)
                .clamp(lo, g.ow);
            for j in 0..r {
                let d = &mut dst[j * g.ow..(j + 1) * g.ow];
                let iy = (oy0 + j) * g.s + ky;
                if iy < g.p || iy - g.p >= g.h {
                    d.fill(0.0);
                    continue;
                }
                let src = &plane[(iy - g.p) * g.w..(iy - g.p + 1) * g.w];
                d[..lo].fill(0.0);
                d[hi..].fill(0.0);
                if g.s == 1 {
                    let ix0 = lo + kx - g.p;
                    d[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                } else {
                    for (ox, v) in d[lo..hi].iter_mut().enumerate() {
                        *v = src[(lo + ox) * g.s + kx - g.p];
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand, rounded};

    #[test]
    fn matches_candle_on_every_geometry() {
        // (batch, cin, cout, h, w, k, stride, padding, bias)
        let cases = [
            (2, 5, 7, 9, 11, 3, 1, 1, true),
            (1, 4, 6, 8, 8, 3, 2, 1, true),
            (2, 3, 4, 9, 7, 3, 2, 0, false),
            (2, 6, 3, 5, 6, 1, 1, 0, true),
            (1, 3, 2, 6, 6, 1, 2, 0, false),
            (1, 2, 3, 7, 5, 5, 1, 2, true),
            (1, 3, 3, 4, 4, 3, 1, 0, true),
        ];
        for (i, &(b, cin, cout, h, w, k, s, p, bias)) in cases.iter().enumerate() {
            let x = rand(&[b, cin, h, w], i as u64);
            let cfg = Conv2dConfig {
                stride: s,
                padding: p,
                ..Default::default()
            };
            let conv = Conv2d::new(
                rand(&[cout, cin, k, k], 100 + i as u64),
                bias.then(|| rand(&[cout], 200 + i as u64)),
                cfg,
            )
            .unwrap();
            let want = conv.forward_candle(&x).unwrap();
            let got = conv.forward(&x).unwrap();
            let e = max_rel(&got, &want);
            assert!(e < 1e-5, "case {i}: relative error {e}");
            // Small tiles (one output row at a time, image by image) give the same result
            // as the default, which multiplies a small batch at once.
            let op = ConvOp {
                tile_floats: 1,
                path: Some(Choice::Im2col),
                ..conv.op()
            };
            let tiled = conv.apply(&x, op).unwrap();
            assert!(max_rel(&tiled, &want) < 1e-5, "case {i}, tiled");
        }
    }

    #[test]
    fn winograd_matches_candle() {
        // (batch, cin, cout, h, w, padding): odd and even sizes, partial edge tiles of every
        // width and whole ones (16 = 4·4 = 8·2), one layer with many input channels (longer
        // sums, F(4×4)'s larger terms), and one whose tiles span several chunks (the last
        // partial) for both tilings.
        let cases = [
            (2, 6, 5, 33, 31, 1),
            (1, 3, 4, 40, 26, 1),
            (2, 4, 3, 35, 36, 0),
            (1, 2, 2, 7, 5, 1),
            (1, 5, 7, 9, 8, 2),
            (1, 3, 2, 10, 11, 1),
            (2, 4, 3, 18, 16, 1),
            (1, 256, 8, 17, 18, 1),
            (1, 256, 8, 70, 70, 1),
        ];
        for (i, &(b, cin, cout, h, w, p)) in cases.iter().enumerate() {
            let s = 50 + 3 * i as u64;
            let x = rand(&[b, cin, h, w], s);
            let wt = rand(&[cout, cin, 3, 3], s + 1);
            let bias = rand(&[cout], s + 2);
            let cfg = Conv2dConfig {
                padding: p,
                ..Default::default()
            };
            let conv = Conv2d::new(wt.clone(), Some(bias.clone()), cfg).unwrap();
            let want = conv.forward_candle(&x).unwrap();
            let (oh, ow) = (want.dim(2).unwrap(), want.dim(3).unwrap());
            let (xv, wv) = (
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                wt.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let bv = bias.to_vec1::<f32>().unwrap();
            let dims = (b, cin, h, w);
            for (name, got) in [
                (
                    "F2",
                    winograd::conv3x3::<2, 4, F2>(
                        &xv,
                        &wv,
                        Some(&bv),
                        None,
                        dims,
                        (cout, p),
                        false,
                    ),
                ),
                (
                    "F4",
                    winograd::conv3x3::<4, 6, F4>(
                        &xv,
                        &wv,
                        Some(&bv),
                        None,
                        dims,
                        (cout, p),
                        false,
                    ),
                ),
            ] {
                let got = Tensor::from_vec(got, (b, cout, oh, ow), x.device()).unwrap();
                let e = max_rel(&got, &want);
                assert!(e < 1e-5, "case {i}, {name}: relative error {e}");
            }
            // The layer's paths, chosen or forced, all agree.
            for path in [Choice::F2, Choice::F4, Choice::Im2col] {
                let e = max_rel(&conv.forward_by(&x, path).unwrap(), &want);
                assert!(e < 1e-5, "case {i}, {path:?}: relative error {e}");
            }
            assert!(max_rel(&conv.forward(&x).unwrap(), &want) < 1e-5);
        }
        // SD 1.5's UNet with guidance at 512² and its VAE decoder at 256².
        assert_eq!(winograd::choose(2, 320, 320, 64, 64), Choice::F4);
        assert_eq!(winograd::choose(2, 640, 640, 32, 32), Choice::F2);
        assert_eq!(winograd::choose(2, 1280, 1280, 16, 16), Choice::Im2col);
        assert_eq!(winograd::choose(2, 1280, 1280, 8, 8), Choice::Im2col);
        assert_eq!(winograd::choose(1, 512, 512, 32, 32), Choice::F2);
        assert_eq!(winograd::choose(1, 128, 128, 256, 256), Choice::F4);
    }

    /// The bf16 products: im2col's equal candle's convolution of the bf16-rounded operands;
    /// Winograd's (whose transforms, not the operands, are rounded) stay within bf16's
    /// precision of the f32 convolution.
    #[test]
    fn bf16_layers_match_candle_on_rounded_operands() {
        use crate::kernels::{with_precision, Precision};
        // (batch, cin, cout, h, w, k, stride, padding): a 3×3 layer where f32 takes F(4×4)
        // (so bf16 Winograd), one so wide its Winograd runs in several chunks of tiles, a
        // small batch (one product), 1×1, stride 2, several im2col tiles.
        assert_eq!(winograd::choose(2, 40, 36, 32, 32), Choice::F4);
        let amx = bf16::kernel() == bf16::Kernel::Amx;
        let cases = [
            (2, 40, 36, 32, 32, 3, 1, 1),
            (1, 256, 8, 70, 70, 3, 1, 1),
            (2, 5, 7, 9, 11, 3, 1, 1),
            (1, 33, 20, 12, 10, 1, 1, 0),
            (1, 6, 8, 13, 13, 3, 2, 1),
            (1, 3, 5, 40, 30, 5, 1, 2),
        ];
        for (i, &(b, cin, cout, h, w, k, s, p)) in cases.iter().enumerate() {
            let x = rand(&[b, cin, h, w], 40 + i as u64);
            let wt = rand(&[cout, cin, k, k], 50 + i as u64);
            let bias = rand(&[cout], 60 + i as u64);
            let cfg = Conv2dConfig {
                stride: s,
                padding: p,
                ..Default::default()
            };
            let conv = with_precision(Precision::Bf16, || {
                Conv2d::new(wt.clone(), Some(bias.clone()), cfg)
            })
            .unwrap();
            assert_eq!(conv.precision(), Precision::Bf16);
            assert_eq!(max_rel(&conv.weight(), &rounded(&wt)), 0.0);
            let want = Conv2d::new(rounded(&wt), Some(bias.clone()), cfg)
                .unwrap()
                .forward_candle(&rounded(&x))
                .unwrap();
            let im2col = ConvOp {
                path: Some(Choice::Im2col),
                ..conv.op()
            };
            let e = max_rel(&conv.apply(&x, im2col).unwrap(), &want);
            assert!(e < 1e-5, "case {i}: relative error {e}");
            // Small tiles: the same products in several pieces.
            let op = ConvOp {
                tile_floats: 2048,
                path: Some(Choice::Im2col),
                ..conv.op()
            };
            let e = max_rel(&conv.apply(&x, op).unwrap(), &want);
            assert!(e < 1e-5, "case {i}, small tiles: relative error {e}");
            // The path `forward` chooses (bf16 Winograd for the first two cases, except on
            // AMX) and both Winograd tilings forced, against the f32 convolution.
            let exact = Conv2d::new(wt.clone(), Some(bias.clone()), cfg)
                .unwrap()
                .forward_candle(&x)
                .unwrap();
            let e = max_rel(&conv.forward(&x).unwrap(), &exact);
            assert!(e < 1e-2, "case {i}, chosen path: relative error {e}");
            if k == 3 && s == 1 {
                let forced = |path| {
                    let op = ConvOp {
                        path: Some(path),
                        ..conv.op()
                    };
                    conv.apply(&x, op).unwrap()
                };
                // Where f32 takes F(4×4), bf16 takes F(2×2) with bf16 products (im2col on
                // AMX); where f32 takes F(2×2), bf16 takes im2col.
                let wino = forced(Choice::F4);
                if amx {
                    let e = max_rel(&wino, &want);
                    assert!(e < 1e-5, "case {i}: AMX takes im2col: {e}");
                } else {
                    let e = max_rel(&wino, &exact);
                    assert!(e < 1e-2, "case {i}, bf16 Winograd: relative error {e}");
                    // Not the f32 Winograd of the same weight: the products round the
                    // transformed inputs to bf16.
                    let f32_wino = Conv2d::new(rounded(&wt), Some(bias.clone()), cfg)
                        .unwrap()
                        .forward_by(&x, Choice::F2)
                        .unwrap();
                    let d = max_rel(&wino, &f32_wino);
                    assert!(d > 1e-6 && d < 1e-2, "case {i}: against f32 Winograd: {d}");
                    if i < 2 {
                        let e = max_rel(&conv.forward(&x).unwrap(), &wino);
                        assert_eq!(e, 0.0, "case {i}: forward takes bf16 Winograd");
                    }
                }
                let e = max_rel(&forced(Choice::F2), &want);
                assert!(
                    e < 1e-5,
                    "case {i}: bf16 im2col where f32 takes F(2×2): {e}"
                );
            }
            // Outside the scope layers stay f32.
            let f32 = Conv2d::new(wt.clone(), None, cfg).unwrap();
            assert_eq!(f32.precision(), Precision::F32);
        }
    }

    #[test]
    fn residual_is_added_on_every_path() {
        use crate::kernels::{with_precision, Precision};
        // (batch, cin, cout, side, k, bias): Winograd-sized 3×3 (every forced path below), a
        // small batch (one product), 1×1, and no bias.
        let cases = [
            (2, 6, 5, 33, 3, true),
            (2, 5, 7, 9, 3, true),
            (2, 6, 3, 5, 1, true),
            (1, 4, 4, 20, 3, false),
        ];
        for (i, &(b, cin, cout, side, k, bias)) in cases.iter().enumerate() {
            let s = 300 + 4 * i as u64;
            let x = rand(&[b, cin, side, side], s);
            let wt = rand(&[cout, cin, k, k], s + 1);
            let bias = bias.then(|| rand(&[cout], s + 2));
            let cfg = Conv2dConfig {
                padding: k / 2,
                ..Default::default()
            };
            let conv = Conv2d::new(wt.clone(), bias.clone(), cfg).unwrap();
            let r = rand(&[b, cout, side, side], s + 3);
            let want = (conv.forward_candle(&x).unwrap() + &r).unwrap();
            let e = max_rel(&conv.forward_add(&x, &r).unwrap(), &want);
            assert!(e < 1e-5, "case {i}: relative error {e}");
            for path in [Choice::F2, Choice::F4, Choice::Im2col] {
                let op = ConvOp {
                    path: Some(path),
                    ..conv.op()
                };
                let e = max_rel(&conv.run(&x, op, Some(&r)).unwrap(), &want);
                assert!(e < 1e-5, "case {i}, {path:?}: relative error {e}");
            }
            let op = ConvOp {
                tile_floats: 1,
                path: Some(Choice::Im2col),
                ..conv.op()
            };
            let e = max_rel(&conv.run(&x, op, Some(&r)).unwrap(), &want);
            assert!(e < 1e-5, "case {i}, tiled: relative error {e}");
            let bf = with_precision(Precision::Bf16, || {
                Conv2d::new(wt.clone(), bias.clone(), cfg)
            })
            .unwrap();
            let want = (Conv2d::new(rounded(&wt), bias, cfg)
                .unwrap()
                .forward_candle(&rounded(&x))
                .unwrap()
                + &r)
                .unwrap();
            let im2col = ConvOp {
                path: Some(Choice::Im2col),
                ..bf.op()
            };
            let e = max_rel(&bf.run(&x, im2col, Some(&r)).unwrap(), &want);
            assert!(e < 1e-5, "case {i}, bf16: relative error {e}");
            if k == 3 {
                let op = ConvOp {
                    path: Some(Choice::F4),
                    ..bf.op()
                };
                let e = max_rel(&bf.run(&x, op, Some(&r)).unwrap(), &want);
                assert!(e < 1e-2, "case {i}, bf16 Winograd: relative error {e}");
            }
            // A residual of another shape is refused, not broadcast — also one with the
            // output's element count.
            let short = r.narrow(3, 0, side - 1).unwrap();
            assert!(conv.forward_add(&x, &short).is_err());
            let flat = r.reshape((b, cout, side * side, 1)).unwrap();
            assert!(conv.forward_add(&x, &flat).is_err());
            // A residual read through strides.
            let rt = r.transpose(2, 3).unwrap().contiguous().unwrap();
            let rt = rt.transpose(2, 3).unwrap();
            assert!(!rt.is_contiguous());
            let want = (conv.forward_candle(&x).unwrap() + &r).unwrap();
            assert!(max_rel(&conv.forward_add(&x, &rt).unwrap(), &want) < 1e-5);
            // Other dtypes take candle's ops, with the same results.
            let f64 = |t: &Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
            let conv64 = Conv2d::new(f64(&wt), conv.bias().map(f64), cfg).unwrap();
            let got = conv64.forward_add(&f64(&x), &f64(&r)).unwrap();
            assert_eq!(got.dtype(), candle_core::DType::F64);
            let got = got.to_dtype(candle_core::DType::F32).unwrap();
            assert!(max_rel(&got, &want) < 1e-5, "case {i}, f64");
        }
        // A bias of the wrong length is an error, not a panic.
        let conv = Conv2d::new(
            rand(&[4, 3, 3, 3], 1),
            Some(rand(&[3], 2)),
            Default::default(),
        );
        assert!(conv.unwrap().forward(&rand(&[1, 3, 8, 8], 3)).is_err());
    }

    #[test]
    fn load_asks_for_random_initialisation() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
        let conv = Conv2d::load(4, 6, 3, Conv2dConfig::default(), true, vb).unwrap();
        let nonzero = |t: &Tensor| {
            t.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        };
        assert!(nonzero(&conv.weight()) && nonzero(conv.bias().unwrap()));
    }

    #[test]
    fn reads_strided_inputs_and_falls_back_for_groups() {
        let x = rand(&[1, 6, 6, 4], 1).transpose(2, 3).unwrap();
        let conv = Conv2d::new(
            rand(&[4, 4, 3, 3], 2),
            Some(rand(&[4], 3)),
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let x = x.narrow(1, 1, 4).unwrap();
        let e = max_rel(
            &conv.forward(&x).unwrap(),
            &conv.forward_candle(&x).unwrap(),
        );
        assert!(e < 1e-5);
        let grouped = Conv2d::new(
            rand(&[4, 2, 3, 3], 4),
            None,
            Conv2dConfig {
                padding: 1,
                groups: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let y = grouped.forward(&x).unwrap();
        assert_eq!(y.dims(), &[1, 4, 4, 6]);
    }
}
