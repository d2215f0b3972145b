//! Timestamps: UTC, millisecond precision (the store keeps milliseconds since the epoch).

use chrono::{DateTime, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds so that a value survives a round trip through the store.
pub fn now() -> Timestamp {
    from_millis(Utc::now().timestamp_millis())
}

/// A time as the APIs write it: RFC 3339, UTC, milliseconds (`2026-12-07T10:20:30.000Z`).
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub fn to_millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// A time written in RFC 3339 (`2026-01-31T12:00:00Z`) or as a UTC day (`2026-01-31`, its
/// start), for query filters; the error names `field`.
pub fn parse_time(field: &str, s: &str) -> crate::Result<Timestamp> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = parse_day(field, s).map_err(|_| {
        crate::Error::invalid(field, "must be a time like 2026-01-31T12:00:00Z or a date")
    })?;
    Ok(from_millis(
        day_start_millis(day, 0).min(i64::MAX as u64) as i64
    ))
}

/// A UTC day written `YYYY-MM-DD` (query filters); the error names `field`.
pub fn parse_day(field: &str, s: &str) -> crate::Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| crate::Error::invalid(field, "must be a date like 2026-01-31"))
}

/// Unix milliseconds at the start of `day` plus `days` (0 before 1970; saturating at the end
/// of the calendar).
pub fn day_start_millis(day: chrono::NaiveDate, days: u64) -> u64 {
    day.checked_add_days(chrono::Days::new(days))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis().max(0) as u64)
        .unwrap_or(u64::MAX)
}
