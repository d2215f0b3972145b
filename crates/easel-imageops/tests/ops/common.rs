//! Test-image generators and small helpers shared by the test modules.

use easel_imageops::image::{
    DynamicImage, GrayAlphaImage, GrayImage, LumaA, Rgb, RgbImage, Rgba, RgbaImage,
};

/// Red grows left to right, green top to bottom, blue constant.
pub fn gradient_rgb(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / (w - 1).max(1)) as u8,
            (y * 255 / (h - 1).max(1)) as u8,
            128,
        ])
    })
}

/// Like [`gradient_rgb`] plus alpha growing along the diagonal, with some
/// fully transparent pixels that still carry colour.
pub fn gradient_rgba(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let a = ((x + y) * 255 / (w + h - 2).max(1)) as u8;
        let a = if (x + 2 * y) % 7 == 0 { 0 } else { a };
        Rgba([
            (x * 255 / (w - 1).max(1)) as u8,
            (y * 255 / (h - 1).max(1)) as u8,
            200,
            a,
        ])
    })
}

/// Checkerboard of `cell`-pixel squares in two colours.
pub fn checker_rgba(w: u32, h: u32, cell: u32, a: [u8; 4], b: [u8; 4]) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        if (x / cell + y / cell) & 1 == 0 {
            Rgba(a)
        } else {
            Rgba(b)
        }
    })
}

pub fn gray_gradient(w: u32, h: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| {
        easel_imageops::image::Luma([((x + y) * 255 / (w + h - 2)) as u8])
    })
}

pub fn gray_alpha(w: u32, h: u32) -> GrayAlphaImage {
    GrayAlphaImage::from_fn(w, h, |x, y| {
        LumaA([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8])
    })
}

/// Deterministic pseudo-random noise (xorshift), for quantizer tests.
pub fn noisy_rgb(w: u32, h: u32, seed: u32) -> RgbImage {
    let mut s = seed.max(1);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    RgbImage::from_fn(w, h, |x, y| {
        let n = next();
        Rgb([
            ((x * 200 / w) as u8).wrapping_add((n & 31) as u8),
            ((y * 200 / h) as u8).wrapping_add((n >> 8 & 31) as u8),
            (n >> 16) as u8,
        ])
    })
}

pub fn distinct_colors(img: &DynamicImage) -> std::collections::HashSet<[u8; 4]> {
    img.to_rgba8().pixels().map(|p| p.0).collect()
}

/// Mean absolute per-channel difference between two same-sized RGB images.
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// CRC-32 (IEEE, as used by PNG), bit by bit.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The chunk types of a PNG, in order.
pub fn png_chunk_types(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[pos + 4..pos + 8]).into_owned());
        pos += 12 + len;
    }
    out
}
