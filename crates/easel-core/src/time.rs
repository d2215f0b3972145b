//! Timestamps: UTC, millisecond precision (the store keeps milliseconds since the epoch).

use chrono::{DateTime, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds so that a value survives a round trip through the store.
pub fn now() -> Timestamp {
    from_millis(Utc::now().timestamp_millis())
}

pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub fn to_millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}
