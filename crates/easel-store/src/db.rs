//! The SQL connection: `Any` pool over SQLite or PostgreSQL, migrations, and the handful of
//! places where the two differ. On SQLite every write transaction takes an in-process lock
//! first, so writers queue in Rust instead of spinning on `SQLITE_BUSY`.

use std::sync::Arc;
use std::time::Duration;

use easel_core::{Error, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
    /// The URL connected to (PostgreSQL listeners open their own connection).
    url: String,
}

/// A write transaction (plus, on SQLite, the process-wide writer lock). Dropped without
/// `commit`, it rolls back on a spawned task that keeps the writer lock until the rollback
/// is done — otherwise the connection would go back to the pool still holding SQLite's
/// write lock, and the next writer would fail with "database is locked".
pub struct WriteTx {
    tx: Option<Transaction<'static, Any>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(mut self) -> Result<()> {
        let tx = self.tx.take().expect("transaction present until commit");
        tx.commit().await.map_err(db_err)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let guard = self.guard.take();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.rollback().await;
                    drop(guard);
                });
            }
        }
    }
}

impl WriteTx {
    /// The connection to run statements on.
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        self.tx.as_mut().expect("transaction present until commit")
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// The URL connected to, without its password (for logs and summaries).
    pub fn display_url(&self) -> String {
        redact_password(&self.url)
    }
}

/// `scheme://user:secret@host/…?password=secret` → `scheme://user:***@host/…?password=***`.
pub fn redact_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    let Some(query) = query else { return base };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

impl Db {
    /// Connect to `sqlite://path` (created if missing) or `postgres://…` and run migrations.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::invalid(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        };
        let (url, max) = match backend {
            Backend::Sqlite if !url.contains('?') => (format!("{url}?mode=rwc"), 8),
            Backend::Sqlite => (url.to_string(), 8),
            Backend::Postgres => (url.to_string(), 16),
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never block the writer; NORMAL sync survives process
                    // crashes (a power cut may lose the last commits).
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(&url)
            .await
            .map_err(|e| Error::unavailable(format!("cannot open database: {e}")))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| Error::unavailable(format!("database migration failed: {e}")))?;
        Ok(Db {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            url,
        })
    }

    pub async fn begin(&self) -> Result<WriteTx> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock now (waiting on busy_timeout for other
        // processes), so a transaction that reads first cannot fail to upgrade later.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(db_err)?;
        Ok(WriteTx {
            tx: Some(tx),
            guard,
        })
    }

    /// `FOR UPDATE SKIP LOCKED` where the database has it (SQLite's writer lock makes it moot).
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// `FOR UPDATE` where the database has it (SQLite's writer lock serializes writers).
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Tell every process listening on `channel` (`notify`): PostgreSQL's `NOTIFY`, sent
    /// now (outside any transaction). SQLite has no such thing: a no-op there, where the
    /// processes that share a database file rely on their timers.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        match self.backend {
            Backend::Postgres => pg_notify(&self.pool, channel, payload).await,
            Backend::Sqlite => Ok(()),
        }
    }

    /// `notify` inside a write transaction: PostgreSQL delivers it when `tx` commits (and
    /// never if it rolls back), with no round trip of its own.
    pub async fn notify_tx(&self, tx: &mut WriteTx, channel: &str, payload: &str) -> Result<()> {
        match self.backend {
            Backend::Postgres => pg_notify(tx.conn(), channel, payload).await,
            Backend::Sqlite => Ok(()),
        }
    }

    /// Listen on `channels` (PostgreSQL; `None` on SQLite).
    pub async fn listen(&self, channels: &[&str]) -> Result<Option<crate::notify::Listener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        crate::notify::Listener::connect(&self.url, channels)
            .await
            .map(Some)
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_err)
    }
}

async fn pg_notify<'e, E>(e: E, channel: &str, payload: &str) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(e)
        .await
        .map(|_| ())
        .map_err(db_err)
}

/// Map a database error to the core error: unique violations are conflicts, text the
/// database cannot hold is invalid input, the rest is "unavailable" (the database, not the
/// request, is at fault). The database's own text is logged, never returned: it can name
/// tables, columns and values.
pub fn db_err(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return Error::new(easel_core::ErrorKind::Conflict, "already exists");
        }
        // PostgreSQL: 22021 character_not_in_repertoire (a NUL), 22P05 untranslatable
        // character. The API refuses such text first; this keeps any other path honest.
        if matches!(d.code().as_deref(), Some("22021" | "22P05")) {
            tracing::warn!(error = %e, "text the database cannot store");
            return Error::new(
                easel_core::ErrorKind::Invalid,
                "the request holds text that cannot be stored (a NUL character?)",
            );
        }
    }
    tracing::error!(error = %e, "database error");
    Error::unavailable("the database is unavailable; try again later")
}

// Row readers: every integer column is read as i64 (SQLite has no narrower type).

pub fn get_str(row: &AnyRow, col: &str) -> Result<String> {
    row.try_get::<String, _>(col).map_err(db_err)
}
pub fn get_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>> {
    row.try_get::<Option<String>, _>(col).map_err(db_err)
}
pub fn get_i64(row: &AnyRow, col: &str) -> Result<i64> {
    row.try_get::<i64, _>(col).map_err(db_err)
}
pub fn get_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    row.try_get::<Option<i64>, _>(col).map_err(db_err)
}
pub fn get_f64(row: &AnyRow, col: &str) -> Result<f64> {
    row.try_get::<f64, _>(col).map_err(db_err)
}
pub fn get_json(row: &AnyRow, col: &str) -> Result<serde_json::Value> {
    let s = get_str(row, col)?;
    serde_json::from_str(&s).map_err(|e| Error::internal(format!("bad JSON in {col}: {e}")))
}
pub fn get_opt_json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<Option<T>> {
    match get_opt_str(row, col)? {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| Error::internal(format!("bad JSON in {col}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        use super::redact_password as r;
        assert_eq!(
            r("postgres://easel:s3cr@t@db:5432/x"),
            "postgres://easel:***@db:5432/x"
        );
        assert_eq!(r("postgres://easel@db/x"), "postgres://easel@db/x");
        assert_eq!(r("sqlite:///data/easel.db"), "sqlite:///data/easel.db");
        assert_eq!(
            r("postgres://db/x?user=e&password=hunter2&sslmode=require"),
            "postgres://db/x?user=e&password=***&sslmode=require"
        );
    }
}
