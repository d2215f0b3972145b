//! Uploads in parts: a file larger than one request body is announced (`UploadSpec`: its
//! name, size, type and number of parts), sent part by part (each `PUT` to a signed URL of
//! this server), then completed: the parts are joined in order, checked against the
//! announced size, validated as what the upload is for (an image is decoded in full) and
//! stored as one asset, atomically with the upload's completion. An upload of kind `lora`
//! becomes a model of the uploader's instead: a LoRA adapter, checked as a whole
//! safetensors file ([`crate::safetensors::check`]; pickles refused) holding LoRA weights
//! the engine merges ([`crate::safetensors::check_lora`]).
//! An upload not completed within [`UPLOAD_TTL`] expires: its parts are deleted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::time::Timestamp;

/// The most parts an upload may have (as S3's multipart uploads and Scenario's spec).
pub const MAX_PARTS: u32 = 10_000;

/// How long an upload may stay incomplete before it expires and its parts are deleted.
pub const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a completion may stay `validating` before another request may take it over
/// (the process completing it stopped).
pub const VALIDATING_STALE: Duration = Duration::from_secs(600);

/// The most uploads one owner may have open at once.
pub const MAX_OPEN_UPLOADS: u64 = 100;

/// The longest file name and content type kept.
pub const MAX_NAME_CHARS: usize = 255;

/// What the file becomes once complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    /// An image asset (decoded in full to validate it, within the pixel limits).
    #[default]
    Image,
    /// A LoRA adapter (a `.safetensors` file of LoRA weights): a private model of the
    /// uploader's, tagged `lora`, applied through a request's `loras`.
    Lora,
}

impl UploadKind {
    pub const ALL: [UploadKind; 2] = [UploadKind::Image, UploadKind::Lora];
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Image => "image",
            UploadKind::Lora => "lora",
        }
    }
    pub fn parse(s: &str) -> Option<UploadKind> {
        UploadKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where an upload stands: `pending` (parts may be sent), `validating` (being completed),
/// `complete` (the asset exists: `asset_id`), `failed` (`error` says why; its parts are
/// gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    Pending,
    Validating,
    Complete,
    Failed,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 4] = [
        UploadStatus::Pending,
        UploadStatus::Validating,
        UploadStatus::Complete,
        UploadStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Validating => "validating",
            UploadStatus::Complete => "complete",
            UploadStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<UploadStatus> {
        UploadStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Parts may still be sent and the upload completed.
    pub fn is_open(self) -> bool {
        matches!(self, UploadStatus::Pending | UploadStatus::Validating)
    }
}

/// What the asset made from the upload gets besides its content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadOptions {
    /// The asset's name (else the file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The asset it is derived from (one of the uploader's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Collections of the uploader the asset is added to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collection_ids: Vec<String>,
    /// The asset is hidden from the uploader's lists (readable by id).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

/// An upload as announced.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSpec {
    pub file_name: String,
    pub content_type: String,
    pub file_size: u64,
    pub parts: u32,
    pub kind: UploadKind,
    pub options: UploadOptions,
}

/// The most collections an upload's asset is added to.
pub const MAX_UPLOAD_COLLECTIONS: usize = 49;

/// How many imports (files the server fetches in the background) a user may have in flight.
pub const MAX_IMPORTS: u64 = 4;

/// How an import from the Hugging Face hub is recorded in `source_url`:
/// `hf://<repo>[@<revision>][/<file>]`.
pub const HUB_SOURCE: &str = "hf://";

impl UploadSpec {
    /// The announcement's rules, each error naming its field (`file_name`, `content_type`,
    /// `file_size`, `parts`, `collection_ids`): a size within `max_upload_bytes`, 1 to
    /// [`MAX_PARTS`] parts, no more parts than bytes, and parts that fit a request body
    /// (`file_size / parts` within `max_body_bytes`).
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        check_text("file_name", &self.file_name)?;
        check_text("content_type", &self.content_type)?;
        if self.file_size == 0 {
            return Err(Error::invalid("file_size", "must be at least 1 byte"));
        }
        if self.file_size > limits.max_upload_bytes {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the file is larger than this server's upload limit ({} bytes)",
                    limits.max_upload_bytes
                ),
            )
            .with_field("file_size"));
        }
        if self.parts == 0 || self.parts > MAX_PARTS {
            return Err(Error::invalid(
                "parts",
                format!("give 1 to {MAX_PARTS} parts"),
            ));
        }
        if u64::from(self.parts) > self.file_size {
            return Err(Error::invalid("parts", "more parts than bytes in the file"));
        }
        if self.file_size.div_ceil(u64::from(self.parts)) > limits.max_body_bytes as u64 {
            return Err(Error::invalid(
                "parts",
                format!(
                    "parts would be larger than a request body may be ({} bytes): use at least {} parts",
                    limits.max_body_bytes,
                    self.file_size.div_ceil(limits.max_body_bytes as u64)
                ),
            ));
        }
        self.options.validate(self.kind)
    }
}

impl UploadOptions {
    /// The options' rules for what the upload makes, each error naming its field: a name of
    /// 1 to 255 characters; a LoRA (which becomes a model) takes a name of a model and none
    /// of an asset's options (`parent_id`, `collection_ids`, `hidden`); at most
    /// [`MAX_UPLOAD_COLLECTIONS`] collections.
    pub fn validate(&self, kind: UploadKind) -> Result<()> {
        if let Some(n) = &self.name {
            check_text("name", n)?;
        }
        if kind == UploadKind::Lora {
            if let Some(n) = &self.name {
                crate::model::check_title("name", n)?;
            }
            if self.parent_id.is_some() {
                return Err(Error::invalid(
                    "parent_id",
                    "a LoRA becomes a model, which has no parent asset",
                ));
            }
            if !self.collection_ids.is_empty() {
                return Err(Error::invalid(
                    "collection_ids",
                    "a LoRA becomes a model: add it to collections once it exists",
                ));
            }
            if self.hidden {
                return Err(Error::invalid(
                    "hidden",
                    "a LoRA becomes a model, which is private, not hidden",
                ));
            }
        }
        if self.collection_ids.len() > MAX_UPLOAD_COLLECTIONS {
            return Err(Error::invalid(
                "collection_ids",
                format!("at most {MAX_UPLOAD_COLLECTIONS} collections"),
            ));
        }
        Ok(())
    }
}

fn check_text(field: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not hold control characters"));
    }
    Ok(())
}

/// A part received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadPart {
    /// 1-based position in the file.
    pub number: u32,
    pub bytes: u64,
    /// Hex SHA-256 of the part (its ETag).
    pub sha256: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// An upload and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: String,
    pub owner_id: String,
    pub kind: UploadKind,
    pub file_name: String,
    pub content_type: String,
    pub file_size: u64,
    pub parts_count: u32,
    pub status: UploadStatus,
    pub error: Option<String>,
    /// The asset made from it, once complete (an image's).
    pub asset_id: Option<String>,
    /// The model made from it, once complete (a LoRA's).
    pub model_id: Option<String>,
    pub options: UploadOptions,
    /// The URL the file was imported from (`None`: sent in parts).
    pub source_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When it expires if not complete.
    pub expires_at: Timestamp,
}

impl Upload {
    /// A new pending upload of `owner_id`, announced now.
    pub fn new(owner_id: &str, spec: UploadSpec) -> Upload {
        let now = crate::time::now();
        Upload {
            id: crate::id::new(crate::id::UPLOAD),
            owner_id: owner_id.to_string(),
            kind: spec.kind,
            file_name: spec.file_name,
            content_type: spec.content_type,
            file_size: spec.file_size,
            parts_count: spec.parts,
            status: UploadStatus::Pending,
            error: None,
            asset_id: None,
            model_id: None,
            options: spec.options,
            source_url: None,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::from_std(UPLOAD_TTL).expect("a day fits"),
        }
    }

    /// Imported from the hub (its `source_url` is [`HUB_SOURCE`]`…`).
    pub fn from_hub(&self) -> bool {
        self.source_url
            .as_deref()
            .is_some_and(|u| u.starts_with(HUB_SOURCE))
    }

    /// May part `number` of `len` bytes be received now? Only while `pending` (a conflict
    /// once completion began). Each error names `number` or `part`.
    pub fn check_part(&self, number: u32, len: u64) -> Result<()> {
        if self.status != UploadStatus::Pending {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the upload is {}: it takes no more parts",
                    self.status.as_str()
                ),
            ));
        }
        if number == 0 || number > self.parts_count {
            return Err(Error::invalid(
                "number",
                format!("parts are numbered 1 to {}", self.parts_count),
            ));
        }
        if len == 0 {
            return Err(Error::invalid("part", "the part is empty"));
        }
        if len > self.file_size {
            return Err(Error::invalid(
                "part",
                format!(
                    "the part is larger than the file ({} bytes)",
                    self.file_size
                ),
            ));
        }
        Ok(())
    }

    /// Do the received parts make the whole file: every number from 1 to `parts_count`,
    /// and bytes adding up to `file_size`? The error names `parts` and what is missing.
    pub fn check_complete(&self, parts: &[UploadPart]) -> Result<()> {
        let mut have = vec![false; self.parts_count as usize];
        let mut total = 0u64;
        for p in parts {
            if let Some(slot) = have.get_mut((p.number as usize).wrapping_sub(1)) {
                *slot = true;
                total += p.bytes;
            }
        }
        let missing: Vec<String> = have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if !missing.is_empty() {
            let shown = missing
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if missing.len() > 20 { ", …" } else { "" };
            return Err(Error::invalid(
                "parts",
                format!(
                    "{} of {} parts not received yet (missing: {shown}{more})",
                    missing.len(),
                    self.parts_count
                ),
            ));
        }
        if total != self.file_size {
            return Err(Error::invalid(
                "parts",
                format!(
                    "the parts hold {total} bytes but the file was announced as {} bytes",
                    self.file_size
                ),
            ));
        }
        Ok(())
    }

    /// The asset's name: the one asked for, else the file name.
    pub fn asset_name(&self) -> &str {
        self.options.name.as_deref().unwrap_or(&self.file_name)
    }

    /// A LoRA's model name: the one asked for, else the file name without `.safetensors`.
    pub fn model_name(&self) -> String {
        match &self.options.name {
            Some(n) => n.clone(),
            None => {
                let stem = self
                    .file_name
                    .strip_suffix(".safetensors")
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or(&self.file_name);
                stem.chars().take(crate::model::MAX_TITLE_CHARS).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u64, parts: u32) -> UploadSpec {
        UploadSpec {
            file_name: "photo.png".into(),
            content_type: "image/png".into(),
            file_size: size,
            parts,
            kind: UploadKind::Image,
            options: UploadOptions::default(),
        }
    }

    fn field(e: Error) -> String {
        e.field.unwrap_or_default()
    }

    #[test]
    fn announcements_are_checked() {
        let limits = Limits {
            max_upload_bytes: 1000,
            max_body_bytes: 100,
            ..Limits::default()
        };
        assert!(spec(1000, 10).validate(&limits).is_ok());
        assert_eq!(
            field(spec(0, 1).validate(&limits).unwrap_err()),
            "file_size"
        );
        let big = spec(1001, 11).validate(&limits).unwrap_err();
        assert_eq!(big.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(field(big), "file_size");
        assert_eq!(field(spec(10, 0).validate(&limits).unwrap_err()), "parts");
        assert_eq!(field(spec(10, 11).validate(&limits).unwrap_err()), "parts");
        let e = spec(1000, 9).validate(&limits).unwrap_err();
        assert!(e.message.contains("at least 10 parts"), "{}", e.message);
        let mut s = spec(10, 1);
        s.file_name = "a\nb".into();
        assert_eq!(field(s.validate(&limits).unwrap_err()), "file_name");
        let mut s = spec(10, 1);
        s.content_type = " ".into();
        assert_eq!(field(s.validate(&limits).unwrap_err()), "content_type");
        let mut s = spec(10, 1);
        s.options.collection_ids = vec!["c".into(); MAX_UPLOAD_COLLECTIONS + 1];
        assert_eq!(field(s.validate(&limits).unwrap_err()), "collection_ids");
    }

    #[test]
    fn parts_make_the_whole_file() {
        let u = Upload::new("usr_1", spec(10, 3));
        let part = |number, bytes| UploadPart {
            number,
            bytes,
            sha256: String::new(),
            created_at: crate::time::now(),
        };
        assert!(u.check_part(1, 4).is_ok());
        assert_eq!(field(u.check_part(0, 4).unwrap_err()), "number");
        assert_eq!(field(u.check_part(4, 4).unwrap_err()), "number");
        assert_eq!(field(u.check_part(1, 0).unwrap_err()), "part");
        assert_eq!(field(u.check_part(1, 11).unwrap_err()), "part");
        let e = u.check_complete(&[part(1, 4), part(3, 2)]).unwrap_err();
        assert!(e.message.contains("missing: 2"), "{}", e.message);
        let e = u
            .check_complete(&[part(1, 4), part(2, 4), part(3, 3)])
            .unwrap_err();
        assert!(e.message.contains("11 bytes"), "{}", e.message);
        assert!(u
            .check_complete(&[part(1, 4), part(2, 4), part(3, 2)])
            .is_ok());
        let mut done = u.clone();
        done.status = UploadStatus::Complete;
        assert_eq!(done.check_part(1, 4).unwrap_err().kind, ErrorKind::Conflict);
        done.status = UploadStatus::Validating;
        assert_eq!(done.check_part(1, 4).unwrap_err().kind, ErrorKind::Conflict);
        assert_eq!(u.asset_name(), "photo.png");
    }
}
