//! Sana's resolution binning, as diffusers' `SanaPipeline` / `SanaPAGPipeline` do it with
//! `use_resolution_binning=True` (their default): the request's (height, width) is snapped to the
//! nearest entry of an aspect-ratio table, the image is generated at that size, and the decoded
//! image is resized and center-cropped back to the request (`PixArtImageProcessor`'s
//! `classify_height_width_bin` and `resize_and_crop_tensor`).
//!
//! - Tables ([`table_for`]): chosen by the transformer's `sample_size`: 128 → 4096, 64 → 2048,
//!   32 → 1024, 16 → 512; diffusers raises "Invalid sample size" for any other value, and so do
//!   we. The tables are diffusers' (`ASPECT_RATIO_{4096,2048,1024,512}_BIN`: the 1024/512 ones from
//!   PixArt-α, 2048 from PixArt-Σ, 4096 from the Sana pipeline), same keys, values and order.
//! - Classification ([`classify`]): the key nearest to `height / width` by absolute difference
//!   (f64); on an exact tie the earlier entry wins, as Python's `min` over the dict does. Ties are
//!   real: 768x1024 (ratio 0.75) lies exactly between 0.72 and 0.78 and gets the 0.72 bin.
//! - Resize ([`resize_and_crop`]): diffusers runs it on the raw VAE output (before the
//!   `/ 2 + 0.5` and clamp). Scale `max(h / H, w / W)` (f64), resized sides truncated
//!   (`int(H * ratio)`), `F.interpolate(mode="bilinear", align_corners=False)` without antialias,
//!   then crop from `((resized - target) // 2)`. The interpolation follows PyTorch's
//!   `upsample_bilinear2d` in f32: scale `in / out` (f32, since `size` is given), source index
//!   `max(scale * (dst + 0.5) - 0.5, 0)`, lower tap `min(floor(src), in - 1)`, upper tap one
//!   further unless at the edge, weight `clamp(src - lower, 0, 1)`; equal sizes copy; the width
//!   pass is done first and the height pass combines its rows, the order PyTorch sums in.
//! - Divergence on purpose: the truncation `int(H * (h / H))` can land one pixel short of the
//!   request (f64 rounding; about 2% of multiple-of-8 requests, e.g. 120x160 → bin 832x1152 gives
//!   119 rows). diffusers' crop start is then -1, and Python's negative slicing returns a
//!   **one-pixel strip** instead of the image. We resize that side to the requested size instead.

use candle_core::{DType, Result, Tensor};

/// diffusers' `ASPECT_RATIO_4096_BIN` (Sana pipeline): aspect ratio key, height, width.
pub const ASPECT_RATIO_4096_BIN: &[(f64, u32, u32)] = &[
    (0.25, 2048, 8192),
    (0.26, 2048, 7936),
    (0.27, 2048, 7680),
    (0.28, 2048, 7424),
    (0.32, 2304, 7168),
    (0.33, 2304, 6912),
    (0.35, 2304, 6656),
    (0.4, 2560, 6400),
    (0.42, 2560, 6144),
    (0.48, 2816, 5888),
    (0.5, 2816, 5632),
    (0.52, 2816, 5376),
    (0.57, 3072, 5376),
    (0.6, 3072, 5120),
    (0.68, 3328, 4864),
    (0.72, 3328, 4608),
    (0.78, 3584, 4608),
    (0.82, 3584, 4352),
    (0.88, 3840, 4352),
    (0.94, 3840, 4096),
    (1.0, 4096, 4096),
    (1.07, 4096, 3840),
    (1.13, 4352, 3840),
    (1.21, 4352, 3584),
    (1.29, 4608, 3584),
    (1.38, 4608, 3328),
    (1.46, 4864, 3328),
    (1.67, 5120, 3072),
    (1.75, 5376, 3072),
    (2.0, 5632, 2816),
    (2.09, 5888, 2816),
    (2.4, 6144, 2560),
    (2.5, 6400, 2560),
    (2.89, 6656, 2304),
    (3.0, 6912, 2304),
    (3.11, 7168, 2304),
    (3.62, 7424, 2048),
    (3.75, 7680, 2048),
    (3.88, 7936, 2048),
    (4.0, 8192, 2048),
];
/// diffusers' `ASPECT_RATIO_2048_BIN` (PixArt-Σ): aspect ratio key, height, width.
pub const ASPECT_RATIO_2048_BIN: &[(f64, u32, u32)] = &[
    (0.25, 1024, 4096),
    (0.26, 1024, 3968),
    (0.27, 1024, 3840),
    (0.28, 1024, 3712),
    (0.32, 1152, 3584),
    (0.33, 1152, 3456),
    (0.35, 1152, 3328),
    (0.4, 1280, 3200),
    (0.42, 1280, 3072),
    (0.48, 1408, 2944),
    (0.5, 1408, 2816),
    (0.52, 1408, 2688),
    (0.57, 1536, 2688),
    (0.6, 1536, 2560),
    (0.68, 1664, 2432),
    (0.72, 1664, 2304),
    (0.78, 1792, 2304),
    (0.82, 1792, 2176),
    (0.88, 1920, 2176),
    (0.94, 1920, 2048),
    (1.0, 2048, 2048),
    (1.07, 2048, 1920),
    (1.13, 2176, 1920),
    (1.21, 2176, 1792),
    (1.29, 2304, 1792),
    (1.38, 2304, 1664),
    (1.46, 2432, 1664),
    (1.67, 2560, 1536),
    (1.75, 2688, 1536),
    (2.0, 2816, 1408),
    (2.09, 2944, 1408),
    (2.4, 3072, 1280),
    (2.5, 3200, 1280),
    (2.89, 3328, 1152),
    (3.0, 3456, 1152),
    (3.11, 3584, 1152),
    (3.62, 3712, 1024),
    (3.75, 3840, 1024),
    (3.88, 3968, 1024),
    (4.0, 4096, 1024),
];

/// diffusers' `ASPECT_RATIO_1024_BIN` (PixArt-α): aspect ratio key, height, width.
pub const ASPECT_RATIO_1024_BIN: &[(f64, u32, u32)] = &[
    (0.25, 512, 2048),
    (0.28, 512, 1856),
    (0.32, 576, 1792),
    (0.33, 576, 1728),
    (0.35, 576, 1664),
    (0.4, 640, 1600),
    (0.42, 640, 1536),
    (0.48, 704, 1472),
    (0.5, 704, 1408),
    (0.52, 704, 1344),
    (0.57, 768, 1344),
    (0.6, 768, 1280),
    (0.68, 832, 1216),
    (0.72, 832, 1152),
    (0.78, 896, 1152),
    (0.82, 896, 1088),
    (0.88, 960, 1088),
    (0.94, 960, 1024),
    (1.0, 1024, 1024),
    (1.07, 1024, 960),
    (1.13, 1088, 960),
    (1.21, 1088, 896),
    (1.29, 1152, 896),
    (1.38, 1152, 832),
    (1.46, 1216, 832),
    (1.67, 1280, 768),
    (1.75, 1344, 768),
    (2.0, 1408, 704),
    (2.09, 1472, 704),
    (2.4, 1536, 640),
    (2.5, 1600, 640),
    (3.0, 1728, 576),
    (4.0, 2048, 512),
];

/// diffusers' `ASPECT_RATIO_512_BIN` (PixArt-α): aspect ratio key, height, width.
pub const ASPECT_RATIO_512_BIN: &[(f64, u32, u32)] = &[
    (0.25, 256, 1024),
    (0.28, 256, 928),
    (0.32, 288, 896),
    (0.33, 288, 864),
    (0.35, 288, 832),
    (0.4, 320, 800),
    (0.42, 320, 768),
    (0.48, 352, 736),
    (0.5, 352, 704),
    (0.52, 352, 672),
    (0.57, 384, 672),
    (0.6, 384, 640),
    (0.68, 416, 608),
    (0.72, 416, 576),
    (0.78, 448, 576),
    (0.82, 448, 544),
    (0.88, 480, 544),
    (0.94, 480, 512),
    (1.0, 512, 512),
    (1.07, 512, 480),
    (1.13, 544, 480),
    (1.21, 544, 448),
    (1.29, 576, 448),
    (1.38, 576, 416),
    (1.46, 608, 416),
    (1.67, 640, 384),
    (1.75, 672, 384),
    (2.0, 704, 352),
    (2.09, 736, 352),
    (2.4, 768, 320),
    (2.5, 800, 320),
    (3.0, 864, 288),
    (4.0, 1024, 256),
];

/// The aspect-ratio table for a Sana transformer's `sample_size` (its latent side at the
/// model's native resolution), as the pipelines choose it; other sizes are an error.
pub fn table_for(sample_size: usize) -> Result<&'static [(f64, u32, u32)]> {
    match sample_size {
        128 => Ok(ASPECT_RATIO_4096_BIN),
        64 => Ok(ASPECT_RATIO_2048_BIN),
        32 => Ok(ASPECT_RATIO_1024_BIN),
        16 => Ok(ASPECT_RATIO_512_BIN),
        other => Err(candle_core::Error::Msg(format!(
            "resolution binning: invalid transformer sample_size {other} (Sana bins exist for \
             128, 64, 32 and 16)"
        ))),
    }
}

/// The (height, width) of the table entry whose ratio key is nearest to `height / width`; the
/// first such entry on a tie. `table` must not be empty (panics otherwise).
pub fn classify(height: usize, width: usize, table: &[(f64, u32, u32)]) -> (usize, usize) {
    let ar = height as f64 / width as f64;
    let mut best = &table[0];
    for entry in &table[1..] {
        // Strictly smaller only: Python's `min` keeps the first of equal keys.
        if (entry.0 - ar).abs() < (best.0 - ar).abs() {
            best = entry;
        }
    }
    (best.1 as usize, best.2 as usize)
}

/// Resizes images `[N, C, H, W]` so that they cover `height` x `width` and center-crops them to
/// it, as diffusers' `resize_and_crop_tensor` (see the module docs, including the one case where
/// we deliberately differ). Computed in f32 on the host; the result has the input's dtype and
/// device. Equal sizes return the input unchanged.
pub fn resize_and_crop(images: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (n, c, in_h, in_w) = images.dims4()?;
    if height == 0 || width == 0 || in_h == 0 || in_w == 0 {
        return Err(candle_core::Error::Msg(format!(
            "resize_and_crop: cannot resize {in_h}x{in_w} images to {height}x{width}"
        )));
    }
    if (in_h, in_w) == (height, width) {
        return Ok(images.clone());
    }
    let ratio = f64::max(height as f64 / in_h as f64, width as f64 / in_w as f64);
    // diffusers truncates; f64 rounding can leave a side one short (see the module docs).
    let resized_h = ((in_h as f64 * ratio) as usize).max(height);
    let resized_w = ((in_w as f64 * ratio) as usize).max(width);
    let top = (resized_h - height) / 2;
    let left = (resized_w - width) / 2;

    let rows = linear_taps(in_h, resized_h, top, height);
    let cols = linear_taps(in_w, resized_w, left, width);
    let src = images
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut out = vec![0f32; n * c * height * width];
    // One plane's width pass: every source row resampled to the output columns.
    let mut tmp = vec![0f32; in_h * width];
    for (plane, dst) in src
        .chunks_exact(in_h * in_w)
        .zip(out.chunks_exact_mut(height * width))
    {
        for (src_row, tmp_row) in plane.chunks_exact(in_w).zip(tmp.chunks_exact_mut(width)) {
            for (t, o) in cols.iter().zip(tmp_row.iter_mut()) {
                *o = src_row[t.lo] * t.w_lo + src_row[t.hi] * t.w_hi;
            }
        }
        for (t, dst_row) in rows.iter().zip(dst.chunks_exact_mut(width)) {
            let lo = &tmp[t.lo * width..(t.lo + 1) * width];
            let hi = &tmp[t.hi * width..(t.hi + 1) * width];
            for ((o, a), b) in dst_row.iter_mut().zip(lo).zip(hi) {
                *o = a * t.w_lo + b * t.w_hi;
            }
        }
    }
    Tensor::from_vec(out, (n, c, height, width), images.device())?.to_dtype(images.dtype())
}

/// One output index of a linear resize: the two source indices and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    lo: usize,
    hi: usize,
    w_lo: f32,
    w_hi: f32,
}

/// Taps for output indices `first..first + count` of an `in_size` → `out_size` linear resize
/// with PyTorch's `align_corners=False` arithmetic (f32, as `upsample_bilinear2d` on a float
/// tensor computes its indices and weights).
fn linear_taps(in_size: usize, out_size: usize, first: usize, count: usize) -> Vec<Tap> {
    (first..first + count)
        .map(|dst| {
            if in_size == out_size {
                return Tap {
                    lo: dst,
                    hi: dst,
                    w_lo: 1.0,
                    w_hi: 0.0,
                };
            }
            let scale = in_size as f32 / out_size as f32;
            let real = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
            let lo = (real.floor() as usize).min(in_size - 1);
            let w_hi = (real - lo as f32).clamp(0.0, 1.0);
            let hi = if lo < in_size - 1 { lo + 1 } else { lo };
            Tap {
                lo,
                hi,
                w_lo: 1.0 - w_hi,
                w_hi,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn image(h: usize, w: usize, f: impl Fn(usize, usize) -> f32) -> Tensor {
        let data: Vec<f32> = (0..h * w).map(|i| f(i / w, i % w)).collect();
        Tensor::from_vec(data, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    fn plane(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap()
    }

    fn assert_close(got: &[Vec<f32>], want: &[Vec<f64>], tol: f64) {
        assert_eq!(got.len(), want.len(), "rows");
        for (y, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.len(), w.len(), "columns of row {y}");
            for (x, (a, b)) in g.iter().zip(w).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= tol,
                    "({y}, {x}): got {a}, want {b}"
                );
            }
        }
    }

    /// PyTorch's source position for `dst` (align_corners=False), clamped to the input, in f64:
    /// the closed form the f32 taps approximate.
    fn source_position(dst: usize, in_size: usize, out_size: usize) -> f64 {
        let s = (dst as f64 + 0.5) * in_size as f64 / out_size as f64 - 0.5;
        s.clamp(0.0, (in_size - 1) as f64)
    }

    #[test]
    fn tables_are_diffusers() {
        // Lengths, position-weighted sums of heights and widths, and the key sum (Python's
        // left-to-right float sum), computed from diffusers' dicts.
        type Table = &'static [(f64, u32, u32)];
        let expect: [(Table, usize, u64, u64, f64); 4] = [
            (
                ASPECT_RATIO_4096_BIN,
                40,
                4395264,
                2783488,
                55.56999999999999,
            ),
            (
                ASPECT_RATIO_2048_BIN,
                40,
                2197632,
                1391744,
                55.56999999999999,
            ),
            (ASPECT_RATIO_1024_BIN, 33, 678784, 513408, 37.78999999999999),
            (ASPECT_RATIO_512_BIN, 33, 339392, 256704, 37.78999999999999),
        ];
        for (table, len, hs, ws, keys) in expect {
            assert_eq!(table.len(), len);
            let weighted = |f: fn(&(f64, u32, u32)) -> u32| -> u64 {
                table
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i as u64 + 1) * f(e) as u64)
                    .sum()
            };
            assert_eq!(weighted(|e| e.1), hs);
            assert_eq!(weighted(|e| e.2), ws);
            assert_eq!(table.iter().map(|e| e.0).sum::<f64>(), keys);
            assert!(table.windows(2).all(|p| p[0].0 < p[1].0));
        }
    }

    #[test]
    fn table_choice_by_sample_size() {
        assert_eq!(table_for(128).unwrap(), ASPECT_RATIO_4096_BIN);
        assert_eq!(table_for(64).unwrap(), ASPECT_RATIO_2048_BIN);
        assert_eq!(table_for(32).unwrap(), ASPECT_RATIO_1024_BIN);
        assert_eq!(table_for(16).unwrap(), ASPECT_RATIO_512_BIN);
        for bad in [0, 8, 48, 96, 256] {
            let err = table_for(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("sample_size {bad}")), "{err}");
        }
    }

    #[test]
    fn classification_matches_diffusers() {
        // Expected values from diffusers' `classify_height_width_bin` on its tables.
        let t1024 = ASPECT_RATIO_1024_BIN;
        assert_eq!(classify(64, 64, t1024), (1024, 1024));
        assert_eq!(classify(1024, 1024, t1024), (1024, 1024));
        assert_eq!(classify(512, 768, t1024), (832, 1216));
        assert_eq!(classify(768, 512, t1024), (1216, 832));
        assert_eq!(classify(720, 1280, t1024), (768, 1344));
        assert_eq!(classify(1080, 1920, t1024), (768, 1344));
        assert_eq!(classify(64, 4096, t1024), (512, 2048));
        assert_eq!(classify(8192, 32, t1024), (2048, 512));
        assert_eq!(classify(1000, 1, t1024), (2048, 512));
        assert_eq!(classify(4096, 4096, ASPECT_RATIO_4096_BIN), (4096, 4096));
        assert_eq!(classify(64, 64, ASPECT_RATIO_4096_BIN), (4096, 4096));
        assert_eq!(classify(1, 100, ASPECT_RATIO_4096_BIN), (2048, 8192));
        assert_eq!(classify(100, 1, ASPECT_RATIO_4096_BIN), (8192, 2048));
        assert_eq!(classify(64, 64, ASPECT_RATIO_2048_BIN), (2048, 2048));
        assert_eq!(classify(512, 768, ASPECT_RATIO_2048_BIN), (1664, 2432));
        assert_eq!(classify(64, 64, ASPECT_RATIO_512_BIN), (512, 512));
        assert_eq!(classify(512, 768, ASPECT_RATIO_512_BIN), (416, 608));
    }

    #[test]
    fn exact_ties_take_the_first_entry() {
        // 0.75 is exactly between 0.72 and 0.78 in f64, 0.375 between 0.35 and 0.4, 1.25
        // between 1.21 and 1.29; Python's `min` keeps the earlier key.
        assert_eq!(classify(768, 1024, ASPECT_RATIO_1024_BIN), (832, 1152));
        assert_eq!(classify(3, 8, ASPECT_RATIO_1024_BIN), (576, 1664));
        assert_eq!(classify(5, 4, ASPECT_RATIO_1024_BIN), (1088, 896));
        assert_eq!(classify(3, 4, ASPECT_RATIO_4096_BIN), (3328, 4608));
    }

    #[test]
    fn bilinear_2x2_to_4x4() {
        let out = resize_and_crop(&image(2, 2, |y, x| (1 + 2 * y + x) as f32), 4, 4).unwrap();
        let want = vec![
            vec![1.0, 1.25, 1.75, 2.0],
            vec![1.5, 1.75, 2.25, 2.5],
            vec![2.5, 2.75, 3.25, 3.5],
            vec![3.0, 3.25, 3.75, 4.0],
        ];
        assert_close(&plane(&out), &want, 0.0);
    }

    #[test]
    fn bilinear_downscale_has_no_antialias() {
        // 4x4 → 2x2: source positions 0.5 and 2.5, so each output averages a 2x2 block.
        let out = resize_and_crop(&image(4, 4, |y, x| (4 * y + x) as f32), 2, 2).unwrap();
        assert_close(&plane(&out), &[vec![2.5, 4.5], vec![10.5, 12.5]], 0.0);
        // 1x3 → 1x5 along the width: positions 0 (clamped), 0.4, 1, 1.6, 2.2 (upper tap clamped).
        let taps = linear_taps(3, 5, 0, 5);
        let los: Vec<usize> = taps.iter().map(|t| t.lo).collect();
        let his: Vec<usize> = taps.iter().map(|t| t.hi).collect();
        assert_eq!(los, [0, 0, 1, 1, 2]);
        assert_eq!(his, [1, 1, 2, 2, 2]);
        let row = [0f32, 10., 20.];
        let vals: Vec<f32> = taps
            .iter()
            .map(|t| row[t.lo] * t.w_lo + row[t.hi] * t.w_hi)
            .collect();
        for (v, w) in vals.iter().zip([0.0, 4.0, 10.0, 16.0, 20.0]) {
            assert!((v - w).abs() < 1e-5, "{vals:?}");
        }
    }

    #[test]
    fn bilinear_reproduces_bilinear_functions() {
        // Bilinear interpolation is exact on 1, x, y and x*y: the result must be that function
        // at PyTorch's clamped source positions. Covers up- and downscaling per axis
        // (3x5 → 7x4, 6x6 → 4x3) through the resize alone (no crop at these ratios).
        let f = |y: f64, x: f64| 1.0 + 2.0 * x - 3.0 * y + 0.5 * x * y;
        for (ih, iw, oh, ow) in [(3, 5, 7, 4), (6, 6, 4, 3), (5, 3, 4, 7), (2, 9, 11, 3)] {
            let taps_h = linear_taps(ih, oh, 0, oh);
            let taps_w = linear_taps(iw, ow, 0, ow);
            let img = image(ih, iw, |y, x| f(y as f64, x as f64) as f32);
            // Run the two passes directly (resize_and_crop would crop these ratios).
            let src = plane(&img);
            let got: Vec<Vec<f32>> = taps_h
                .iter()
                .map(|ty| {
                    let row = |r: usize| -> Vec<f32> {
                        taps_w
                            .iter()
                            .map(|tx| src[r][tx.lo] * tx.w_lo + src[r][tx.hi] * tx.w_hi)
                            .collect()
                    };
                    let (a, b) = (row(ty.lo), row(ty.hi));
                    a.iter()
                        .zip(&b)
                        .map(|(a, b)| a * ty.w_lo + b * ty.w_hi)
                        .collect()
                })
                .collect();
            let want: Vec<Vec<f64>> = (0..oh)
                .map(|y| {
                    (0..ow)
                        .map(|x| f(source_position(y, ih, oh), source_position(x, iw, ow)))
                        .collect()
                })
                .collect();
            assert_close(&got, &want, 1e-4);
        }
    }

    #[test]
    fn resize_then_center_crop() {
        // 2x4 → 3x3: ratio max(1.5, 0.75) = 1.5, resized 3x6, crop columns 1..4. The image
        // is linear (30 y + 6 x), so outputs are 30 sy + 6 sx at the source positions
        // sy = 0, 0.5, 1 and sx = 0.5, 7/6, 11/6.
        let img = image(2, 4, |y, x| (30 * y + 6 * x) as f32);
        let out = resize_and_crop(&img, 3, 3).unwrap();
        let want = vec![
            vec![3.0, 7.0, 11.0],
            vec![18.0, 22.0, 26.0],
            vec![33.0, 37.0, 41.0],
        ];
        assert_close(&plane(&out), &want, 1e-4);

        // Odd leftovers: 5x5 → 2x3 scales by 0.6 to 3x3, crop rows (3-2)//2 = 0..2, all
        // columns; 7x4 → 3x5 scales by 1.25 to 8x5, crop rows (8-3)//2 = 2..5.
        let g = |y: f64, x: f64| 2.0 * y + x;
        for (ih, iw, h, w, rh, rw, top, left) in [
            (5, 5, 2, 3, 3, 3, 0, 0),
            (7, 4, 3, 5, 8, 5, 2, 0),
            (4, 9, 5, 3, 5, 11, 0, 4),
        ] {
            let out =
                resize_and_crop(&image(ih, iw, |y, x| g(y as f64, x as f64) as f32), h, w).unwrap();
            assert_eq!(out.dims4().unwrap(), (1, 1, h, w));
            let want: Vec<Vec<f64>> = (top..top + h)
                .map(|y| {
                    (left..left + w)
                        .map(|x| g(source_position(y, ih, rh), source_position(x, iw, rw)))
                        .collect()
                })
                .collect();
            assert_close(&plane(&out), &want, 1e-4);
        }
    }

    #[test]
    fn identity_and_pipeline_sizes() {
        let img = image(3, 5, |y, x| (y * 7 + x) as f32 * 0.1 - 1.0);
        let same = resize_and_crop(&img, 3, 5).unwrap();
        assert_eq!(plane(&same), plane(&img));

        // A 64x64 request with the 1024 table decodes at 1024x1024; scaling by 1/16 puts the
        // source at 16 d + 7.5, the mean of pixels 16 d + 7 and 16 d + 8 on each axis.
        let big = image(1024, 1024, |y, x| (y * 1024 + x) as f32);
        let small = plane(&resize_and_crop(&big, 64, 64).unwrap());
        let want: Vec<Vec<f64>> = (0..64)
            .map(|i| {
                (0..64)
                    .map(|j| (16.0 * i as f64 + 7.5) * 1024.0 + 16.0 * j as f64 + 7.5)
                    .collect()
            })
            .collect();
        assert_close(&small, &want, 0.0);
    }

    #[test]
    fn batch_channels_and_dtype() {
        // Each of the N x C planes is resized on its own; the weights sum to one, so adding
        // 100 p to plane p adds 100 p to its output.
        let (n, c, h, w) = (2, 3, 6, 5);
        let pattern = |r: usize| ((r * 37) % 11) as f32 * 0.25;
        let data: Vec<f32> = (0..n * c * h * w)
            .map(|i| 100.0 * (i / (h * w)) as f32 + pattern(i % (h * w)))
            .collect();
        let t = Tensor::from_vec(data, (n, c, h, w), &Device::Cpu).unwrap();
        let out = resize_and_crop(&t, 4, 7).unwrap();
        assert_eq!(out.dims4().unwrap(), (n, c, 4, 7));
        let first = resize_and_crop(&image(h, w, |y, x| pattern(y * w + x)), 4, 7).unwrap();
        let first = plane(&first);
        for p in 0..n * c {
            let got = plane(
                &out.flatten_to(1)
                    .unwrap()
                    .get(p)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
            );
            let want: Vec<Vec<f64>> = first
                .iter()
                .map(|r| r.iter().map(|v| *v as f64 + 100.0 * p as f64).collect())
                .collect();
            assert_close(&got, &want, 1e-3);
        }

        let half = t.to_dtype(DType::F16).unwrap();
        assert_eq!(resize_and_crop(&half, 4, 7).unwrap().dtype(), DType::F16);
        assert!(resize_and_crop(&t, 0, 7).is_err());
        assert!(resize_and_crop(&t.flatten_to(1).unwrap(), 4, 7).is_err());
    }

    #[test]
    fn short_truncation_still_gives_the_requested_size() {
        // int(176 * (15 / 176)) is 14 in f64: diffusers would crop from -1 and return a strip
        // one pixel wide; we resize to 15 and return the full 15x15 image.
        assert_eq!((176.0 * (15.0f64 / 176.0)) as usize, 14);
        let img = image(176, 176, |y, x| (y + x) as f32);
        let out = resize_and_crop(&img, 15, 15).unwrap();
        assert_eq!(out.dims4().unwrap(), (1, 1, 15, 15));
        let want: Vec<Vec<f64>> = (0..15)
            .map(|y| {
                (0..15)
                    .map(|x| source_position(y, 176, 15) + source_position(x, 176, 15))
                    .collect()
            })
            .collect();
        assert_close(&plane(&out), &want, 1e-3);
    }
}
