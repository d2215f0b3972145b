//! Encoding to PNG, JPEG and WebP, and reading PNG text chunks back.
//!
//! * **PNG** is written with the `png` crate so that text metadata (prompts,
//!   parameters, ...) can go in `tEXt`/`iTXt` chunks ahead of the image data.
//!   8- and 16-bit grey/RGB(A) are written as they are; other colour types
//!   become 8-bit RGB(A).
//! * **JPEG** has no alpha: transparent areas are composited onto white.
//! * **WebP** uses libwebp (via the `webp` crate): lossy at quality 1..=99,
//!   lossless at 100 (keeping the colour of fully transparent pixels, so the
//!   decoded pixels are exactly the input).
//!
//! [`read_png_text`] walks the PNG chunk list itself and returns every
//! `tEXt`, `zTXt` and `iTXt` entry, without decoding the pixels.

use std::borrow::Cow;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::{ImageFormat, OpsError};

/// Output encoding for [`encode()`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Lossless PNG.
    Png,
    /// JPEG at `quality` 1..=100.
    Jpeg { quality: u8 },
    /// WebP at `quality` 1..=100; 100 means lossless.
    Webp { quality: u8 },
}

impl Encoding {
    /// The file format this encoding produces.
    pub fn format(&self) -> ImageFormat {
        match self {
            Encoding::Png => ImageFormat::Png,
            Encoding::Jpeg { .. } => ImageFormat::Jpeg,
            Encoding::Webp { .. } => ImageFormat::Webp,
        }
    }
}

/// Largest width or height a WebP image can have.
pub const WEBP_MAX_SIDE: u32 = 16383;
/// Longest PNG text keyword, in (Latin-1) bytes.
pub const PNG_MAX_KEYWORD_LEN: usize = 79;
/// Cap on the decompressed size of all text [`read_png_text`] returns.
const MAX_TEXT_BYTES: usize = 16 << 20;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Encodes `img`.
///
/// For PNG each `(keyword, text)` pair of `text` is written as a text chunk
/// before the image data: `tEXt` when both are Latin-1, otherwise `iTXt`
/// (UTF-8). Keywords must be 1..=79 Latin-1 characters; neither keywords nor
/// texts may contain NUL. `text` is ignored for JPEG and WebP.
pub fn encode(
    img: &DynamicImage,
    enc: &Encoding,
    text: &[(String, String)],
) -> Result<Vec<u8>, OpsError> {
    crate::resize::check_source(img)?;
    match *enc {
        Encoding::Png => encode_png(img, text),
        Encoding::Jpeg { quality } => {
            check_quality(quality)?;
            encode_jpeg(img, quality)
        }
        Encoding::Webp { quality } => {
            check_quality(quality)?;
            encode_webp(img, quality)
        }
    }
}

/// Every text chunk (`tEXt`, `zTXt`, `iTXt`) of a PNG, in file order, as
/// `(keyword, text)`. Returns an empty vec for anything that is not a PNG;
/// malformed chunks are skipped.
pub fn read_png_text(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(&PNG_SIGNATURE[..]) else {
        return out;
    };
    let mut budget = MAX_TEXT_BYTES;
    // Each chunk: length (4, big endian), type (4), data (length), CRC (4).
    while rest.len() >= 12 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = &rest[4..8];
        let Some(data) = rest.get(8..8usize.saturating_add(len)) else {
            break; // truncated file
        };
        let entry = match kind {
            b"tEXt" => parse_text(data),
            b"zTXt" => parse_ztxt(data, budget),
            b"iTXt" => parse_itxt(data, budget),
            b"IEND" => break,
            _ => None,
        };
        if let Some((keyword, text)) = entry {
            budget = budget.saturating_sub(keyword.len() + text.len());
            out.push((keyword, text));
        }
        rest = rest.get(12 + len..).unwrap_or_default();
    }
    out
}

fn check_quality(quality: u8) -> Result<(), OpsError> {
    if (1..=100).contains(&quality) {
        Ok(())
    } else {
        Err(OpsError::invalid(
            "quality",
            format!("must be between 1 and 100, got {quality}"),
        ))
    }
}

// ---------------------------------------------------------------- PNG ----

fn encode_png(img: &DynamicImage, text: &[(String, String)]) -> Result<Vec<u8>, OpsError> {
    use png::{BitDepth, ColorType};

    let (color, depth, data): (ColorType, BitDepth, Cow<'_, [u8]>) = match img {
        DynamicImage::ImageLuma8(b) => (ColorType::Grayscale, BitDepth::Eight, b.as_raw().into()),
        DynamicImage::ImageLumaA8(b) => (
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            b.as_raw().into(),
        ),
        DynamicImage::ImageRgb8(b) => (ColorType::Rgb, BitDepth::Eight, b.as_raw().into()),
        DynamicImage::ImageRgba8(b) => (ColorType::Rgba, BitDepth::Eight, b.as_raw().into()),
        DynamicImage::ImageLuma16(b) => (ColorType::Grayscale, BitDepth::Sixteen, be16(b)),
        DynamicImage::ImageLumaA16(b) => (ColorType::GrayscaleAlpha, BitDepth::Sixteen, be16(b)),
        DynamicImage::ImageRgb16(b) => (ColorType::Rgb, BitDepth::Sixteen, be16(b)),
        DynamicImage::ImageRgba16(b) => (ColorType::Rgba, BitDepth::Sixteen, be16(b)),
        other if other.color().has_alpha() => (
            ColorType::Rgba,
            BitDepth::Eight,
            other.to_rgba8().into_raw().into(),
        ),
        other => (
            ColorType::Rgb,
            BitDepth::Eight,
            other.to_rgb8().into_raw().into(),
        ),
    };

    let png_err = |e: png::EncodingError| OpsError::Encode(format!("PNG: {e}"));
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, img.width(), img.height());
    encoder.set_color(color);
    encoder.set_depth(depth);
    // The fast deflate mode: on a 1-megapixel test image it was about 5x
    // quicker than the default level for a file about 13% larger, a good
    // trade for a server. Paeth suits photographic content.
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::FilterType::Paeth);
    for (keyword, value) in text {
        check_text(keyword, value)?;
    }
    let mut writer = encoder.write_header().map_err(png_err)?;
    // Written one by one (rather than through the encoder's info) so the
    // chunks appear in the order given, all before the image data.
    for (keyword, value) in text {
        if is_latin1(value) {
            writer.write_text_chunk(&png::text_metadata::TEXtChunk::new(keyword, value))
        } else {
            writer.write_text_chunk(&png::text_metadata::ITXtChunk::new(keyword, value))
        }
        .map_err(png_err)?;
    }
    writer.write_image_data(&data).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// 16-bit samples in PNG's big-endian byte order.
fn be16<P>(buf: &image::ImageBuffer<P, Vec<u16>>) -> Cow<'static, [u8]>
where
    P: image::Pixel<Subpixel = u16>,
{
    buf.as_raw()
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect::<Vec<u8>>()
        .into()
}

fn is_latin1(s: &str) -> bool {
    s.chars().all(|c| u32::from(c) <= 0xFF)
}

fn check_text(keyword: &str, value: &str) -> Result<(), OpsError> {
    let chars = keyword.chars().count();
    if chars == 0 || chars > PNG_MAX_KEYWORD_LEN {
        return Err(OpsError::invalid(
            "text",
            format!("PNG text keywords must be 1 to {PNG_MAX_KEYWORD_LEN} characters, got {chars}"),
        ));
    }
    if !is_latin1(keyword) {
        return Err(OpsError::invalid(
            "text",
            format!("PNG text keyword {keyword:?} must use Latin-1 characters only"),
        ));
    }
    if keyword.contains('\0') || value.contains('\0') {
        return Err(OpsError::invalid(
            "text",
            format!("PNG text for keyword {keyword:?} must not contain NUL characters"),
        ));
    }
    Ok(())
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Splits at the first NUL: (before, after).
fn split_nul(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == 0)?;
    Some((&data[..at], &data[at + 1..]))
}

fn valid_keyword(keyword: &[u8]) -> bool {
    (1..=PNG_MAX_KEYWORD_LEN).contains(&keyword.len())
}

fn inflate(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    fdeflate::decompress_to_vec_bounded(data, limit).ok()
}

fn parse_text(data: &[u8]) -> Option<(String, String)> {
    let (keyword, text) = split_nul(data)?;
    valid_keyword(keyword).then(|| (latin1(keyword), latin1(text)))
}

fn parse_ztxt(data: &[u8], limit: usize) -> Option<(String, String)> {
    let (keyword, rest) = split_nul(data)?;
    let (&method, compressed) = rest.split_first()?;
    if !valid_keyword(keyword) || method != 0 {
        return None;
    }
    Some((latin1(keyword), latin1(&inflate(compressed, limit)?)))
}

fn parse_itxt(data: &[u8], limit: usize) -> Option<(String, String)> {
    let (keyword, rest) = split_nul(data)?;
    let [flag, method, rest @ ..] = rest else {
        return None;
    };
    let (_language, rest) = split_nul(rest)?;
    let (_translated_keyword, text) = split_nul(rest)?;
    if !valid_keyword(keyword) {
        return None;
    }
    let text = match (flag, method) {
        (0, _) => Cow::Borrowed(text),
        (1, 0) => Cow::Owned(inflate(text, limit)?),
        _ => return None,
    };
    Some((latin1(keyword), String::from_utf8_lossy(&text).into_owned()))
}

// --------------------------------------------------------------- JPEG ----

fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, OpsError> {
    let flat: DynamicImage = match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img.clone(),
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(img.to_luma8()),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => {
            let la = img.to_luma_alpha8();
            let mut out = GrayImage::new(la.width(), la.height());
            for (o, p) in out.pixels_mut().zip(la.pixels()) {
                o.0 = [over_white(p.0[0], p.0[1])];
            }
            DynamicImage::ImageLuma8(out)
        }
        other if other.color().has_alpha() => {
            let rgba = other.to_rgba8();
            let mut out = RgbImage::new(rgba.width(), rgba.height());
            for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
                let [r, g, b, a] = p.0;
                o.0 = [over_white(r, a), over_white(g, a), over_white(b, a)];
            }
            DynamicImage::ImageRgb8(out)
        }
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&flat)
        .map_err(|e| OpsError::Encode(format!("JPEG: {e}")))?;
    Ok(out)
}

/// One channel of `value` with coverage `alpha`, composited onto white.
fn over_white(value: u8, alpha: u8) -> u8 {
    let (v, a) = (u32::from(value), u32::from(alpha));
    ((v * a + 255 * (255 - a) + 127) / 255) as u8
}

// --------------------------------------------------------------- WebP ----

fn encode_webp(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, OpsError> {
    let (width, height) = (img.width(), img.height());
    if width > WEBP_MAX_SIDE || height > WEBP_MAX_SIDE {
        return Err(OpsError::Encode(format!(
            "WebP images can be at most {WEBP_MAX_SIDE}x{WEBP_MAX_SIDE} pixels, this one is {width}x{height}"
        )));
    }
    let (pixels, layout): (Cow<'_, [u8]>, webp::PixelLayout) = match img {
        DynamicImage::ImageRgb8(b) => (b.as_raw().into(), webp::PixelLayout::Rgb),
        DynamicImage::ImageRgba8(b) => (b.as_raw().into(), webp::PixelLayout::Rgba),
        other if other.color().has_alpha() => {
            (other.to_rgba8().into_raw().into(), webp::PixelLayout::Rgba)
        }
        other => (other.to_rgb8().into_raw().into(), webp::PixelLayout::Rgb),
    };

    let mut config = webp::WebPConfig::new()
        .map_err(|()| OpsError::Encode("WebP: could not initialise the encoder".into()))?;
    if quality == 100 {
        config.lossless = 1;
        // Keep the RGB of fully transparent pixels: a true round trip.
        config.exact = 1;
        // For lossless, `quality` is compression effort; libwebp's default.
        config.quality = 75.0;
    } else {
        config.lossless = 0;
        config.quality = f32::from(quality);
        config.alpha_compression = 1;
    }
    let memory = webp::Encoder::new(&pixels, layout, width, height)
        .encode_advanced(&config)
        .map_err(|e| OpsError::Encode(format!("WebP: {e:?}")))?;
    Ok(memory.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_white_endpoints() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(100, 255), 100);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn parses_handmade_chunks() {
        assert_eq!(
            parse_text(b"Title\0caf\xe9"),
            Some(("Title".into(), "caf\u{e9}".into()))
        );
        assert_eq!(parse_text(b"\0empty keyword"), None);
        assert_eq!(parse_text(b"no separator"), None);

        let compressed = fdeflate::compress_to_vec("hello hello hello".as_bytes());
        let mut ztxt = b"Comment\0\0".to_vec();
        ztxt.extend_from_slice(&compressed);
        assert_eq!(
            parse_ztxt(&ztxt, 1 << 20),
            Some(("Comment".into(), "hello hello hello".into()))
        );
        // Over the decompression limit: skipped.
        assert_eq!(parse_ztxt(&ztxt, 4), None);

        let mut itxt = b"prompt\0\x01\0en\0Prompt\0".to_vec();
        itxt.extend_from_slice(&fdeflate::compress_to_vec("猫 🐈".as_bytes()));
        assert_eq!(
            parse_itxt(&itxt, 1 << 20),
            Some(("prompt".into(), "猫 🐈".into()))
        );
        assert_eq!(
            parse_itxt(b"k\0\0\0\0\0plain", 1 << 20),
            Some(("k".into(), "plain".into()))
        );
        assert_eq!(parse_itxt(b"k\0\x02\0\0\0x", 1 << 20), None);
    }

    #[test]
    fn text_validation() {
        assert!(check_text("parameters", "anything \u{1F600}").is_ok());
        assert!(check_text("", "x").is_err());
        assert!(check_text(&"k".repeat(80), "x").is_err());
        assert!(check_text("ключ", "x").is_err());
        assert!(check_text("k", "a\0b").is_err());
    }
}
