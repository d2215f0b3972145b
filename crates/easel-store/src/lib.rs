//! Persistence: metadata in SQL (SQLite embedded by default, PostgreSQL for scale-out; one
//! code path through sqlx's `Any` driver, with the few dialect differences in `db`) and
//! blobs in an object store (local disk by default, S3 by URL).
//!
//! Invariant: an asset row is written only after its blob, in the same transaction as the
//! job's terminal state — never a row without its blob, never a succeeded job without assets.

pub mod assets;
pub mod blobs;
pub mod canvases;
pub mod collections;
pub mod db;
pub mod downloads;
pub mod external_ids;
pub mod intents;
pub mod jobs;
pub mod models;
pub mod notify;
pub mod settings;
pub mod tags;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text_search;
pub mod uploads;
pub mod usage;
pub mod users;
pub mod webhooks;

// Lets `testing` name the crate the same way from inside and from integration tests.
extern crate self as easel_store;

pub use blobs::Blobs;
pub use db::{Backend, Db};

/// Metadata and blobs together: what the server and workers share.
#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub blobs: Blobs,
}
