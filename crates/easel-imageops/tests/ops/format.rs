//! probe / decode / ImageFormat.

use std::io::Cursor;

use easel_imageops::image::codecs::jpeg::JpegEncoder;
use easel_imageops::image::{DynamicImage, ImageEncoder};
use easel_imageops::{decode, encode, probe, Encoding, ImageFormat, ImageInfo, OpsError};

use crate::common::*;

fn image_crate_bytes(img: &DynamicImage, format: easel_imageops::image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn probe_reports_format_and_size() {
    let img = DynamicImage::ImageRgb8(gradient_rgb(40, 30));
    let cases = [
        (encode(&img, &Encoding::Png, &[]).unwrap(), ImageFormat::Png),
        (
            encode(&img, &Encoding::Jpeg { quality: 80 }, &[]).unwrap(),
            ImageFormat::Jpeg,
        ),
        (
            encode(&img, &Encoding::Webp { quality: 80 }, &[]).unwrap(),
            ImageFormat::Webp,
        ),
        (
            encode(&img, &Encoding::Webp { quality: 100 }, &[]).unwrap(),
            ImageFormat::Webp,
        ),
        (
            image_crate_bytes(&img, easel_imageops::image::ImageFormat::Gif),
            ImageFormat::Gif,
        ),
        (
            image_crate_bytes(&img, easel_imageops::image::ImageFormat::Bmp),
            ImageFormat::Bmp,
        ),
    ];
    for (bytes, format) in cases {
        assert_eq!(
            probe(&bytes).unwrap(),
            ImageInfo {
                format,
                width: 40,
                height: 30
            },
            "{format:?}"
        );
        let decoded = decode(&bytes, 40 * 30).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (40, 30), "{format:?}");
    }
}

#[test]
fn garbage_is_a_decode_error() {
    for bytes in [&b""[..], b"hello, world", &[0u8; 64], b"\x89PNG\r\n\x1a\n"] {
        assert!(
            matches!(probe(bytes), Err(OpsError::Decode(_))),
            "probe {bytes:?}"
        );
        assert!(
            matches!(decode(bytes, 1 << 20), Err(OpsError::Decode(_))),
            "decode {bytes:?}"
        );
    }
    // A valid header followed by garbage pixel data.
    let mut png = encode(
        &DynamicImage::ImageRgb8(gradient_rgb(16, 16)),
        &Encoding::Png,
        &[],
    )
    .unwrap();
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut png[idat + 4..idat + 20] {
        *b ^= 0x5a;
    }
    assert!(matches!(decode(&png, 1 << 20), Err(OpsError::Decode(_))));
    // The message is meant for users.
    let msg = decode(b"hello", 100).unwrap_err().to_string();
    assert!(msg.starts_with("could not read the image"), "{msg}");
}

/// A tiny PNG whose IHDR claims `width` x `height`, with a correct CRC.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = encode(
        &DynamicImage::ImageRgba8(gradient_rgba(2, 2)),
        &Encoding::Png,
        &[],
    )
    .unwrap();
    // Signature (8) + length (4) + "IHDR" (4), then width and height.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn decode_refuses_oversized_image_before_decoding() {
    // 100k x 100k RGBA would need 40 GB: this must fail fast, not OOM.
    let png = png_claiming(100_000, 100_000);
    assert_eq!(
        probe(&png).unwrap(),
        ImageInfo {
            format: ImageFormat::Png,
            width: 100_000,
            height: 100_000
        }
    );
    assert_eq!(
        decode(&png, 16 << 20).unwrap_err(),
        OpsError::TooLarge {
            width: 100_000,
            height: 100_000,
            max_pixels: 16 << 20
        }
    );
    // Huge limit: still refused by the limit check, since 1e10 > 9e9.
    assert!(matches!(
        decode(&png, 9_000_000_000),
        Err(OpsError::TooLarge { .. })
    ));
}

#[test]
fn decode_limit_is_inclusive() {
    let png = encode(
        &DynamicImage::ImageRgb8(gradient_rgb(64, 32)),
        &Encoding::Png,
        &[],
    )
    .unwrap();
    assert!(decode(&png, 64 * 32).is_ok());
    assert_eq!(
        decode(&png, 64 * 32 - 1).unwrap_err(),
        OpsError::TooLarge {
            width: 64,
            height: 32,
            max_pixels: 64 * 32 - 1
        }
    );
    let jpeg = encode(
        &DynamicImage::ImageRgb8(gradient_rgb(64, 32)),
        &Encoding::Jpeg { quality: 80 },
        &[],
    )
    .unwrap();
    assert!(matches!(
        decode(&jpeg, 100),
        Err(OpsError::TooLarge {
            width: 64,
            height: 32,
            ..
        })
    ));
}

#[test]
fn exif_orientation_is_applied() {
    // A minimal little-endian Exif/TIFF block with Orientation = 6 (rotate 90° CW).
    let exif: Vec<u8> = [
        &b"II*\0"[..],
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
        &1u32.to_le_bytes(),
        &6u16.to_le_bytes(),
        &[0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    // Left half black, right half white, 40 wide and 20 high as stored.
    let stored = easel_imageops::image::RgbImage::from_fn(40, 20, |x, _| {
        easel_imageops::image::Rgb(if x < 20 { [0; 3] } else { [255; 3] })
    });
    let mut jpeg = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut jpeg, 95);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(
        stored.as_raw(),
        40,
        20,
        easel_imageops::image::ExtendedColorType::Rgb8,
    )
    .unwrap();

    let info = probe(&jpeg).unwrap();
    assert_eq!((info.width, info.height), (20, 40));
    let img = decode(&jpeg, 10_000).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (20, 40));
    // Rotated 90° clockwise: the stored left (black) half is now on top.
    assert!(img.get_pixel(10, 5).0[0] < 30);
    assert!(img.get_pixel(10, 35).0[0] > 225);
}

#[test]
fn decode_keeps_colour_type() {
    let gray = DynamicImage::ImageLuma8(gray_gradient(16, 16));
    let png = encode(&gray, &Encoding::Png, &[]).unwrap();
    assert!(matches!(
        decode(&png, 1 << 20).unwrap(),
        DynamicImage::ImageLuma8(_)
    ));
    let rgba = DynamicImage::ImageRgba8(gradient_rgba(16, 16));
    let png = encode(&rgba, &Encoding::Png, &[]).unwrap();
    assert!(matches!(
        decode(&png, 1 << 20).unwrap(),
        DynamicImage::ImageRgba8(_)
    ));
}

#[test]
fn format_names() {
    for (name, f) in [
        ("png", ImageFormat::Png),
        ("PNG", ImageFormat::Png),
        ("jpeg", ImageFormat::Jpeg),
        ("jpg", ImageFormat::Jpeg),
        (".jpg", ImageFormat::Jpeg),
        ("image/webp", ImageFormat::Webp),
        ("webp", ImageFormat::Webp),
        ("gif", ImageFormat::Gif),
        ("bmp", ImageFormat::Bmp),
    ] {
        assert_eq!(ImageFormat::from_name(name), Some(f), "{name}");
    }
    assert_eq!(ImageFormat::from_name("tiff"), None);
    assert_eq!(ImageFormat::from_name(""), None);

    assert_eq!(ImageFormat::Png.mime(), "image/png");
    assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
    assert_eq!(ImageFormat::Webp.mime(), "image/webp");
    assert_eq!(ImageFormat::Jpeg.extension(), "jpg");
    assert_eq!(ImageFormat::Webp.extension(), "webp");
    for f in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Webp,
        ImageFormat::Gif,
        ImageFormat::Bmp,
    ] {
        assert_eq!(ImageFormat::from_name(f.extension()), Some(f));
        assert_eq!(ImageFormat::from_name(f.mime()), Some(f));
    }

    assert_eq!(
        serde_json::to_string(&ImageFormat::Jpeg).unwrap(),
        "\"jpeg\""
    );
    assert_eq!(
        serde_json::from_str::<ImageFormat>("\"jpg\"").unwrap(),
        ImageFormat::Jpeg
    );
}
