//! encode / read_png_text.

use easel_imageops::image::{DynamicImage, GenericImageView, Rgba, RgbaImage};
use easel_imageops::{decode, encode, probe, read_png_text, Encoding, ImageFormat, OpsError};

use crate::common::*;

fn roundtrip(img: &DynamicImage, enc: Encoding) -> DynamicImage {
    let bytes = encode(img, &enc, &[]).unwrap();
    assert_eq!(probe(&bytes).unwrap().format, enc.format());
    decode(&bytes, 1 << 20).unwrap()
}

#[test]
fn png_round_trip_is_exact() {
    let images = [
        DynamicImage::ImageRgb8(gradient_rgb(33, 17)),
        DynamicImage::ImageRgba8(gradient_rgba(33, 17)),
        DynamicImage::ImageLuma8(gray_gradient(33, 17)),
        DynamicImage::ImageLumaA8(gray_alpha(33, 17)),
        DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(gradient_rgb(33, 17)).to_rgb16()),
        DynamicImage::ImageRgba16(easel_imageops::image::ImageBuffer::from_fn(9, 5, |x, y| {
            Rgba([x as u16 * 7000, y as u16 * 300 + 1, 65535, 257 * x as u16])
        })),
    ];
    for img in &images {
        let back = roundtrip(img, Encoding::Png);
        assert_eq!(back.color(), img.color());
        assert_eq!(back.as_bytes(), img.as_bytes(), "{:?}", img.color());
    }
    // Float images are written as 8-bit.
    let f = DynamicImage::ImageRgba32F(DynamicImage::ImageRgba8(gradient_rgba(8, 8)).to_rgba32f());
    let back = roundtrip(&f, Encoding::Png);
    assert_eq!(back.to_rgba8().as_raw(), gradient_rgba(8, 8).as_raw());
}

#[test]
fn jpeg_round_trip_is_close_and_drops_alpha() {
    let img = gradient_rgb(64, 48);
    let back = roundtrip(
        &DynamicImage::ImageRgb8(img.clone()),
        Encoding::Jpeg { quality: 90 },
    );
    assert!(matches!(back, DynamicImage::ImageRgb8(_)));
    let err = mean_abs_diff(&img, &back.to_rgb8());
    assert!(err < 3.0, "mean error {err}");
    // Lower quality: smaller file, larger (but bounded) error.
    let small = encode(
        &DynamicImage::ImageRgb8(img.clone()),
        &Encoding::Jpeg { quality: 20 },
        &[],
    )
    .unwrap();
    let large = encode(
        &DynamicImage::ImageRgb8(img.clone()),
        &Encoding::Jpeg { quality: 95 },
        &[],
    )
    .unwrap();
    assert!(small.len() < large.len());

    // Alpha is composited onto white.
    let rgba = DynamicImage::ImageRgba8(checker_rgba(32, 32, 16, [0, 0, 0, 255], [0, 0, 0, 0]));
    let back = roundtrip(&rgba, Encoding::Jpeg { quality: 95 }).to_rgb8();
    assert!(back.get_pixel(8, 8).0.iter().all(|&v| v < 20));
    assert!(back.get_pixel(24, 8).0.iter().all(|&v| v > 235));
    let gray_alpha = DynamicImage::ImageLumaA8(easel_imageops::image::GrayAlphaImage::from_pixel(
        8,
        8,
        easel_imageops::image::LumaA([0, 0]),
    ));
    let back = roundtrip(&gray_alpha, Encoding::Jpeg { quality: 95 });
    assert!(back.to_luma8().pixels().all(|p| p.0[0] > 245));
}

#[test]
fn webp_lossless_is_exact_and_lossy_is_close() {
    // Includes fully transparent pixels that still carry colour.
    let rgba = DynamicImage::ImageRgba8(gradient_rgba(40, 24));
    let back = roundtrip(&rgba, Encoding::Webp { quality: 100 });
    assert_eq!(back.to_rgba8().as_raw(), rgba.to_rgba8().as_raw());
    let rgb = DynamicImage::ImageRgb8(gradient_rgb(40, 24));
    let back = roundtrip(&rgb, Encoding::Webp { quality: 100 });
    assert_eq!(back.to_rgb8().as_raw(), rgb.to_rgb8().as_raw());

    let img = gradient_rgb(64, 48);
    let back = roundtrip(
        &DynamicImage::ImageRgb8(img.clone()),
        Encoding::Webp { quality: 85 },
    );
    assert_eq!(back.dimensions(), (64, 48));
    let err = mean_abs_diff(&img, &back.to_rgb8());
    assert!(err < 4.0, "mean error {err}");
    // Lossy keeps alpha.
    let back = roundtrip(&rgba, Encoding::Webp { quality: 80 }).to_rgba8();
    let orig = rgba.to_rgba8();
    let alpha_err: u32 = back
        .pixels()
        .zip(orig.pixels())
        .map(|(a, b)| u32::from(a.0[3].abs_diff(b.0[3])))
        .sum();
    assert!(alpha_err / (40 * 24) < 8, "alpha error {alpha_err}");
    // Grey input works too.
    let gray = DynamicImage::ImageLuma8(gray_gradient(20, 20));
    let back = roundtrip(&gray, Encoding::Webp { quality: 100 });
    assert_eq!(back.to_luma8().as_raw(), gray.as_bytes());
}

#[test]
fn quality_out_of_range_is_rejected() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(8, 8));
    for enc in [
        Encoding::Jpeg { quality: 0 },
        Encoding::Jpeg { quality: 101 },
        Encoding::Webp { quality: 0 },
        Encoding::Webp { quality: 255 },
    ] {
        assert!(
            matches!(
                encode(&img, &enc, &[]),
                Err(OpsError::InvalidParam {
                    field: "quality",
                    ..
                })
            ),
            "{enc:?}"
        );
    }
    for q in [1, 50, 100] {
        assert!(encode(&img, &Encoding::Jpeg { quality: q }, &[]).is_ok());
        assert!(encode(&img, &Encoding::Webp { quality: q }, &[]).is_ok());
    }
    assert_eq!(Encoding::Webp { quality: 5 }.format(), ImageFormat::Webp);
}

fn is_text_chunk(kind: &str) -> bool {
    matches!(kind, "tEXt" | "zTXt" | "iTXt")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn png_text_round_trip() {
    let text = pairs(&[
        ("parameters", "a cat, steps: 20, cfg: 7.5, seed: 42"),
        ("Title", "café crème"),
        ("prompt", "猫がいる 🐈 — “quotes”"),
        ("Comment", ""),
        ("workflow", &"{\"k\": [1, 2, 3]} ".repeat(500)),
    ]);
    let img = DynamicImage::ImageRgba8(gradient_rgba(16, 16));
    let png = encode(&img, &Encoding::Png, &text).unwrap();
    assert_eq!(read_png_text(&png), text);

    // tEXt for Latin-1, iTXt otherwise, all before the image data.
    let chunks = png_chunk_types(&png);
    assert_eq!(chunks.first().map(String::as_str), Some("IHDR"));
    assert_eq!(chunks.last().map(String::as_str), Some("IEND"));
    let first_idat = chunks.iter().position(|c| c == "IDAT").unwrap();
    let text_chunks: Vec<&str> = chunks[..first_idat]
        .iter()
        .map(String::as_str)
        .filter(|c| is_text_chunk(c))
        .collect();
    assert_eq!(text_chunks.iter().filter(|c| **c == "tEXt").count(), 4);
    assert_eq!(text_chunks.iter().filter(|c| **c == "iTXt").count(), 1);
    assert!(!chunks[first_idat..].iter().any(|c| is_text_chunk(c)));

    // The image still decodes to the same pixels.
    assert_eq!(
        decode(&png, 1 << 20).unwrap().to_rgba8().as_raw(),
        img.to_rgba8().as_raw()
    );
}

#[test]
fn read_png_text_handles_ztxt_and_compressed_itxt() {
    // Written with the png crate directly, so it exercises chunks we never emit.
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 2, 2);
        enc.set_color(png::ColorType::Rgb);
        enc.add_ztxt_chunk("Software".into(), "Easel ©".repeat(100))
            .unwrap();
        enc.add_text_chunk("Author".into(), "me".into()).unwrap();
        let mut w = enc.write_header().unwrap();
        let mut itxt = png::text_metadata::ITXtChunk::new("Beschreibung", "Größe 🙂 ".repeat(50));
        itxt.compressed = true;
        itxt.compress_text().unwrap();
        w.write_image_data(&[0; 12]).unwrap();
        // Text after the image data must be found too.
        w.write_text_chunk(&itxt).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(
        read_png_text(&bytes),
        pairs(&[
            ("Author", "me"),
            ("Software", &"Easel ©".repeat(100)),
            ("Beschreibung", &"Größe 🙂 ".repeat(50)),
        ])
    );
}

#[test]
fn read_png_text_of_non_png_is_empty() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(8, 8));
    let jpeg = encode(&img, &Encoding::Jpeg { quality: 80 }, &[]).unwrap();
    assert!(read_png_text(&jpeg).is_empty());
    assert!(read_png_text(b"").is_empty());
    assert!(read_png_text(b"tEXtkey\0value").is_empty());
    let png = encode(&img, &Encoding::Png, &pairs(&[("a", "b")])).unwrap();
    assert_eq!(read_png_text(&png), pairs(&[("a", "b")]));
    // Truncated files give what was readable, without panicking.
    for cut in [8, 20, 33, 40, png.len() - 5] {
        let _ = read_png_text(&png[..cut]);
    }
    assert_eq!(read_png_text(&png[..png.len() - 20]), pairs(&[("a", "b")]));
}

#[test]
fn bad_text_keywords_are_rejected() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(4, 4));
    for (k, v) in [
        ("", "x"),
        ("日本", "x"),
        ("nul\0key", "x"),
        ("k", "nul\0text"),
    ] {
        let r = encode(&img, &Encoding::Png, &pairs(&[(k, v)]));
        assert!(
            matches!(r, Err(OpsError::InvalidParam { field: "text", .. })),
            "{k:?}"
        );
    }
    let long = "k".repeat(80);
    assert!(encode(&img, &Encoding::Png, &pairs(&[(&long, "x")])).is_err());
    assert!(encode(&img, &Encoding::Png, &pairs(&[(&long[..79], "x")])).is_ok());
    // Text is ignored for other formats.
    assert!(encode(
        &img,
        &Encoding::Jpeg { quality: 80 },
        &pairs(&[("日本", "x")])
    )
    .is_ok());
}

#[test]
fn empty_image_is_rejected() {
    let img = DynamicImage::ImageRgba8(RgbaImage::new(0, 5));
    assert!(matches!(
        encode(&img, &Encoding::Png, &[]),
        Err(OpsError::InvalidParam { .. })
    ));
}
