//! Blob storage on local disk and, when `EASEL_TEST_S3_ENDPOINT` is set, on an S3-protocol
//! server (bucket `EASEL_TEST_S3_BUCKET`, default `easel-test`, created if missing).
//!
//! Try it with moto: `pip install 'moto[server]'; moto_server -p 5000 &` and
//! `EASEL_TEST_S3_ENDPOINT=http://127.0.0.1:5000 cargo test -p easel-store --test blobs`.

use bytes::Bytes;
use easel_core::ErrorKind;
use easel_store::Blobs;

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
}
