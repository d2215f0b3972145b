//! Jobs as generations: images, elements, costs, status.

use super::*;

/// A number the core keeps as an `f32`, at its shortest decimal (`0.8`, not
/// `0.800000011920929`).
pub(super) fn short(v: f64) -> f64 {
    (v as f32).to_string().parse().unwrap_or(v)
}

pub(super) fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A job as a Generation with id `id`.
pub(super) async fn generation(state: &AppState, job: &Job, id: String) -> Result<Generation> {
    let req = job.request.clone().unwrap_or_else(|| json!({}));
    let input = &job.input;
    let model = match &job.model {
        Some(name) => easel_store::models::resolve(&state.store.db, name).await?,
        None => None,
    };
    let model_id = match &model {
        Some(m) => Some(model_uuid(state, m).await?),
        None => None,
    };
    let sd_version = str_of(&req, "sd_version").or_else(|| {
        model
            .as_ref()
            .and_then(|m| tables::sd_version_of(&m.family))
            .map(str::to_string)
    });
    let scheduler = str_of(&req, "scheduler").or_else(|| {
        input
            .get("scheduler")
            .and_then(Value::as_str)
            .and_then(tables::scheduler_name)
            .map(str::to_string)
    });
    let preset = str_of(&req, "presetStyle").unwrap_or_else(|| "DYNAMIC".into());
    let preset = easel_core::style::find(styles::STYLES, &preset)
        .map(|s| s.name.to_string())
        .unwrap_or(preset);
    let init_strength = req
        .get("init_strength")
        .and_then(Value::as_f64)
        .or_else(|| {
            input
                .get("strength")
                .and_then(Value::as_f64)
                .map(|s| short(1.0 - short(s)))
        });
    let num = |k: &str| input.get(k).and_then(Value::as_u64);
    let core_loras = input
        .get("loras")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut generation_elements = Vec::new();
    for l in &core_loras {
        let name = str_of(l, "model");
        let found = match &name {
            Some(n) => easel_store::models::resolve(&state.store.db, n).await?,
            None => None,
        };
        let ak_uuid = match &found {
            Some(m) => Some(model_uuid(state, m).await?),
            None => None,
        };
        generation_elements.push(GenerationElement {
            lora: LoraView { ak_uuid, name },
            weight_applied: l.get("scale").and_then(Value::as_f64).map(short),
        });
    }
    let mut generated_images = Vec::new();
    if job.status == JobStatus::Succeeded {
        // An output deleted since (`DELETE /v1/assets/{id}`) is left out.
        for asset_id in &job.outputs {
            if easel_store::assets::get(&state.store.db, asset_id)
                .await?
                .is_none()
            {
                continue;
            }
            let image_id = easel_store::external_ids::get_or_assign(
                &state.store.db,
                NS_IMAGE,
                &job.owner_id,
                asset_id,
                new_uuid_v4,
            )
            .await?;
            generated_images.push(GeneratedImage {
                id: image_id,
                url: service::asset_url(state, asset_id),
                nsfw: false,
                like_count: 0,
                generated_image_variation_generics: vec![],
            });
        }
    }
    let easel_error = match job.status {
        JobStatus::Failed | JobStatus::Canceled => Some(match &job.error {
            Some(e) => JobErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            },
            None => JobErrorView {
                code: job.status.as_str().to_string(),
                message: job.failure().map(|e| e.message).unwrap_or_default(),
            },
        }),
        _ => None,
    };
    Ok(Generation {
        id,
        created_at: easel_core::time::rfc3339(job.created_at),
        status: STATUS.name(job.status),
        prompt: str_of(&req, "prompt")
            .or_else(|| str_of(input, "prompt"))
            .unwrap_or_default(),
        negative_prompt: str_of(&req, "negative_prompt"),
        model_id,
        sd_version,
        scheduler,
        preset_style: Some(preset),
        seed: num("seed"),
        image_width: num("width").map(|v| v as u32),
        image_height: num("height").map(|v| v as u32),
        inference_steps: num("steps").map(|v| v as u32),
        guidance_scale: input.get("guidance").and_then(Value::as_f64).map(short),
        init_strength,
        public: false,
        photo_real: false,
        photo_real_strength: None,
        prompt_magic: false,
        prompt_magic_strength: None,
        prompt_magic_version: None,
        ultra: false,
        generation_elements,
        generated_images,
        easel_job_id: job.id.clone(),
        easel_model: job.model.clone(),
        easel_prompt: str_of(input, "prompt"),
        easel_negative_prompt: str_of(input, "negative_prompt"),
        easel_ignored: req
            .get("ignored")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        easel_error,
    })
}

/// The caller's job with the Leonardo generation id `id`, if any.
pub(super) async fn owned_generation(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<Option<Job>> {
    let db = &state.store.db;
    let Some(job_id) = easel_store::external_ids::find(db, NS_GENERATION, &who.user_id, id).await?
    else {
        return Ok(None);
    };
    Ok(easel_store::jobs::get(db, &job_id)
        .await?
        .filter(|j| j.owner_id == who.user_id))
}

pub(super) fn path_id(field: &str, p: Result<Path<String>, PathRejection>) -> Result<String> {
    let id = p.map(|Path(id)| id).unwrap_or_default();
    check_uuid(field, &id)?;
    Ok(id)
}
