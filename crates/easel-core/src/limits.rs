//! Server-wide limits. Defaults are generous for a single local user and safe for a shared
//! server; every one can be changed in the configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Largest image (input or output) in pixels.
    pub max_pixels: u64,
    /// Longest side of any image.
    pub max_side: u32,
    /// Queued jobs one owner may have at once (429 above).
    pub max_queued_per_owner: u64,
    /// Attempts before a job whose worker keeps dying fails.
    pub max_attempts: u32,
    /// Longest prompt, in characters.
    pub max_prompt_chars: usize,
    /// Largest generated image (txt2img, img2img, inpaint), in pixels.
    pub max_gen_pixels: u64,
    /// Most denoising steps per image.
    pub max_steps: u32,
    /// Most images per generation job.
    pub max_images: u32,
    /// Largest file sent as an upload in parts, in bytes (each part is a request body, so
    /// within `max_body_bytes`).
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 25 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 16_384,
            max_queued_per_owner: 5_000,
            max_attempts: 3,
            max_prompt_chars: 4_000,
            max_gen_pixels: 2048 * 2048,
            max_steps: 150,
            max_images: 8,
            max_upload_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The largest generated image: `max_gen_pixels`, and never above `max_pixels` (the
    /// limit of every image).
    pub fn gen_pixels(&self) -> u64 {
        self.max_gen_pixels.min(self.max_pixels)
    }
}
