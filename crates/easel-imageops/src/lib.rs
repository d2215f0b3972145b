//! Classical (non-neural) image operations for Easel.
//!
//! Everything here is a pure function over byte slices or decoded
//! [`image::DynamicImage`]s: no async, no file or network I/O, no knowledge of
//! jobs or HTTP. The modules are:
//!
//! * [`mod@format`] – sniffing ([`probe`]) and size-limited decoding
//!   ([`decode`]);
//! * [`mod@resize`] – SIMD resizing ([`resize()`], [`resize_fit`]) and Lanczos
//!   upscaling ([`upscale`]);
//! * [`mod@pixelate`] – the pixel-art filter ([`pixelate()`]) with its own
//!   colour quantizer;
//! * [`mod@encode`] – PNG/JPEG/WebP encoding ([`encode()`]) and reading PNG
//!   text chunks back ([`read_png_text`]);
//! * [`mod@mask`] – inpainting masks from transparency ([`mask_from_alpha`]).
//!
//! The `image` crate is re-exported so callers use exactly the version these
//! functions take and return.

pub mod encode;
mod error;
pub mod format;
pub mod mask;
pub mod pixelate;
mod quantize;
pub mod resize;

pub use image;

pub use encode::{encode, read_png_text, Encoding};
pub use error::OpsError;
pub use format::{decode, probe, ImageFormat, ImageInfo};
pub use mask::mask_from_alpha;
pub use pixelate::{pixelate, pixelate_grid, Palette, PixelateParams};
pub use resize::{resize, resize_fit, scaled_size, upscale, Filter, Fit, ScaleTarget};
