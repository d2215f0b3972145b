//! Inpainting masks. Easel's masks are grey images where white marks the area to repaint;
//! some clients (OpenAI's image edits) mark it with transparency instead.

use image::{DynamicImage, GrayImage, Luma};

/// The area an image marks by transparency, as a mask where white means repaint: each
/// pixel is `255 - alpha`, so fully transparent pixels are repainted, opaque ones kept and
/// partly transparent ones blended. `None` when the image has no alpha channel or every
/// pixel is opaque (then it marks nothing by transparency).
pub fn mask_from_alpha(img: &DynamicImage) -> Option<GrayImage> {
    if !img.color().has_alpha() {
        return None;
    }
    let rgba = img.to_rgba8();
    if rgba.pixels().all(|p| p.0[3] == 255) {
        return None;
    }
    Some(GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        Luma([255 - rgba.get_pixel(x, y).0[3]])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    #[test]
    fn transparent_pixels_become_white() {
        let img = RgbaImage::from_fn(4, 2, |x, _| {
            Rgba([10, 20, 30, [0, 255, 128, 255][x as usize]])
        });
        let m = mask_from_alpha(&DynamicImage::ImageRgba8(img)).unwrap();
        assert_eq!(m.dimensions(), (4, 2));
        assert_eq!(m.get_pixel(0, 0).0[0], 255, "transparent: repaint");
        assert_eq!(m.get_pixel(1, 1).0[0], 0, "opaque: keep");
        assert_eq!(m.get_pixel(2, 0).0[0], 127);
    }

    #[test]
    fn opaque_images_mark_nothing() {
        let opaque = RgbaImage::from_pixel(3, 3, Rgba([0, 0, 0, 255]));
        assert!(mask_from_alpha(&DynamicImage::ImageRgba8(opaque)).is_none());
        let rgb = RgbImage::from_pixel(3, 3, Rgb([255, 255, 255]));
        assert!(mask_from_alpha(&DynamicImage::ImageRgb8(rgb)).is_none());
    }
}
