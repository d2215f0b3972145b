//! Blob storage through `object_store`: `file:///abs/dir` (local disk, the default) or
//! `s3://bucket/prefix` (AWS variables; `EASEL_S3_ENDPOINT` or `AWS_ENDPOINT_URL` for any
//! S3-protocol server).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use easel_core::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("url", &self.url).finish()
    }
}

impl Blobs {
    /// The store's URL (`file://…`, `s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Blobs {
    pub fn open(url: &str) -> Result<Blobs> {
        let bad = |m: String| Error::invalid("store_url", m);
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path)
                .map_err(|e| bad(format!("cannot create blob folder {path}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| bad(format!("cannot open blob folder {path}: {e}")))?;
            return Ok(Blobs {
                store: Arc::new(fs),
                prefix: String::new(),
                url: url.to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("s3:// URL needs a bucket".into()));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = std::env::var("EASEL_S3_ENDPOINT")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok();
            if let Some(ep) = endpoint {
                b = b
                    .with_allow_http(ep.starts_with("http://"))
                    .with_endpoint(ep)
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = b
                .build()
                .map_err(|e| bad(format!("S3 configuration: {e}")))?;
            return Ok(Blobs {
                store: Arc::new(s3),
                prefix: prefix.trim_matches('/').to_string(),
                url: url.to_string(),
            });
        }
        Err(bad("must start with file:// or s3://".into()))
    }

    /// Wrap an existing object store (tests, embedding).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Blobs {
        Blobs {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            url: format!("custom://{prefix}"),
        }
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let r = self.store.get(&self.path(key)).await.map_err(store_err)?;
        r.bytes().await.map_err(store_err)
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path(key), range)
            .await
            .map_err(store_err)
    }

    /// The blob's size in bytes.
    pub async fn size(&self, key: &str) -> Result<u64> {
        let meta = self.store.head(&self.path(key)).await.map_err(store_err)?;
        Ok(meta.size as u64)
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The keys under `prefix` (`assets/`), in no order: for audits and sweeps.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let under = self.path(prefix.trim_end_matches('/'));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.store
            .list(Some(&under))
            .map_ok(|m| {
                let full = m.location.to_string();
                full.strip_prefix(&strip).unwrap_or(&full).to_string()
            })
            .try_collect()
            .await
            .map_err(store_err)
    }

    /// Delete; a missing blob is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// A cheap call that fails when the store is unreachable (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.exists("readyz-probe").await.map(|_| ())
    }
}

fn store_err(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found("blob"),
        e => {
            tracing::error!(error = %e, "blob store error");
            Error::unavailable("the blob store is unavailable; try again later")
        }
    }
}
