//! Users and API keys. A key's secret is stored as its SHA-256 (keys are long random strings,
//! so a fast hash is enough) and compared in constant time.

use base64::Engine;
use easel_core::auth::{self, ApiKey, Principal, Role, User};
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;

use crate::db::{db_err, get_i64, get_opt_i64, get_str, Db};

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: get_str(r, "id")?,
        name: get_str(r, "name")?,
        role: Role::parse(&get_str(r, "role")?).unwrap_or(Role::User),
        created_at: from_millis(get_i64(r, "created_at")?),
    })
}

fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub async fn create_user(db: &Db, name: &str, role: Role) -> Result<User> {
    let user = User {
        id: easel_core::id::new(easel_core::id::USER),
        name: name.to_string(),
        role,
        created_at: time::now(),
    };
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode({
            let mut b = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut b);
            b
        })
    );
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO users (id, name, role, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&user.id)
        .bind(&user.name)
        .bind(role.as_str())
        .bind(secret)
        .bind(time::to_millis(user.created_at))
        .execute(tx.conn())
        .await
        .map_err(|e| match db_err(e) {
            e if e.kind == easel_core::ErrorKind::Conflict => Error::new(
                easel_core::ErrorKind::Conflict,
                format!("a user named `{name}` exists"),
            ),
            e => e,
        })?;
    tx.commit().await?;
    Ok(user)
}

/// The user with this name.
pub async fn user_by_name(db: &Db, name: &str) -> Result<Option<User>> {
    user_where(db, "name", name).await
}

pub async fn get_user(db: &Db, id: &str) -> Result<Option<User>> {
    user_where(db, "id", id).await
}

/// The user whose `column` (a unique one: `id`, `name`) is `value`.
async fn user_where(db: &Db, column: &'static str, value: &str) -> Result<Option<User>> {
    sqlx::query(&format!(
        "SELECT id, name, role, created_at FROM users WHERE {column} = $1"
    ))
    .bind(value)
    .fetch_optional(&db.pool)
    .await
    .map_err(db_err)?
    .map(|r| user_from_row(&r))
    .transpose()
}

pub async fn list_users(db: &Db) -> Result<Vec<User>> {
    let rows = sqlx::query("SELECT id, name, role, created_at FROM users ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(user_from_row).collect()
}

/// The owner's Standard Webhooks signing secret (`whsec_…`).
pub async fn webhook_secret(db: &Db, user_id: &str) -> Result<String> {
    let row = sqlx::query("SELECT webhook_secret FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("user"))?;
    get_str(&row, "webhook_secret")
}

/// True if at least one admin has a live key.
pub async fn has_admin_key(db: &Db) -> Result<bool> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE u.role = 'admin' AND k.revoked_at IS NULL",
    )
    .fetch_one(&db.pool)
    .await
    .map_err(db_err)?;
    Ok(get_i64(&row, "n")? > 0)
}

/// Create a key for `user_id`. Returns the listing row and the full key (shown once).
/// `secret` lets an operator choose the key (`EASEL_ADMIN_KEY`); otherwise it is random.
pub async fn create_key(
    db: &Db,
    user_id: &str,
    name: &str,
    chosen: Option<&str>,
) -> Result<(ApiKey, String)> {
    let user = get_user(db, user_id)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    let (id, full, secret) = match chosen {
        Some(k) => match auth::split_key(k) {
            Some((id, secret)) => (id.to_string(), k.to_string(), secret.to_string()),
            None => {
                // A free-form operator key: give it an id and hash the whole string.
                (
                    easel_core::id::new(easel_core::id::KEY),
                    k.to_string(),
                    k.to_string(),
                )
            }
        },
        None => {
            let id = easel_core::id::new(easel_core::id::KEY);
            let secret = random_secret(32);
            (id.clone(), auth::join_key(&id, &secret), secret)
        }
    };
    let prefix: String = full.chars().take(12).collect();
    let now = time::now();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(name)
    .bind(&prefix)
    .bind(hash_secret(&secret))
    .bind(time::to_millis(now))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    let key = ApiKey {
        id,
        user_id: user.id,
        user_name: user.name,
        role: user.role,
        name: name.to_string(),
        prefix,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((key, full))
}

const KEY_COLS: &str =
    "k.id, k.user_id, u.name AS user_name, u.role, k.name, k.prefix, k.secret_hash, \
    k.created_at, k.last_used_at, k.revoked_at";

fn key_from_row(r: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: get_str(r, "id")?,
        user_id: get_str(r, "user_id")?,
        user_name: get_str(r, "user_name")?,
        role: Role::parse(&get_str(r, "role")?).unwrap_or(Role::User),
        name: get_str(r, "name")?,
        prefix: get_str(r, "prefix")?,
        created_at: from_millis(get_i64(r, "created_at")?),
        last_used_at: get_opt_i64(r, "last_used_at")?.map(from_millis),
        revoked_at: get_opt_i64(r, "revoked_at")?.map(from_millis),
    })
}

pub async fn list_keys(db: &Db) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id"
    ))
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(key_from_row).collect()
}

/// Revoke a key; false if there is no such live key.
pub async fn revoke_key(db: &Db, id: &str) -> Result<bool> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    if n > 0 {
        // The owner's signed URLs issued until now stop working with it, and every process
        // drops the key from its cache (delivered at commit).
        sqlx::query(
            "UPDATE users SET keys_revoked_at = $1 WHERE id = (SELECT user_id FROM api_keys WHERE id = $2)",
        )
        .bind(now)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
        db.notify_tx(&mut tx, crate::notify::AUTH, id).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// When one of the user's keys was last revoked (epoch ms), if ever: signed URLs issued
/// before then are no longer honoured.
pub async fn keys_revoked_at(db: &Db, user_id: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT keys_revoked_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => crate::db::get_opt_i64(&r, "keys_revoked_at"),
        None => Ok(None),
    }
}

/// Check a presented key. `None` for unknown, malformed or revoked keys.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Option<Principal>> {
    let rows = match auth::split_key(presented) {
        Some((id, _)) => sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1 AND k.revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?,
        // Operator-chosen keys have no embedded id: look them up by prefix.
        None => sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = $1 AND k.revoked_at IS NULL"
        ))
        .bind(presented.chars().take(12).collect::<String>())
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?,
    };
    let secret = auth::split_key(presented)
        .map(|(_, s)| s)
        .unwrap_or(presented);
    let want = hash_secret(secret);
    for r in rows {
        let stored = get_str(&r, "secret_hash")?;
        if bool::from(stored.as_bytes().ct_eq(want.as_bytes())) {
            let key = key_from_row(&r)?;
            return Ok(Some(Principal {
                user_id: key.user_id,
                role: key.role,
                key_id: key.id,
            }));
        }
    }
    Ok(None)
}

/// Note a key's use (best effort, at most once a minute per key by the caller).
pub async fn touch_key(db: &Db, id: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(time::to_millis(time::now()))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    tx.commit().await
}
