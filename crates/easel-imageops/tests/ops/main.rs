//! Integration tests for easel-imageops. All test images are generated in
//! code (see `common`), small enough to keep the whole suite fast.

mod common;
mod encode;
mod format;
mod pixelate;
mod resize;
