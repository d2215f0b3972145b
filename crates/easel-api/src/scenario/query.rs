//! Query strings as Scenario's clients send them: every value a string, arrays comma-joined
//! (`types=a,b`) or as repeated keys (`types=a&types=b`, OpenAPI's default form); and the
//! pagination every list shares.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::*;

/// A query string read into `T`: repeated keys are joined with commas (as Scenario's arrays
/// are); a bad value is a 400 naming its parameter.
pub struct ListQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<St> for ListQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| Error::bad_request(format!("malformed query string: {e}")))?;
        let mut joined: Map<String, Value> = Map::new();
        for (k, v) in pairs {
            match joined.get_mut(&k) {
                Some(Value::String(s)) => {
                    s.push(',');
                    s.push_str(&v);
                }
                _ => {
                    joined.insert(k, Value::String(v));
                }
            }
        }
        Ok(ListQuery(easel_core::error::from_json(Value::Object(
            joined,
        ))?))
    }
}

/// The page size of a list: the spec's default when absent, `1..=max` else.
pub(super) fn page_size(v: Option<&str>, default: u32, max: u32) -> Result<u32, Error> {
    let Some(v) = v else { return Ok(default) };
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Error::invalid(
            "pageSize",
            format!("must be a whole number from 1 to {max} (got `{v}`)"),
        )),
    }
}

/// The items of a page and the token of the next (absent on the last page): lists read one
/// item more than they show.
pub(super) fn paged<T>(
    mut rows: Vec<T>,
    size: u32,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next = more.then(|| rows.last().map(&token)).flatten();
    (rows, next)
}

/// A comma-joined list parameter (how Scenario's clients send arrays in queries).
pub(super) fn list_param(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}
