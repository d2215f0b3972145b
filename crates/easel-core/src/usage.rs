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

/// Succeeded jobs of one model on one UTC day (from the jobs, for usage by model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelUsageRow {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The registry name the jobs ran with.
    pub model: String,
    pub jobs: u64,
    pub units: f64,
}

/// Units as shown: rounded to 6 decimals, so sums of float units read `0.18`, not
/// `0.18000000000000002`.
pub fn round_units(units: f64) -> f64 {
    (units * 1e6).round() / 1e6
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
    Some(generation_units(&g))
}

/// Units of a generation with its input filled in: `count` images of its output size.
pub fn generation_units(g: &crate::generate::GenerateInput) -> f64 {
    image_units(&vec![g.output_size(); g.resolved().count as usize])
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

/// A price of prepaid credits the operator sells (shown by dialects that list prices, e.g.
/// Scenario's `GET /oscu/prices`): `credits` for `amount` in the currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditPrice {
    pub credits: u64,
    /// In minor units (cents for `usd`).
    pub amount: u64,
    /// ISO 4217 code, lowercase (`usd`).
    pub currency: String,
}

/// Prices as an operator writes them: `CREDITS:AMOUNT:CURRENCY`, comma-separated
/// (`1000:1000:usd,5000:4500:usd`; AMOUNT in minor units).
pub fn parse_prices(text: &str) -> crate::Result<Vec<CreditPrice>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            crate::Error::invalid(
                "credit_prices",
                format!("`{item}` is not CREDITS:AMOUNT:CURRENCY (e.g. 1000:1000:usd)"),
            )
        };
        let mut parts = item.split(':');
        let (Some(c), Some(a), Some(cur), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let credits: u64 = c.trim().parse().map_err(|_| bad())?;
        let amount: u64 = a.trim().parse().map_err(|_| bad())?;
        let currency = cur.trim().to_ascii_lowercase();
        if credits == 0 || currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(bad());
        }
        out.push(CreditPrice {
            credits,
            amount,
            currency,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shown_units_are_rounded() {
        assert_eq!(round_units(0.18000000000000002), 0.18);
        assert_eq!(round_units(0.1 + 0.2), 0.3);
        assert_eq!(round_units(2.5), 2.5);
    }

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

    #[test]
    fn prices_parse_and_refuse_what_is_not_one() {
        let p = parse_prices(" 1000:1000:USD, 5000:4500:eur ").unwrap();
        assert_eq!(
            p,
            vec![
                CreditPrice {
                    credits: 1000,
                    amount: 1000,
                    currency: "usd".into()
                },
                CreditPrice {
                    credits: 5000,
                    amount: 4500,
                    currency: "eur".into()
                },
            ]
        );
        assert_eq!(parse_prices("").unwrap(), vec![]);
        for bad in [
            "1000:10",
            "0:10:usd",
            "x:10:usd",
            "10:1.5:usd",
            "10:10:dollars",
            "1:2:usd:4",
        ] {
            let e = parse_prices(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("credit_prices"), "{bad}");
        }
    }
}
