//! Identifiers: a short type prefix and a lowercase ULID (`job_01j9…`), so ids sort by
//! creation time and say what they name.

pub const JOB: &str = "job";
pub const ASSET: &str = "ast";
pub const USER: &str = "usr";
pub const KEY: &str = "key";
pub const MODEL: &str = "mdl";
pub const WEBHOOK_DELIVERY: &str = "whd";

static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);

/// A new id with the given prefix. Ids made by one process increase strictly, even within a
/// millisecond, so ordering by id is creation order (lists and cursors rely on it).
pub fn new(prefix: &str) -> String {
    let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let g = g.get_or_insert_with(ulid::Generator::new);
    let u = g.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", u.to_string().to_lowercase())
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
        assert!(a < b, "{a} < {b}");
        let many: Vec<String> = (0..1000).map(|_| new(JOB)).collect();
        assert!(many.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert!(!is_valid(JOB, "job_short"));
    }
}
