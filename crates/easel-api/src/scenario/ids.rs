//! Scenario's id forms, reversible without a lookup table: an Easel asset `ast_<ulid>` is
//! `asset_<ulid>`, a model `mdl_<ulid>` is `model_<ulid>`; job ids (`job_<ulid>`) are the
//! same in both. Requests may also send Easel's own forms.

use easel_core::id;

const ASSET: &str = "asset";
const MODEL: &str = "model";
const COLLECTION: &str = "collection";

fn swap(from: &str, to: &str, s: &str) -> Option<String> {
    id::is_valid(from, s).then(|| format!("{to}_{}", &s[from.len() + 1..]))
}

/// Scenario's id of an Easel asset.
pub(super) fn asset(easel: &str) -> String {
    swap(id::ASSET, ASSET, easel).unwrap_or_else(|| easel.to_string())
}

/// The Easel asset id a Scenario id names (`asset_…` or `ast_…`); `None` for other text.
pub(super) fn asset_in(wire: &str) -> Option<String> {
    swap(ASSET, id::ASSET, wire).or_else(|| id::is_valid(id::ASSET, wire).then(|| wire.into()))
}

/// Scenario's id of an Easel collection (`col_…` is `collection_…`).
pub(super) fn collection(easel: &str) -> String {
    swap(id::COLLECTION, COLLECTION, easel).unwrap_or_else(|| easel.to_string())
}

/// The Easel collection id a Scenario id names; `None` for other text.
pub(super) fn collection_in(wire: &str) -> Option<String> {
    swap(COLLECTION, id::COLLECTION, wire)
        .or_else(|| id::is_valid(id::COLLECTION, wire).then(|| wire.into()))
}

/// The Easel ids of Scenario collection ids sent as `field` (an id of no collection is a 400
/// naming `field[i]`; whose they are is checked where they are used).
pub(super) fn collections_in(
    field: &str,
    wire: &[String],
) -> Result<Vec<String>, easel_core::Error> {
    wire.iter()
        .enumerate()
        .map(|(i, c)| {
            collection_in(c).ok_or_else(|| {
                easel_core::Error::invalid(
                    format!("{field}[{i}]"),
                    format!("collection {c} not found"),
                )
            })
        })
        .collect()
}

/// Scenario's id of an Easel model.
pub(super) fn model(easel: &str) -> String {
    swap(id::MODEL, MODEL, easel).unwrap_or_else(|| easel.to_string())
}

/// The Easel model id of a Scenario model id (`model_…` or `mdl_…`); `None` for other text.
pub(super) fn model_in(wire: &str) -> Option<String> {
    swap(MODEL, id::MODEL, wire).or_else(|| id::is_valid(id::MODEL, wire).then(|| wire.into()))
}

/// What a `modelId` names in the registry: `model_…` as the Easel id `mdl_…`, anything else
/// as it is (a registry name, alias or `mdl_…` id, so `flux.1-dev`-style ids work through
/// aliases).
pub(super) fn model_ref(wire: &str) -> String {
    swap(MODEL, id::MODEL, wire).unwrap_or_else(|| wire.to_string())
}

/// The job a path's `jobId` names, when it is one.
pub(super) fn job_in(wire: &str) -> Option<String> {
    id::is_valid(id::JOB, wire).then(|| wire.to_string())
}

/// Times as the spec writes them: ISO 8601 with milliseconds, UTC (`2023-02-03T11:19:41.579Z`).
pub(super) fn time(t: &easel_core::time::Timestamp) -> String {
    easel_core::time::rfc3339(*t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_both_ways() {
        let a = id::new(id::ASSET);
        let w = asset(&a);
        assert!(w.starts_with("asset_") && w.len() == a.len() + 2, "{w}");
        assert_eq!(asset_in(&w), Some(a.clone()));
        assert_eq!(asset_in(&a), Some(a.clone()), "Easel's own form");
        assert_eq!(asset_in("asset_short"), None);
        assert_eq!(asset_in("data:image/png;base64,AA"), None);
        let m = id::new(id::MODEL);
        assert_eq!(model_ref(&model(&m)), m);
        assert_eq!(model_ref("flux.1-dev"), "flux.1-dev");
        assert_eq!(model_ref(&m), m);
        let j = id::new(id::JOB);
        assert_eq!(job_in(&j), Some(j));
        assert_eq!(job_in("job_x"), None);
    }
}
