//! Identifiers: a short type prefix and a lowercase ULID (`job_01j9…`), so ids sort by
//! creation time and say what they name.

pub const JOB: &str = "job";
pub const ASSET: &str = "ast";
pub const USER: &str = "usr";
pub const KEY: &str = "key";
pub const MODEL: &str = "mdl";
pub const WEBHOOK_DELIVERY: &str = "whd";
pub const COLLECTION: &str = "col";
pub const PRESET: &str = "prs";
pub const UPLOAD: &str = "upl";
pub const DOWNLOAD: &str = "dwn";
/// A blob an upload's part is written to (the intent that guards it).
pub const UPLOAD_PART: &str = "upp";
/// A canvas lock's token.
pub const CANVAS_LOCK: &str = "lck";
/// A canvas snapshot.
pub const SNAPSHOT: &str = "snp";

static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);

/// A new id with the given prefix. Ids made by one process increase strictly, even within a
/// millisecond, so ordering by id is creation order (lists and cursors rely on it).
pub fn new(prefix: &str) -> String {
    let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let g = g.get_or_insert_with(ulid::Generator::new);
    let u = g.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", u.to_string().to_lowercase())
}

/// The smallest id with this prefix made at or after `unix_ms`: ids sort by creation time,
/// so `id >= lower_bound(p, t)` selects what was made from `t` on.
pub fn lower_bound(prefix: &str, unix_ms: u64) -> String {
    // A ULID holds 48 bits of milliseconds (until the year 10889).
    let u = ulid::Ulid::from_parts(unix_ms.min((1 << 48) - 1), 0);
    format!("{prefix}_{}", u.to_string().to_lowercase())
}

/// True if `s` looks like an id with this prefix (prefix, underscore, 26 base-32 characters).
pub fn is_valid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.len() == 26 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The 128 bits of an id's ULID written as a UUID (`8-4-4-4-12` lowercase hex), for
/// dialects whose ids are UUIDs. `from_uuid` reverses it. `None` when `id` is not a canonical
/// `prefix_<ulid>` id. (The UUID's version and variant bits are the ULID's bits: it is a
/// well-formed UUID, but not a v4 one.)
pub fn to_uuid(prefix: &str, id: &str) -> Option<String> {
    if !is_valid(prefix, id) {
        return None;
    }
    let text = &id[prefix.len() + 1..];
    let u = ulid::Ulid::from_string(text).ok()?;
    // Only the canonical spelling (the parser also takes more than 128 bits, and aliases).
    if u.to_string().to_lowercase() != text {
        return None;
    }
    Some(hyphenated(u.0))
}

/// 128 bits in the UUID text form (`8-4-4-4-12` lowercase hex digits).
pub fn hyphenated(bits: u128) -> String {
    let h = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The `prefix_<ulid>` id whose `to_uuid` is `uuid`. Takes the hyphenated form or 32 bare
/// hex digits, in either case; `None` for anything else.
pub fn from_uuid(prefix: &str, uuid: &str) -> Option<String> {
    let hex: String = if uuid.len() == 36 {
        let dashes = [8, 13, 18, 23];
        for (i, b) in uuid.bytes().enumerate() {
            if dashes.contains(&i) != (b == b'-') {
                return None;
            }
        }
        uuid.chars().filter(|c| *c != '-').collect()
    } else {
        uuid.to_string()
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bits = u128::from_str_radix(&hex, 16).ok()?;
    Some(format!(
        "{prefix}_{}",
        ulid::Ulid(bits).to_string().to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bounds_split_ids_by_time() {
        let before = new(ASSET);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let bound = lower_bound(ASSET, now);
        let after = new(ASSET);
        assert!(before < bound && bound <= after, "{before} {bound} {after}");
        assert!(is_valid(ASSET, &bound));
    }

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

    fn id_upper() -> String {
        new(MODEL).to_uppercase().replacen("MDL", "mdl", 1)
    }

    #[test]
    fn ids_as_uuids_and_back() {
        for _ in 0..100 {
            let id = new(MODEL);
            let u = to_uuid(MODEL, &id).unwrap();
            assert_eq!(u.len(), 36, "{u}");
            assert_eq!(u, u.to_lowercase());
            assert_eq!(from_uuid(MODEL, &u).as_deref(), Some(id.as_str()));
            assert_eq!(
                from_uuid(MODEL, &u.to_uppercase()).as_deref(),
                Some(id.as_str())
            );
            assert_eq!(
                from_uuid(MODEL, &u.replace('-', "")).as_deref(),
                Some(id.as_str())
            );
        }
        // The extremes of the 128 bits.
        let zero = "mdl_00000000000000000000000000";
        assert_eq!(
            to_uuid(MODEL, zero).as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        let max = from_uuid(MODEL, "ffffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
        assert_eq!(max, "mdl_7zzzzzzzzzzzzzzzzzzzzzzzzz");
        assert_eq!(
            to_uuid(MODEL, &max).as_deref(),
            Some("ffffffff-ffff-ffff-ffff-ffffffffffff")
        );
        // Not ids, not UUIDs.
        assert_eq!(to_uuid(MODEL, "job_00000000000000000000000000"), None);
        assert_eq!(to_uuid(MODEL, "sd15"), None);
        assert_eq!(to_uuid(MODEL, &id_upper()), None, "ids are lowercase");
        assert_eq!(
            to_uuid(MODEL, "mdl_8zzzzzzzzzzzzzzzzzzzzzzzzz"),
            None,
            "over 128 bits"
        );
        for bad in [
            "",
            "sd15",
            "ffffffff-ffff-ffff-ffff-fffffffffff",
            "ffffffffffff-ffff-ffff-ffff-ffffffff",
            "gfffffff-ffff-ffff-ffff-ffffffffffff",
            "+fffffff-ffff-ffff-ffff-ffffffffffff",
            "ffffffff-ffff-ffff-ffff-ffffffffffff0",
        ] {
            assert_eq!(from_uuid(MODEL, bad), None, "{bad}");
        }
    }
}
