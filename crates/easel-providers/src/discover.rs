//! Discover models on disk: every diffusers folder (one with `model_index.json`) and every
//! single-file `.safetensors` checkpoint directly under the models folder is registered
//! under its folder or file name (the stem, other characters than letters, digits, `-`, `_`
//! and `.` made `-`); a single file also answers to its whole file name
//! (`v1-5-pruned-emaonly.safetensors`) as an alias, as clients of other servers name
//! checkpoints. When several entries clean up to the same name, one whose name needed no
//! cleaning keeps it, else the first in name order, and the others are skipped with a
//! warning. The family is read from `model_index.json`, or from the tensor names and shapes
//! in the safetensors header (no weights are loaded here).

use std::path::Path;

use easel_core::model::ModelSpec;
use easel_core::Result;
use easel_diffusion::family::{self, Family};
use easel_store::Db;

/// What a file or folder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub family: String,
    pub tasks: Vec<String>,
    /// LoRA adapter rather than a full model.
    pub lora: bool,
}

/// Register what `dir` holds; returns how many models were added or updated. Models an
/// operator registered by hand under the same name are left alone.
pub async fn scan(db: &Db, dir: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    // A name taken as it is on disk comes before one made by replacing characters, then
    // name order: which entry keeps a contested name does not depend on the directory.
    let mut found: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| inspect(&p).map(|f| (p, f)))
        .collect();
    found.sort_by_key(|(p, f)| {
        let stem = if p.is_dir() {
            p.file_name()
        } else {
            p.file_stem()
        };
        let as_is = stem.is_some_and(|s| s.to_string_lossy() == f.name);
        (!as_is, p.clone())
    });
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for (path, found) in found {
        if !seen.insert(found.name.clone()) {
            tracing::warn!(path = %path.display(), name = %found.name, "another model in the models folder has this name; skipped (rename the file)");
            continue;
        }
        let file_alias = path
            .is_file()
            .then(|| path.file_name().map(|f| f.to_string_lossy().into_owned()))
            .flatten()
            .filter(|f| *f != found.name && easel_core::model::check_name("alias", f).is_ok());
        // The canonical models folder joined with the entry's own name: an operator's link
        // inside the folder is followed at load time, and the path stays under the root.
        let source = match (std::fs::canonicalize(dir), path.file_name()) {
            (Ok(root), Some(name)) => root.join(name),
            _ => path.clone(),
        };
        let mut spec = ModelSpec {
            name: found.name.clone(),
            aliases: file_alias.iter().cloned().collect(),
            family: found.family.clone(),
            tasks: found.tasks.clone(),
            source: Some(source.display().to_string()),
            provider: "local".into(),
            provider_config: serde_json::json!({}),
            provider_capabilities: None,
            fallback_provider: None,
            fallback_provider_config: None,
            fallback_provider_capabilities: None,
            defaults: Default::default(),
            limits: Default::default(),
            icon: None,
            tool_types: vec![],
            recommended: false,
            beta: false,
            tags: if found.lora {
                vec!["lora".into()]
            } else {
                vec![]
            },
            ..ModelSpec::new("")
        };
        let missing_alias = |m: &easel_core::model::Model| {
            file_alias.as_ref().is_some_and(|a| !m.aliases.contains(a))
        };
        match easel_store::models::resolve(db, &found.name).await? {
            None => {
                // The alias may belong to another model already: then register without it.
                if easel_store::models::create(db, &spec, true).await.is_err() {
                    spec.aliases.clear();
                    easel_store::models::create(db, &spec, true).await?;
                }
                n += 1;
            }
            Some(m)
                if m.discovered
                    && (m.source != spec.source
                        || m.family != spec.family
                        || missing_alias(&m)) =>
            {
                spec.aliases = m.aliases.clone();
                if missing_alias(&m) {
                    spec.aliases.extend(file_alias.clone());
                }
                spec.defaults = m.defaults.clone();
                spec.limits = m.limits.clone();
                // What a registry view (Sartiq) set on it stays too.
                spec.icon = m.icon.clone();
                spec.tool_types = m.tool_types.clone();
                spec.recommended = m.recommended;
                spec.beta = m.beta;
                spec.description = m.description.clone();
                spec.short_description = m.short_description.clone();
                spec.examples = m.examples.clone();
                if easel_store::models::update(db, &m.id, &spec).await.is_err() {
                    spec.aliases = m.aliases.clone();
                    easel_store::models::update(db, &m.id, &spec).await?;
                }
                n += 1;
            }
            Some(_) => {}
        }
    }
    Ok(n)
}

/// Name usable as a model name: file stem with other characters replaced by `-`.
fn model_name(path: &Path) -> Option<String> {
    let stem = if path.is_dir() {
        path.file_name()?
    } else {
        path.file_stem()?
    };
    let name: String = stem
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Inspect one entry of the models folder: the family table (`easel_diffusion::family`)
/// says which family a folder or checkpoint holds and which tasks it runs.
pub fn inspect(path: &Path) -> Option<Found> {
    let name = model_name(path)?;
    let found = |f: &Family| Found {
        name: name.clone(),
        family: f.id.to_string(),
        tasks: f.tasks.iter().map(|t| t.to_string()).collect(),
        lora: false,
    };
    if path.is_dir() {
        if !path.join("model_index.json").is_file() {
            return None;
        }
        return Some(match family::detect_dir(path) {
            Some(f) => found(f),
            // A diffusers folder of a pipeline this engine does not run: listed, so the
            // operator sees it, with no local tasks.
            None => Found {
                name,
                family: easel_core::model::family::UNKNOWN.into(),
                tasks: vec![],
                lora: false,
            },
        });
    }
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return None;
    }
    let header = family::read_header(path).ok()?;
    let lora = easel_core::safetensors::is_lora(header.keys().map(String::as_str));
    if lora {
        return Some(Found {
            name,
            family: easel_core::model::family::LORA.into(),
            tasks: vec![],
            lora: true,
        });
    }
    family::detect_file(&header).map(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, tensors: &[(&str, Vec<u64>)]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        for (name, shape) in tensors {
            let n: u64 = shape.iter().product::<u64>() * 2;
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}),
            );
            offset += n;
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend(h);
        bytes.extend(vec![0u8; offset as usize]);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn families_from_single_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_safetensors(
            &d.join("xl.safetensors"),
            &[("conditioner.embedders.1.model.ln_final.weight", vec![4])],
        );
        write_safetensors(
            &d.join("v1 model.safetensors"),
            &[
                ("cond_stage_model.transformer.text_model.x", vec![4]),
                (
                    "model.diffusion_model.input_blocks.0.0.weight",
                    vec![8, 4, 3, 3],
                ),
            ],
        );
        write_safetensors(
            &d.join("inp.safetensors"),
            &[(
                "model.diffusion_model.input_blocks.0.0.weight",
                vec![8, 9, 3, 3],
            )],
        );
        write_safetensors(
            &d.join("v2.safetensors"),
            &[("cond_stage_model.model.transformer.x", vec![4])],
        );
        write_safetensors(
            &d.join("style.safetensors"),
            &[("lora_unet_down_blocks_0.lora_down.weight", vec![4, 4])],
        );
        write_safetensors(&d.join("other.safetensors"), &[("encoder.weight", vec![4])]);
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let f = |n: &str| inspect(&d.join(n));
        assert_eq!(f("xl.safetensors").unwrap().family, "sdxl");
        let v1 = f("v1 model.safetensors").unwrap();
        assert_eq!((v1.name.as_str(), v1.family.as_str()), ("v1-model", "sd15"));
        assert_eq!(f("inp.safetensors").unwrap().family, "sd15-inpaint");
        assert_eq!(f("v2.safetensors").unwrap().family, "sd2");
        assert!(f("style.safetensors").unwrap().lora);
        assert_eq!(f("other.safetensors"), None);
        assert_eq!(f("notes.txt"), None);

        let folder = d.join("tiny-xl");
        std::fs::create_dir_all(folder.join("unet")).unwrap();
        std::fs::write(
            folder.join("model_index.json"),
            r#"{"_class_name": "StableDiffusionXLPipeline"}"#,
        )
        .unwrap();
        assert_eq!(f("tiny-xl").unwrap().family, "sdxl");
        let folder = d.join("tiny-inpaint");
        std::fs::create_dir_all(folder.join("unet")).unwrap();
        std::fs::write(
            folder.join("model_index.json"),
            r#"{"_class_name": "StableDiffusionPipeline"}"#,
        )
        .unwrap();
        std::fs::write(folder.join("unet/config.json"), r#"{"in_channels": 9}"#).unwrap();
        assert_eq!(f("tiny-inpaint").unwrap().family, "sd15-inpaint");
    }
}
