//! Activations over whole tensors in one vectorised, threaded pass: exact (erf) GELU,
//! CLIP's quick GELU, and GEGLU (the gated feed-forward of the SD UNet's transformer blocks),
//! each the same function as candle's ops (`gelu_erf`, `x·sigmoid(1.702·x)`, narrow + multiply)
//! without their scalar `erf`/`exp` and intermediate tensors. Other devices and dtypes take
//! candle's ops.

use candle_core::{Result, Tensor, D};
use rayon::prelude::*;

use super::{cpu_f32, math, with_slice};

/// Elements per parallel task.
const TASK: usize = 16_384;

/// `gelu(x)` with the exact (erf) form, as candle's `gelu_erf`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !cpu_f32(x) {
        return x.gelu_erf();
    }
    map(x, math::gelu_into)
}

/// CLIP's `quick_gelu`: `x · sigmoid(1.702·x)`.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if !cpu_f32(x) {
        return x * candle_nn::ops::sigmoid(&(x * 1.702)?)?;
    }
    map(x, math::quick_gelu_into)
}

/// `f` from `x`'s elements into a new tensor's, in parallel chunks.
fn map(x: &Tensor, f: fn(&[f32], &mut [f32])) -> Result<Tensor> {
    let x = x.contiguous()?;
    let out = with_slice(&x, |src| {
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(TASK)
            .zip(src.par_chunks(TASK))
            .for_each(|(o, s)| f(s, o));
        Ok(out)
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// GEGLU (diffusers' `GEGLU` feed-forward): `h` `[.., 2·half]` → `[.., half]`, the first half
/// of each row times the exact GELU of the second.
pub fn geglu(h: &Tensor) -> Result<Tensor> {
    let mut dims = h.dims().to_vec();
    let width = h.dim(D::Minus1)?;
    if width % 2 != 0 {
        candle_core::bail!("geglu: an odd last dimension {width}");
    }
    let half = width / 2;
    if !cpu_f32(h) {
        return h.narrow(D::Minus1, 0, half)? * h.narrow(D::Minus1, half, half)?.gelu_erf()?;
    }
    *dims.last_mut().expect("a last dimension") = half;
    let h = h.contiguous()?;
    let out = with_slice(&h, |src| {
        let mut out = vec![0f32; src.len() / 2];
        if half > 0 {
            out.par_chunks_mut(half)
                .zip(src.par_chunks(width))
                .with_min_len((TASK / half).max(1))
                .for_each(|(o, row)| math::geglu_row(&row[..half], &row[half..], o));
        }
        Ok(out)
    })?;
    Tensor::from_vec(out, dims, h.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};

    #[test]
    fn activations_match_candle() {
        for shape in [
            vec![3usize, 10],
            vec![2, 70, 64],
            vec![1, 4096, 2],
            vec![40_000],
        ] {
            let x = (rand(&shape, 7) * 6.0).unwrap();
            let e = max_rel(&gelu(&x).unwrap(), &x.gelu_erf().unwrap());
            assert!(e < 1e-6, "gelu {shape:?}: {e}");
            let want = (&x * candle_nn::ops::sigmoid(&(&x * 1.702).unwrap()).unwrap()).unwrap();
            let e = max_rel(&quick_gelu(&x).unwrap(), &want);
            assert!(e < 1e-6, "quick_gelu {shape:?}: {e}");
            let half = shape.last().unwrap() / 2;
            let want = (x.narrow(D::Minus1, 0, half).unwrap()
                * x.narrow(D::Minus1, half, half).unwrap().gelu_erf().unwrap())
            .unwrap();
            let got = geglu(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let e = max_rel(&got, &want);
            assert!(e < 1e-6, "geglu {shape:?}: {e}");
        }
        assert!(
            geglu(&rand(&[2, 5], 1)).is_err(),
            "an odd width has no halves"
        );
        // Other dtypes take candle's ops, with the same results.
        let x = (rand(&[2, 6, 8], 9) * 4.0).unwrap();
        let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
        for (name, f) in [
            ("gelu", gelu as fn(&Tensor) -> Result<Tensor>),
            ("quick_gelu", quick_gelu),
            ("geglu", geglu),
        ] {
            let got = f(&x64).unwrap();
            assert_eq!(got.dtype(), candle_core::DType::F64);
            let got = got.to_dtype(candle_core::DType::F32).unwrap();
            let e = max_rel(&got, &f(&x).unwrap());
            assert!(e < 1e-6, "{name} in f64: {e}");
        }
    }
}
