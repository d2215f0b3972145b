//! The engine's own CPU kernels, where candle's are slow: convolution (im2col, and Winograd's
//! F(4×4, 3×3) or F(2×2, 3×3) for 3×3 layers), GroupNorm (with the
//! SiLU that follows it fused in), attention that never holds the whole score matrix, linear
//! layers over any leading dimensions (bias and residual added in the product; optionally with
//! the weight laid out for the multiply), activations in one pass (GELU, quick GELU, GEGLU),
//! depthwise convolutions (Sana),
//! and vectorised element-wise math. Under [`Precision::Bf16`] ([`with_precision`]) the
//! convolution and linear layers keep bf16 weights and multiply through [`bf16`] (AMX tiles,
//! AVX-512 BF16 or a plain loop), tested against candle's op on the rounded operands (bf16
//! Winograd, which rounds the transforms, within 1e-2).
//!
//! Each kernel is a layer or function with the same meaning as the candle op it replaces and
//! runs on `f32` CPU tensors, reading their storage in place (`with_slice`; attention and
//! GroupNorm as candle custom ops) and returning a new tensor; any other device or dtype
//! takes candle's own op (on CUDA with the `flash-attn` feature, f16/bf16 attention takes
//! FlashAttention-2 instead). Each is tested for equality with that candle op
//! (relative 1e-5). Threads: rayon's global pool, the same one candle and `gemm` use
//! (`RAYON_NUM_THREADS`).

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod conv;
pub mod depthwise;
pub mod linear;
pub mod math;
pub mod norm;
pub mod winograd;

pub use activation::{geglu, gelu, quick_gelu};
pub use attention::attention;
pub use conv::Conv2d;
pub use depthwise::depthwise;
pub use linear::Linear;
pub use norm::GroupNorm;

use std::cell::Cell;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};

/// The precision models load at: on the CPU, of the convolution and linear layers' products
/// (f32 tensors throughout); on a GPU, the parts' dtypes (the engine's `Device::dtypes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// `f32` weights and products (the default; what the parity tests check).
    #[default]
    F32,
    /// CPU: weights stored in bf16 (half the memory), activations rounded to bf16 for each
    /// product, sums in `f32` ([`bf16`]). GPU: every part in bf16.
    Bf16,
    /// GPUs only: the parts that stand f16 computed in f16 (see the engine's
    /// `Device::with_precision`). The CPU layers keep `f32` under it.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Ok(Precision::F16),
            _ => Err(format!(
                "precision `{s}`: expected `f32`, `bf16` or `f16` (GPUs)"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Run `f` — a model's load — with the layers it builds on this thread computing at `p`:
/// under [`Precision::Bf16`], every CPU `f32` [`Conv2d`] (without groups or dilation) and
/// [`Linear`] built inside converts its weight to bf16 once and keeps only that copy.
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRECISION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PRECISION.with(|c| c.replace(p)));
    f()
}

/// The precision layers built now take ([`with_precision`]).
pub fn precision() -> Precision {
    PRECISION.with(|c| c.get())
}

/// A layer's weight: the tensor, or — built under [`Precision::Bf16`] — only its bf16 copy.
#[derive(Clone, Debug)]
enum Weight {
    F32(Tensor),
    /// The weight as a `[shape[0], rest]` matrix in bf16, and its shape.
    Bf16(std::sync::Arc<bf16::Packed>, Vec<usize>),
}

impl Weight {
    /// `t` as a layer built now keeps it: converted to bf16 under [`Precision::Bf16`] when
    /// `convertible` (the layer's kernels take it) and `t` is a CPU `f32` tensor.
    fn new(t: Tensor, convertible: bool) -> Result<Weight> {
        if !(convertible && precision() == Precision::Bf16 && cpu_f32(&t)) || t.rank() == 0 {
            return Ok(Weight::F32(t));
        }
        let dims = t.dims().to_vec();
        let rows = dims[0];
        let packed = pack_bf16(&t, rows, t.elem_count() / rows.max(1))?;
        Ok(Weight::Bf16(std::sync::Arc::new(packed), dims))
    }

    /// The weight as a tensor (a bf16 weight's values in `f32`, on the CPU).
    fn tensor(&self) -> Tensor {
        match self {
            Weight::F32(t) => t.clone(),
            Weight::Bf16(p, dims) => Tensor::from_vec(p.to_f32(), dims.as_slice(), &Device::Cpu)
                .expect("the packed weight has its shape's elements"),
        }
    }

    fn precision(&self) -> Precision {
        match self {
            Weight::F32(_) => Precision::F32,
            Weight::Bf16(..) => Precision::Bf16,
        }
    }
}

/// A contiguous CPU `f32` tensor's elements, viewed as a `rows × cols` matrix in bf16.
fn pack_bf16(t: &Tensor, rows: usize, cols: usize) -> Result<bf16::Packed> {
    with_slice(&t.contiguous()?, |src| {
        let packed = bf16::Packed::from_f32(src, rows, cols);
        // A view of a mapped file: its pages need not stay resident beside the copy.
        crate::memory::drop_pages(src.as_ptr().cast(), std::mem::size_of_val(src));
        Ok(packed)
    })
}

/// `f` on the elements of a contiguous CPU `f32` tensor, read in place.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout)?),
        _ => candle_core::bail!("easel kernels run on the CPU"),
    }
}

/// `f` on the elements of an optional contiguous CPU `f32` tensor, read in place.
fn with_opt<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> Result<R>) -> Result<R> {
    match t {
        Some(t) => with_slice(t, |s| f(Some(s))),
        None => f(None),
    }
}

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

    /// `t`'s values rounded to bf16 (what the bf16 products see), in `f32`.
    pub fn rounded(t: &Tensor) -> Tensor {
        use candle_core::DType;
        let t = t.to_dtype(DType::BF16).unwrap();
        t.to_dtype(DType::F32).unwrap()
    }

    /// The largest absolute difference, in `f32` whatever the dtypes; NaN if either holds a
    /// NaN (so a bound on it fails).
    pub fn max_abs_diff(got: &Tensor, want: &Tensor) -> f32 {
        use candle_core::DType;
        assert_eq!(got.dims(), want.dims());
        let flat = |t: &Tensor| -> Vec<f32> {
            t.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        flat(got)
            .iter()
            .zip(&flat(want))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, |m, d| {
                if d.is_nan() || m.is_nan() {
                    f32::NAN
                } else {
                    m.max(d)
                }
            })
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
