//! resize / resize_fit / upscale / scaled_size.

use easel_imageops::image::{
    DynamicImage, GenericImageView, Rgb32FImage, RgbImage, Rgba, RgbaImage,
};
use easel_imageops::{
    resize, resize_fit, scaled_size, upscale, Filter, Fit, OpsError, ScaleTarget,
};

use crate::common::*;

const FILTERS: [Filter; 4] = [
    Filter::Nearest,
    Filter::Bilinear,
    Filter::CatmullRom,
    Filter::Lanczos3,
];

#[test]
fn resize_gives_exact_size_and_sensible_types() {
    let inputs = [
        DynamicImage::ImageRgb8(gradient_rgb(50, 30)),
        DynamicImage::ImageRgba8(gradient_rgba(50, 30)),
        DynamicImage::ImageLuma8(gray_gradient(50, 30)),
        DynamicImage::ImageLumaA8(gray_alpha(50, 30)),
    ];
    for img in &inputs {
        for filter in FILTERS {
            for (w, h) in [(25, 15), (101, 7), (1, 1), (50, 30), (128, 96)] {
                let out = resize(img, w, h, filter).unwrap();
                assert_eq!((out.width(), out.height()), (w, h), "{filter:?}");
                assert_eq!(out.color(), img.color(), "8-bit types are kept");
            }
        }
    }
    // Other types become 8-bit.
    let rgb16 = DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(gradient_rgb(20, 20)).to_rgb16());
    assert!(matches!(
        resize(&rgb16, 10, 10, Filter::Lanczos3).unwrap(),
        DynamicImage::ImageRgb8(_)
    ));
    let rgba16 =
        DynamicImage::ImageRgba16(DynamicImage::ImageRgba8(gradient_rgba(20, 20)).to_rgba16());
    assert!(matches!(
        resize(&rgba16, 10, 10, Filter::Lanczos3).unwrap(),
        DynamicImage::ImageRgba8(_)
    ));
    let f32img = DynamicImage::ImageRgb32F(Rgb32FImage::from_pixel(
        8,
        8,
        easel_imageops::image::Rgb([0.5, 0.25, 1.0]),
    ));
    let out = resize(&f32img, 4, 4, Filter::Bilinear).unwrap();
    assert!(matches!(out, DynamicImage::ImageRgb8(_)));
    assert_eq!(out.get_pixel(2, 2).0, [128, 64, 255, 255]);
    let l16 = DynamicImage::ImageLuma16(easel_imageops::image::ImageBuffer::from_fn(
        20,
        20,
        |x, y| easel_imageops::image::Luma([((x + y) * 1000) as u16]),
    ));
    assert!(matches!(
        resize(&l16, 10, 10, Filter::Lanczos3).unwrap(),
        DynamicImage::ImageLuma8(_)
    ));
}

#[test]
fn zero_sizes_are_rejected() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(10, 10));
    assert!(matches!(
        resize(&img, 0, 10, Filter::Nearest),
        Err(OpsError::InvalidParam { field: "width", .. })
    ));
    assert!(matches!(
        resize(&img, 10, 0, Filter::Nearest),
        Err(OpsError::InvalidParam {
            field: "height",
            ..
        })
    ));
    assert!(matches!(
        resize_fit(&img, 0, 10, Fit::Cover, Filter::Nearest),
        Err(OpsError::InvalidParam { .. })
    ));
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 0));
    assert!(matches!(
        resize(&empty, 10, 10, Filter::Nearest),
        Err(OpsError::InvalidParam { field: "image", .. })
    ));
}

#[test]
fn scaled_size_rounds_and_keeps_aspect() {
    // Width/Height: other side rounded half up, at least 1.
    assert_eq!(scaled_size(1000, 333, &ScaleTarget::Width(500)), (500, 167)); // 166.5
    assert_eq!(
        scaled_size(333, 1000, &ScaleTarget::Height(500)),
        (167, 500)
    );
    assert_eq!(scaled_size(1000, 334, &ScaleTarget::Width(500)), (500, 167));
    assert_eq!(scaled_size(1000, 332, &ScaleTarget::Width(500)), (500, 166));
    assert_eq!(
        scaled_size(640, 480, &ScaleTarget::Width(1024)),
        (1024, 768)
    );
    assert_eq!(
        scaled_size(640, 480, &ScaleTarget::Height(1080)),
        (1440, 1080)
    );
    assert_eq!(scaled_size(1000, 1, &ScaleTarget::Width(10)), (10, 1));
    assert_eq!(scaled_size(1, 1000, &ScaleTarget::Height(10)), (1, 10));
    // Factor: both sides.
    for k in 1..=8u32 {
        assert_eq!(
            scaled_size(37, 23, &ScaleTarget::Factor(k as f32)),
            (37 * k, 23 * k)
        );
    }
    assert_eq!(scaled_size(3, 3, &ScaleTarget::Factor(1.5)), (5, 5)); // 4.5 rounds up
    assert_eq!(scaled_size(10, 10, &ScaleTarget::Factor(0.01)), (1, 1));
    assert_eq!(
        scaled_size(
            7,
            9,
            &ScaleTarget::Size {
                width: 100,
                height: 3
            }
        ),
        (100, 3)
    );
}

#[test]
fn upscale_factors_one_to_eight() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(16, 12));
    for k in 1..=8u32 {
        let out = upscale(&img, ScaleTarget::Factor(k as f32), u64::MAX).unwrap();
        assert_eq!((out.width(), out.height()), (16 * k, 12 * k));
    }
    let out = upscale(&img, ScaleTarget::Width(40), 1 << 20).unwrap();
    assert_eq!((out.width(), out.height()), (40, 30));
    let out = upscale(&img, ScaleTarget::Height(17), 1 << 20).unwrap();
    assert_eq!((out.width(), out.height()), (23, 17)); // 22.67
    let out = upscale(
        &img,
        ScaleTarget::Size {
            width: 33,
            height: 5,
        },
        1 << 20,
    )
    .unwrap();
    assert_eq!((out.width(), out.height()), (33, 5));
}

#[test]
fn upscale_checks_output_pixels() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(100, 50));
    assert_eq!(
        upscale(&img, ScaleTarget::Factor(4.0), 400 * 200 - 1).unwrap_err(),
        OpsError::TooLarge {
            width: 400,
            height: 200,
            max_pixels: 400 * 200 - 1
        }
    );
    assert!(upscale(&img, ScaleTarget::Factor(4.0), 400 * 200).is_ok());
    // Absurd requests fail on the limit, not on allocation.
    assert!(matches!(
        upscale(&img, ScaleTarget::Factor(1e9), 1 << 26),
        Err(OpsError::TooLarge { .. })
    ));
    assert!(matches!(
        upscale(&img, ScaleTarget::Width(4_000_000), 1 << 26),
        Err(OpsError::TooLarge {
            width: 4_000_000,
            height: 2_000_000,
            ..
        })
    ));
    for bad in [
        ScaleTarget::Factor(0.0),
        ScaleTarget::Factor(-2.0),
        ScaleTarget::Factor(f32::NAN),
        ScaleTarget::Factor(f32::INFINITY),
        ScaleTarget::Width(0),
        ScaleTarget::Height(0),
        ScaleTarget::Size {
            width: 0,
            height: 4,
        },
    ] {
        assert!(
            matches!(
                upscale(&img, bad, u64::MAX),
                Err(OpsError::InvalidParam { .. })
            ),
            "{bad:?}"
        );
    }
    let msg = upscale(&img, ScaleTarget::Factor(4.0), 1000)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("400x200") && msg.contains("1000"), "{msg}");
}

#[test]
fn lanczos_upscale_of_smooth_gradient_stays_smooth() {
    // A horizontal ramp 0, 8, 16, ... 248, constant down the columns.
    let src = RgbImage::from_fn(32, 8, |x, _| easel_imageops::image::Rgb([(x * 8) as u8; 3]));
    let out = upscale(
        &DynamicImage::ImageRgb8(src),
        ScaleTarget::Factor(4.0),
        u64::MAX,
    )
    .unwrap()
    .to_rgb8();
    assert_eq!(out.dimensions(), (128, 32));
    for y in 0..out.height() {
        for x in 1..out.width() {
            let (a, b) = (out.get_pixel(x - 1, y).0[0], out.get_pixel(x, y).0[0]);
            assert!(b + 1 >= a, "not monotone at ({x},{y}): {a} -> {b}");
            assert!(b <= a + 4, "jump at ({x},{y}): {a} -> {b}");
        }
        // Every row is identical to the first.
        for x in 0..out.width() {
            assert_eq!(out.get_pixel(x, y), out.get_pixel(x, 0));
        }
    }
    // The ends match the source's range.
    assert!(out.get_pixel(0, 0).0[0] <= 2);
    assert!(out.get_pixel(127, 0).0[0] >= 246);
}

#[test]
fn constant_image_stays_constant() {
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(
        20,
        20,
        easel_imageops::image::Rgb([123, 45, 67]),
    ));
    for filter in FILTERS {
        for (w, h) in [(60, 60), (7, 7), (33, 11)] {
            let out = resize(&rgb, w, h, filter).unwrap().to_rgb8();
            assert!(
                out.pixels().all(|p| p.0 == [123, 45, 67]),
                "{filter:?} {w}x{h}"
            );
        }
    }
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 20, Rgba([10, 200, 30, 128])));
    let out = upscale(&rgba, ScaleTarget::Factor(3.0), u64::MAX)
        .unwrap()
        .to_rgba8();
    for p in out.pixels() {
        let [r, g, b, a] = p.0;
        assert_eq!(a, 128);
        assert!(
            r.abs_diff(10) <= 1 && g.abs_diff(200) <= 1 && b.abs_diff(30) <= 1,
            "{:?}",
            p.0
        );
    }
}

/// Left half opaque white, right half fully transparent *black*.
fn white_over_transparent(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgba([255, 255, 255, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

#[test]
fn alpha_edges_have_no_dark_fringe() {
    let img = DynamicImage::ImageRgba8(white_over_transparent(64, 32));
    for filter in FILTERS {
        for (w, h) in [(23, 23), (192, 96), (50, 20)] {
            let out = resize(&img, w, h, filter).unwrap().to_rgba8();
            let mut partial = 0;
            for (x, _, p) in out.enumerate_pixels() {
                let [r, g, b, a] = p.0;
                if a > 0 {
                    assert!(
                        r >= 250 && g >= 250 && b >= 250,
                        "{filter:?} {w}x{h}: dark fringe {:?} at x={x}",
                        p.0
                    );
                }
                if a > 0 && a < 255 {
                    partial += 1;
                }
                // Well inside each half, alpha is exactly preserved.
                if x * 4 < w {
                    assert_eq!(a, 255, "{filter:?} {w}x{h} x={x}");
                }
                if x * 4 > 3 * w {
                    assert_eq!(a, 0, "{filter:?} {w}x{h} x={x}");
                }
            }
            if filter != Filter::Nearest && w != 50 {
                assert!(partial > 0, "{filter:?} {w}x{h}: expected a soft edge");
            }
        }
    }
}

#[test]
fn luma_alpha_edges_have_no_dark_fringe() {
    let img = DynamicImage::ImageLumaA8(easel_imageops::image::GrayAlphaImage::from_fn(
        40,
        10,
        |x, _| easel_imageops::image::LumaA(if x < 20 { [255, 255] } else { [0, 0] }),
    ));
    let out = resize(&img, 97, 10, Filter::Lanczos3).unwrap();
    let DynamicImage::ImageLumaA8(out) = out else {
        panic!("type changed")
    };
    for p in out.pixels() {
        if p.0[1] > 0 {
            assert!(p.0[0] >= 250, "{:?}", p.0);
        }
    }
}

#[test]
fn fit_modes() {
    let wide = DynamicImage::ImageRgb8(gradient_rgb(200, 100));
    let tall = DynamicImage::ImageRgb8(gradient_rgb(100, 200));
    let size = |img: DynamicImage| (img.width(), img.height());

    assert_eq!(
        size(resize_fit(&wide, 64, 64, Fit::Contain, Filter::Lanczos3).unwrap()),
        (64, 32)
    );
    assert_eq!(
        size(resize_fit(&tall, 64, 64, Fit::Contain, Filter::Lanczos3).unwrap()),
        (32, 64)
    );
    assert_eq!(
        size(resize_fit(&wide, 300, 100, Fit::Contain, Filter::Lanczos3).unwrap()),
        (200, 100)
    );
    assert_eq!(
        size(resize_fit(&wide, 333, 999, Fit::Contain, Filter::Lanczos3).unwrap()),
        (333, 167)
    );
    assert_eq!(
        size(resize_fit(&wide, 64, 64, Fit::Cover, Filter::Lanczos3).unwrap()),
        (64, 64)
    );
    assert_eq!(
        size(resize_fit(&tall, 50, 20, Fit::Cover, Filter::Bilinear).unwrap()),
        (50, 20)
    );
    assert_eq!(
        size(resize_fit(&wide, 50, 70, Fit::Exact, Filter::Nearest).unwrap()),
        (50, 70)
    );

    // Three vertical bands red | green | blue.
    let bands = DynamicImage::ImageRgb8(RgbImage::from_fn(300, 100, |x, _| {
        easel_imageops::image::Rgb(match x / 100 {
            0 => [255, 0, 0],
            1 => [0, 255, 0],
            _ => [0, 0, 255],
        })
    }));
    // Cover crops the centre square: only green remains.
    let cover = resize_fit(&bands, 50, 50, Fit::Cover, Filter::Bilinear)
        .unwrap()
        .to_rgb8();
    for x in [2, 25, 47] {
        let p = cover.get_pixel(x, 25).0;
        assert!(p[1] > 200 && p[0] < 60 && p[2] < 60, "x={x}: {p:?}");
    }
    // Contain keeps everything.
    let contain = resize_fit(&bands, 60, 60, Fit::Contain, Filter::Bilinear)
        .unwrap()
        .to_rgb8();
    assert_eq!(contain.dimensions(), (60, 20));
    assert_eq!(contain.get_pixel(5, 10).0, [255, 0, 0]);
    assert_eq!(contain.get_pixel(30, 10).0, [0, 255, 0]);
    assert_eq!(contain.get_pixel(55, 10).0, [0, 0, 255]);
}

#[test]
fn names_parse() {
    assert_eq!(Filter::from_name("nearest"), Some(Filter::Nearest));
    assert_eq!(Filter::from_name("bilinear"), Some(Filter::Bilinear));
    assert_eq!(Filter::from_name("catmull_rom"), Some(Filter::CatmullRom));
    assert_eq!(Filter::from_name("lanczos3"), Some(Filter::Lanczos3));
    assert_eq!(Filter::from_name("Lanczos"), Some(Filter::Lanczos3));
    assert_eq!(Filter::from_name("bogus"), None);
    assert_eq!(Fit::from_name("contain"), Some(Fit::Contain));
    assert_eq!(Fit::from_name("cover"), Some(Fit::Cover));
    assert_eq!(Fit::from_name("exact"), Some(Fit::Exact));
    assert_eq!(Fit::from_name("zoom"), None);
    assert_eq!(
        serde_json::to_string(&Filter::CatmullRom).unwrap(),
        "\"catmull_rom\""
    );
    assert_eq!(
        serde_json::from_str::<Filter>("\"lanczos\"").unwrap(),
        Filter::Lanczos3
    );
    assert_eq!(
        serde_json::from_str::<Fit>("\"cover\"").unwrap(),
        Fit::Cover
    );
}

#[test]
fn moderate_upscale_then_encode() {
    // The one larger case: 256x256 -> 1024x1024 and a PNG encode.
    let img = DynamicImage::ImageRgba8(gradient_rgba(256, 256));
    let big = upscale(&img, ScaleTarget::Factor(4.0), 1 << 20).unwrap();
    assert_eq!((big.width(), big.height()), (1024, 1024));
    let png = easel_imageops::encode(&big, &easel_imageops::Encoding::Png, &[]).unwrap();
    let back = easel_imageops::decode(&png, 1 << 20).unwrap();
    assert_eq!(back.to_rgba8().as_raw(), big.to_rgba8().as_raw());
}
