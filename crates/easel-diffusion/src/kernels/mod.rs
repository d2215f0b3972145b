//! The engine's own CPU kernels, where candle's are slow: convolution (im2col, and Winograd's
//! F(4×4, 3×3) or F(2×2, 3×3) for 3×3 layers), GroupNorm (with the
//! SiLU that follows it fused in), attention that never holds the whole score matrix, linear
//! layers over any leading dimensions (optionally with the weight laid out for the multiply),
//! and vectorised element-wise math.
//!
//! Each kernel is a layer or function with the same meaning as the candle op it replaces and
//! runs as a candle custom op on `f32` CPU tensors (`Linear` relays its weight and calls
//! candle's product); any other device or dtype takes candle's own op, so the GPU path is
//! unchanged. Each is tested for equality with that candle op
//! (relative 1e-5). Threads: rayon's global pool, the same one candle and `gemm` use
//! (`RAYON_NUM_THREADS`).

pub mod attention;
pub mod conv;
pub mod linear;
pub mod math;
pub mod norm;
pub mod winograd;

pub use attention::attention;
pub use conv::Conv2d;
pub use linear::Linear;
pub use norm::GroupNorm;

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Whether `t` is an `f32` tensor on the CPU (the kernels' domain).
pub fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The elements of a contiguous `f32` storage, from its layout's offset.
fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("easel kernels take f32 tensors"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("easel kernels take contiguous inputs"),
    }
}

/// A pointer into an output buffer, shared by parallel tasks that each write their own
/// disjoint elements (each use says which).
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: tasks write disjoint elements; the buffer outlives the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// A matrix operand: (pointer to element (0, 0), row stride, column stride), in elements.
type Mat<P> = (P, usize, usize);

/// `dst ← (dst if accumulate) + scale · lhs · rhs` for `(m, n, k)`: `dst` m×n, `lhs` m×k,
/// `rhs` k×n, through the `gemm` crate. `parallel`: use the rayon pool (else this thread).
///
/// # Safety
/// Each operand's pointer with its strides must address valid memory for its shape, and
/// `dst` must not overlap the others.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: Mat<*mut f32>,
    lhs: Mat<*const f32>,
    rhs: Mat<*const f32>,
    accumulate: bool,
    scale: f32,
    parallel: bool,
) {
    let par = if parallel {
        gemm::Parallelism::Rayon(candle_core::utils::get_num_threads())
    } else {
        gemm::Parallelism::None
    };
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        if accumulate { 1.0 } else { 0.0 },
        scale,
        false,
        false,
        false,
        par,
    )
}

#[cfg(test)]
pub(crate) mod testutil {
    use candle_core::{Device, Tensor};

    /// Uniform values in [-1, 1) from a fixed seed.
    pub fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The largest absolute difference relative to the largest magnitude of `want`.
    pub fn max_rel(got: &Tensor, want: &Tensor) -> f32 {
        assert_eq!(got.dims(), want.dims());
        let a: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }
}
