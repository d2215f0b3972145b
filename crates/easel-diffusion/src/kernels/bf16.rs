//! Matrix multiply in bf16 with `f32` accumulation, for the `bf16` precision: the weights are
//! converted once (at load) into a [`Packed`] matrix, the activations are rounded to bf16 as
//! they are packed for each product, and every sum is kept in `f32`. So a product differs from
//! the `f32` one only by the rounding of its two operands (8 significant bits each), and the
//! weights take half the memory.
//!
//! Three kernels compute the same 32×32 blocks from the same packed layouts, the best one the
//! CPU offers picked at run time ([`kernel`]):
//! - [`Kernel::Amx`]: Intel's AMX tiles (`tdpbf16ps`, a 16×16×32 product per instruction),
//!   four accumulator tiles per block; Linux grants the tile state per process
//!   (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once.
//! - [`Kernel::Avx512`]: AVX-512 BF16 (`vdpbf16ps`, pairs of products into 16 `f32` lanes),
//!   8 rows × 32 columns of accumulators in registers (AMD Zen 4 and later; Intel Cooper
//!   Lake, Sapphire Rapids and later — not Ice Lake).
//! - [`Kernel::Plain`]: widening to `f32` and plain multiply-adds, vectorised by the compiler
//!   (every other CPU: correct, and half the weight memory, but slower than `f32`, which keeps
//!   Winograd F(4×4) and a tuned multiply).
//!
//! Layouts, in tiles of 16 rows × 64 bytes stored contiguously (so a tile load reads 1 KB in
//! one stretch). The weight (`a`, `m × k`) is bf16, rows and columns padded with zeros to
//! multiples of 32, in blocks of 32 rows; a block holds, per 32 columns, its two tiles of 16
//! rows × 32 values (`[k/32][2][16][32]`). The activations (`b`, `k × n`, read through
//! strides) are packed per call into panels of 32 columns; a panel holds, per 32 rows of `b`,
//! two tiles (columns 0–15 and 16–31) of 16 row pairs, each pair of rows `(2q, 2q + 1)` as
//! the columns' two values side by side (`[k/32][2][16][16][2]`) — the pair layout both
//! `tdpbf16ps` and `vdpbf16ps` multiply against a row's consecutive pair of `a`.
//!
//! Rounding to bf16 is to nearest, ties to even; NaN stays NaN. Where the CPU has AVX-512
//! BF16 the activations are rounded by its conversion instructions, which also flush
//! subnormal values (below 1.2e-38) to zero. Products wider than `PACK_BYTES` of packed
//! activations run in column chunks.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::math::vectorized;
use super::{Mat, SharedMut};

/// Rows and columns of one block of the product; `a` and `b` are padded to multiples of it.
const BLOCK: usize = 32;
/// Values in one tile (16 rows of 64 bytes).
const TILE: usize = 512;
/// Bytes of packed `b` at once: wider products run in column chunks of this size, so the
/// packed copy of a large operand (a 1×1 convolution's whole plane, every token of a linear
/// layer) never exists whole.
const PACK_BYTES: usize = 4 << 20;
/// Bytes of `b` panels one task computes (the panels share the task's rows of `a`, and stay
/// in the core's cache while the task's neighbours reuse them): at least one panel.
const TASK_BYTES: usize = 1 << 20;

/// Where element `(r, c)` of a 32-row block of `a` lies in the block.
#[inline(always)]
fn a_at(r: usize, c: usize) -> usize {
    ((c / 32) * 2 + r / 16) * TILE + (r % 16) * 32 + c % 32
}

/// Where the first value of pair `q`, column `c` lies in a panel of `b`.
#[inline(always)]
fn b_at(q: usize, c: usize) -> usize {
    ((q / 16) * 2 + c / 16) * TILE + (q % 16) * 32 + (c % 16) * 2
}

/// `x` rounded to bf16 (to nearest, ties to even), as its bits.
#[inline(always)]
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        0x7fc0
    } else {
        rounded
    }
}

/// The `f32` value of bf16 bits.
#[inline(always)]
pub fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A matrix in bf16, laid out as [`matmul`]'s left operand (see the module notes).
pub struct Packed {
    rows: usize,
    cols: usize,
    /// Columns stored: `cols` rounded up to a multiple of 32.
    stride: usize,
    data: Vec<u16>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({}x{} bf16)", self.rows, self.cols)
    }
}

impl Packed {
    /// `src` (`rows × cols`, row-major) rounded to bf16.
    pub fn from_f32(src: &[f32], rows: usize, cols: usize) -> Packed {
        assert_eq!(src.len(), rows * cols, "a {rows}x{cols} matrix");
        let stride = cols.next_multiple_of(BLOCK);
        let mut data = vec![0u16; rows.next_multiple_of(BLOCK) * stride];
        if cols > 0 {
            data.par_chunks_mut(BLOCK * stride)
                .zip(src.par_chunks(BLOCK * cols))
                .for_each(|(block, src)| {
                    for (r, row) in src.chunks(cols).enumerate() {
                        for (kb, part) in row.chunks(BLOCK).enumerate() {
                            let at = a_at(r, kb * BLOCK);
                            round_into(part, &mut block[at..at + part.len()]);
                        }
                    }
                });
        }
        Packed {
            rows,
            cols,
            stride,
            data,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The matrix back in `f32` (`rows × cols`, row-major): the bf16 values exactly.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            let block = &self.data[(r / BLOCK) * BLOCK * self.stride..];
            out.extend((0..self.cols).map(|c| widen(block[a_at(r % BLOCK, c)])));
        }
        out
    }
}

/// The block kernels (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Amx,
    Avx512,
    Plain,
}

/// The fastest kernel this CPU (and, for AMX, the operating system) offers, found once.
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        [Kernel::Amx, Kernel::Avx512]
            .into_iter()
            .find(|&k| available(k))
            .unwrap_or(Kernel::Plain)
    })
}

/// Whether `k` runs here.
pub fn available(k: Kernel) -> bool {
    match k {
        Kernel::Plain => true,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Kernel::Amx => {
            static AMX: OnceLock<bool> = OnceLock::new();
            *AMX.get_or_init(amx::enable)
        }
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `dst(i, j) ← (dst(i, j) if accumulate) + Σₖ a(i, k)·b(k, j)` for `i < a.rows()`, `j < n`,
/// `k < a.cols()`, with `b` read through its strides and rounded to bf16, on the rayon pool,
/// with [`kernel`].
///
/// # Safety
/// `b` must address `a.cols() × n` valid floats and `dst` `a.rows() × n` valid floats through
/// their strides; `dst` must not overlap `b`, and no two of its elements may share an address.
pub unsafe fn matmul(a: &Packed, b: Mat<*const f32>, n: usize, dst: Mat<*mut f32>, acc: bool) {
    unsafe { matmul_with(kernel(), a, b, n, dst, acc) }
}

/// [`matmul`] with a given kernel.
///
/// # Safety
/// As [`matmul`], and `kernel` must be [`available`].
pub unsafe fn matmul_with(
    kernel: Kernel,
    a: &Packed,
    b: Mat<*const f32>,
    n: usize,
    dst: Mat<*mut f32>,
    acc: bool,
) {
    let (k, kp) = (a.cols, a.stride);
    if k == 0 {
        // An empty sum.
        for i in 0..a.rows * (!acc as usize) {
            for j in 0..n {
                // SAFETY: (i, j) lies inside dst.
                unsafe { *dst.0.add(i * dst.1 + j * dst.2) = 0.0 };
            }
        }
        return;
    }
    let chunk = (PACK_BYTES / (2 * kp)).max(BLOCK) / BLOCK * BLOCK;
    for j0 in (0..n).step_by(chunk) {
        let nn = chunk.min(n - j0);
        // SAFETY: columns j0..j0 + nn of b and dst, inside them by the caller's contract.
        unsafe {
            let b = (b.0.add(j0 * b.2), b.1, b.2);
            let fill = |out: &mut [u16]| pack(b, k, nn, kp, out);
            product(
                kernel,
                a,
                nn,
                fill,
                (dst.0.add(j0 * dst.2), dst.1, dst.2),
                acc,
            )
        }
    }
}

/// The product of `a` and the `n` columns `fill` packs (into the buffer it is given, the
/// module's panel layout), into `dst`.
///
/// # Safety
/// As [`matmul_with`] for `dst`; `kernel` [`available`].
unsafe fn product(
    kernel: Kernel,
    a: &Packed,
    n: usize,
    fill: impl FnOnce(&mut [u16]),
    dst: Mat<*mut f32>,
    acc: bool,
) {
    let (m, kp) = (a.rows, a.stride);
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(BLOCK);
    let mut packed = PACKED.with(|c| c.take());
    packed.resize(panels * kp * BLOCK, 0);
    fill(&mut packed);
    let mblocks = m.div_ceil(BLOCK);
    let per_task = (TASK_BYTES / (kp * BLOCK * 2)).max(1);
    let tasks = panels.div_ceil(per_task) * mblocks;
    let d = SharedMut(dst.0);
    (0..tasks).into_par_iter().for_each(|t| {
        let (group, mb) = (t / mblocks, t % mblocks);
        let mut out = [0f32; BLOCK * BLOCK];
        let rows = &a.data[mb * BLOCK * kp..(mb + 1) * BLOCK * kp];
        let first = group * per_task;
        let last = (first + per_task).min(panels);
        let session = Session::begin(kernel);
        for p in first..last {
            let panel = &packed[p * kp * BLOCK..(p + 1) * kp * BLOCK];
            session.block(rows, panel, kp, &mut out);
            let (i0, j0) = (mb * BLOCK, p * BLOCK);
            let (mr, nc) = (BLOCK.min(m - i0), BLOCK.min(n - j0));
            let at = |r: usize, c: usize| {
                // SAFETY: (i0 + r, j0 + c) lies inside dst; each (row block, panel) belongs to
                // one task, so no two tasks write one element.
                unsafe { d.get().add((i0 + r) * dst.1 + (j0 + c) * dst.2) }
            };
            let put = |r: usize, c: usize| {
                let v = out[r * BLOCK + c];
                let p = at(r, c);
                // SAFETY: as `at`.
                unsafe { *p = if acc { *p + v } else { v } };
            };
            if dst.2 == 1 || dst.1 != 1 {
                (0..mr).for_each(|r| (0..nc).for_each(|c| put(r, c)));
            } else {
                (0..nc).for_each(|c| (0..mr).for_each(|r| put(r, c)));
            }
        }
        drop(session);
    });
    PACKED.with(|c| c.set(packed));
}

thread_local! {
    /// The packed right operand, kept between products (taken while in use, so a product
    /// started inside another on this thread packs into a fresh buffer).
    static PACKED: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `b` (`k × n` through strides) rounded to bf16 into `out`, in panels of 32 columns (see the
/// module notes); rows from `k` to `kp` and columns from `n` to the panel's end are zeros.
///
/// # Safety
/// `b` must address `k × n` valid floats through its strides.
unsafe fn pack(b: Mat<*const f32>, k: usize, n: usize, kp: usize, out: &mut [u16]) {
    debug_assert_eq!(out.len(), n.div_ceil(BLOCK) * kp * BLOCK);
    let src = SharedMut(b.0 as *mut f32);
    let (rs, cs) = (b.1, b.2);
    out.par_chunks_mut(kp * BLOCK).enumerate().for_each_init(
        || vec![0u16; kp],
        |column, (p, panel)| {
            let j0 = p * BLOCK;
            let nc = BLOCK.min(n - j0);
            // SAFETY: element (r, j0 + c) of b, for r < k and c < nc.
            let at = |r: usize, c: usize| unsafe { src.get().add(r * rs + (j0 + c) * cs) };
            let row = |r: usize| {
                // SAFETY: row r's 32 columns from j0, when the panel is whole and cs is 1.
                unsafe { std::slice::from_raw_parts(at(r, 0) as *const f32, BLOCK) }
            };
            if cs == 1 {
                // Rows contiguous: two source rows interleaved per pair, columns 0–15
                // into one tile and 16–31 into the next.
                for q in 0..kp / 2 {
                    let (r0, r1) = (2 * q, 2 * q + 1);
                    let (lo, hi) = (b_at(q, 0), b_at(q, 16));
                    if r1 < k && nc == BLOCK {
                        let (head, tail) = panel.split_at_mut(hi);
                        round_pairs(row(r0), row(r1), &mut head[lo..lo + 32], &mut tail[..32]);
                        continue;
                    }
                    panel[lo..lo + 32].fill(0);
                    panel[hi..hi + 32].fill(0);
                    for c in 0..nc.min(if r0 < k { BLOCK } else { 0 }) {
                        // SAFETY: r0 < k, c < nc (and r1 checked).
                        panel[b_at(q, c)] = round(unsafe { *at(r0, c) });
                        if r1 < k {
                            panel[b_at(q, c) + 1] = round(unsafe { *at(r1, c) });
                        }
                    }
                }
            } else if rs == 1 {
                // Columns contiguous: each column rounded in one pass, its pairs spread
                // down the panel.
                for c in 0..BLOCK {
                    if c < nc {
                        // SAFETY: column c's k values are contiguous from (0, c).
                        let col = unsafe { std::slice::from_raw_parts(at(0, c), k) };
                        round_into(col, &mut column[..k]);
                    } else {
                        column[..k].fill(0);
                    }
                    for (q, pair) in column.chunks_exact(2).enumerate() {
                        panel[b_at(q, c)..b_at(q, c) + 2].copy_from_slice(pair);
                    }
                }
            } else {
                panel.fill(0);
                for c in 0..nc {
                    for r in 0..k {
                        // SAFETY: r < k, c < nc.
                        panel[b_at(r / 2, c) + (r & 1)] = round(unsafe { *at(r, c) });
                    }
                }
            }
        },
    );
}

/// `dst[i] = round(src[i])` (AVX-512 BF16's conversion where the CPU has it, which also
/// flushes subnormal values to zero).
pub fn round_into(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if available(Kernel::Avx512) {
        // SAFETY: the features are present; the slices have equal lengths.
        return unsafe { avx512::round_into(src, dst) };
    }
    vectorized(
        #[inline(always)]
        || {
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = round(v);
            }
        },
    )
}

/// `lo[2i] = round(a[i])`, `lo[2i + 1] = round(b[i])` for i < 16, and the same from
/// `a[16 + i]`, `b[16 + i]` into `hi`.
fn round_pairs(a: &[f32], b: &[f32], lo: &mut [u16], hi: &mut [u16]) {
    assert!(a.len() == BLOCK && b.len() == BLOCK && lo.len() == BLOCK && hi.len() == BLOCK);
    #[cfg(target_arch = "x86_64")]
    if available(Kernel::Avx512) {
        // SAFETY: the features are present; the lengths are checked above.
        return unsafe { avx512::round_pairs(a, b, [lo, hi]) };
    }
    for (h, dst) in [lo, hi].into_iter().enumerate() {
        for i in 0..16 {
            dst[2 * i] = round(a[16 * h + i]);
            dst[2 * i + 1] = round(b[16 * h + i]);
        }
    }
}

/// A task's use of one kernel: for AMX, the tile configuration loaded at the start and the
/// tile state released at the end.
struct Session(Kernel);

impl Session {
    fn begin(kernel: Kernel) -> Session {
        assert!(
            available(kernel),
            "the {kernel:?} bf16 kernel does not run here"
        );
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if kernel == Kernel::Amx {
            // SAFETY: AMX is available (checked above, permission granted).
            unsafe { amx::configure() };
        }
        Session(kernel)
    }

    /// `out` (32×32, row-major) ← `rows` (a block of 32 rows of `a`) · `panel`.
    fn block(&self, rows: &[u16], panel: &[u16], kp: usize, out: &mut [f32; BLOCK * BLOCK]) {
        debug_assert!(
            rows.len() == BLOCK * kp && panel.len() == BLOCK * kp && kp.is_multiple_of(BLOCK)
        );
        match self.0 {
            // SAFETY: the session checked the kernel runs here; the slices have the sizes the
            // kernels read (asserted above).
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Kernel::Amx => unsafe { amx::block(rows.as_ptr(), panel.as_ptr(), kp, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::block(rows.as_ptr(), panel.as_ptr(), kp, out) },
            _ => plain_block(rows, panel, kp, out),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if self.0 == Kernel::Amx {
            // SAFETY: configured in `begin`.
            unsafe { amx::release() };
        }
    }
}

/// The portable block: widen to `f32` and multiply-add.
fn plain_block(rows: &[u16], panel: &[u16], kp: usize, out: &mut [f32; BLOCK * BLOCK]) {
    vectorized(
        #[inline(always)]
        || {
            out.fill(0.0);
            for (r, o) in out.chunks_exact_mut(BLOCK).enumerate() {
                for q in 0..kp / 2 {
                    let at = a_at(r, 2 * q);
                    let (a0, a1) = (widen(rows[at]), widen(rows[at + 1]));
                    if a0 == 0.0 && a1 == 0.0 {
                        continue;
                    }
                    for (h, o) in o.chunks_exact_mut(16).enumerate() {
                        let pair = &panel[b_at(q, 16 * h)..b_at(q, 16 * h) + 32];
                        for (c, v) in o.iter_mut().enumerate() {
                            *v += a0 * widen(pair[2 * c]) + a1 * widen(pair[2 * c + 1]);
                        }
                    }
                }
            }
        },
    )
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Rows of accumulators at once (each two vectors of 16 columns).
    const ROWS: usize = 8;

    /// [`super::round_into`].
    ///
    /// # Safety
    /// AVX-512 BF16 must be available; `dst` as long as `src`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn round_into(src: &[f32], dst: &mut [u16]) {
        let mut i = 0;
        while i + 16 <= src.len() {
            // SAFETY: 16 values from i in both.
            unsafe {
                let h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr().add(i)));
                _mm256_storeu_si256(
                    dst.as_mut_ptr().add(i).cast(),
                    std::mem::transmute::<__m256bh, __m256i>(h),
                );
            }
            i += 16;
        }
        for j in i..src.len() {
            dst[j] = super::round(src[j]);
        }
    }

    /// The interleaving of `vcvtne2ps2bf16`'s output (`a` in words 0–15, `b` in 16–31) into
    /// pairs: word 2i from a's i, word 2i + 1 from b's i.
    static PAIRS: [u16; 32] = {
        let mut idx = [0u16; 32];
        let mut i = 0;
        while i < 16 {
            idx[2 * i] = i as u16;
            idx[2 * i + 1] = 16 + i as u16;
            i += 1;
        }
        idx
    };

    /// [`super::round_pairs`].
    ///
    /// # Safety
    /// AVX-512 BF16 must be available; `a`, `b` of 32 values, `dst` of 64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn round_pairs(a: &[f32], b: &[f32], dst: [&mut [u16]; 2]) {
        // SAFETY: the lengths the caller guarantees.
        unsafe {
            let idx = _mm512_loadu_si512(PAIRS.as_ptr().cast());
            for (h, dst) in dst.into_iter().enumerate() {
                let va = _mm512_loadu_ps(a.as_ptr().add(16 * h));
                let vb = _mm512_loadu_ps(b.as_ptr().add(16 * h));
                let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(vb, va));
                let pairs = _mm512_permutexvar_epi16(idx, both);
                _mm512_storeu_si512(dst.as_mut_ptr().cast(), pairs);
            }
        }
    }

    /// [`super::Session::block`] with `vdpbf16ps`.
    ///
    /// # Safety
    /// AVX-512 BF16 must be available; `rows` must address a block of 32 rows of `kp` and
    /// `panel` a panel of `kp` rows (the module's layouts).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn block(rows: *const u16, panel: *const u16, kp: usize, out: &mut [f32; 1024]) {
        for g in 0..BLOCK / ROWS {
            let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
            for q in 0..kp / 2 {
                // SAFETY: pair q of the panel, and of each row, lies inside the operands.
                unsafe {
                    let b0 = panel.add(super::b_at(q, 0));
                    let b1 = panel.add(super::b_at(q, 16));
                    let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b0.cast()));
                    let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.cast()));
                    let a = rows.add(super::a_at(g * ROWS, 2 * q));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        // Rows of one group lie in one tile, 32 values apart.
                        let pair = (a.add(r * 32) as *const i32).read_unaligned();
                        let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let o = &mut out[(g * ROWS + r) * BLOCK..];
                // SAFETY: a row of 32 floats of `out`.
                unsafe {
                    _mm512_storeu_ps(o.as_mut_ptr(), acc[0]);
                    _mm512_storeu_ps(o.as_mut_ptr().add(16), acc[1]);
                }
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use std::arch::asm;

    /// The tile configuration (palette 1): every tile 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// Whether the CPU has AMX-TILE and AMX-BF16 and Linux grants this process the tile data
    /// state.
    pub fn enable() -> bool {
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (bf16, tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
        if !(bf16 && tile) {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call (158) with a request that only changes this
        // process's permitted extended state.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") 158i64 => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret == 0
    }

    /// Load the tile configuration on this thread.
    ///
    /// # Safety
    /// AMX must be enabled ([`enable`]).
    pub unsafe fn configure() {
        let mut cfg = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        // SAFETY: a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly)) };
    }

    /// Release this thread's tile state.
    ///
    /// # Safety
    /// AMX must be enabled.
    pub unsafe fn release() {
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// [`super::Session::block`] with the tiles: C in tmm0–3 (rows 0/16 × columns 0/16), the
    /// two row halves of `a` in tmm4–5, the two column halves of the panel in tmm6–7.
    ///
    /// # Safety
    /// The tiles must be configured on this thread ([`configure`]); `rows` must address a
    /// block of 32 rows of `kp` and `panel` a panel of `kp` rows (the module's layouts).
    pub unsafe fn block(rows: *const u16, panel: *const u16, kp: usize, out: &mut [f32; 1024]) {
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for kb in 0..kp / 32 {
                // Each operand's two tiles, 1 KB apart.
                let a0 = rows.add(2 * kb * super::TILE);
                let a1 = a0.add(super::TILE);
                let b0 = panel.add(2 * kb * super::TILE);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0,
                    a1 = in(reg) a1,
                    b0 = in(reg) b0,
                    b1 = in(reg) b0.add(super::TILE),
                    sa = in(reg) 64usize,
                    sb = in(reg) 64usize,
                    options(nostack, readonly)
                );
            }
            let o = out.as_mut_ptr();
            asm!(
                "tilestored [{o0} + {s}*1], tmm0",
                "tilestored [{o1} + {s}*1], tmm1",
                "tilestored [{o2} + {s}*1], tmm2",
                "tilestored [{o3} + {s}*1], tmm3",
                o0 = in(reg) o,
                o1 = in(reg) o.add(16),
                o2 = in(reg) o.add(16 * 32),
                o3 = in(reg) o.add(16 * 32 + 16),
                s = in(reg) 128usize,
                options(nostack)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn rounds_to_nearest_even() {
        assert_eq!(round(1.0), 0x3f80);
        assert_eq!(round(-2.0), 0xc000);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties to the even 1.
        assert_eq!(round(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: ties to the even 1 + 2⁻⁶.
        assert_eq!(round(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(round(1.0 + 1.5 / 256.0), 0x3f81);
        assert!(widen(round(f32::NAN)).is_nan());
        assert_eq!(widen(round(f32::INFINITY)), f32::INFINITY);
        // The `half` crate's conversion (also to nearest, ties to even) on every kind of
        // value: normal, subnormal, huge (rounding up to infinity), signed.
        let mut state = 0x1234_5678u32;
        for i in 0..200_000u32 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(if i % 2 == 0 {
                state
            } else {
                state & 0x807f_ffff
            });
            if !x.is_nan() {
                assert_eq!(round(x), half::bf16::from_f32(x).to_bits(), "{x:e}");
            }
        }
        assert_eq!(widen(round(f32::MAX)), f32::INFINITY);
        // The vector conversions agree with it on normal values.
        let xs: Vec<f32> = (0..100)
            .map(|i| (i as f32 * 0.731).sin() * 10f32.powi(i % 9 - 4))
            .collect();
        let mut got = vec![0u16; 100];
        round_into(&xs, &mut got);
        assert_eq!(got, xs.iter().map(|&x| round(x)).collect::<Vec<_>>());
        let (mut lo, mut hi) = (vec![0u16; 32], vec![0u16; 32]);
        round_pairs(&xs[..32], &xs[50..82], &mut lo, &mut hi);
        let pairs: Vec<u16> = lo.into_iter().chain(hi).collect();
        for i in 0..32 {
            assert_eq!(
                (pairs[2 * i], pairs[2 * i + 1]),
                (round(xs[i]), round(xs[50 + i]))
            );
        }
        let p = Packed::from_f32(&[1.0, 2.5, -0.1], 1, 3);
        assert_eq!(p.to_f32(), vec![1.0, 2.5, widen(round(-0.1))]);
    }

    /// The product of the bf16-rounded operands in f64.
    fn reference(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f64> {
        let q = |v: f32| widen(round(v)) as f64;
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                let x = q(a[i * k + kk]);
                for j in 0..n {
                    out[i * n + j] += x * q(b[kk * n + j]);
                }
            }
        }
        out
    }

    /// Every available kernel against the f64 product of the rounded operands, over shapes with
    /// partial row blocks, panels and pairs, several task groups and column chunks, an empty
    /// sum, and three orientations of `b` (row-major as convolutions use it, transposed as
    /// linear layers do, neither) and two of `dst`.
    #[test]
    fn kernels_match_the_rounded_product() {
        let kernels: Vec<Kernel> = [Kernel::Amx, Kernel::Avx512, Kernel::Plain]
            .into_iter()
            .filter(|&k| available(k))
            .collect();
        eprintln!("bf16 kernels here: {kernels:?}");
        for (m, n, k) in [
            (1, 1, 1),
            (32, 32, 32),
            (5, 7, 3),
            (33, 65, 47),
            (64, 300, 96),
            (40, 270, 577),
            (33, 600, 4100),
            (3, 5, 0),
        ] {
            let a = rand(m * k, 1 + m as u64);
            let b = rand(k * n, 2 + n as u64);
            let want = reference(&a, &b, (m, n, k));
            let scale = want.iter().fold(1e-9f64, |s, v| s.max(v.abs()));
            let packed = Packed::from_f32(&a, m, k);
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            // b(kk, j) at bs[kk·2n + 2j]: neither stride 1.
            let mut bs = vec![f32::NAN; 2 * k * n];
            for kk in 0..k {
                for j in 0..n {
                    bs[kk * 2 * n + 2 * j] = b[kk * n + j];
                }
            }
            for &kern in &kernels {
                for transposed in [false, true] {
                    let mut dst = vec![0.5f32; m * n];
                    // SAFETY: b is k × n and dst m × n through the strides given.
                    unsafe {
                        if transposed {
                            // b(kk, j) = bt[j·k + kk]; dst(i, j) = dst[j·m + i].
                            matmul_with(
                                kern,
                                &packed,
                                (bt.as_ptr(), 1, k),
                                n,
                                (dst.as_mut_ptr(), 1, m),
                                true,
                            );
                        } else {
                            matmul_with(
                                kern,
                                &packed,
                                (b.as_ptr(), n, 1),
                                n,
                                (dst.as_mut_ptr(), n, 1),
                                true,
                            );
                        }
                    }
                    let mut worst = 0f64;
                    for i in 0..m {
                        for j in 0..n {
                            let got = if transposed {
                                dst[j * m + i]
                            } else {
                                dst[i * n + j]
                            };
                            let d = (got as f64 - 0.5 - want[i * n + j]).abs() / scale;
                            worst = worst.max(d);
                        }
                    }
                    assert!(
                        worst < 1e-5,
                        "{kern:?} {m}x{n}x{k} transposed {transposed}: {worst}"
                    );
                }
                // b and dst strided in both dimensions; without accumulation the old values
                // are overwritten, and the elements between them are left alone.
                let mut fresh = vec![7f32; 2 * m * n];
                // SAFETY: as above, dst(i, j) = fresh[i·2n + 2j].
                unsafe {
                    matmul_with(
                        kern,
                        &packed,
                        (bs.as_ptr(), 2 * n, 2),
                        n,
                        (fresh.as_mut_ptr(), 2 * n, 2),
                        false,
                    )
                };
                let worst = (0..m * n).fold(0f64, |w, e| {
                    let (i, j) = (e / n, e % n);
                    assert_eq!(fresh[i * 2 * n + 2 * j + 1], 7.0);
                    w.max((fresh[i * 2 * n + 2 * j] as f64 - want[e]).abs() / scale)
                });
                assert!(worst < 1e-5, "{kern:?} {m}x{n}x{k} strided b, dst: {worst}");
            }
        }
    }

    /// The error against the f32 product is the operands' rounding: about 2⁻⁹ relative per
    /// term, far above the f32 kernels' 1e-6, far below a wrong product.
    #[test]
    fn bf16_error_against_f32_is_the_rounding() {
        let (m, n, k) = (48, 80, 320);
        let a = rand(m * k, 11);
        let b = rand(k * n, 12);
        let mut exact = vec![0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    exact[i * n + j] += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
            }
        }
        let mut dst = vec![0f32; m * n];
        let packed = Packed::from_f32(&a, m, k);
        // SAFETY: b is k × n and dst m × n, row-major.
        unsafe {
            matmul(
                &packed,
                (b.as_ptr(), n, 1),
                n,
                (dst.as_mut_ptr(), n, 1),
                false,
            )
        };
        let scale = exact.iter().fold(0f64, |s, v| s.max(v.abs()));
        let worst = dst
            .iter()
            .zip(&exact)
            .fold(0f64, |w, (g, r)| w.max((*g as f64 - r).abs() / scale));
        assert!(worst > 1e-5 && worst < 2e-2, "{worst}");
    }
}
