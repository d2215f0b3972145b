//! Multi-head scaled dot-product attention that never materialises the `[heads, n, m]`
//! score matrix: per (batch, head, block of query rows) one task scores the block against
//! every key into a per-thread buffer, exponentiates each row (vectorised `exp`), multiplies
//! by the values straight into the output and divides each output row by its softmax sum. Heads are read and written through strides, so
//! the projections' `[B, n, heads·d]` outputs need no transposes or copies.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, math, matmul, slice, SharedMut};

/// `softmax(q·kᵀ·scale)·v` per head: `q` `[B, n, heads·d]`, `k` and `v` `[B, m, heads·d]`
/// → `[B, n, heads·d]`. `causal`: query `i` sees keys `0..=i` only (self-attention, `n == m`;
/// a text encoder's mask).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    causal: bool,
) -> Result<Tensor> {
    let (b, n, dim) = q.dims3()?;
    let (kb, m, kdim) = k.dims3()?;
    if kb != b
        || kdim != dim
        || v.dims() != k.dims()
        || heads == 0
        || dim % heads != 0
        || (causal && n != m)
    {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} with {heads} heads (causal: {causal})",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if m == 0 {
        candle_core::bail!("attention over no keys");
    }
    if [q, k, v].iter().all(|t| cpu_f32(t)) {
        let op = AttentionOp {
            heads,
            scale,
            causal,
        };
        return q
            .contiguous()?
            .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op);
    }
    #[cfg(feature = "flash-attn")]
    if flash_fits(q, dim / heads) {
        return flash(q, k, v, heads, scale, causal);
    }
    attention_candle(q, k, v, heads, scale, causal)
}

/// Whether FlashAttention-2 takes this attention: a CUDA tensor in f16 or bf16, with a head
/// size it has kernels for (a multiple of 8, at most 256).
#[cfg(feature = "flash-attn")]
fn flash_fits(q: &Tensor, d: usize) -> bool {
    use candle_core::DType;
    q.device().is_cuda()
        && matches!(q.dtype(), DType::F16 | DType::BF16)
        && d.is_multiple_of(8)
        && d <= 256
}

/// FlashAttention-2 (`candle-flash-attn`), which reads `[B, n, heads, d]`: the projections'
/// layout split, without a transpose.
#[cfg(feature = "flash-attn")]
fn flash(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    causal: bool,
) -> Result<Tensor> {
    let (b, n, dim) = q.dims3()?;
    let m = k.dim(1)?;
    let d = dim / heads;
    let split = |t: &Tensor, len: usize| t.contiguous()?.reshape((b, len, heads, d));
    candle_flash_attn::flash_attn(
        &split(q, n)?,
        &split(k, m)?,
        &split(v, m)?,
        scale as f32,
        causal,
    )?
    .reshape((b, n, dim))
}

/// The same computation with candle's ops (split heads, full score matrix, softmax): the
/// GPU path (without `flash-attn`, or where it does not fit) and the tests' reference. f16
/// scores and softmax are computed in f32, as diffusers' `upcast_attention` does: SD 2.x's
/// attention logits overflow f16.
pub fn attention_candle(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    causal: bool,
) -> Result<Tensor> {
    let (b, n, dim) = q.dims3()?;
    let d = dim / heads;
    let split = |t: &Tensor| -> Result<Tensor> {
        let m = t.dim(1)?;
        t.reshape((b, m, heads, d))?.transpose(1, 2)?.contiguous()
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let dtype = q.dtype();
    let wide = |t: &Tensor| match dtype {
        candle_core::DType::F16 => t.to_dtype(candle_core::DType::F32),
        _ => Ok(t.clone()),
    };
    let mut scores = (wide(&q)?.matmul(&wide(&k)?.t()?)? * scale)?;
    if causal {
        let m = k.dim(2)?;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| (0..m).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (n, m), q.device())?.to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    candle_nn::ops::softmax_last_dim(&scores)?
        .to_dtype(dtype)?
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, n, dim))
}

/// Scores held per task: 256 K floats (1 MB), at most 256 query rows.
const SCORE_FLOATS: usize = 1 << 18;

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct AttentionOp {
    heads: usize,
    scale: f64,
    causal: bool,
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "easel-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n, dim) = ql.shape().dims3()?;
        let (_, m, _) = kl.shape().dims3()?;
        let (q, k, v) = (slice(qs, ql)?, slice(ks, kl)?, slice(vs, vl)?);
        let heads = self.heads;
        let d = dim / heads;
        let rows = (SCORE_FLOATS / m).clamp(1, 256).min(n.max(1));
        let blocks = n.div_ceil(rows);
        let mut out = vec![0f32; b * n * dim];
        let dst = SharedMut(out.as_mut_ptr());
        let scale = self.scale as f32;
        (0..b * heads * blocks).into_par_iter().for_each(|task| {
            let (bh, blk) = (task / blocks, task % blocks);
            let (bi, h) = (bh / heads, bh % heads);
            let row0 = blk * rows;
            let r = rows.min(n - row0);
            SCORES.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < r * m {
                    s.resize(r * m, 0.0);
                }
                let s = &mut s[..r * m];
                let qo = (bi * n + row0) * dim + h * d;
                let ko = bi * m * dim + h * d;
                // SAFETY: every operand lies inside its buffer: q rows row0..row0+r of batch
                // bi, head h's d columns; k and v rows 0..m of batch bi; the scores r×m.
                unsafe {
                    // scores = scale · Q_blk · Kᵀ (Kᵀ read through strides).
                    matmul(
                        (r, m, d),
                        (s.as_mut_ptr(), m, 1),
                        (q.as_ptr().add(qo), dim, 1),
                        (k.as_ptr().add(ko), 1, dim),
                        false,
                        scale,
                        false,
                    );
                }
                if self.causal {
                    // Keys after the query's own position count for nothing (e^−∞ = 0).
                    for (i, row) in s.chunks_mut(m).enumerate() {
                        row[(row0 + i + 1).min(m)..].fill(f32::NEG_INFINITY);
                    }
                }
                let mut sums = [0f32; 256];
                for (row, sum) in s.chunks_mut(m).zip(sums.iter_mut()) {
                    *sum = math::exp_row(row);
                }
                // SAFETY: as above; the output block is this task's alone.
                unsafe {
                    matmul(
                        (r, d, m),
                        (dst.get().add(qo), dim, 1),
                        (s.as_ptr(), m, 1),
                        (v.as_ptr().add(ko), dim, 1),
                        false,
                        1.0,
                        false,
                    );
                    // Each output row divided by its softmax sum.
                    for (i, sum) in sums[..r].iter().enumerate() {
                        let row = std::slice::from_raw_parts_mut(dst.get().add(qo + i * dim), d);
                        let inv = 1.0 / sum;
                        for v in row {
                            *v *= inv;
                        }
                    }
                }
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((b, n, dim))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_abs_diff, max_rel, rand};

    /// FlashAttention-2 gives candle's attention on the GPU, f16 and bf16, causal or not. A
    /// build with `flash-attn` is for a CUDA machine: without a GPU this test fails.
    #[cfg(feature = "flash-attn")]
    #[test]
    fn flash_attention_matches_candle_on_cuda() {
        use candle_core::{DType, Device};
        let dev = Device::new_cuda(0).expect("the flash-attn feature needs a CUDA GPU to test");
        let (b, n, m, heads, d) = (2, 300, 300, 5, 64);
        for dtype in [DType::F16, DType::BF16] {
            let put = |t: Tensor| t.to_device(&dev).unwrap().to_dtype(dtype).unwrap();
            let q = put(rand(&[b, n, heads * d], 1));
            let (k, v) = (
                put(rand(&[b, m, heads * d], 2)),
                put(rand(&[b, m, heads * d], 3)),
            );
            let scale = (d as f64).powf(-0.5);
            assert!(flash_fits(&q, d));
            for causal in [false, true] {
                let got = attention(&q, &k, &v, heads, scale, causal).unwrap();
                let want = attention_candle(&q, &k, &v, heads, scale, causal).unwrap();
                let diff = max_abs_diff(&got, &want);
                assert!(diff < 2e-2, "{dtype:?}, causal {causal}: {diff}");
            }
        }
    }

    /// f16 attention whose logits pass f16's range (65,504) still gives the f32 result: the
    /// scores and softmax run in f32, as diffusers' `upcast_attention`.
    #[test]
    fn f16_scores_do_not_overflow() {
        use candle_core::DType;
        let (b, n, heads, d) = (1, 12, 2, 64);
        // q·k reaches 64 · 40 · 40 = 102,400 before the scale.
        let big = |seed| {
            rand(&[b, n, heads * d], seed)
                .abs()
                .unwrap()
                .affine(10.0, 30.0)
                .unwrap()
        };
        let (q, k) = (big(1), big(2));
        let v = rand(&[b, n, heads * d], 3);
        let scale = (d as f64).powf(-0.5);
        let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
        let (q, k, v) = (half(&q), half(&k), half(&v));
        let got = attention(&q, &k, &v, heads, scale, true)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        // The same f16 inputs, computed in f32 throughout.
        let wide = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let want = attention_candle(&wide(&q), &wide(&k), &wide(&v), heads, scale, true).unwrap();
        let values = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().all(|x| x.is_finite()),
            "the f16 attention overflowed"
        );
        let worst = max_abs_diff(&got, &want);
        assert!(worst < 0.01, "max difference {worst}");
    }

    #[test]
    fn matches_candle_for_self_and_cross_attention() {
        // (batch, n, m, heads, d)
        for (i, &(b, n, m, heads, d)) in [
            (2, 70, 70, 4, 8),
            (2, 33, 77, 2, 5),
            (1, 600, 600, 1, 16),
            (1, 5, 1, 3, 4),
        ]
        .iter()
        .enumerate()
        {
            let s = i as u64 * 10;
            let q = (rand(&[b, n, heads * d], s) * 3.0).unwrap();
            let k = (rand(&[b, m, heads * d], s + 1) * 3.0).unwrap();
            let v = rand(&[b, m, heads * d], s + 2);
            let scale = (d as f64).powf(-0.5);
            let got = attention(&q, &k, &v, heads, scale, false).unwrap();
            let want = attention_candle(&q, &k, &v, heads, scale, false).unwrap();
            let e = max_rel(&got, &want);
            assert!(e < 1e-5, "case {i}: {e}");
            if n == m {
                let got = attention(&q, &k, &v, heads, scale, true).unwrap();
                let want = attention_candle(&q, &k, &v, heads, scale, true).unwrap();
                let e = max_rel(&got, &want);
                assert!(e < 1e-5, "case {i}, causal: {e}");
            }
        }
        // Causal: the first query sees only the first key, so its output is that value.
        let (q, k, v) = (
            rand(&[1, 9, 6], 3),
            rand(&[1, 9, 6], 4),
            rand(&[1, 9, 6], 5),
        );
        let first = attention(&q, &k, &v, 2, 0.4, true)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0);
        let e = max_rel(&first.unwrap(), &v.get(0).unwrap().get(0).unwrap());
        assert!(e < 1e-6, "{e}");
        assert!(
            attention(
                &q,
                &k.narrow(1, 0, 8).unwrap(),
                &v.narrow(1, 0, 8).unwrap(),
                2,
                0.4,
                true
            )
            .is_err(),
            "causal attention needs as many keys as queries"
        );
        // Long keys: several query blocks, each scored against all 4,096 keys.
        let (q, k) = (rand(&[1, 300, 8], 7), rand(&[1, 4096, 8], 8));
        let v = rand(&[1, 4096, 8], 9);
        let e = max_rel(
            &attention(&q, &k, &v, 2, 0.5, false).unwrap(),
            &attention_candle(&q, &k, &v, 2, 0.5, false).unwrap(),
        );
        assert!(e < 1e-5, "{e}");
        assert!(
            attention(&q, &k, &v, 3, 0.5, false).is_err(),
            "3 heads do not divide 8"
        );
    }
}
