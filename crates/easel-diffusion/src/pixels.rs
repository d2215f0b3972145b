//! Between tensors and pixels: 8-bit RGB (and grey masks) in and out of the pipeline's
//! [1, C, H, W] tensors in [0, 1], and the cheap latent → RGB preview (the family's projection of
//! the latent channels, no VAE), used for step previews.

use candle_core::{DType, Device, Result, Tensor};

use crate::family::Preview;

/// `[1, 3, H, W]` in [0, 1] from packed RGB bytes.
pub fn rgb8_to_tensor(width: usize, height: usize, rgb: &[u8], device: &Device) -> Result<Tensor> {
    if rgb.len() != width * height * 3 {
        candle_core::bail!("{} bytes is not a {width}x{height} RGB image", rgb.len());
    }
    Tensor::from_vec(rgb.to_vec(), (height, width, 3), device)?
        .permute((2, 0, 1))?
        .to_dtype(DType::F32)?
        .affine(1.0 / 255.0, 0.0)?
        .unsqueeze(0)
}

/// `[1, 1, H, W]` in [0, 1] from 8-bit grey values (a mask: 255 = repaint).
pub fn grey8_to_tensor(
    width: usize,
    height: usize,
    grey: &[u8],
    device: &Device,
) -> Result<Tensor> {
    if grey.len() != width * height {
        candle_core::bail!("{} bytes is not a {width}x{height} grey image", grey.len());
    }
    Tensor::from_vec(grey.to_vec(), (1, 1, height, width), device)?
        .to_dtype(DType::F32)?
        .affine(1.0 / 255.0, 0.0)
}

/// Packed RGB bytes (width, height, bytes) of image `index` of a `[N, 3, H, W]` tensor in
/// [0, 1] (values outside are clamped).
pub fn tensor_to_rgb8(images: &Tensor, index: usize) -> Result<(usize, usize, Vec<u8>)> {
    let (_, c, h, w) = images.dims4()?;
    if c != 3 {
        candle_core::bail!("expected 3 channels, got {c}");
    }
    let bytes = images
        .get(index)?
        .to_dtype(DType::F32)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.5)?
        .floor()?
        .permute((1, 2, 0))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok((w, h, bytes))
}

/// A preview of `[1, C, h, w]` latents at latent resolution (packed RGB bytes), projected
/// as the model's family says.
pub fn latent_preview(latents: &Tensor, preview: Preview) -> Result<(usize, usize, Vec<u8>)> {
    let (_, c, h, w) = latents.dims4()?;
    let x = latents.get(0)?.to_dtype(DType::F32)?.reshape((c, h * w))?;
    let rgb = match preview {
        Preview::Linear(factors) => {
            if factors.len() != c {
                candle_core::bail!("the preview projects {} channels, got {c}", factors.len());
            }
            let flat: Vec<f32> = factors.iter().flatten().copied().collect();
            let m = Tensor::from_vec(flat, (c, 3), latents.device())?;
            x.t()?.matmul(&m)?.affine(0.5, 0.5)? // [h*w, 3]
        }
        Preview::Stretched => {
            if c < 3 {
                candle_core::bail!("a stretched preview needs 3 latent channels, got {c}");
            }
            let x = x.narrow(0, 0, 3)?;
            let lo = x.min_keepdim(1)?;
            let hi = x.max_keepdim(1)?;
            let span = (hi - &lo)?.clamp(1e-6f32, f32::MAX)?;
            x.broadcast_sub(&lo)?.broadcast_div(&span)?.t()?
        }
    };
    let rgb = rgb
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.5)?
        .floor()?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok((w, h, rgb))
}

/// PSNR (dB) of two 8-bit images of the same size (infinite when equal): how the tests
/// compare an image made at a narrower precision with the f32 one.
#[cfg(test)]
pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_round_trip() {
        let dev = Device::Cpu;
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let t = rgb8_to_tensor(3, 2, &rgb, &dev).unwrap();
        assert_eq!(t.dims(), &[1, 3, 2, 3]);
        let (w, h, back) = tensor_to_rgb8(&t, 0).unwrap();
        assert_eq!((w, h), (3, 2));
        assert_eq!(back, rgb);
        assert!(rgb8_to_tensor(3, 3, &rgb, &dev).is_err());
        let g = grey8_to_tensor(2, 1, &[0, 255], &dev).unwrap();
        assert_eq!(
            g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0, 1.0]
        );
    }

    #[test]
    fn preview_projects_channels() {
        let dev = Device::Cpu;
        // Only channel 0 set to 1: every pixel gets 0.5 + 0.5 * factors[0].
        let mut v = vec![0f32; 4 * 2 * 2];
        v[..4].iter_mut().for_each(|x| *x = 1.0);
        let lat = Tensor::from_vec(v, (1, 4, 2, 2), &dev).unwrap();
        let Preview::Linear(factors) = crate::sd::SD15_ROW.preview else {
            panic!("SD 1.5 has a linear preview")
        };
        let (w, h, rgb) = latent_preview(&lat, Preview::Linear(factors)).unwrap();
        assert_eq!((w, h, rgb.len()), (2, 2, 12));
        let expect = |f: f32| ((0.5 + 0.5 * f) * 255.0 + 0.5).floor() as u8;
        assert_eq!(&rgb[..3], &factors[0].map(expect));
        // Five channels: no projection for them.
        let five = Tensor::zeros((1, 5, 2, 2), candle_core::DType::F32, &dev).unwrap();
        assert!(latent_preview(&five, Preview::Linear(factors)).is_err());
        // Stretched: each of the first three channels to 0..255 over its own range.
        let v: Vec<f32> = (0..8 * 4).map(|i| i as f32).collect();
        let lat = Tensor::from_vec(v, (1, 8, 2, 2), &dev).unwrap();
        let (_, _, rgb) = latent_preview(&lat, Preview::Stretched).unwrap();
        assert_eq!(&rgb[..3], &[0, 0, 0]);
        assert_eq!(&rgb[9..], &[255, 255, 255]);
    }
}
