//! Integration tests of the metadata store, run on every backend `testing::backends()` gives
//! (SQLite always, PostgreSQL when `EASEL_TEST_DATABASE_URL` is set).

#[allow(dead_code)]
#[path = "../../src/testing.rs"]
mod testing;

mod canvases;
mod jobs;
mod library;
mod models;
mod uploads;
mod users;
mod webhooks;

use easel_core::asset::{Asset, AssetKind};
use sha2::{Digest, Sha256};

/// An output asset of `job` (the row a worker would write after storing its blob).
pub fn output_asset(owner_id: &str, job_id: &str, index: u32, data: &[u8]) -> Asset {
    Asset {
        id: easel_core::id::new(easel_core::id::ASSET),
        owner_id: owner_id.to_string(),
        job_id: Some(job_id.to_string()),
        output_index: Some(index),
        kind: AssetKind::Output,
        mime_type: "image/png".into(),
        width: Some(4),
        height: Some(2),
        bytes: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
        metadata: serde_json::json!({"seed": index}),
        parent_id: None,
        root_id: None,
        name: None,
        description: None,
        privacy: Default::default(),
        hidden: false,
        created_at: easel_core::time::now(),
        updated_at: easel_core::time::now(),
    }
}
