//! Recognising and decoding image bytes.
//!
//! [`probe`] reads only the header (format and dimensions). [`decode`] reads
//! the header first and refuses images above a pixel budget *before* any pixel
//! buffer is allocated, so a small file claiming enormous dimensions cannot
//! exhaust memory.
//!
//! Both honour the EXIF orientation tag (common in phone photos): the reported
//! dimensions and the decoded pixels are the image as it should be displayed.
//! Animated GIF/WebP decode to their first frame.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use crate::OpsError;

/// The file formats this crate can decode (and, for PNG/JPEG/WebP, encode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    #[serde(alias = "jpg")]
    Jpeg,
    Webp,
    Gif,
    Bmp,
}

impl ImageFormat {
    /// The MIME type, e.g. `image/png`.
    pub fn mime(&self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Bmp => "image/bmp",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
        }
    }

    /// Parses a format name or extension, case-insensitively: `png`, `jpeg`,
    /// `jpg`, `webp`, `gif`, `bmp`. A leading dot and `image/...` MIME types
    /// are accepted too.
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower
            .strip_prefix("image/")
            .or_else(|| lower.strip_prefix('.'))
            .unwrap_or(&lower);
        match bare {
            "png" => Some(ImageFormat::Png),
            "jpeg" | "jpg" => Some(ImageFormat::Jpeg),
            "webp" => Some(ImageFormat::Webp),
            "gif" => Some(ImageFormat::Gif),
            "bmp" => Some(ImageFormat::Bmp),
            _ => None,
        }
    }

    fn from_image_format(format: image::ImageFormat) -> Option<Self> {
        match format {
            image::ImageFormat::Png => Some(ImageFormat::Png),
            image::ImageFormat::Jpeg => Some(ImageFormat::Jpeg),
            image::ImageFormat::WebP => Some(ImageFormat::Webp),
            image::ImageFormat::Gif => Some(ImageFormat::Gif),
            image::ImageFormat::Bmp => Some(ImageFormat::Bmp),
            _ => None,
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Webp => "WebP",
            ImageFormat::Gif => "GIF",
            ImageFormat::Bmp => "BMP",
        })
    }
}

/// What [`probe`] found out about some image bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Width as displayed (after EXIF orientation).
    pub width: u32,
    /// Height as displayed (after EXIF orientation).
    pub height: u32,
}

/// Reads the header only (no full decode): format and dimensions.
///
/// Fails with [`OpsError::Decode`] if the bytes are not an image in one of
/// the supported formats.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, OpsError> {
    let (mut decoder, format) = open(bytes, Limits::default())?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(OpsError::Decode("the image has no pixels".into()));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = oriented_size(width, height, orientation);
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

/// Fully decodes `bytes`, refusing (before allocating the pixel buffer) any
/// image whose `width * height` exceeds `max_pixels`.
///
/// The EXIF orientation is applied, so the result is upright.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, OpsError> {
    // The allocation cap is a second line of defence for decoder-internal
    // buffers; 16 bytes per pixel covers the widest colour type (RGBA f32).
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16).saturating_add(64 << 20));
    let (mut decoder, _) = open(bytes, limits)?;

    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(OpsError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(OpsError::Decode("the image has no pixels".into()));
    }

    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Sniffs the format from the magic bytes and builds a decoder, which reads
/// the headers only.
fn open(bytes: &[u8], limits: Limits) -> Result<(impl ImageDecoder + '_, ImageFormat), OpsError> {
    if bytes.is_empty() {
        return Err(OpsError::Decode("no data".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| OpsError::Decode(e.to_string()))?;
    let detected = reader.format().ok_or_else(|| {
        OpsError::Decode(
            "not a recognised image format (expected PNG, JPEG, WebP, GIF or BMP)".into(),
        )
    })?;
    let format = ImageFormat::from_image_format(detected).ok_or_else(|| {
        OpsError::Decode(format!(
            "{detected:?} images are not supported (expected PNG, JPEG, WebP, GIF or BMP)"
        ))
    })?;
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(decode_error)?;
    Ok((decoder, format))
}

fn oriented_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

fn decode_error(e: ImageError) -> OpsError {
    match e {
        ImageError::Limits(l) => OpsError::Decode(format!("image needs too much memory: {l}")),
        other => OpsError::Decode(other.to_string()),
    }
}
