//! The request's own rules (ranges, enums, the switches accepted and not applied), before the
//! core sees it.

use super::*;

/// The vendor switches accepted and not applied (the module documentation's list), as they
/// are spelled on the wire.
pub const IGNORED: &[&str] = &[
    "alchemy",
    "contrast",
    "contrastRatio",
    "enhancePrompt",
    "enhancePromptInstruction",
    "expandedDomain",
    "fantasyAvatar",
    "highContrast",
    "highResolution",
    "photoReal",
    "photoRealStrength",
    "photoRealVersion",
    "promptMagic",
    "promptMagicStrength",
    "promptMagicVersion",
    "public",
    "ultra",
    "upscaleRatio",
    "unzoomAmount",
    "imagePromptWeight",
    "controlNetType",
    "weighting",
];

/// The ignored switches a body sets (present and not null), in `IGNORED`'s order.
pub(super) fn ignored_in(body: &Value) -> Vec<String> {
    IGNORED
        .iter()
        .filter(|k| body.get(**k).is_some_and(|v| !v.is_null()))
        .map(|k| k.to_string())
        .collect()
}

pub(super) fn in_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("must be between {lo} and {hi}")).into())
    }
}

pub(super) fn one_of_f(field: &str, v: f64, set: &[f64]) -> Result<()> {
    if set.iter().any(|s| (s - v).abs() < 1e-9) {
        Ok(())
    } else {
        let list: Vec<String> = set.iter().map(f64::to_string).collect();
        Err(Error::invalid(field, format!("must be one of {}", list.join(", "))).into())
    }
}

pub(super) fn one_of_s(field: &str, v: &str, set: &[&str]) -> Result<()> {
    if set.contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("`{v}` is not one of {}", set.join(", "))).into())
    }
}

/// The spec's rules on the wire fields (the core checks its own after).
pub(super) fn check_fields(r: &GenerationRequest) -> Result<()> {
    for (field, side) in [("width", r.width), ("height", r.height)] {
        if let Some(v) = side {
            if !(32..=1536).contains(&v) {
                return Err(Error::invalid(field, "must be between 32 and 1536").into());
            }
            if v % 8 != 0 {
                return Err(Error::invalid(field, "must be a multiple of 8").into());
            }
        }
    }
    if let Some(n) = r.num_images {
        if !(1..=8).contains(&n) {
            return Err(Error::invalid("num_images", "must be between 1 and 8").into());
        }
    }
    if let Some(s) = r.num_inference_steps {
        if !(10..=60).contains(&s) {
            return Err(Error::invalid("num_inference_steps", "must be between 10 and 60").into());
        }
    }
    if let Some(g) = r.guidance_scale {
        in_range("guidance_scale", g, 1.0, 20.0)?;
    }
    if let Some(s) = r.seed {
        if s > 9_999_999_998 {
            return Err(Error::invalid("seed", "must be between 0 and 9999999998").into());
        }
    }
    if let Some(s) = r.init_strength {
        in_range("init_strength", s, 0.1, 0.9)?;
    }
    if let Some(s) = &r.scheduler {
        if tables::scheduler(s).is_none() {
            let names: Vec<&str> = tables::SCHEDULERS.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(
                "scheduler",
                format!("unknown scheduler `{s}`; one of {}", names.join(", ")),
            )
            .into());
        }
    }
    if let Some(p) = &r.presetStyle {
        let table = styles::STYLES;
        if easel_core::style::find(table, p).is_none() {
            return Err(Error::invalid(
                "presetStyle",
                format!(
                    "unknown preset style `{p}`; one of {}",
                    easel_core::style::names(table).join(", ")
                ),
            )
            .into());
        }
    }
    if let Some(v) = &r.sd_version {
        if tables::sd_version(v).is_none() {
            let names: Vec<&str> = tables::SD_VERSIONS.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(
                "sd_version",
                format!("unknown sd_version `{v}`; one of {}", names.join(", ")),
            )
            .into());
        }
    }
    // Features Easel does not run.
    if r.controlnets.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(unsupported(
            "controlnets",
            "ControlNet is not supported by this server; send [] or leave it out",
        ));
    }
    if r.controlNet == Some(true) {
        return Err(unsupported(
            "controlNet",
            "ControlNet is not supported by this server; send false or leave it out",
        ));
    }
    if let Some(t) = &r.controlNetType {
        one_of_s("controlNetType", t, &["POSE", "CANNY", "DEPTH"])?;
    }
    if r.imagePrompts
        .as_ref()
        .is_some_and(|p| p.iter().any(Option::is_some))
    {
        return Err(unsupported(
            "imagePrompts",
            "image prompts are not supported by this server; use init_image_id (img2img)",
        ));
    }
    if r.unzoom == Some(true) {
        return Err(unsupported(
            "unzoom",
            "unzoom (outpainting around an image) is not supported by this server",
        ));
    }
    if let Some(t) = &r.transparency {
        one_of_s("transparency", t, &["disabled", "foreground_only"])?;
        if t == "foreground_only" {
            return Err(unsupported(
                "transparency",
                "transparent output is not supported by this server (outputs are opaque); \
                 send `disabled` or leave it out",
            ));
        }
    }
    if r.tiling == Some(true) {
        return Err(unsupported(
            "tiling",
            "seamless tiling is not supported by this server; send false or leave it out",
        ));
    }
    // Vendor switches: checked as the spec states them, then ignored.
    if let Some(c) = r.contrast {
        one_of_f("contrast", c, &[1.0, 1.3, 1.8, 2.5, 3.0, 3.5, 4.0, 4.5])?;
    }
    if let Some(c) = r.contrastRatio {
        in_range("contrastRatio", c, 0.0, 1.0)?;
    }
    if let Some(s) = r.photoRealStrength {
        one_of_f("photoRealStrength", s, &[0.55, 0.5, 0.45])?;
    }
    if let Some(v) = &r.photoRealVersion {
        one_of_s("photoRealVersion", v, &["v1", "v2"])?;
    }
    if let Some(s) = r.promptMagicStrength {
        in_range("promptMagicStrength", s, 0.1, 1.0)?;
    }
    if let Some(v) = &r.promptMagicVersion {
        one_of_s("promptMagicVersion", v, &["v2", "v3"])?;
    }
    for (field, v) in [
        ("imagePromptWeight", r.imagePromptWeight),
        ("unzoomAmount", r.unzoomAmount),
        ("weighting", r.weighting),
        ("upscaleRatio", r.upscaleRatio),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(Error::invalid(field, "must be a finite number").into());
        }
    }
    Ok(())
}
