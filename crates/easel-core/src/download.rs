//! Bulk downloads: a user names assets (by id, by the job that made them, by the model that
//! made them); the set is resolved once, checked (the caller's, 1 to
//! [`MAX_ARCHIVE_ASSETS`]) and kept as a download, whose signed URL streams a ZIP of them.
//! The archive is written as it is read — no copy of the assets is stored — so a download
//! is ready at once, costs no storage, and a restart loses nothing (the URL works again).
//! Each file's name follows the download's options: a template over the asset's
//! generation (`<seed>`, `<num>`, `<prompt>`, `<generator>`), in a folder per job unless
//! `flat`.
//!
//! A model's download ([`Download::of_model`]) packs a user's model instead: its record as
//! `model.json` (with its presets) and the files of its LoRAs that its owner uploaded
//! ([`lora_file_names`]); the server's weights and LoRAs stay on the server, named in the
//! record.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::asset::Asset;
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// The most assets one archive holds.
pub const MAX_ARCHIVE_ASSETS: usize = 1000;

/// How long a download (and its URL) lasts.
pub const DOWNLOAD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest file name template.
pub const MAX_TEMPLATE_CHARS: usize = 200;

/// How the archive names its files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveOptions {
    /// A file name with `<seed>`, `<num>` (the image's index in its job), `<prompt>` (its
    /// words, lower-cased, without function words, at most 8, joined by `_`),
    /// `<description>` (the same of the asset's description), `<generator>` (the model) and
    /// `<id>` (the asset's id) replaced by each asset's values; a `/` makes a folder. The
    /// extension follows the image type; a name is at most 128 characters, a folder 64.
    /// Without it, a file is named after the asset's name, else its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_template: Option<String>,
    /// All files at the top of the archive; otherwise one folder per job (`uploads/` for
    /// uploaded images).
    #[serde(default)]
    pub flat: bool,
    /// The archive's file name, without `.zip` (default `<YYYYMMDD>-export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_name: Option<String>,
}

impl ArchiveOptions {
    /// The template's rules: at most [`MAX_TEMPLATE_CHARS`], no control characters (errors
    /// name `name_template`); an archive name of at most 100 (`archive_name`).
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = &self.archive_name {
            if n.chars().count() > 100 || n.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "archive_name",
                    "at most 100 characters, no control characters",
                ));
            }
        }
        if let Some(t) = &self.name_template {
            if t.chars().count() > MAX_TEMPLATE_CHARS {
                return Err(Error::invalid(
                    "name_template",
                    format!("at most {MAX_TEMPLATE_CHARS} characters"),
                ));
            }
            if t.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "name_template",
                    "must not hold control characters",
                ));
            }
        }
        Ok(())
    }
}

/// A download: the assets resolved when it was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    pub id: String,
    pub owner_id: String,
    pub asset_ids: Vec<String>,
    /// A model's download: the model it packs (no assets then).
    pub model_id: Option<String>,
    pub options: ArchiveOptions,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Download {
    pub fn new(owner_id: &str, asset_ids: Vec<String>, options: ArchiveOptions) -> Download {
        let now = crate::time::now();
        Download {
            id: crate::id::new(crate::id::DOWNLOAD),
            owner_id: owner_id.to_string(),
            asset_ids,
            model_id: None,
            options,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(DOWNLOAD_TTL).expect("a week fits"),
        }
    }

    /// A download of the model `model_id` (a user's) asked for by `owner_id`.
    pub fn of_model(owner_id: &str, model_id: &str, options: ArchiveOptions) -> Download {
        Download {
            model_id: Some(model_id.to_string()),
            ..Download::new(owner_id, Vec::new(), options)
        }
    }
}

/// The name in a model's archive of each LoRA file, by the LoRA's name (same order):
/// `<name>.safetensors`, unique (`-2`, `-3`, … when taken), never `model.json`.
pub fn lora_file_names(names: &[&str]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::from(["model.json".to_string()]);
    names
        .iter()
        .map(|n| {
            let stem = Some(clean(n, MAX_FILE_CHARS - 20))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "lora".into());
            let mut name = format!("{stem}.safetensors");
            let mut i = 2;
            while !taken.insert(name.clone()) {
                name = format!("{stem}-{i}.safetensors");
                i += 1;
            }
            name
        })
        .collect()
}

/// Check a resolved set: 1 to [`MAX_ARCHIVE_ASSETS`] assets (errors name `field`).
pub fn check_count(field: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(field, "names no asset to download"));
    }
    if n > MAX_ARCHIVE_ASSETS {
        return Err(Error::invalid(
            field,
            format!("names {n} assets; an archive holds at most {MAX_ARCHIVE_ASSETS}"),
        ));
    }
    Ok(())
}

/// A piece of a file name: letters, digits, `-`, `_`, `.` and spaces kept (others become
/// `_`), at most `cap` characters, no leading dots or spaces (never `.` or `..`).
fn clean(s: &str, cap: usize) -> String {
    let kept: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No leading dots or spaces at all (so never `.` or `..`: nothing climbs out of the
    // archive's folders), none trailing.
    let kept = kept.trim_start_matches(['.', ' ']).trim_end();
    kept.chars()
        .take(cap)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Words that say little in a file name.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "is", "of", "on", "or", "the",
    "to", "with",
];

/// A text as a file name's words: lower-cased, function words left out, at most 8, joined
/// by `_`.
pub fn slug(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !FUNCTION_WORDS.contains(&w.as_str()))
        .take(8)
        .collect::<Vec<_>>()
        .join("_")
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "application/json" => "json",
        _ => "bin",
    }
}

fn meta_text(a: &Asset, key: &str) -> String {
    match a.metadata.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// The longest file name in an archive, extension included, and folder name.
const MAX_FILE_CHARS: usize = 128;
const MAX_FOLDER_CHARS: usize = 64;

/// The path of each asset in the archive (same order), unique: a name taken already gets
/// `-2`, `-3`, … before its extension.
pub fn entry_names(assets: &[Asset], options: &ArchiveOptions) -> Vec<String> {
    let mut taken = HashSet::new();
    assets
        .iter()
        .map(|a| {
            let ext = extension(&a.mime_type);
            let path = match &options.name_template {
                Some(t) => t
                    .replace("<seed>", &meta_text(a, "seed"))
                    .replace("<num>", &a.output_index.unwrap_or(0).to_string())
                    .replace("<prompt>", &slug(&meta_text(a, "prompt")))
                    .replace(
                        "<description>",
                        &slug(a.description.as_deref().unwrap_or("")),
                    )
                    .replace("<generator>", &meta_text(a, "model"))
                    .replace("<id>", &a.id),
                None => a.name.clone().unwrap_or_default().replace('/', "_"),
            };
            let mut parts: Vec<&str> = path.split('/').collect();
            let file = parts.pop().unwrap_or("");
            let mut folder: String = parts
                .iter()
                .map(|p| clean(p, MAX_FOLDER_CHARS))
                .filter(|p| !p.is_empty())
                .map(|p| p + "/")
                .collect();
            if !options.flat {
                let group = a.job_id.as_deref().unwrap_or("uploads");
                folder = format!("{group}/{folder}");
            }
            let file = clean(file, MAX_FILE_CHARS);
            // The asset's own name may carry its extension already.
            let file = file.strip_suffix(&format!(".{ext}")).unwrap_or(&file);
            let stem_cap = MAX_FILE_CHARS - ext.len() - 5;
            let stem: String = if file.is_empty() {
                a.id.clone()
            } else {
                file.chars().take(stem_cap).collect()
            };
            let mut name = format!("{folder}{stem}.{ext}");
            let mut n = 1;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{folder}{stem}-{n}.{ext}");
            }
            name
        })
        .collect()
}

/// The archive's file name: the one asked for, else `<YYYYMMDD>-export`, with `.zip`.
pub fn archive_file_name(d: &Download) -> String {
    let name = d
        .options
        .archive_name
        .as_deref()
        .map(|n| clean(n, 100))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-export", d.created_at.format("%Y%m%d")));
    format!("{name}.zip")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetKind, Privacy};

    fn asset(job: Option<&str>, index: u32, name: Option<&str>, meta: serde_json::Value) -> Asset {
        Asset {
            id: format!("ast_{index}"),
            owner_id: "usr_1".into(),
            job_id: job.map(str::to_string),
            output_index: job.map(|_| index),
            kind: if job.is_some() {
                AssetKind::Output
            } else {
                AssetKind::Upload
            },
            mime_type: "image/png".into(),
            width: Some(1),
            height: Some(1),
            bytes: 1,
            sha256: String::new(),
            metadata: meta,
            parent_id: None,
            root_id: None,
            name: name.map(str::to_string),
            description: None,
            privacy: Privacy::Private,
            hidden: false,
            created_at: crate::time::now(),
            updated_at: crate::time::now(),
        }
    }

    #[test]
    fn lora_files_are_named_once_each() {
        assert_eq!(
            lora_file_names(&["My style", "My style", "../x", "model.json", "", "model"]),
            [
                "My style.safetensors",
                "My style-2.safetensors",
                "_x.safetensors",
                "model.json.safetensors",
                "lora.safetensors",
                "model.safetensors"
            ]
        );
    }

    #[test]
    fn names_follow_the_options_and_stay_unique() {
        let meta =
            |seed: u64| serde_json::json!({"seed": seed, "prompt": "a red/fox", "model": "tiny"});
        let assets = vec![
            asset(Some("job_a"), 0, None, meta(7)),
            asset(Some("job_a"), 1, None, meta(7)),
            asset(None, 2, Some("holiday.png"), serde_json::json!({})),
            asset(None, 3, Some("holiday.png"), serde_json::json!({})),
            asset(None, 4, Some("../.."), serde_json::json!({})),
        ];
        let plain = entry_names(&assets, &ArchiveOptions::default());
        assert_eq!(
            plain,
            [
                "job_a/ast_0.png",
                "job_a/ast_1.png",
                "uploads/holiday.png",
                "uploads/holiday-2.png",
                "uploads/_...png",
            ]
        );
        let folders = entry_names(
            &assets[..1],
            &ArchiveOptions {
                name_template: Some("<generator>/<prompt>/<id> <description>".into()),
                ..Default::default()
            },
        );
        assert_eq!(folders, ["job_a/tiny/red_fox/ast_0.png"]);
        let templated = entry_names(
            &assets[..2],
            &ArchiveOptions {
                name_template: Some("<generator>-<prompt>-<num>-<seed>".into()),
                flat: true,
                ..Default::default()
            },
        );
        assert_eq!(templated, ["tiny-red_fox-0-7.png", "tiny-red_fox-1-7.png"]);
        assert_eq!(slug("A Fox in the SNOW, at dawn: 4k!"), "fox_snow_dawn_4k");
        // Nothing climbs out of the archive's folders, whatever the template or metadata.
        let climb = asset(None, 9, None, serde_json::json!({"model": ". .."}));
        for template in [
            ". ../. ../x",
            "<generator>/<generator>/y",
            "../../z",
            "/abs/w",
        ] {
            for flat in [true, false] {
                let name = entry_names(
                    std::slice::from_ref(&climb),
                    &ArchiveOptions {
                        name_template: Some(template.into()),
                        flat,
                        ..Default::default()
                    },
                )
                .remove(0);
                assert!(
                    !name.starts_with('/')
                        && name
                            .split('/')
                            .all(|p| !p.is_empty() && p != "." && p != ".."),
                    "{template} → {name}"
                );
            }
        }
        let same = entry_names(
            &assets[..2],
            &ArchiveOptions {
                name_template: Some("<seed>".into()),
                flat: true,
                ..Default::default()
            },
        );
        assert_eq!(same, ["7.png", "7-2.png"]);
    }

    #[test]
    fn sets_and_templates_are_checked() {
        assert!(check_count("asset_ids", 1).is_ok());
        assert_eq!(
            check_count("asset_ids", 0).unwrap_err().field.as_deref(),
            Some("asset_ids")
        );
        assert!(check_count("asset_ids", MAX_ARCHIVE_ASSETS + 1).is_err());
        let long = ArchiveOptions {
            name_template: Some("x".repeat(MAX_TEMPLATE_CHARS + 1)),
            ..Default::default()
        };
        assert_eq!(
            long.validate().unwrap_err().field.as_deref(),
            Some("name_template")
        );
    }
}
