//! Server-wide settings kept in the database (so every node shares them): the URL-signing
//! secret, created on first use.

use easel_core::Result;
use rand::RngCore;

use crate::db::{db_err, get_str, Db};

/// Read a setting, or store `make()` under it if absent (first writer wins).
pub async fn get_or_init(db: &Db, key: &str, make: impl FnOnce() -> String) -> Result<String> {
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(make())
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_one(tx.conn())
        .await
        .map_err(db_err)?;
    tx.commit().await?;
    get_str(&row, "value")
}

/// 32 random bytes, hex.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}
