//! Test support: a fresh, empty store on every backend the environment offers.
//!
//! * SQLite, always: a new database file in a temporary folder.
//! * PostgreSQL, when `EASEL_TEST_DATABASE_URL` is set (for example
//!   `postgres://postgres@127.0.0.1:5432/postgres`): a new database `easel_t_<random>` is
//!   created through that URL for the test (with the ICU `en-US` collation where the server
//!   has it), migrated, and dropped (`WITH (FORCE)`, best effort) when the `TestStore` is
//!   dropped. Set `EASEL_TEST_KEEP_DB=1` to keep it for inspection.
//!
//! Blobs go to a local folder inside the store's temporary folder in both cases.
//!
//! Enabled by the `testing` feature (and in this crate's own unit tests). This file only
//! names the crate as `easel_store::…`, so the crate's integration tests can also include it
//! with `#[path = "../src/testing.rs"] mod testing;`.

use easel_core::auth::Role;
use easel_core::auth::User;
use easel_core::job::NewJob;
use easel_store::{Blobs, Db, Store};
use rand::Rng;
use sqlx::Connection;

/// The variable naming a PostgreSQL server to test against.
pub const DATABASE_URL_VAR: &str = "EASEL_TEST_DATABASE_URL";

/// One backend's fresh store. Keep it alive for the whole test: dropping it removes its
/// temporary folder and (PostgreSQL) its database.
pub struct TestStore {
    /// `sqlite` or `postgres`: name it in assertion messages.
    pub name: &'static str,
    pub store: Store,
    /// The database URL, for opening more connections (a server under test).
    pub db_url: String,
    blob_dir: std::path::PathBuf,
    _guard: Guard,
}

impl TestStore {
    pub fn db(&self) -> &Db {
        &self.store.db
    }

    pub fn blobs(&self) -> &Blobs {
        &self.store.blobs
    }

    /// The local folder the blobs are stored in.
    pub fn blob_dir(&self) -> &std::path::Path {
        &self.blob_dir
    }

    /// Number of blobs stored (files under the blob folder).
    pub fn blob_count(&self) -> usize {
        fn walk(p: &std::path::Path) -> usize {
            match std::fs::read_dir(p) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        Ok(_) => 1,
                        Err(_) => 0,
                    })
                    .sum(),
                Err(_) => 0,
            }
        }
        walk(&self.blob_dir)
    }
}

struct Guard {
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// A database created for one test, dropped with it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::env::var_os("EASEL_TEST_KEEP_DB").is_some() {
            eprintln!("keeping PostgreSQL test database {}", self.name);
            return;
        }
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime (or while unwinding): use a thread of our own.
        let res = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::Executor::execute(&mut conn, sql.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

/// A fresh store on every available backend: SQLite always, PostgreSQL when
/// `EASEL_TEST_DATABASE_URL` is set (otherwise a line says it was skipped).
pub async fn backends() -> Vec<TestStore> {
    let mut out = vec![sqlite().await];
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => out.push(postgres(url.trim()).await),
        _ => eprintln!("skipping PostgreSQL: {DATABASE_URL_VAR} is not set"),
    }
    out
}

/// A fresh SQLite store in a temporary folder.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db_url = format!("sqlite://{}", dir.path().join("easel.db").display());
    let db = Db::connect(&db_url)
        .await
        .unwrap_or_else(|e| panic!("opening {db_url}: {e}"));
    let (blobs, blob_dir) = local_blobs(&dir);
    TestStore {
        name: "sqlite",
        store: Store { db, blobs },
        db_url,
        blob_dir,
        _guard: Guard {
            _dir: dir,
            _pg: None,
        },
    }
}

/// A fresh PostgreSQL database created through `admin_url` (any database the role can
/// connect to and create databases from).
pub async fn postgres(admin_url: &str) -> TestStore {
    let name = format!("easel_t_{}", random_suffix());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}: cannot connect to {admin_url}: {e}"));
    // A linguistic collation, like the `en_US.utf8` default of many installations (string
    // comparisons differ from `C`: punctuation sorts low). PostgreSQL 15+ with ICU; else the
    // server's default.
    let icu =
        format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
    if sqlx::Executor::execute(&mut conn, icu.as_str())
        .await
        .is_err()
    {
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    }
    let _ = conn.close().await;
    // From here on the guard drops the database, even if the rest panics.
    let pg = PgDatabase {
        admin_url: admin_url.to_string(),
        name: name.clone(),
    };
    let mut url = url::Url::parse(admin_url).unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}: {e}"));
    url.set_path(&format!("/{name}"));
    let db = Db::connect(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("opening test database {name}: {e}"));
    let dir = tempfile::tempdir().expect("temporary folder");
    let (blobs, blob_dir) = local_blobs(&dir);
    TestStore {
        name: "postgres",
        store: Store { db, blobs },
        db_url: url.to_string(),
        blob_dir,
        _guard: Guard {
            _dir: dir,
            _pg: Some(pg),
        },
    }
}

fn local_blobs(dir: &tempfile::TempDir) -> (Blobs, std::path::PathBuf) {
    let path = dir.path().join("blobs");
    let blobs = Blobs::open(&format!("file://{}", path.display())).expect("local blob folder");
    (blobs, path)
}

/// 16 random lowercase hex digits (unique names for databases, buckets, prefixes).
pub fn random_suffix() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// A new user with the `user` role.
pub async fn user(db: &Db, name: &str) -> User {
    easel_store::users::create_user(db, name, Role::User)
        .await
        .unwrap_or_else(|e| panic!("creating user {name}: {e}"))
}

/// A plain job for `owner`: priority 0, three attempts, no webhook, no idempotency key.
pub fn new_job(owner_id: &str, task: &str) -> NewJob {
    NewJob {
        owner_id: owner_id.to_string(),
        task: task.to_string(),
        model: None,
        input: serde_json::json!({"image": "ast_test", "n": 1}),
        priority: 0,
        webhook: None,
        max_attempts: 3,
        idempotency_key: None,
        request: None,
        external_id: None,
        resource: easel_core::job::Resource::of(task, None),
        hide_outputs: false,
    }
}

/// Run one statement in a write transaction (tests that need to bend time or state);
/// returns the rows affected.
pub async fn exec(db: &Db, sql: &str) -> u64 {
    let mut tx = db.begin().await.expect("begin");
    let n = sqlx::query(sql)
        .execute(tx.conn())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected();
    tx.commit().await.expect("commit");
    n
}

/// One integer from a query (`SELECT COUNT(*) AS n …`): the column must be named `n`.
pub async fn count(db: &Db, sql: &str) -> i64 {
    let row = sqlx::query(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    sqlx::Row::try_get::<i64, _>(&row, "n").unwrap_or_else(|e| panic!("{sql}: {e}"))
}
