//! An images request as the core's generation input (the one mapping of fields), and the model
//! check.

use super::*;

/// The request fields that map onto the core's generation input as they are, as (OpenAI's
/// name, the core's name): how `core_input` fills the core's typed input, and the table
/// that names core errors back (`error::wire_field`). `prompt`, `negative_prompt` (through `style`), `size` and
/// `upscale` are read apart.
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("n", "count"),
    ("seed", "seed"),
    ("steps", "steps"),
    ("guidance", "guidance"),
    ("scheduler", "scheduler"),
    ("strength", "strength"),
    ("output_format", "format"),
    ("output_compression", "quality"),
];

/// The core input of a generation (the core validates it when the task is submitted).
/// Returns the input and the prompt that runs.
pub(super) fn core_input(req: &ImageRequest) -> Result<(GenerateInput, String)> {
    if req.stream == Some(true) {
        return Err(Error::invalid(
            "stream",
            "streaming is not supported; leave it unset or false",
        )
        .into());
    }
    if let Some(b) = &req.background {
        if !["auto", "opaque"].contains(&b.as_str()) {
            return Err(Error::invalid(
                "background",
                "only `auto` and `opaque`: outputs have no transparency",
            )
            .into());
        }
    }
    let (prompt, negative) = match &req.style {
        None => (req.prompt.clone(), req.negative_prompt.clone()),
        Some(name) => {
            let table = styles::STYLES;
            let style = easel_core::style::find(table, name).ok_or_else(|| {
                Error::invalid(
                    "style",
                    format!(
                        "unknown style `{name}`; one of {}",
                        easel_core::style::names(table).join(", ")
                    ),
                )
            })?;
            style.apply(&req.prompt, req.negative_prompt.as_deref())
        }
    };
    let (width, height) = match &req.size {
        Some(size) => match easel_core::generate::parse_size("size", size)? {
            Some((w, h)) => (Some(w), Some(h)),
            None => (None, None),
        },
        None => (None, None),
    };
    // The typed input, field by field as `FIELDS` pairs them (a test holds the two
    // together); the prompts (after `style`), `size` (two core fields) and `upscale` (a
    // factor) are read apart.
    let g = GenerateInput {
        prompt: prompt.clone(),
        negative_prompt: negative,
        width,
        height,
        count: req.n,
        seed: req.seed,
        steps: req.steps,
        guidance: req.guidance,
        scheduler: req.scheduler.clone(),
        strength: req.strength,
        format: req.output_format,
        quality: req.output_compression,
        upscale: req.upscale.map(|u| u.factor()),
        ..Default::default()
    };
    Ok((g, prompt))
}

/// An unknown model is 404 `model_not_found` (OpenAI's convention); the rest of the model's
/// checks (a LoRA, a model that cannot do the task) are `service::submit`'s.
pub(super) async fn check_model(
    state: &AppState,
    who: &easel_core::auth::Principal,
    model: Option<&str>,
) -> Result<()> {
    if let Some(name) = model {
        if service::find_model(state, Some(who), name).await?.is_none() {
            return Err(OpenAiError::from(
                Error::new(
                    ErrorKind::NotFound,
                    format!("no model named `{name}`; GET {BASE}/models lists them"),
                )
                .with_field("model"),
            )
            .code("model_not_found"));
        }
    }
    Ok(())
}
