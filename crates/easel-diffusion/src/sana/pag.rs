//! Perturbed-attention guidance (PAG) and classifier-free guidance for Sana, as diffusers'
//! `SanaPAGPipeline` / `PAGMixin` and `SanaPipeline` do them.
//!
//! - Layer selection ([`select_layers`]): each `pag_applied_layers` entry is a **regular
//!   expression searched anywhere** in the self-attention module names
//!   `transformer_blocks.<k>.attn1` (cross-attention is never selected), so
//!   `"transformer_blocks.1"` also selects blocks 10-19 on a 20-block model. diffusers skips a
//!   module when the last dot-components of the entry and of the name are both numeric and
//!   equal; names ending in `attn1` never trigger that. An entry matching nothing is an error.
//!   Python's `re` and the `regex` crate agree on the patterns people write; look-arounds and
//!   back-references are rejected with an error naming the entry.
//! - Batch layout ([`batch_layout`]): CFG `[uncond, cond]`, PAG + CFG `[uncond, cond,
//!   perturbed]`, PAG alone `[cond, perturbed]`, each chunk `N` rows; the perturbed chunk gets
//!   the prompt embeddings again, and its rows start at [`perturbed_first_row`].
//! - Combination ([`combine`], f32 as the pipelines compute it, in this operation order):
//!   CFG `uncond + g (cond - uncond)`; PAG + CFG `uncond + g (cond - uncond) + p (cond -
//!   perturbed)`; PAG alone `cond + p (cond - perturbed)`.
//! - Adaptive scale ([`pag_scale_at`]): with `pag_adaptive_scale > 0` the PAG scale at
//!   scheduler timestep `t` is `max(pag_scale - adaptive * (1000 - t), 0)`.

use candle_core::{Result, Tensor};
use regex::Regex;

/// Why a `pag_applied_layers` entry cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PagLayerError {
    #[error("PAG layer pattern {pattern:?} is not a valid regular expression: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("Cannot find PAG layer to set attention processor for: {pattern} (no self-attention `transformer_blocks.<k>.attn1` of the {num_layers} blocks matches it)")]
    NoMatch { pattern: String, num_layers: usize },
}

/// The blocks (sorted, without repeats) whose self-attention PAG perturbs, for `patterns` on a
/// transformer of `num_layers` blocks; diffusers' rule (see the module docs).
pub fn select_layers(
    patterns: &[String],
    num_layers: usize,
) -> std::result::Result<Vec<usize>, PagLayerError> {
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_numeric());
    let last = |s: &str| s.rsplit('.').next().unwrap_or("").to_string();
    let mut selected = std::collections::BTreeSet::new();
    for pattern in patterns {
        let re = Regex::new(pattern).map_err(|e| PagLayerError::BadPattern {
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
        let mut found = false;
        for k in 0..num_layers {
            let name = format!("transformer_blocks.{k}.attn1");
            let (lp, ln) = (last(pattern), last(&name));
            let fake_integral = numeric(&lp) && numeric(&ln) && lp == ln;
            if re.is_match(&name) && !fake_integral {
                selected.insert(k);
                found = true;
            }
        }
        if !found {
            return Err(PagLayerError::NoMatch {
                pattern: pattern.clone(),
                num_layers,
            });
        }
    }
    Ok(selected.into_iter().collect())
}

/// One chunk of the transformer batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Negative prompt.
    Uncond,
    /// Prompt.
    Cond,
    /// Prompt again, with the selected self-attentions perturbed.
    Perturbed,
}

/// The order of the chunks in the transformer batch (the fixtures' `guidance.batch_layout`).
pub fn batch_layout(cfg: bool, pag: bool) -> Vec<Chunk> {
    match (cfg, pag) {
        (true, true) => vec![Chunk::Uncond, Chunk::Cond, Chunk::Perturbed],
        (true, false) => vec![Chunk::Uncond, Chunk::Cond],
        (false, true) => vec![Chunk::Cond, Chunk::Perturbed],
        (false, false) => vec![Chunk::Cond],
    }
}

/// First batch row of the perturbed chunk with `n` images per prompt (for
/// [`Perturbed::first_row`](super::transformer::Perturbed)).
pub fn perturbed_first_row(n: usize, cfg: bool) -> usize {
    if cfg {
        2 * n
    } else {
        n
    }
}

/// The PAG scale at scheduler timestep `t` (diffusers' `_get_pag_scale`): constant without
/// adaptive scaling (`adaptive <= 0` or `pag_scale <= 0`), else `pag_scale - adaptive * (1000 -
/// t)` clamped at 0.
pub fn pag_scale_at(pag_scale: f64, adaptive: f64, t: f64) -> f64 {
    if adaptive > 0.0 && pag_scale > 0.0 {
        (pag_scale - adaptive * (1000.0 - t)).max(0.0)
    } else {
        pag_scale
    }
}

/// `uncond + g (cond - uncond)`.
pub fn cfg(uncond: &Tensor, cond: &Tensor, g: f64) -> Result<Tensor> {
    uncond + ((cond - uncond)? * g)?
}

/// `uncond + g (cond - uncond) + p (cond - perturbed)`.
pub fn pag_cfg(
    uncond: &Tensor,
    cond: &Tensor,
    perturbed: &Tensor,
    g: f64,
    p: f64,
) -> Result<Tensor> {
    cfg(uncond, cond, g)? + ((cond - perturbed)? * p)?
}

/// `cond + p (cond - perturbed)`.
pub fn pag_only(cond: &Tensor, perturbed: &Tensor, p: f64) -> Result<Tensor> {
    cond + ((cond - perturbed)? * p)?
}

/// Split a transformer output laid out as [`batch_layout`]`(cfg_scale.is_some(),
/// pag_scale.is_some())` into its chunks and combine them; `pag_scale` is the scale at this
/// step ([`pag_scale_at`]). With neither it returns the output unchanged.
pub fn combine(output: &Tensor, cfg_scale: Option<f64>, pag_scale: Option<f64>) -> Result<Tensor> {
    let layout = batch_layout(cfg_scale.is_some(), pag_scale.is_some());
    let rows = output.dim(0)?;
    if rows % layout.len() != 0 {
        return Err(candle_core::Error::Msg(format!(
            "guidance: a batch of {rows} rows does not split into {} chunks",
            layout.len()
        )));
    }
    let chunks = output.chunk(layout.len(), 0)?;
    match (cfg_scale, pag_scale) {
        (Some(g), Some(p)) => pag_cfg(&chunks[0], &chunks[1], &chunks[2], g, p),
        (Some(g), None) => cfg(&chunks[0], &chunks[1], g),
        (None, Some(p)) => pag_only(&chunks[0], &chunks[1], p),
        (None, None) => Ok(output.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_scale() {
        assert_eq!(pag_scale_at(3.0, 0.0, 500.0), 3.0);
        assert!((pag_scale_at(3.0, 0.01, 900.0) - 2.0).abs() < 1e-12);
        assert_eq!(pag_scale_at(3.0, 0.01, 100.0), 0.0);
        assert_eq!(pag_scale_at(0.0, 0.01, 900.0), 0.0);
    }

    #[test]
    fn bad_pattern_names_it() {
        let e = select_layers(&["(?=x)".to_string()], 4).unwrap_err();
        assert!(e.to_string().contains("(?=x)"), "{e}");
        let e = select_layers(&["transformer_blocks.1$".to_string()], 20).unwrap_err();
        assert!(e.to_string().contains("transformer_blocks.1$"), "{e}");
    }
}
