//! Blob storage on local disk and, when `EASEL_TEST_S3_ENDPOINT` is set, on an S3-protocol
//! server (bucket `EASEL_TEST_S3_BUCKET`, default `easel-test`, created if missing).
//!
//! Try it with moto: `pip install 'moto[server]'; moto_server -p 5000 &` and
//! `EASEL_TEST_S3_ENDPOINT=http://127.0.0.1:5000 cargo test -p easel-store --test blobs`.

#[allow(dead_code)]
#[path = "../src/testing.rs"]
mod testing;

use std::time::Duration;

use bytes::Bytes;
use easel_core::asset::{blob_key, Asset, AssetKind};
use easel_core::ErrorKind;
use easel_store::{assets, intents, Blobs, Store};

/// A process killed between a blob's write and its row's commit, or between a row's
/// deletion and its blob's, leaves an intent: the collector deletes those blobs once they
/// are older than the grace period, and nothing else, so no blob is left without its row.
async fn crashes_leave_no_orphans(name: &str, store: &Store) {
    let db = &store.db;
    let owner = testing::user(db, "orphans").await;
    let asset = |id: &str| Asset {
        id: id.to_string(),
        owner_id: owner.id.clone(),
        job_id: None,
        output_index: None,
        kind: AssetKind::Upload,
        mime_type: "image/png".into(),
        width: Some(1),
        height: Some(1),
        bytes: 3,
        sha256: "00".into(),
        metadata: serde_json::json!({}),
        parent_id: None,
        root_id: None,
        name: None,
        description: None,
        privacy: Default::default(),
        hidden: false,
        created_at: easel_core::time::now(),
        updated_at: easel_core::time::now(),
    };
    let ids: Vec<String> = (0..3)
        .map(|_| easel_core::id::new(easel_core::id::ASSET))
        .collect();
    let key = |i: usize| blob_key(&owner.id, &ids[i]);
    let data = || Bytes::from_static(b"png");
    // 0: killed after the blob was written, before the row's commit.
    intents::put(store, &ids[0], &key(0), data()).await.unwrap();
    // 1: written and committed.
    intents::put(store, &ids[1], &key(1), data()).await.unwrap();
    assets::insert(db, &asset(&ids[1])).await.unwrap();
    // 2: committed, then killed after its row was deleted, before its blob was.
    intents::put(store, &ids[2], &key(2), data()).await.unwrap();
    assets::insert(db, &asset(&ids[2])).await.unwrap();
    assert!(assets::delete(db, &ids[2]).await.unwrap(), "{name}");

    // Within the grace period nothing goes (another process may be writing).
    let n = intents::collect(store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(n, 0, "{name}");
    assert!(store.blobs.exists(&key(0)).await.unwrap(), "{name}");
    // Past it, exactly the two orphans go.
    let n = intents::collect(store, Duration::ZERO).await.unwrap();
    assert_eq!(n, 2, "{name}");
    let exists = [
        store.blobs.exists(&key(0)).await.unwrap(),
        store.blobs.exists(&key(1)).await.unwrap(),
        store.blobs.exists(&key(2)).await.unwrap(),
    ];
    assert_eq!(exists, [false, true, false], "{name}");
    assert_eq!(
        testing::count(
            db,
            "SELECT COUNT(*) AS n FROM blob_intents WHERE claimed < 2"
        )
        .await,
        0,
        "{name}"
    );
    assert_eq!(
        intents::collect(store, Duration::ZERO).await.unwrap(),
        0,
        "{name}"
    );

    // A write slower than the grace period: its blob is collected, and its row can no
    // longer be committed (never a row without its blob).
    let slow = easel_core::id::new(easel_core::id::ASSET);
    let slow_key = blob_key(&owner.id, &slow);
    intents::put(store, &slow, &slow_key, data()).await.unwrap();
    assert_eq!(
        intents::collect(store, Duration::ZERO).await.unwrap(),
        1,
        "{name}"
    );
    assert!(!store.blobs.exists(&slow_key).await.unwrap(), "{name}");
    assert!(assets::insert(db, &asset(&slow)).await.is_err(), "{name}");
    assert_eq!(assets::get(db, &slow).await.unwrap(), None, "{name}");
}

#[tokio::test]
async fn crashes_leave_no_orphans_on_local_disk() {
    for b in testing::backends().await {
        crashes_leave_no_orphans(b.name, &b.store).await;
    }
}

/// The same checks for any store.
async fn exercise(name: &str, blobs: &Blobs) {
    let data = Bytes::from_static(b"\x89PNG\r\n\x1a\n0123456789abcdef");
    let key = "assets/usr_test/ast_one";
    assert!(
        !blobs.exists(key).await.unwrap(),
        "{name}: exists before put"
    );
    let e = blobs.get(key).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::NotFound,
        "{name}: get of a missing blob: {e}"
    );

    blobs.put(key, data.clone()).await.unwrap();
    assert!(blobs.exists(key).await.unwrap(), "{name}");
    assert_eq!(blobs.get(key).await.unwrap(), data, "{name}");
    assert_eq!(
        blobs.get_range(key, 8..12).await.unwrap(),
        Bytes::from_static(b"0123"),
        "{name}"
    );
    assert_eq!(
        blobs.get_range(key, 0..1).await.unwrap(),
        data.slice(0..1),
        "{name}"
    );
    let len = data.len() as u64;
    assert_eq!(
        blobs.get_range(key, len - 4..len).await.unwrap(),
        Bytes::from_static(b"cdef"),
        "{name}"
    );

    // Overwrite, and a second key beside it.
    let other = "assets/usr_test/ast_two";
    blobs.put(key, Bytes::from_static(b"new")).await.unwrap();
    blobs
        .put(other, Bytes::from_static(b"other"))
        .await
        .unwrap();
    assert_eq!(
        blobs.get(key).await.unwrap(),
        Bytes::from_static(b"new"),
        "{name}"
    );
    assert_eq!(
        blobs.get(other).await.unwrap(),
        Bytes::from_static(b"other"),
        "{name}"
    );

    // An empty blob is a blob.
    blobs
        .put("assets/usr_test/empty", Bytes::new())
        .await
        .unwrap();
    assert!(
        blobs.exists("assets/usr_test/empty").await.unwrap(),
        "{name}"
    );
    assert!(
        blobs.get("assets/usr_test/empty").await.unwrap().is_empty(),
        "{name}"
    );

    blobs.delete(key).await.unwrap();
    assert!(!blobs.exists(key).await.unwrap(), "{name}: deleted");
    assert_eq!(
        blobs.get(key).await.unwrap_err().kind,
        ErrorKind::NotFound,
        "{name}"
    );
    blobs.delete(key).await.unwrap(); // a missing blob is not an error
    assert!(
        blobs.exists(other).await.unwrap(),
        "{name}: the other blob is untouched"
    );
    blobs.delete(other).await.unwrap();
    blobs.delete("assets/usr_test/empty").await.unwrap();
    blobs.ping().await.unwrap();
}

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let blobs = Blobs::open(&format!("file://{}", root.display())).unwrap();
    assert!(root.is_dir(), "the folder is created");
    exercise("local", &blobs).await;

    // Blobs are plain files under the folder.
    blobs
        .put("assets/u/a", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("assets/u/a")).unwrap(), b"x");
}

#[test]
fn bad_urls_are_rejected() {
    for url in ["ftp://x", "/tmp/blobs", "s3://", "s3:///prefix"] {
        let e = Blobs::open(url).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{url}: {e}");
        assert_eq!(e.field.as_deref(), Some("store_url"), "{url}");
    }
}

#[tokio::test]
async fn s3() {
    let Ok(endpoint) = std::env::var("EASEL_TEST_S3_ENDPOINT") else {
        eprintln!("skipping S3: EASEL_TEST_S3_ENDPOINT is not set");
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let bucket = std::env::var("EASEL_TEST_S3_BUCKET").unwrap_or_else(|_| "easel-test".into());
    // `Blobs::open` configures the client from the environment. This is the only test of
    // this binary that reads or writes these variables.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    std::env::set_var("EASEL_S3_ENDPOINT", &endpoint);

    // Create the bucket (an unsigned PUT is enough for moto; an existing bucket is fine).
    let res = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("EASEL_TEST_S3_ENDPOINT={endpoint} is not reachable: {e}"));
    eprintln!("creating bucket {bucket}: HTTP {}", res.status());

    // A fresh prefix per run, and the bucket root.
    let prefix = format!("easel-test-{:016x}", rand::random::<u64>());
    let blobs = Blobs::open(&format!("s3://{bucket}/{prefix}")).unwrap();
    exercise("s3 (prefix)", &blobs).await;
    let root = Blobs::open(&format!("s3://{bucket}")).unwrap();
    exercise("s3 (bucket root)", &root).await;

    // The prefix really is a prefix: a blob under it is visible from the root at prefix/key.
    blobs.put("k", Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(
        root.get(&format!("{prefix}/k")).await.unwrap(),
        Bytes::from_static(b"v")
    );
    blobs.delete("k").await.unwrap();
    assert!(!root.exists(&format!("{prefix}/k")).await.unwrap());

    let db = testing::sqlite().await;
    let store = Store {
        db: db.db().clone(),
        blobs,
    };
    crashes_leave_no_orphans("s3", &store).await;
}
