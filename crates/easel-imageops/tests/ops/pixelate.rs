//! pixelate / pixelate_grid.

use easel_imageops::image::{DynamicImage, GenericImageView, Rgb, RgbImage, Rgba, RgbaImage};
use easel_imageops::{pixelate, pixelate_grid, OpsError, Palette, PixelateParams};

use crate::common::*;

fn params(grid_size: u32, palette: Palette, remove_noise: bool) -> PixelateParams {
    PixelateParams {
        grid_size,
        palette,
        remove_noise,
    }
}

/// Asserts every pixel equals the first pixel of its cell, with cells laid
/// out as documented (`x * gw / width`).
fn assert_uniform_cells(img: &DynamicImage, gw: u32, gh: u32) {
    let (w, h) = img.dimensions();
    let first = |cell: u32, cells: u32, len: u32| (cell * len).div_ceil(cells);
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = (x * gw / w, y * gh / h);
            let origin = img.get_pixel(first(cx, gw, w), first(cy, gh, h));
            assert_eq!(img.get_pixel(x, y), origin, "({x},{y}) in cell ({cx},{cy})");
        }
    }
}

#[test]
fn output_has_input_size_and_uniform_blocks() {
    // 120x80 with 12 cells across: 12x8 cells of exactly 10x10 pixels.
    let img = DynamicImage::ImageRgb8(gradient_rgb(120, 80));
    let out = pixelate(&img, &params(12, Palette::Keep, false)).unwrap();
    assert_eq!(out.dimensions(), (120, 80));
    assert!(matches!(out, DynamicImage::ImageRgb8(_)));
    let out = out.to_rgb8();
    for cy in 0..8 {
        for cx in 0..12 {
            let c = out.get_pixel(cx * 10, cy * 10);
            for y in cy * 10..cy * 10 + 10 {
                for x in cx * 10..cx * 10 + 10 {
                    assert_eq!(out.get_pixel(x, y), c);
                }
            }
            // Neighbouring cells of a gradient differ.
            if cx > 0 {
                assert_ne!(out.get_pixel(cx * 10 - 1, cy * 10), c);
            }
        }
    }
    assert_eq!(distinct_colors(&DynamicImage::ImageRgb8(out)).len(), 96);

    // Uneven division: cells still uniform and there are exactly gw x gh of them.
    let img = DynamicImage::ImageRgba8(gradient_rgba(101, 67));
    for grid in [2, 7, 30, 64] {
        let (gw, gh) = pixelate_grid(101, 67, grid);
        assert_eq!(gw, grid);
        let out = pixelate(&img, &params(grid, Palette::Keep, false)).unwrap();
        assert_eq!(out.dimensions(), (101, 67));
        assert_uniform_cells(&out, gw, gh);
    }
}

#[test]
fn grid_shape() {
    assert_eq!(pixelate_grid(1024, 768, 64), (64, 48));
    assert_eq!(pixelate_grid(768, 1024, 64), (48, 64));
    assert_eq!(pixelate_grid(512, 512, 100), (100, 100));
    assert_eq!(pixelate_grid(30, 10, 512), (30, 10)); // capped at one cell per pixel
}

#[test]
fn cells_are_area_averages() {
    // Alternating black and white columns: every 4x4 cell averages to mid grey.
    let img = RgbImage::from_fn(32, 32, |x, _| {
        Rgb(if x % 2 == 0 { [0; 3] } else { [255; 3] })
    });
    let out = pixelate(
        &DynamicImage::ImageRgb8(img),
        &params(8, Palette::Keep, false),
    )
    .unwrap();
    for p in out.to_rgb8().pixels() {
        assert!(p.0.iter().all(|&v| v == 127 || v == 128), "{:?}", p.0);
    }
}

#[test]
fn palette_size_limits_colours() {
    let img = DynamicImage::ImageRgb8(noisy_rgb(128, 96, 7));
    for n in [2u16, 3, 5, 16, 64] {
        let out = pixelate(&img, &params(64, Palette::Size(n), false)).unwrap();
        let count = distinct_colors(&out).len();
        assert!(count <= usize::from(n), "n={n}: {count} colours");
        assert!(
            count >= usize::from(n.min(16)) / 2,
            "n={n}: only {count} colours"
        );
    }
    // Two flat halves with 2 colours: exactly the originals come back.
    let halves = RgbImage::from_fn(64, 64, |x, _| {
        Rgb(if x < 32 { [200, 30, 40] } else { [20, 40, 220] })
    });
    let out = pixelate(
        &DynamicImage::ImageRgb8(halves),
        &params(16, Palette::Size(2), false),
    )
    .unwrap();
    let colors = distinct_colors(&out);
    assert_eq!(colors.len(), 2);
    assert!(colors.contains(&[200, 30, 40, 255]) && colors.contains(&[20, 40, 220, 255]));
}

#[test]
fn quantized_palette_represents_the_image() {
    // Four flat quadrants plus mild noise, 4 colours: each quadrant keeps its hue.
    let quads = [[220, 20, 20], [20, 200, 20], [20, 20, 220], [230, 230, 30]];
    let noise = noisy_rgb(64, 64, 3);
    let img = RgbImage::from_fn(64, 64, |x, y| {
        let q = quads[((y / 32) * 2 + x / 32) as usize];
        let n = noise.get_pixel(x, y).0[2] % 9;
        Rgb(q.map(|v: u8| v.saturating_add(n)))
    });
    let out = pixelate(
        &DynamicImage::ImageRgb8(img),
        &params(32, Palette::Size(4), false),
    )
    .unwrap()
    .to_rgb8();
    for (i, q) in quads.iter().enumerate() {
        let (x, y) = (16 + 32 * (i as u32 % 2), 16 + 32 * (i as u32 / 2));
        let p = out.get_pixel(x, y).0;
        assert!(
            p.iter().zip(q).all(|(a, b)| a.abs_diff(*b) <= 10),
            "quadrant {i}: {p:?} vs {q:?}"
        );
    }
}

#[test]
fn explicit_palette_is_obeyed() {
    let palette = vec![[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]];
    let img = DynamicImage::ImageRgb8(gradient_rgb(96, 64));
    let out = pixelate(&img, &params(24, Palette::Colors(palette.clone()), false))
        .unwrap()
        .to_rgb8();
    for p in out.pixels() {
        assert!(palette.contains(&p.0), "{:?} not in palette", p.0);
    }
    // Nearest colour: a reddish image maps to red, a dark one to black.
    let reddish = DynamicImage::ImageRgb8(RgbImage::from_pixel(16, 16, Rgb([200, 40, 30])));
    let out = pixelate(
        &reddish,
        &params(4, Palette::Colors(palette.clone()), false),
    )
    .unwrap();
    assert_eq!(
        distinct_colors(&out).into_iter().collect::<Vec<_>>(),
        vec![[255, 0, 0, 255]]
    );
    let dark = DynamicImage::ImageRgb8(RgbImage::from_pixel(16, 16, Rgb([30, 30, 40])));
    let out = pixelate(&dark, &params(4, Palette::Colors(palette), false)).unwrap();
    assert_eq!(
        distinct_colors(&out).into_iter().collect::<Vec<_>>(),
        vec![[0, 0, 0, 255]]
    );
}

/// Blue 64x64 with one red 8x8 block exactly on cell (3, 3) of an 8x8 grid.
fn blue_with_red_cell() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| {
        Rgb(if (24..32).contains(&x) && (24..32).contains(&y) {
            [230, 10, 10]
        } else {
            [10, 10, 230]
        })
    }))
}

#[test]
fn remove_noise_removes_an_isolated_cell() {
    let img = blue_with_red_cell();
    for palette in [
        Palette::Keep,
        Palette::Size(4),
        Palette::Colors(vec![[10, 10, 230], [230, 10, 10]]),
    ] {
        let kept = pixelate(&img, &params(8, palette.clone(), false)).unwrap();
        assert_eq!(distinct_colors(&kept).len(), 2, "{palette:?}");
        let cleaned = pixelate(&img, &params(8, palette.clone(), true)).unwrap();
        assert_eq!(
            distinct_colors(&cleaned).into_iter().collect::<Vec<_>>(),
            vec![[10, 10, 230, 255]],
            "{palette:?}"
        );
    }
    // A 2x2-cell block is not noise and survives.
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| {
        Rgb(if (16..32).contains(&x) && (16..32).contains(&y) {
            [230, 10, 10]
        } else {
            [10, 10, 230]
        })
    }));
    let out = pixelate(&img, &params(8, Palette::Keep, true)).unwrap();
    assert_eq!(distinct_colors(&out).len(), 2);
}

#[test]
fn alpha_becomes_binary_and_does_not_darken() {
    // 16px checkerboard of opaque orange / transparent, 4x4 grid of 16px cells.
    let img = DynamicImage::ImageRgba8(checker_rgba(64, 64, 16, [250, 120, 0, 255], [0, 0, 0, 0]));
    let out = pixelate(&img, &params(4, Palette::Keep, false)).unwrap();
    assert!(matches!(out, DynamicImage::ImageRgba8(_)));
    assert_eq!(out.to_rgba8().as_raw(), img.to_rgba8().as_raw());

    // Cells that are 3/4 opaque white, 1/4 transparent black: opaque pure white.
    let img = RgbaImage::from_fn(32, 32, |x, y| {
        if x % 8 < 4 && y % 8 < 4 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([255, 255, 255, 255])
        }
    });
    let out = pixelate(
        &DynamicImage::ImageRgba8(img),
        &params(4, Palette::Keep, false),
    )
    .unwrap();
    assert!(out.to_rgba8().pixels().all(|p| p.0 == [255, 255, 255, 255]));

    // Mean alpha just below / at 128.
    for (alpha, expect) in [
        (127u8, [0, 0, 0, 0]),
        (128, [40, 80, 120, 255]),
        (250, [40, 80, 120, 255]),
    ] {
        let img =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(16, 16, Rgba([40, 80, 120, alpha])));
        let out = pixelate(&img, &params(4, Palette::Keep, false)).unwrap();
        assert!(
            out.to_rgba8().pixels().all(|p| p.0 == expect),
            "alpha {alpha}"
        );
    }

    // With a palette, transparent cells stay transparent and the rest use the palette.
    let img = DynamicImage::ImageRgba8(gradient_rgba(64, 64));
    let palette = vec![[255, 0, 0], [0, 255, 0]];
    let out = pixelate(&img, &params(16, Palette::Colors(palette), true)).unwrap();
    for p in out.to_rgba8().pixels() {
        assert!(
            [[0, 0, 0, 0], [255, 0, 0, 255], [0, 255, 0, 255]].contains(&p.0),
            "{:?}",
            p.0
        );
    }
}

#[test]
fn invalid_params_are_rejected() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(32, 32));
    let field = |p: PixelateParams| match pixelate(&img, &p) {
        Err(OpsError::InvalidParam { field, .. }) => field,
        other => panic!("expected InvalidParam, got {other:?}"),
    };
    assert_eq!(field(params(1, Palette::Keep, false)), "grid_size");
    assert_eq!(field(params(513, Palette::Keep, false)), "grid_size");
    assert_eq!(field(params(8, Palette::Size(1), false)), "palette");
    assert_eq!(field(params(8, Palette::Size(257), false)), "palette");
    assert_eq!(field(params(8, Palette::Colors(vec![]), false)), "palette");
    assert_eq!(
        field(params(8, Palette::Colors(vec![[1, 2, 3]; 257]), false)),
        "palette"
    );
    // The extremes are accepted.
    assert!(pixelate(&img, &params(2, Palette::Size(2), true)).is_ok());
    assert!(pixelate(&img, &params(512, Palette::Size(256), true)).is_ok());
    assert!(pixelate(&img, &params(8, Palette::Colors(vec![[1, 2, 3]]), true)).is_ok());
}

#[test]
fn fully_transparent_image_stays_transparent() {
    let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(40, 30, Rgba([90, 10, 10, 0])));
    for palette in [
        Palette::Keep,
        Palette::Size(4),
        Palette::Colors(vec![[1, 2, 3]]),
    ] {
        let out = pixelate(&img, &params(10, palette, true)).unwrap();
        assert!(out.to_rgba8().pixels().all(|p| p.0 == [0, 0, 0, 0]));
    }
}
