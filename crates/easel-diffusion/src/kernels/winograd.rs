//! 3×3 stride-1 convolution by Winograd's F(2×2, 3×3): each 2×2 block of output comes from a
//! 4×4 block of input through 16 multiplies per input–output channel pair instead of 36, so
//! the matrix work (nearly all of a UNet's or VAE's arithmetic) drops by 2.25×.
//!
//! Per call: the weights are transformed (`U = G·g·Gᵀ`, 16 matrices `[cout, cin]`; nothing
//! extra stays resident), then for each chunk of tiles the input blocks are transformed
//! (`V = Bᵀ·d·B`, 16 matrices `[cin, tiles]`), the 16 products `M = U·V` run in parallel, and
//! the output transform (`Y = Aᵀ·M·A`) writes each 2×2 block into NCHW with the bias. The
//! transforms use only ±1 and ½, so the result stays within rounding of the direct sum.
//! Used where there are enough tiles to pay for transforming the weights (`worth_it`).

use rayon::prelude::*;

use super::{matmul, SharedMut};

/// Tiles per chunk are chosen so that the transformed input and the products of one chunk
/// stay within this many floats each (2 MB, near the caches), but at least `MIN_CHUNK_TILES`
/// (so the products stay wide enough to multiply efficiently).
const CHUNK_FLOATS: usize = 1 << 19;

/// Output tiles (over the whole batch) from which Winograd beats im2col: below, the layer is
/// dominated by reading its weights, which Winograd must also transform.
pub const MIN_TILES: usize = 256;

const MIN_CHUNK_TILES: usize = 128;

/// Whether a 3×3 stride-1 convolution with this batch and output size should take this path.
pub fn worth_it(b: usize, oh: usize, ow: usize) -> bool {
    b * oh.div_ceil(2) * ow.div_ceil(2) >= MIN_TILES
}

/// `x` `[b, cin, h, w]`, `wt` `[cout, cin, 3, 3]`, padding `p` → `[b, cout, oh, ow]`.
pub fn conv3x3(
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    (b, cin, h, w): (usize, usize, usize, usize),
    cout: usize,
    p: usize,
) -> Vec<f32> {
    let (oh, ow) = (h + 2 * p - 2, w + 2 * p - 2);
    let (ty, tx) = (oh.div_ceil(2), ow.div_ceil(2));

    // U[ξ][co][ci] = (G g Gᵀ)[ξ].
    let mut u = vec![0f32; 16 * cout * cin];
    let us = SharedMut(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        for ci in 0..cin {
            let g = &wt[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
            // G·g: 4×3.
            let mut gg = [[0f32; 3]; 4];
            for c in 0..3 {
                let (a, m, z) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = a;
                gg[1][c] = 0.5 * (a + m + z);
                gg[2][c] = 0.5 * (a - m + z);
                gg[3][c] = z;
            }
            for (r, row) in gg.iter().enumerate() {
                let (a, m, z) = (row[0], row[1], row[2]);
                let vals = [a, 0.5 * (a + m + z), 0.5 * (a - m + z), z];
                for (c, v) in vals.into_iter().enumerate() {
                    // SAFETY: (ξ, co, ci) is written by this co's task only.
                    unsafe { *us.get().add(((r * 4 + c) * cout + co) * cin + ci) = v };
                }
            }
        }
    });

    let mut out = vec![0f32; b * cout * oh * ow];
    // Chunks of whole tile rows (a tile row: `tx` tiles of one image side by side).
    let rows_all = b * ty;
    let rows_c = (CHUNK_FLOATS / (16 * cin.max(cout) * tx))
        .max(MIN_CHUNK_TILES.div_ceil(tx))
        .min(rows_all);
    let tc = rows_c * tx;
    let mut v = vec![0f32; 16 * cin * tc];
    let mut m = vec![0f32; 16 * cout * tc];
    let width = 2 * tx + 2;
    for r0 in (0..rows_all).step_by(rows_c) {
        let nr = rows_c.min(rows_all - r0);
        let n = nr * tx;
        // V[ξ][ci][t] = (Bᵀ d B)[ξ], d the 4×4 input block at (2·ty − p, 2·tx − p); one
        // tile row at a time, so every loop runs along the row.
        let vs = SharedMut(v.as_mut_ptr());
        (0..cin).into_par_iter().for_each_init(
            || vec![0f32; 8 * width],
            |buf, ci| {
                let (rows, t) = buf.split_at_mut(4 * width);
                for rr in 0..nr {
                    let (bi, tyi) = ((r0 + rr) / ty, (r0 + rr) % ty);
                    let plane = &x[(bi * cin + ci) * h * w..(bi * cin + ci + 1) * h * w];
                    // The four input rows, zero-padded, columns −p.. .
                    for (r, row) in rows.chunks_mut(width).enumerate() {
                        row.fill(0.0);
                        let iy = (2 * tyi + r) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let lo = p.min(width);
                        let len = w.min(width - lo);
                        row[lo..lo + len].copy_from_slice(&src[..len]);
                    }
                    // Bᵀ·d along the rows.
                    let (d0, rest) = rows.split_at(width);
                    let (d1, rest) = rest.split_at(width);
                    let (d2, d3) = rest.split_at(width);
                    for c in 0..width {
                        t[c] = d0[c] - d2[c];
                        t[width + c] = d1[c] + d2[c];
                        t[2 * width + c] = d2[c] - d1[c];
                        t[3 * width + c] = d1[c] - d3[c];
                    }
                    // ·B along the columns, stored per ξ for this tile row.
                    let j0 = rr * tx;
                    for (r, tr) in t.chunks(width).enumerate() {
                        // SAFETY: V[ξ][ci][j0..j0 + tx] belongs to this ci's task alone.
                        let row = |xi: usize| unsafe {
                            std::slice::from_raw_parts_mut(
                                vs.get().add(((r * 4 + xi) * cin + ci) * tc + j0),
                                tx,
                            )
                        };
                        let (v0, v1, v2, v3) = (row(0), row(1), row(2), row(3));
                        for k in 0..tx {
                            let (a, bb, c, d) =
                                (tr[2 * k], tr[2 * k + 1], tr[2 * k + 2], tr[2 * k + 3]);
                            v0[k] = a - c;
                            v1[k] = bb + c;
                            v2[k] = c - bb;
                            v3[k] = bb - d;
                        }
                    }
                }
            },
        );
        // M[ξ] = U[ξ] · V[ξ], the 16 products side by side.
        let ms = SharedMut(m.as_mut_ptr());
        let (up, vp) = (
            SharedMut(u.as_ptr() as *mut f32),
            SharedMut(v.as_ptr() as *mut f32),
        );
        (0..16).into_par_iter().for_each(|xi| {
            // SAFETY: U[ξ] [cout, cin], V[ξ] [cin, n of tc], M[ξ] [cout, n of tc] lie inside
            // their buffers; each ξ writes only its own M[ξ].
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
            || vec![0f32; 8 * tx],
            |am, co| {
                let add = bias.map_or(0.0, |bb| bb[co]);
                for rr in 0..nr {
                    let (bi, tyi) = ((r0 + rr) / ty, (r0 + rr) % ty);
                    let j0 = rr * tx;
                    let mrow =
                        |xi: usize| &m[(xi * cout + co) * tc + j0..(xi * cout + co) * tc + j0 + tx];
                    // Aᵀ·M: rows 0 and 1, for each of the 4 columns, along the tile row.
                    let (a0, a1) = am.split_at_mut(4 * tx);
                    for c in 0..4 {
                        let (m0, m1, m2, m3) = (mrow(c), mrow(4 + c), mrow(8 + c), mrow(12 + c));
                        let (o0, o1) =
                            (&mut a0[c * tx..(c + 1) * tx], &mut a1[c * tx..(c + 1) * tx]);
                        for k in 0..tx {
                            o0[k] = m0[k] + m1[k] + m2[k];
                            o1[k] = m1[k] - m2[k] - m3[k];
                        }
                    }
                    for (r, ar) in [&*a0, &*a1].into_iter().enumerate() {
                        let oy = 2 * tyi + r;
                        if oy >= oh {
                            continue;
                        }
                        // SAFETY: output row (bi, co, oy) belongs to this co's task alone.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                os.get().add(((bi * cout + co) * oh + oy) * ow),
                                ow,
                            )
                        };
                        let (c0, c1, c2, c3) = (
                            &ar[..tx],
                            &ar[tx..2 * tx],
                            &ar[2 * tx..3 * tx],
                            &ar[3 * tx..],
                        );
                        for k in 0..ow / 2 {
                            dst[2 * k] = c0[k] + c1[k] + c2[k] + add;
                            dst[2 * k + 1] = c1[k] - c2[k] - c3[k] + add;
                        }
                        if ow % 2 == 1 {
                            let k = ow / 2;
                            dst[2 * k] = c0[k] + c1[k] + c2[k] + add;
                        }
                    }
                }
            },
        );
    }
    out
}
