//! Usage: units consumed per owner, day and task. A job's units are recorded when it succeeds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    pub owner_id: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub task: String,
    pub jobs: u64,
    pub units: f64,
    /// Output images produced.
    pub outputs: u64,
}

/// Units for an image-tool job: output megapixels, at least 0.01 per image.
pub fn image_units(outputs: &[(u32, u32)]) -> f64 {
    outputs
        .iter()
        .map(|(w, h)| (*w as f64 * *h as f64 / 1_000_000.0).max(0.01))
        .sum()
}
