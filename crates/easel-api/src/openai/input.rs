//! An images request as the core's generation input (the one mapping of fields), and the model
//! check.

use super::*;

/// The core input of a generation: the request's fields under the core's names (the core
/// validates them when the task is submitted). Returns the input and the prompt that runs.
pub(super) fn core_input(req: &ImageRequest) -> Result<(Map<String, Value>, String)> {
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
    let mut input = Map::new();
    input.insert("prompt".into(), json!(prompt));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            input.insert(k.into(), v);
        }
    };
    put("negative_prompt", negative.map(Value::from));
    if let Some(size) = &req.size {
        if let Some((w, h)) = easel_core::generate::parse_size("size", size)? {
            put("width", Some(json!(w)));
            put("height", Some(json!(h)));
        }
    }
    put("count", req.n.map(Value::from));
    put("seed", req.seed.map(Value::from));
    put("steps", req.steps.map(Value::from));
    put("guidance", req.guidance.map(Value::from));
    put("scheduler", req.scheduler.clone().map(Value::from));
    put("strength", req.strength.map(Value::from));
    put(
        "format",
        req.output_format
            .map(|f| serde_json::to_value(f).unwrap_or_default()),
    );
    put("quality", req.output_compression.map(Value::from));
    put("upscale", req.upscale.map(|u| json!(u.factor())));
    Ok((input, prompt))
}

/// An unknown model is 404 `model_not_found` (OpenAI's convention); the rest of the model's
/// checks (a LoRA, a model that cannot do the task) are `service::submit`'s.
pub(super) async fn check_model(state: &AppState, model: Option<&str>) -> Result<()> {
    if let Some(name) = model {
        if easel_store::models::resolve(&state.store.db, name)
            .await?
            .is_none()
        {
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
