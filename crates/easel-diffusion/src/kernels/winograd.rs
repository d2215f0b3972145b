//! 3×3 stride-1 convolution by Winograd's minimal filtering: each `m×m` block of output comes
//! from an `(m+2)×(m+2)` block of input through `(m+2)²` multiplies per input–output channel
//! pair instead of `9·m²`. Two tilings: F(2×2, 3×3) (16 multiplies for 4 outputs, 2.25× fewer
//! than the direct sum) and F(4×4, 3×3) (36 for 16, 4× fewer).
//!
//! Per call: the weights are transformed (`U = G·g·Gᵀ`, `(m+2)²` matrices `[cout, cin]`;
//! nothing extra stays resident), then for each chunk of tiles the input blocks are
//! transformed (`V = Bᵀ·d·B`, matrices `[cin, tiles]`), the products `M = U·V` run in
//! parallel, and the output transform (`Y = Aᵀ·M·A`) writes each block into NCHW with the
//! bias. The transforms are plain data ([`F2`], [`F4`]) read by one generic driver; each
//! transform step is a linear combination of whole contiguous rows, compiled for the CPU's
//! widest vectors ([`super::math::vectorized`]).
//!
//! Rounding: F(2×2) uses only ±1 and ½ and stays within rounding of the direct sum; F(4×4)
//! (interpolation points 0, ±1, ±2, ∞) scales terms by up to 8 before they cancel, which in
//! f32 costs a few ulps more (the tests bound both at 1e-5 relative, and the parity walker's
//! tolerance is 1e-4). [`choose`] picks the tiling per layer. With bf16 products (`conv3x3`'s
//! `bf16`, the `bf16` precision's layers) the transformed weights and inputs are rounded to
//! bf16: F(2×2) stays within bf16's precision of the f32 convolution; F(4×4) measured about
//! 6% of the output's range and is not used so.

use rayon::prelude::*;

use super::math::{add_in_place, vectorized};
use super::{matmul, SharedMut};

/// Tiles per chunk are chosen so that the transformed input and the products of one chunk
/// stay within this many floats each (2 MB, near the caches), but at least `MIN_CHUNK_TILES`
/// (so the products stay wide enough to multiply efficiently).
const CHUNK_FLOATS: usize = 1 << 19;

const MIN_CHUNK_TILES: usize = 128;

/// A Winograd tiling F(M×M, 3×3) with input tiles of `N = M + 2`: its three transforms.
pub trait Tiling<const M: usize, const N: usize> {
    /// `Bᵀ` (`N×N`): input block `d` → `Bᵀ·d·B`.
    const BT: [[f32; N]; N];
    /// `G` (`N×3`): 3×3 kernel `g` → `G·g·Gᵀ`.
    const G: [[f32; 3]; N];
    /// `Aᵀ` (`M×N`): product block → `Aᵀ·m·A`, the `M×M` outputs.
    const AT: [[f32; N]; M];
    /// Output tiles (over the whole batch) from which this tiling is used: at least
    /// `MIN_TILES`, and at least the wider channel count divided by `CHANNELS_PER_TILE`.
    const MIN_TILES: usize;
    const CHANNELS_PER_TILE: usize;
}

/// F(2×2, 3×3), interpolation points 0, ±1, ∞.
pub struct F2;

impl Tiling<2, 4> for F2 {
    const BT: [[f32; 4]; 4] = [
        [1., 0., -1., 0.],
        [0., 1., 1., 0.],
        [0., -1., 1., 0.],
        [0., 1., 0., -1.],
    ];
    const G: [[f32; 3]; 4] = [
        [1., 0., 0.],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0., 0., 1.],
    ];
    const AT: [[f32; 4]; 2] = [[1., 1., 1., 0.], [0., 1., -1., -1.]];
    const MIN_TILES: usize = 128;
    const CHANNELS_PER_TILE: usize = 5;
}

/// F(4×4, 3×3), interpolation points 0, ±1, ±2, ∞.
pub struct F4;

impl Tiling<4, 6> for F4 {
    const BT: [[f32; 6]; 6] = [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ];
    const G: [[f32; 3]; 6] = [
        [1. / 4., 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6.],
        [1. / 24., -1. / 12., 1. / 6.],
        [0., 0., 1.],
    ];
    const AT: [[f32; 6]; 4] = [
        [1., 1., 1., 1., 1., 0.],
        [0., 1., -1., 2., -2., 0.],
        [0., 1., 1., 4., 4., 0.],
        [0., 1., -1., 8., -8., 1.],
    ];
    const MIN_TILES: usize = 128;
    const CHANNELS_PER_TILE: usize = 3;
}

/// Which path a 3×3 stride-1 convolution with this batch and output size takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Too few output pixels: im2col.
    Im2col,
    F2,
    F4,
}

/// The path for a 3×3 stride-1 convolution of this batch, channels and output size.
///
/// Winograd transforms the weights on every call (`(m+2)²` matrices `[cout, cin]`) and saves
/// multiplications per output tile, so it pays from some number of tiles; wider layers need
/// more, because their transformed weights and products leave the caches (`conv_paths`
/// example, 2 threads, AVX-512: F(4×4) beats F(2×2) on SD 1.5's 320-channel layers from a
/// 32² latent with guidance and on the VAE's 128- and 256-channel layers, and loses on the
/// 640-channel ones at 32²; F(2×2) beats im2col down to 128 tiles on 640 channels, not on
/// 1280). F(4×4) where its rule holds, else F(2×2) where its rule holds, else im2col.
pub fn choose(b: usize, cin: usize, cout: usize, oh: usize, ow: usize) -> Choice {
    let wide = cin.max(cout);
    let enough = |m: usize, min: usize, per: usize| {
        let tiles = b * oh.div_ceil(m) * ow.div_ceil(m);
        tiles >= min && tiles * per >= wide
    };
    if enough(4, F4::MIN_TILES, F4::CHANNELS_PER_TILE) {
        Choice::F4
    } else if enough(2, F2::MIN_TILES, F2::CHANNELS_PER_TILE) {
        Choice::F2
    } else {
        Choice::Im2col
    }
}

/// `x` `[b, cin, h, w]`, `wt` `[cout, cin, 3, 3]`, padding `p` (with `cout`, one argument)
/// → `[b, cout, oh, ow]`, by the
/// tiling `T` (`M` outputs and `N = M + 2` inputs per side). `bf16`: the transformed weights
/// and inputs are multiplied in bf16 with `f32` sums ([`super::bf16`]: the `bf16` precision's
/// product), the transforms themselves in `f32`.
///
/// Every transform runs as whole-row linear combinations (`lincomb`) over contiguous rows,
/// so each vectorises: along the input channels for the weights, along a tile row's tiles for
/// the input and output blocks (whose interleaved columns are split into phases first).
pub fn conv3x3<const M: usize, const N: usize, T: Tiling<M, N>>(
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    (b, cin, h, w): (usize, usize, usize, usize),
    (cout, p): (usize, usize),
    bf16: bool,
) -> Vec<f32> {
    let (oh, ow) = (h + 2 * p - 2, w + 2 * p - 2);
    let (ty, tx) = (oh.div_ceil(M), ow.div_ceil(M));
    let nn = N * N;

    const { assert!(N == M + 2, "a 3×3 tiling reads M + 2 inputs per M outputs") };
    // U[ξ][co][ci] = (G g Gᵀ)[ξ].
    let mut u = vec![0f32; nn * cout * cin];
    let us = SharedMut(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each_init(
        || vec![0f32; (9 + 3 * N) * cin],
        |buf, co| {
            vectorized(
                #[inline(always)]
                || {
                    let (taps, gg) = buf.split_at_mut(9 * cin);
                    // taps[3a + b][ci] = g[co][ci][a][b].
                    let g = &wt[co * cin * 9..(co + 1) * cin * 9];
                    for (ci, tap) in g.chunks_exact(9).enumerate() {
                        for (k, &v) in tap.iter().enumerate() {
                            taps[k * cin + ci] = v;
                        }
                    }
                    let tap = |k: usize| &taps[k * cin..(k + 1) * cin];
                    // gg[r][b] = (G·g)[r][b].
                    for r in 0..N {
                        for bb in 0..3 {
                            let src = [tap(bb), tap(3 + bb), tap(6 + bb)];
                            lincomb(
                                &T::G[r],
                                &src,
                                &mut gg[(r * 3 + bb) * cin..(r * 3 + bb + 1) * cin],
                            );
                        }
                    }
                    for r in 0..N {
                        let src: [&[f32]; 3] = std::array::from_fn(|bb| &gg[(r * 3 + bb) * cin..]);
                        for c in 0..N {
                            // SAFETY: U[ξ][co][..] belongs to this co's task alone.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(
                                    us.get().add(((r * N + c) * cout + co) * cin),
                                    cin,
                                )
                            };
                            lincomb(&T::G[c], &src, dst);
                        }
                    }
                },
            )
        },
    );

    // bf16: each U[ξ] packed once, for every chunk's product.
    let packed: Vec<super::bf16::Packed> = if bf16 {
        (0..nn)
            .into_par_iter()
            .map(|xi| {
                super::bf16::Packed::from_f32(&u[xi * cout * cin..(xi + 1) * cout * cin], cout, cin)
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut out = vec![0f32; b * cout * oh * ow];
    // Chunks of whole tile rows (a tile row: `tx` tiles of one image side by side).
    let rows_all = b * ty;
    let rows_c = (CHUNK_FLOATS / (nn * cin.max(cout) * tx))
        .max(MIN_CHUNK_TILES.div_ceil(tx))
        .min(rows_all);
    let tc = rows_c * tx;
    let mut v = vec![0f32; nn * cin * tc];
    let mut m = vec![0f32; nn * cout * tc];
    let width = M * tx + 2;
    for r0 in (0..rows_all).step_by(rows_c) {
        let nr = rows_c.min(rows_all - r0);
        let n = nr * tx;
        // V[ξ][ci][t] = (Bᵀ d B)[ξ], d the N×N input block at (M·ty − p, M·tx − p); one
        // tile row at a time.
        let vs = SharedMut(v.as_mut_ptr());
        (0..cin).into_par_iter().for_each_init(
            || vec![0f32; 2 * N * width + M * (tx + 1)],
            |buf, ci| {
                vectorized(
                    #[inline(always)]
                    || {
                        let (rows, rest) = buf.split_at_mut(N * width);
                        let (t, phases) = rest.split_at_mut(N * width);
                        for rr in 0..nr {
                            let (bi, tyi) = ((r0 + rr) / ty, (r0 + rr) % ty);
                            let plane = &x[(bi * cin + ci) * h * w..(bi * cin + ci + 1) * h * w];
                            // The N input rows, zero-padded, columns −p.. .
                            for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                                row.fill(0.0);
                                let iy = (M * tyi + r) as isize - p as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                                let lo = p.min(width);
                                let len = w.min(width - lo);
                                row[lo..lo + len].copy_from_slice(&src[..len]);
                            }
                            // Bᵀ·d along the rows.
                            let src: [&[f32]; N] = std::array::from_fn(|j| &rows[j * width..]);
                            for (i, ti) in t.chunks_exact_mut(width).enumerate() {
                                lincomb(&T::BT[i], &src, ti);
                            }
                            // ·B along the columns, stored per ξ for this tile row.
                            let j0 = rr * tx;
                            for (r, tr) in t.chunks_exact(width).enumerate() {
                                let cols = columns::<M, N>(tr, tx, phases);
                                for (xi, bt) in T::BT.iter().enumerate() {
                                    // SAFETY: V[ξ][ci][j0..j0 + tx] belongs to this ci's task alone.
                                    let dst = unsafe {
                                        std::slice::from_raw_parts_mut(
                                            vs.get().add(((r * N + xi) * cin + ci) * tc + j0),
                                            tx,
                                        )
                                    };
                                    lincomb(bt, &cols, dst);
                                }
                            }
                        }
                    },
                )
            },
        );
        // M[ξ] = U[ξ] · V[ξ], the products side by side.
        let ms = SharedMut(m.as_mut_ptr());
        let (up, vp) = (
            SharedMut(u.as_ptr() as *mut f32),
            SharedMut(v.as_ptr() as *mut f32),
        );
        (0..nn).into_par_iter().for_each(|xi| {
            // SAFETY: U[ξ] [cout, cin], V[ξ] [cin, n of tc], M[ξ] [cout, n of tc] lie inside
            // their buffers; each ξ writes only its own M[ξ].
            if bf16 {
                unsafe {
                    super::bf16::matmul(
                        &packed[xi],
                        (vp.get().add(xi * cin * tc) as *const f32, tc, 1),
                        n,
                        (ms.get().add(xi * cout * tc), tc, 1),
                        false,
                    )
                };
                return;
            }
            unsafe {
                matmul(
                    (cout, n, cin),
                    (ms.get().add(xi * cout * tc), tc, 1),
                    (up.get().add(xi * cout * cin), cin, 1),
                    (vp.get().add(xi * cin * tc), tc, 1),
                    false,
                    1.0,
                    false,
                )
            };
        });
        // Y = Aᵀ M A per (co, tile row), into NCHW.
        let os = SharedMut(out.as_mut_ptr());
        (0..cout).into_par_iter().for_each_init(
            || vec![0f32; (M * N + M) * tx],
            |buf, co| {
                vectorized(
                    #[inline(always)]
                    || {
                        let (am, o) = buf.split_at_mut(M * N * tx);
                        let add = bias.map_or(0.0, |bb| bb[co]);
                        for rr in 0..nr {
                            let (bi, tyi) = ((r0 + rr) / ty, (r0 + rr) % ty);
                            let j0 = rr * tx;
                            let mrow = |xi: usize| &m[(xi * cout + co) * tc + j0..];
                            // am[r][c] = (Aᵀ·M)[r][c], a row of tx.
                            for c in 0..N {
                                let src: [&[f32]; N] = std::array::from_fn(|i| mrow(i * N + c));
                                for (r, at) in T::AT.iter().enumerate() {
                                    lincomb(
                                        at,
                                        &src,
                                        &mut am[(r * N + c) * tx..(r * N + c + 1) * tx],
                                    );
                                }
                            }
                            // ·A along the tile row: o[j][k], output column M·k + j; then the bias,
                            // interleaved into the output rows.
                            for r in 0..M {
                                let oy = M * tyi + r;
                                if oy >= oh {
                                    break;
                                }
                                let src: [&[f32]; N] =
                                    std::array::from_fn(|c| &am[(r * N + c) * tx..]);
                                for (j, at) in T::AT.iter().enumerate() {
                                    lincomb(at, &src, &mut o[j * tx..(j + 1) * tx]);
                                }
                                let at = ((bi * cout + co) * oh + oy) * ow;
                                // SAFETY: output row (bi, co, oy) belongs to this co's task alone.
                                let dst =
                                    unsafe { std::slice::from_raw_parts_mut(os.get().add(at), ow) };
                                interleave::<M>(o, tx, add, dst);
                                if let Some(res) = residual {
                                    add_in_place(dst, &res[at..at + ow]);
                                }
                            }
                        }
                    },
                )
            },
        );
    }
    out
}

/// The N columns each tile of a transformed row `tr` reads, as rows over the `tx` tiles:
/// column `j` of tile `k` is `tr[M·k + j]`. The row is split into its `M` phases
/// (`phases[q][k] = tr[M·k + q]`, `k ≤ tx`) and column `j` is phase `j mod M` from tile
/// `j / M` on.
#[inline(always)]
fn columns<'a, const M: usize, const N: usize>(
    tr: &[f32],
    tx: usize,
    phases: &'a mut [f32],
) -> [&'a [f32]; N] {
    let len = tx + 1;
    let (ph, _) = phases.split_at_mut(M * len);
    let ph: [&mut [f32]; M] = split_rows(ph, len);
    for (k, block) in tr.chunks_exact(M).take(len).enumerate() {
        for q in 0..M {
            ph[q][k] = block[q];
        }
    }
    // The last phase entries (tile tx) exist for the first N − M phases only.
    let tail = &tr[M * tx..];
    for (q, &v) in tail.iter().enumerate().take(M) {
        ph[q][tx] = v;
    }
    let phases = &*phases;
    std::array::from_fn(|j| {
        let at = (j % M) * len + j / M;
        &phases[at..at + tx]
    })
}

/// `rows` as `R` consecutive rows of `len`.
#[inline(always)]
fn split_rows<const R: usize>(mut rows: &mut [f32], len: usize) -> [&mut [f32]; R] {
    std::array::from_fn(|_| {
        let (row, rest) = std::mem::take(&mut rows).split_at_mut(len);
        rows = rest;
        row
    })
}

/// `dst[M·k + j] = o[j][k] + add` (rows of `tx` in `o`), for the `dst.len()` output columns.
#[inline(always)]
fn interleave<const M: usize>(o: &[f32], tx: usize, add: f32, dst: &mut [f32]) {
    let o: [&[f32]; M] = std::array::from_fn(|j| &o[j * tx..(j + 1) * tx]);
    let whole = dst.len() / M;
    let (body, tail) = dst.split_at_mut(whole * M);
    for (k, px) in body.chunks_exact_mut(M).enumerate() {
        for j in 0..M {
            px[j] = o[j][k] + add;
        }
    }
    for (j, v) in tail.iter_mut().enumerate() {
        *v = o[j][whole] + add;
    }
}

/// `dst[k] = Σ_j coef[j]·src[j][k]` for every `k` of `dst` (each `src[j]` at least as
/// long): one vectorised pass with the coefficients broadcast. Zero and ±1 coefficients
/// give exactly the sums without them (`s + 0·d = s`, `s ± 1·d = s ± d`) for finite values.
#[inline(always)]
fn lincomb<const N: usize>(coef: &[f32; N], src: &[&[f32]; N], dst: &mut [f32]) {
    let n = dst.len();
    let src: [&[f32]; N] = std::array::from_fn(|j| &src[j][..n]);
    for (k, o) in dst.iter_mut().enumerate() {
        let mut s = coef[0] * src[0][k];
        for j in 1..N {
            s += coef[j] * src[j][k];
        }
        *o = s;
    }
}
