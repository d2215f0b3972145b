//! A tiny Sana with random weights, in the layout the released diffusers repos use
//! (`model_index.json` naming `SanaPipeline`, `scheduler/` with DPM-Solver++ on flow sigmas,
//! `tokenizer/` + `text_encoder/` (a Gemma-style byte-fallback BPE and a 4-layer Gemma-2),
//! `transformer/`, `vae/`), for tests, benchmarks and `easel models make-tiny --family sana`.
//! The transformer's `sample_size` is 16, so resolution binning uses the 512 table.

use std::path::Path;

use candle_core::Result;
use serde_json::json;

use super::{dcae, text, transformer};
use crate::tiny::write_json;

/// Write a tiny Sana folder into `dir` (created if needed) from `seed`.
pub fn make_tiny(dir: &Path, seed: u64) -> Result<()> {
    let component_seed = |k: u64| seed.wrapping_mul(8).wrapping_add(k);
    write_index(dir)?;
    let text = text::write_tiny(dir, component_seed(1))?;
    let vae = dcae::tiny_config();
    let config = transformer::SanaTransformerConfig {
        caption_channels: text.hidden_size,
        in_channels: vae.latent_channels,
        out_channels: Some(vae.latent_channels),
        sample_size: 16,
        num_layers: 4,
        ..transformer::tiny_config()
    };
    transformer::write_tiny(&dir.join("transformer"), component_seed(2), &config)?;
    dcae::write_tiny(&dir.join("vae"), component_seed(3), &vae)
}

/// A Sana folder's `model_index.json` and `scheduler/scheduler_config.json` (the released
/// repos').
pub fn write_index(dir: &Path) -> Result<()> {
    write_json(
        &dir.join("model_index.json"),
        &json!({
            "_class_name": "SanaPipeline",
            "_diffusers_version": "0.42.1",
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
            "text_encoder": ["transformers", "Gemma2Model"],
            "tokenizer": ["transformers", "GemmaTokenizerFast"],
            "transformer": ["diffusers", "SanaTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderDC"],
        }),
    )?;
    let mut scheduler = super::default_scheduler();
    scheduler["_diffusers_version"] = json!("0.42.1");
    write_json(&dir.join("scheduler/scheduler_config.json"), &scheduler)
}
