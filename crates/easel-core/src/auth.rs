//! Principals: users, their roles and API keys. Keys look like `esk_<key id>_<secret>`; the
//! store keeps the SHA-256 of the secret and compares it in constant time.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    pub key_id: String,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// User names (unique in the store): 1 to 100 characters, not blank, no control characters.
pub fn check_user_name(field: &str, name: &str) -> crate::Result<()> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(crate::Error::invalid(
            field,
            "a user name is 1 to 100 characters, not blank, without control characters",
        ));
    }
    Ok(())
}

/// An API key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
    pub name: String,
    /// The first characters of the key, to recognize it.
    pub prefix: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

pub const KEY_PREFIX: &str = "esk";

/// Split a presented key into (key id, secret). `None` if it is not shaped like our keys.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?.strip_prefix('_')?;
    // key id is `key_<ulid>`: 30 characters.
    if rest.len() < 32 || rest.as_bytes()[30] != b'_' {
        return None;
    }
    let (id, secret) = (&rest[..30], &rest[31..]);
    crate::id::is_valid(crate::id::KEY, id).then_some((id, secret))
}

/// Assemble a key from its id and secret.
pub fn join_key(key_id: &str, secret: &str) -> String {
    format!("{KEY_PREFIX}_{key_id}_{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_and_join() {
        let id = crate::id::new(crate::id::KEY);
        let k = join_key(&id, "s3cr3t");
        assert_eq!(split_key(&k), Some((id.as_str(), "s3cr3t")));
        assert_eq!(split_key("esk_key_x_y"), None);
        assert_eq!(split_key("Bearer"), None);
    }
}
