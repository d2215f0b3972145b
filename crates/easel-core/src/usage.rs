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

/// Units a generation job will use, known at submit time from its filled-in input (`count`
/// images of `width` x `height`): what the job records when it succeeds. `None` for other
/// tasks, whose output size depends on their input image.
pub fn estimate_units(task: &str, input: &serde_json::Value) -> Option<f64> {
    if !crate::generate::TASKS.contains(&task) {
        return None;
    }
    let g: crate::generate::GenerateInput = serde_json::from_value(input.clone()).ok()?;
    Some(image_units(&vec![
        g.output_size();
        g.resolved().count as usize
    ]))
}

/// Whole credits for a number of units, for dialects that count in integers (rounded up,
/// so any work costs at least one).
pub fn credits(units: f64) -> u64 {
    if units <= 0.0 {
        0
    } else {
        units.ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimates_match_recorded_units() {
        let input = json!({"prompt": "x", "width": 1000, "height": 1000, "count": 3});
        let units = estimate_units("txt2img", &input).unwrap();
        assert!((units - 3.0).abs() < 1e-9, "{units}");
        assert_eq!(credits(units), 3);
        assert_eq!(credits(0.004), 1);
        assert_eq!(credits(0.0), 0);
        assert_eq!(estimate_units("upscale", &json!({"image": "x"})), None);
    }
}
