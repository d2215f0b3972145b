//! Leonardo's ids: UUIDv4s, kept as external ids of Easel's jobs, assets, models and users.

use super::*;

/// The namespaces of this dialect's external ids (`easel_store::external_ids`).
/// Generation ids (UUIDv4) → job ids.
pub(super) const NS_GENERATION: &str = "leonardo.generation";
/// Image ids (UUIDv4) → asset ids.
pub(super) const NS_IMAGE: &str = "leonardo.image";
/// Model ids (UUIDv4) → model ids (global: owner `""`).
pub(super) const NS_MODEL: &str = "leonardo.model";
/// User ids (UUIDv4) → user ids.
pub(super) const NS_USER: &str = "leonardo.user";

/// The spec's id pattern, `[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89aAbB][a-f0-9]{3}-[a-f0-9]{12}`,
/// matched in full.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'A' | b'b' | b'B'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// A random UUIDv4, lowercase.
pub fn new_uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    easel_core::id::hyphenated(u128::from_be_bytes(b))
}

pub(super) fn check_uuid(field: &str, s: &str) -> Result<()> {
    if is_uuid_v4(s) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "`{s}` is not a UUIDv4 (lowercase `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`)"
            ),
        )
        .into())
    }
}

/// The caller's Leonardo user id (assigned on first use).
pub(super) async fn user_uuid(state: &AppState, who: &Principal) -> Result<String> {
    Ok(easel_store::external_ids::get_or_assign(
        &state.store.db,
        NS_USER,
        &who.user_id,
        &who.user_id,
        new_uuid_v4,
    )
    .await?)
}
