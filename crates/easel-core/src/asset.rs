//! Assets: every stored image, uploaded or produced by a job.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// Sent by a client.
    Upload,
    /// Produced by a job.
    Output,
    /// A canvas document (`crate::canvas`), saved again and again; its content is the
    /// current document, kept in the database.
    Canvas,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Upload => "upload",
            AssetKind::Output => "output",
            AssetKind::Canvas => "canvas",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upload" => Some(AssetKind::Upload),
            "output" => Some(AssetKind::Output),
            "canvas" => Some(AssetKind::Canvas),
            _ => None,
        }
    }
}

/// Who may read an asset: its owner (`private`), anyone who has its id (`unlisted`), or
/// anyone, listed (`public`). Reads without a key see only the last two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    #[default]
    Private,
    Unlisted,
    Public,
}

impl Privacy {
    pub const ALL: [Privacy; 3] = [Privacy::Private, Privacy::Unlisted, Privacy::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Private => "private",
            Privacy::Unlisted => "unlisted",
            Privacy::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Privacy> {
        Privacy::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The editable part of an asset record (`PATCH`: what is absent stays as it is; a `name`
/// or `description` of `""` clears it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetEdit {
    /// At most 200 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// At most 5,000 characters.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub privacy: Option<Privacy>,
    /// Hide it from its owner's lists, or show it again.
    #[serde(default)]
    pub hidden: Option<bool>,
}

impl AssetEdit {
    /// Errors name the field.
    pub fn validate(&self) -> crate::Result<()> {
        for (field, value, max) in [
            ("name", &self.name, 200),
            ("description", &self.description, 5_000),
        ] {
            if let Some(v) = value {
                if v.chars().count() > max {
                    return Err(crate::Error::invalid(
                        field,
                        format!("at most {max} characters"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Asset {
    pub id: String,
    pub owner_id: String,
    /// The job that produced it (outputs only).
    pub job_id: Option<String>,
    /// Position among the job's outputs.
    pub output_index: Option<u32>,
    pub kind: AssetKind,
    pub mime_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
    /// Hex SHA-256 of the content; also the ETag.
    pub sha256: String,
    /// The generation parameters (outputs) or client-supplied metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The input asset this one was derived from.
    pub parent_id: Option<String>,
    /// The asset its chain of parents starts from (`None` for an asset derived from
    /// nothing). Set by the store from the parent when the asset is inserted.
    #[serde(default)]
    pub root_id: Option<String>,
    /// A name given by its owner (an upload's file name).
    pub name: Option<String>,
    pub description: Option<String>,
    pub privacy: Privacy,
    /// Left out of its owner's lists unless they ask for hidden assets (readable by id, in
    /// archives and as inputs as any other).
    #[serde(default)]
    pub hidden: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The last edit of the record (at first, `created_at`).
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A tag of an owner's assets, with how many carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TagCount {
    pub name: String,
    pub count: u64,
    /// When the owner first used the tag, and last added or removed it.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// An owner's named set of assets and models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Collection {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// Its assets that lists show (hidden ones left out).
    pub asset_count: u64,
    pub model_count: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Most items one call adds to or removes from a collection (Scenario's limit).
pub const MAX_COLLECTION_CHANGE: usize = 49;

/// A collection's name: 1 to 200 characters after trimming, no control characters.
pub fn check_collection_name(field: &str, name: &str) -> crate::Result<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
        return Err(crate::Error::invalid(
            field,
            "a collection name is 1 to 200 characters, without control characters",
        ));
    }
    Ok(n.to_string())
}

/// Most tags one asset (or model) carries.
pub const MAX_TAGS: usize = 50;

/// What a change of something's tags does.
#[derive(Debug, Clone, PartialEq)]
pub struct TagChange {
    /// Its tags after the change: those kept, in their order, then those added.
    pub after: Vec<String>,
    pub added: Vec<String>,
    pub deleted: Vec<String>,
}

/// A change of the tags `have` of an `what` (`asset`, `model`: for messages), the one rule of
/// every tag edit: `strict`, adding a tag it has or removing one it lacks is a conflict
/// naming `add`/`delete`; otherwise those are skipped. A tag both added and removed ends
/// removed; at most [`MAX_TAGS`] after.
pub fn change_tags(
    what: &str,
    have: &[String],
    add: &[String],
    delete: &[String],
    strict: bool,
) -> crate::Result<TagChange> {
    let conflict = |field: &str, message: String| {
        crate::Error::new(crate::ErrorKind::Conflict, message).with_field(field)
    };
    let mut added: Vec<String> = Vec::new();
    for t in add {
        if have.contains(t) || added.contains(t) {
            if strict {
                return Err(conflict(
                    "add",
                    format!("the {what} already has the tag `{t}`"),
                ));
            }
            continue;
        }
        added.push(t.clone());
    }
    let mut deleted: Vec<String> = Vec::new();
    for t in delete {
        if !have.contains(t) || deleted.contains(t) {
            if strict {
                return Err(conflict("delete", format!("the {what} has no tag `{t}`")));
            }
            continue;
        }
        deleted.push(t.clone());
    }
    added.retain(|t| !deleted.contains(t));
    let mut after: Vec<String> = have
        .iter()
        .filter(|t| !deleted.contains(t))
        .cloned()
        .collect();
    after.extend(added.iter().cloned());
    if after.len() > MAX_TAGS {
        return Err(crate::Error::invalid(
            "add",
            format!("the {what} would carry more than {MAX_TAGS} tags"),
        ));
    }
    Ok(TagChange {
        after,
        added,
        deleted,
    })
}

/// A tag: 1 to 64 characters after trimming, no control characters, no commas (lists of
/// tags are comma-separated in queries). Returns it trimmed.
pub fn check_tag(field: &str, tag: &str) -> crate::Result<String> {
    let t = tag.trim();
    if t.is_empty() || t.chars().count() > 64 || t.chars().any(|c| c.is_control() || c == ',') {
        return Err(crate::Error::invalid(
            field,
            format!("`{tag}` is not a tag: 1 to 64 characters, no commas or control characters"),
        ));
    }
    Ok(t.to_string())
}

/// Longest text search query, in characters.
pub const MAX_SEARCH_CHARS: usize = 500;

/// A text search query as searches take it: `None` when absent or blank; longer than
/// [`MAX_SEARCH_CHARS`] is refused, naming `field`.
pub fn search_text(field: &str, text: Option<&str>) -> crate::Result<Option<String>> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > MAX_SEARCH_CHARS => Err(crate::Error::invalid(
            field,
            format!("at most {MAX_SEARCH_CHARS} characters"),
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// [`check_tag`] of each; the trimmed tags.
pub fn check_tags(field: &str, tags: &[String]) -> crate::Result<Vec<String>> {
    tags.iter().map(|t| check_tag(field, t)).collect()
}

/// Blob key of an asset in the object store.
pub fn blob_key(owner_id: &str, asset_id: &str) -> String {
    format!("assets/{owner_id}/{asset_id}")
}

#[cfg(test)]
mod tag_tests {
    use super::*;
    use crate::ErrorKind;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_change_strictly_or_leniently() {
        let have = v(&["a", "b"]);
        let change = |after: &[&str], added: &[&str], deleted: &[&str]| TagChange {
            after: v(after),
            added: v(added),
            deleted: v(deleted),
        };
        assert_eq!(
            change_tags("model", &have, &v(&["c"]), &v(&["a"]), true).unwrap(),
            change(&["b", "c"], &["c"], &["a"])
        );
        let e = change_tags("model", &have, &v(&["a"]), &[], true).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("add"))
        );
        let e = change_tags("model", &have, &[], &v(&["z"]), true).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("delete"));
        assert_eq!(
            change_tags("model", &have, &v(&["a", "c", "c"]), &v(&["z", "b"]), false).unwrap(),
            change(&["a", "c"], &["c"], &["b"])
        );
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        let e = change_tags("model", &[], &many, &[], true).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("add"));
    }
}
