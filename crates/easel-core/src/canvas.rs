//! Canvases: a JSON document (an editor's layers, shapes and the asset ids of its images)
//! kept as an asset of kind `canvas` and saved again and again. Its current document is
//! the asset's content; saves take snapshots (the versions a user can go back to, at most
//! [`MAX_SNAPSHOTS`], the oldest dropped first); one editor at a time may hold its lock.
//!
//! The lock is a token: whoever holds it (`lock_id`) may save and unlock; while a live lock
//! is held, a save without its token, a second lock and a delete are refused (409) naming
//! the holder and when it expires. A lock lasts until its `expires_at` (at most
//! [`MAX_LOCK`] ahead; the holder may extend it), then counts as absent. `force` unlocks
//! without the token: a canvas is reached by its owner and admins only, who may always end
//! a lock on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, ErrorKind, Result};
use crate::time::{self, Timestamp};

/// The type of a canvas's content.
pub const MIME: &str = "application/json";

/// The largest canvas document (images belong in assets, named by id, not inside it).
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;

/// The most snapshots a canvas keeps.
pub const MAX_SNAPSHOTS: u32 = 100;

/// The most document bytes one page of snapshots carries (a page stops early beyond it).
pub const MAX_SNAPSHOT_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// The longest a lock may be taken or extended for, from now.
pub const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// A canvas lock: its token, who holds it, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CanvasLock {
    /// The token a save or an unlock presents. Shown to its holder only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub holder_id: String,
    /// The holder's user name.
    pub holder_name: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// A canvas's state beside its asset record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Canvas {
    pub asset_id: String,
    /// 1 at creation, one more for each save of the document.
    pub version: u64,
    /// The live lock, if any (an expired one reads as none).
    pub lock: Option<CanvasLock>,
    /// The image asset shown for the canvas.
    pub thumbnail_id: Option<String>,
}

impl Canvas {
    /// The canvas as `viewer` may see it: the lock's token only to its holder.
    pub fn seen_by(mut self, viewer: &str) -> Canvas {
        if let Some(l) = &mut self.lock {
            if l.holder_id != viewer {
                l.id = None;
            }
        }
        self
    }
}

/// A saved version of a canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub id: String,
    /// The canvas's version it saved (snapshots sort by it).
    pub version: u64,
    /// Who saved it.
    pub author_id: String,
    /// Hex SHA-256 of the document.
    pub sha256: String,
    #[schema(value_type = String, format = DateTime)]
    pub taken_at: Timestamp,
    /// The document as saved (JSON text).
    pub document: String,
}

/// A document as a canvas keeps it: JSON (an object or an array) of at most
/// [`MAX_DOCUMENT_BYTES`]; the error names `field`.
pub fn check_document(field: &str, doc: &str) -> Result<()> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "a canvas is at most {} MiB (name images by asset id, not inline)",
                MAX_DOCUMENT_BYTES >> 20
            ),
        )
        .with_field(field));
    }
    match serde_json::from_str::<serde_json::Value>(doc) {
        Ok(serde_json::Value::Object(_) | serde_json::Value::Array(_)) => Ok(()),
        Ok(_) => Err(Error::invalid(field, "must be a JSON object or array")),
        Err(e) => Err(Error::invalid(field, format!("is not JSON: {e}"))),
    }
}

/// A lock's end as asked: after `now`, at most [`MAX_LOCK`] later; the error names `field`.
pub fn check_lock_end(field: &str, now: Timestamp, at: Timestamp) -> Result<Timestamp> {
    let max = now + chrono::Duration::from_std(MAX_LOCK).expect("lock span");
    if at <= now {
        return Err(Error::invalid(field, "must be in the future"));
    }
    if at > max {
        return Err(Error::invalid(
            field,
            format!("at most {} hours from now", MAX_LOCK.as_secs() / 3600),
        ));
    }
    Ok(time::from_millis(time::to_millis(at)))
}

/// The refusal of a change while `lock` is held by someone else (409, naming the holder).
pub fn locked(lock: &CanvasLock, field: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "the canvas is locked by {} ({}) until {}; send its lockId, wait, or unlock it with force",
            lock.holder_name,
            lock.holder_id,
            time::rfc3339(lock.expires_at)
        ),
    )
    .with_field(field)
}

/// Whether a change presenting `lock_id` may go through while `lock` (live) is held: only
/// with its token; the error names `field`.
pub fn may_change(lock: Option<&CanvasLock>, lock_id: Option<&str>, field: &str) -> Result<()> {
    match lock {
        None => Ok(()),
        Some(l) if l.id.is_some() && l.id.as_deref() == lock_id => Ok(()),
        Some(l) => Err(locked(l, field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: &str) -> CanvasLock {
        CanvasLock {
            id: Some(id.into()),
            holder_id: "usr_a".into(),
            holder_name: "alice".into(),
            expires_at: time::now(),
        }
    }

    #[test]
    fn documents_are_json_objects_or_arrays_within_the_limit() {
        check_document("canvas", r#"{"layers":[]}"#).unwrap();
        check_document("canvas", "[]").unwrap();
        assert_eq!(
            check_document("canvas", "3").unwrap_err().field.as_deref(),
            Some("canvas")
        );
        assert!(check_document("canvas", "{").is_err());
        let big = format!("[\"{}\"]", "x".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(
            check_document("canvas", &big).unwrap_err().kind,
            ErrorKind::PayloadTooLarge
        );
    }

    #[test]
    fn lock_ends_are_ahead_and_bounded() {
        let now = time::now();
        let e = check_lock_end("lockExpiresAt", now, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("lockExpiresAt"));
        assert!(check_lock_end("t", now, now + chrono::Duration::hours(25)).is_err());
        let at = now + chrono::Duration::minutes(5);
        assert_eq!(check_lock_end("t", now, at).unwrap(), at);
    }

    #[test]
    fn only_the_token_passes_a_live_lock() {
        may_change(None, None, "lockId").unwrap();
        let l = lock("lck_1");
        may_change(Some(&l), Some("lck_1"), "lockId").unwrap();
        let e = may_change(Some(&l), Some("lck_2"), "lockId").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains("alice (usr_a)"), "{}", e.message);
        assert!(may_change(Some(&l), None, "lockId").is_err());
        // A lock seen without its token cannot be passed by presenting nothing.
        let hidden = l.clone();
        let c = Canvas {
            asset_id: "a".into(),
            version: 1,
            lock: Some(hidden),
            thumbnail_id: None,
        }
        .seen_by("usr_b");
        assert_eq!(c.lock.as_ref().unwrap().id, None);
        assert!(may_change(c.lock.as_ref(), None, "lockId").is_err());
    }
}
