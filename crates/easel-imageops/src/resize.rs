//! Resizing, aspect-ratio fitting and classical upscaling.
//!
//! The resampling itself is done by `fast_image_resize` (SIMD convolution).
//! Images with an alpha channel are resampled premultiplied, so colour from
//! fully transparent pixels never bleeds into visible ones (no dark fringes).
//!
//! 8-bit Luma, Luma+alpha, RGB and RGBA images keep their colour type; every
//! other type (16-bit, float) is converted to 8-bit first — to RGBA8 when it
//! has alpha, otherwise to RGB8 (16-bit grey goes to 8-bit grey).

use std::borrow::Cow;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::OpsError;

/// Resampling filter, from fastest/blockiest to sharpest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Nearest neighbour: no new colours, blocky.
    Nearest,
    /// Linear interpolation (a triangle filter when downscaling).
    Bilinear,
    /// Catmull-Rom cubic: sharp, mild ringing.
    #[serde(alias = "catmull-rom", alias = "bicubic")]
    CatmullRom,
    /// Lanczos with 3 lobes: the sharpest, best for photos.
    #[default]
    #[serde(alias = "lanczos")]
    Lanczos3,
}

impl Filter {
    /// Parses `nearest`, `bilinear`, `catmull_rom` (or `catmull-rom`,
    /// `bicubic`), `lanczos3` (or `lanczos`), case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "nearest" => Some(Filter::Nearest),
            "bilinear" => Some(Filter::Bilinear),
            "catmull_rom" | "catmull-rom" | "catmullrom" | "bicubic" => Some(Filter::CatmullRom),
            "lanczos3" | "lanczos" => Some(Filter::Lanczos3),
            _ => None,
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            Filter::Nearest => ResizeAlg::Nearest,
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
            Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// How [`resize_fit`] reconciles the image's aspect ratio with the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Stretch to exactly the box, ignoring aspect ratio.
    Exact,
    /// Scale to fit inside the box, preserving aspect ratio; one side of the
    /// result may be smaller than the box.
    Contain,
    /// Scale to cover the box, preserving aspect ratio, then centre-crop to
    /// exactly the box.
    Cover,
}

impl Fit {
    /// Parses `exact` (or `fill`, `stretch`), `contain`, `cover`,
    /// case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "exact" | "fill" | "stretch" => Some(Fit::Exact),
            "contain" => Some(Fit::Contain),
            "cover" => Some(Fit::Cover),
            _ => None,
        }
    }
}

/// The requested output size of [`upscale`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleTarget {
    /// Multiply both sides by this factor (must be finite and > 0).
    Factor(f32),
    /// This width; the height follows the aspect ratio.
    Width(u32),
    /// This height; the width follows the aspect ratio.
    Height(u32),
    /// Exactly this size (the aspect ratio may change).
    Size { width: u32, height: u32 },
}

/// Resizes to exactly `width` x `height`.
///
/// Alpha is handled premultiplied. 8-bit Luma/LumaA/RGB/RGBA keep their type;
/// other types are converted to RGBA8 (with alpha) or RGB8 / Luma8.
pub fn resize(
    img: &DynamicImage,
    width: u32,
    height: u32,
    filter: Filter,
) -> Result<DynamicImage, OpsError> {
    resample(
        img,
        width,
        height,
        ResizeOptions::new().resize_alg(filter.algorithm()),
    )
}

/// Resizes into a `width` x `height` box according to `fit`.
///
/// The result is exactly the box for [`Fit::Exact`] and [`Fit::Cover`]; for
/// [`Fit::Contain`] it has the image's aspect ratio (sides rounded, at least
/// 1 pixel) and touches the box on at least one side.
pub fn resize_fit(
    img: &DynamicImage,
    width: u32,
    height: u32,
    fit: Fit,
    filter: Filter,
) -> Result<DynamicImage, OpsError> {
    check_size(width, height)?;
    check_source(img)?;
    let options = ResizeOptions::new().resize_alg(filter.algorithm());
    match fit {
        Fit::Exact => resample(img, width, height, options),
        Fit::Contain => {
            let (w, h) = contain_size(img.width(), img.height(), width, height);
            resample(img, w, h, options)
        }
        Fit::Cover => resample(img, width, height, options.fit_into_destination(None)),
    }
}

/// Classical Lanczos3 upscaling (downscaling works too).
///
/// The output size is [`scaled_size`]; if it has more than `max_pixels`
/// pixels this fails with [`OpsError::TooLarge`] before doing any work.
pub fn upscale(
    img: &DynamicImage,
    target: ScaleTarget,
    max_pixels: u64,
) -> Result<DynamicImage, OpsError> {
    match target {
        ScaleTarget::Factor(f) if !(f.is_finite() && f > 0.0) => {
            return Err(OpsError::invalid(
                "factor",
                format!("must be a positive number, got {f}"),
            ));
        }
        ScaleTarget::Width(0) => return Err(OpsError::invalid("width", "must be at least 1")),
        ScaleTarget::Height(0) => return Err(OpsError::invalid("height", "must be at least 1")),
        ScaleTarget::Size { width, height } => check_size(width, height)?,
        _ => {}
    }
    check_source(img)?;
    let (width, height) = scaled_size(img.width(), img.height(), &target);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(OpsError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    resize(img, width, height, Filter::Lanczos3)
}

/// The output size [`upscale`] would produce for a `width` x `height` image,
/// so callers can validate before doing work.
///
/// `Factor` scales both sides (rounded); `Width`/`Height` derive the other
/// side from the aspect ratio (rounded half up). Derived sides are at least 1
/// and saturate at `u32::MAX`.
pub fn scaled_size(width: u32, height: u32, target: &ScaleTarget) -> (u32, u32) {
    match *target {
        ScaleTarget::Factor(f) => {
            let f = f64::from(f);
            (scale_side(width, f), scale_side(height, f))
        }
        ScaleTarget::Width(w) => (w, proportional(height, w, width)),
        ScaleTarget::Height(h) => (proportional(width, h, height), h),
        ScaleTarget::Size { width, height } => (width, height),
    }
}

/// `round(side * factor)`, at least 1, saturating.
fn scale_side(side: u32, factor: f64) -> u32 {
    // `as` from f64 saturates (and maps NaN to 0).
    ((f64::from(side) * factor).round() as u32).max(1)
}

/// `round(side * num / den)` in integers (half rounds up), at least 1.
fn proportional(side: u32, num: u32, den: u32) -> u32 {
    let den = u128::from(den.max(1));
    let scaled = (2 * u128::from(side) * u128::from(num) + den) / (2 * den);
    u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
}

/// The largest size with the source's aspect ratio that fits in the box.
fn contain_size(src_w: u32, src_h: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    // Compare src_w/src_h with box_w/box_h without floating point.
    if u64::from(src_w) * u64::from(box_h) >= u64::from(src_h) * u64::from(box_w) {
        // Relatively wider than the box: the width is the limit.
        (box_w, proportional(src_h, box_w, src_w).min(box_h))
    } else {
        (proportional(src_w, box_h, src_h).min(box_w), box_h)
    }
}

fn resample(
    img: &DynamicImage,
    width: u32,
    height: u32,
    options: ResizeOptions,
) -> Result<DynamicImage, OpsError> {
    check_size(width, height)?;
    check_source(img)?;
    let src = to_resizable(img);
    let mut dst = DynamicImage::new(width, height, src.color());
    Resizer::new()
        .resize(src.as_ref(), &mut dst, &options)
        .map_err(|e| OpsError::invalid("size", format!("cannot resize: {e}")))?;
    Ok(dst)
}

/// Borrows 8-bit images as they are; converts everything else to 8 bits.
fn to_resizable(img: &DynamicImage) -> Cow<'_, DynamicImage> {
    match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => Cow::Borrowed(img),
        DynamicImage::ImageLuma16(_) => Cow::Owned(DynamicImage::ImageLuma8(img.to_luma8())),
        DynamicImage::ImageLumaA16(_) => {
            Cow::Owned(DynamicImage::ImageLumaA8(img.to_luma_alpha8()))
        }
        other if other.color().has_alpha() => {
            Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8()))
        }
        other => Cow::Owned(DynamicImage::ImageRgb8(other.to_rgb8())),
    }
}

pub(crate) fn check_size(width: u32, height: u32) -> Result<(), OpsError> {
    if width == 0 {
        return Err(OpsError::invalid("width", "must be at least 1"));
    }
    if height == 0 {
        return Err(OpsError::invalid("height", "must be at least 1"));
    }
    Ok(())
}

pub(crate) fn check_source(img: &DynamicImage) -> Result<(), OpsError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(OpsError::invalid("image", "the image has no pixels"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_rounds_half_up_and_is_at_least_one() {
        assert_eq!(proportional(3, 1, 2), 2); // 1.5 -> 2
        assert_eq!(proportional(5, 1, 4), 1); // 1.25 -> 1
        assert_eq!(proportional(1, 1, 1000), 1); // 0.001 -> 1
        assert_eq!(proportional(u32::MAX, u32::MAX, 1), u32::MAX);
    }

    #[test]
    fn contain_size_touches_the_box() {
        assert_eq!(contain_size(200, 100, 100, 100), (100, 50));
        assert_eq!(contain_size(100, 200, 100, 100), (50, 100));
        assert_eq!(contain_size(100, 100, 300, 200), (200, 200));
        assert_eq!(contain_size(1000, 1, 10, 10), (10, 1));
    }
}
