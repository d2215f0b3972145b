//! Identifiers: a short type prefix and a lowercase ULID (`job_01j9…`), so ids sort by
//! creation time and say what they name.

pub const JOB: &str = "job";
pub const ASSET: &str = "ast";
pub const USER: &str = "usr";
pub const KEY: &str = "key";
pub const MODEL: &str = "mdl";
pub const WEBHOOK_DELIVERY: &str = "whd";

/// A new id with the given prefix.
pub fn new(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// True if `s` looks like an id with this prefix (prefix, underscore, 26 base-32 characters).
pub fn is_valid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.len() == 26 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = new(JOB);
        let b = new(JOB);
        assert!(is_valid(JOB, &a), "{a}");
        assert!(!is_valid(ASSET, &a));
        assert!(a.len() == 30);
        assert!(a <= b || a[..14] == b[..14]);
        assert!(!is_valid(JOB, "job_short"));
    }
}
