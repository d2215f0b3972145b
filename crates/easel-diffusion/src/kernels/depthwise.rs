//! Depthwise k×k convolution with "same" zero padding (odd `k`, stride 1): one filter per
//! channel, plus a bias, over NCHW maps (Sana's DC-AE) or channels-last token grids (Sana's
//! Mix-FFN). On the CPU one pass writes each output once: per (image, channel) plane row by
//! row for NCHW, per image row with the channels as the vector for channels-last, every tap a
//! vectorised multiply-add over a contiguous run. candle has no depthwise kernel (its grouped
//! convolution runs one group at a time), so other devices and dtypes take k² shifted
//! multiply-adds of candle ops — also the reference the tests compare with.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::math::vectorized;
use super::{cpu_f32, with_opt, with_slice};

/// `x` `[B, C, H, W]` (or `[B, H, W, C]` when `channels_last`) convolved per channel with
/// `weight` `[C, k·k]` (each channel's taps, row-major over the kernel), plus `bias` `[C]`.
pub fn depthwise(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    k: usize,
    channels_last: bool,
) -> Result<Tensor> {
    let (b, c, h, w) = if channels_last {
        let (b, h, w, c) = x.dims4()?;
        (b, c, h, w)
    } else {
        x.dims4()?
    };
    if k.is_multiple_of(2) || weight.dims() != [c, k * k] || bias.is_some_and(|t| t.dims() != [c]) {
        candle_core::bail!(
            "depthwise: x {:?}, weight {:?}, bias {:?}, k {k} (odd, weight [C, k²], bias [C])",
            x.dims(),
            weight.dims(),
            bias.map(|t| t.dims())
        );
    }
    if !([Some(x), Some(weight), bias]
        .into_iter()
        .flatten()
        .all(cpu_f32))
    {
        return depthwise_candle(x, weight, bias, k, channels_last);
    }
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let bias = bias.map(|t| t.contiguous()).transpose()?;
    let out = with_slice(&x, |xs| {
        with_slice(&weight, |ws| {
            with_opt(bias.as_ref(), |bs| {
                let mut out = vec![0f32; xs.len()];
                if channels_last {
                    last(xs, ws, bs, &mut out, (b, c, h, w), k);
                } else {
                    planes(xs, ws, bs, &mut out, (h, w), c, k);
                }
                Ok(out)
            })
        })
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// NCHW: each (image, channel) plane is a task.
fn planes(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    out: &mut [f32],
    (h, w): (usize, usize),
    c: usize,
    k: usize,
) {
    let p = k / 2;
    if h * w == 0 {
        return;
    }
    out.par_chunks_mut(h * w)
        .zip(xs.par_chunks(h * w))
        .enumerate()
        .for_each(|(i, (o, x))| {
            let ch = i % c;
            let taps = &ws[ch * k * k..(ch + 1) * k * k];
            let add = bs.map_or(0.0, |b| b[ch]);
            vectorized(
                #[inline(always)]
                || {
                    for (y, row) in o.chunks_exact_mut(w).enumerate() {
                        row.fill(add);
                        for dy in 0..k {
                            let Some(iy) = (y + dy).checked_sub(p).filter(|&iy| iy < h) else {
                                continue;
                            };
                            let src = &x[iy * w..(iy + 1) * w];
                            for dx in 0..k {
                                let t = taps[dy * k + dx];
                                // Output columns ox with input column ox + dx − p inside.
                                let lo = p.saturating_sub(dx);
                                let hi = (w + p).saturating_sub(dx).min(w);
                                if lo >= hi {
                                    continue;
                                }
                                let s = &src[lo + dx - p..hi + dx - p];
                                for (d, &v) in row[lo..hi].iter_mut().zip(s) {
                                    *d += t * v;
                                }
                            }
                        }
                    }
                },
            )
        });
}

/// Channels-last: each image row is a task; the channels are the vector.
fn last(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    out: &mut [f32],
    (_, c, h, w): (usize, usize, usize, usize),
    k: usize,
) {
    let p = k / 2;
    if w * c == 0 {
        return;
    }
    // The taps as [k·k, C], so each tap's weights run along the channels.
    let mut taps = vec![0f32; k * k * c];
    for ch in 0..c {
        for t in 0..k * k {
            taps[t * c + ch] = ws[ch * k * k + t];
        }
    }
    out.par_chunks_mut(w * c).enumerate().for_each(|(r, o)| {
        let (bi, y) = (r / h, r % h);
        let image = &xs[bi * h * w * c..(bi + 1) * h * w * c];
        vectorized(
            #[inline(always)]
            || {
                for (ox, px) in o.chunks_exact_mut(c).enumerate() {
                    match bs {
                        Some(b) => px.copy_from_slice(b),
                        None => px.fill(0.0),
                    }
                    for dy in 0..k {
                        let Some(iy) = (y + dy).checked_sub(p).filter(|&iy| iy < h) else {
                            continue;
                        };
                        for dx in 0..k {
                            let Some(ix) = (ox + dx).checked_sub(p).filter(|&ix| ix < w) else {
                                continue;
                            };
                            let src = &image[(iy * w + ix) * c..(iy * w + ix + 1) * c];
                            let tw = &taps[(dy * k + dx) * c..(dy * k + dx + 1) * c];
                            for ((d, &v), &t) in px.iter_mut().zip(src).zip(tw) {
                                *d += t * v;
                            }
                        }
                    }
                }
            },
        )
    });
}

/// The same with candle's ops: k² shifted multiply-adds over a zero-padded copy.
pub fn depthwise_candle(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    k: usize,
    channels_last: bool,
) -> Result<Tensor> {
    let (hd, wd, cd) = if channels_last { (1, 2, 3) } else { (2, 3, 1) };
    let c = x.dim(cd)?;
    let shape = |t: &Tensor| -> Result<Tensor> {
        if channels_last {
            t.reshape(c)
        } else {
            t.reshape((1, c, 1, 1))
        }
    };
    let (h, w) = (x.dim(hd)?, x.dim(wd)?);
    let p = k / 2;
    let padded = x.pad_with_zeros(hd, p, p)?.pad_with_zeros(wd, p, p)?;
    let mut acc: Option<Tensor> = None;
    for dy in 0..k {
        let rows = padded.narrow(hd, dy, h)?;
        for dx in 0..k {
            let tap = shape(&weight.narrow(1, dy * k + dx, 1)?)?;
            let term = rows.narrow(wd, dx, w)?.broadcast_mul(&tap)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
    }
    let acc = acc.ok_or_else(|| candle_core::Error::Msg("a depthwise kernel of size 0".into()))?;
    match bias {
        Some(b) => acc.broadcast_add(&shape(b)?),
        None => Ok(acc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};

    #[test]
    fn matches_candle_in_both_layouts() {
        // (batch, channels, h, w, k, bias)
        for (i, &(b, c, h, w, k, bias)) in [
            (2, 5, 9, 11, 3, true),
            (1, 3, 7, 6, 5, false),
            (1, 4, 1, 1, 3, true),
            (2, 2, 3, 2, 5, true),
            (1, 33, 16, 17, 1, false),
        ]
        .iter()
        .enumerate()
        {
            let s = 500 + 5 * i as u64;
            let x = rand(&[b, c, h, w], s);
            let wt = rand(&[c, k * k], s + 1);
            let bs = bias.then(|| rand(&[c], s + 2));
            let want = depthwise_candle(&x, &wt, bs.as_ref(), k, false).unwrap();
            // candle's own grouped convolution agrees with the reference.
            let conv = x
                .conv2d(&wt.reshape((c, 1, k, k)).unwrap(), k / 2, 1, 1, c)
                .unwrap();
            let conv = match &bs {
                Some(bb) => conv
                    .broadcast_add(&bb.reshape((1, c, 1, 1)).unwrap())
                    .unwrap(),
                None => conv,
            };
            assert!(max_rel(&conv, &want) < 1e-5, "case {i}: reference");
            let got = depthwise(&x, &wt, bs.as_ref(), k, false).unwrap();
            let e = max_rel(&got, &want);
            assert!(e < 1e-5, "case {i}, NCHW: {e}");
            let xl = x.permute((0, 2, 3, 1)).unwrap();
            let want_l = want.permute((0, 2, 3, 1)).unwrap();
            let got = depthwise(&xl, &wt, bs.as_ref(), k, true).unwrap();
            let e = max_rel(&got, &want_l);
            assert!(e < 1e-5, "case {i}, channels-last: {e}");
            let e = max_rel(
                &depthwise_candle(&xl, &wt, bs.as_ref(), k, true).unwrap(),
                &want_l,
            );
            assert!(e < 1e-6, "case {i}, channels-last reference: {e}");
        }
        let x = rand(&[1, 2, 4, 4], 1);
        assert!(
            depthwise(&x, &rand(&[2, 4], 2), None, 2, false).is_err(),
            "even k"
        );
        assert!(
            depthwise(&x, &rand(&[3, 9], 2), None, 3, false).is_err(),
            "channels"
        );
        assert!(depthwise(&x, &rand(&[2, 9], 2), Some(&rand(&[3], 3)), 3, false).is_err());
        let xl = rand(&[1, 4, 4, 2], 4);
        assert!(
            depthwise(&xl, &rand(&[3, 9], 2), None, 3, true).is_err(),
            "channels-last"
        );
        // Empty maps give empty outputs.
        for dims in [[1usize, 0, 4, 4], [1, 2, 0, 3], [0, 2, 3, 3]] {
            let x = Tensor::zeros(&dims, candle_core::DType::F32, x.device()).unwrap();
            let c = dims[1];
            let y = depthwise(&x, &rand(&[c, 9], 5), Some(&rand(&[c], 6)), 3, false).unwrap();
            assert_eq!(y.dims(), &dims);
            let xl = x.permute((0, 2, 3, 1)).unwrap();
            let y = depthwise(&xl, &rand(&[c, 9], 5), None, 3, true).unwrap();
            assert_eq!(y.dims(), xl.dims());
        }
        // Another dtype takes the candle fallback, with the same result.
        use candle_core::DType;
        let (x, wt, bs) = (rand(&[2, 3, 6, 5], 7), rand(&[3, 9], 8), rand(&[3], 9));
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let got = depthwise(&f64(&x), &f64(&wt), Some(&f64(&bs)), 3, false).unwrap();
        assert_eq!(got.dtype(), DType::F64);
        let want = depthwise(&x, &wt, Some(&bs), 3, false).unwrap();
        assert!(max_rel(&got.to_dtype(DType::F32).unwrap(), &want) < 1e-5);
    }
}
