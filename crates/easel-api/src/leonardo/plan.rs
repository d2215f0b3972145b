//! A generation request as the core's task, model and input (the one mapping of fields, and the
//! names to report errors back).

use easel_core::generate::{GenerateInput, LoraRef};
use easel_core::task::TaskInput;

use super::*;

/// The request fields that map onto the core's generation input, as (Leonardo's name, the
/// core's): how `plan` fills the core's typed input, and the table that names the core's
/// errors back (`WireNames::wire`). The images, the mask, the LoRAs and the model are
/// resolved apart (their wire field depends on the request).
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("prompt", "prompt"),
    ("negative_prompt", "negative_prompt"),
    ("width", "width"),
    ("height", "height"),
    ("num_images", "count"),
    ("num_inference_steps", "steps"),
    ("guidance_scale", "guidance"),
    ("seed", "seed"),
    ("scheduler", "scheduler"),
    ("init_strength", "strength"),
];

/// Which wire fields the core's fields came from, to name core errors back.
#[derive(Debug, Default)]
pub(super) struct WireNames {
    /// The field the init image came from.
    pub(super) image: Option<&'static str>,
    /// `modelId` or `sd_version` (how the model was chosen).
    pub(super) model: &'static str,
    /// `elements[i]` / `userElements[j]` for each core LoRA, in order.
    pub(super) loras: Vec<(String, &'static str, &'static str)>,
}

impl WireNames {
    /// A core field path (`input.count`, `model`, `input.loras[1].scale`) by its wire name.
    pub(super) fn wire(&self, field: &str) -> Option<String> {
        if field == "model" {
            return Some(self.model.to_string());
        }
        let f = field
            .strip_prefix("input.")
            .or_else(|| (field == "input").then_some(""));
        let Some(f) = f else {
            return Some(field.to_string());
        };
        if f.is_empty() {
            return None;
        }
        if let Some(rest) = f.strip_prefix("loras[") {
            let (i, tail) = rest.split_once(']').unwrap_or((rest, ""));
            let Some((base, id_field, _)) = i.parse::<usize>().ok().and_then(|i| self.loras.get(i))
            else {
                return Some("elements".into());
            };
            return Some(match tail {
                ".scale" => format!("{base}.weight"),
                _ => format!("{base}.{id_field}"),
            });
        }
        Some(
            match f {
                "loras" => "elements",
                "image" => self.image.unwrap_or("init_image_id"),
                "mask" => "canvasMaskId",
                other => FIELDS
                    .iter()
                    .find(|(_, core)| *core == other)
                    .map_or(other, |(wire, _)| *wire),
            }
            .to_string(),
        )
    }

    pub(super) fn rename(&self, mut e: Error) -> Error {
        e.field = e.field.as_deref().and_then(|f| self.wire(f));
        e
    }
}

/// A model of the server by name, alias, id, or id as a UUID (users' models are run through
/// the native API, Scenario and OpenAI's `model`).
pub(super) async fn find_model(state: &AppState, name: &str) -> Result<Option<Model>> {
    Ok(find_any(state, name)
        .await?
        .filter(|m| m.owner_id.is_none()))
}

async fn find_any(state: &AppState, name: &str) -> Result<Option<Model>> {
    let db = &state.store.db;
    if let Some(m) = easel_store::models::resolve(db, name).await? {
        return Ok(Some(m));
    }
    if is_uuid_v4(name) {
        let id = easel_store::external_ids::find(db, NS_MODEL, "", name).await?;
        if let Some(id) = id {
            return Ok(easel_store::models::resolve(db, &id).await?);
        }
    }
    match easel_core::id::from_uuid(easel_core::id::MODEL, name) {
        Some(id) => Ok(easel_store::models::resolve(db, &id).await?),
        None => Ok(None),
    }
}

/// A model's Leonardo id: a UUIDv4 given to it the first time a Generation shows it (the
/// spec's `modelId` and `akUUID` are v4 UUIDs); requests may name a model by it.
pub(super) async fn model_uuid(state: &AppState, m: &Model) -> Result<String> {
    Ok(
        easel_store::external_ids::get_or_assign(&state.store.db, NS_MODEL, "", &m.id, new_uuid_v4)
            .await?,
    )
}

/// An image a request names: an asset id of the caller, or a generated image's UUID.
pub(super) async fn image_asset(
    state: &AppState,
    who: &Principal,
    field: &str,
    id: &str,
) -> Result<Asset> {
    let db = &state.store.db;
    let asset_id = if easel_core::id::is_valid(easel_core::id::ASSET, id) {
        Some(id.to_string())
    } else if is_uuid_v4(id) {
        easel_store::external_ids::find(db, NS_IMAGE, &who.user_id, id).await?
    } else {
        return Err(Error::invalid(
            field,
            format!(
                "`{id}` is neither an asset id (ast_…, upload with POST /v1/assets) nor the id \
                 of one of your generated images"
            ),
        )
        .into());
    };
    let asset = match asset_id {
        Some(a) => easel_store::assets::get(db, &a)
            .await?
            .filter(|a| a.owner_id == who.user_id),
        None => None,
    };
    let asset = asset.ok_or_else(|| Error::invalid(field, format!("no image `{id}` of yours")))?;
    if !asset.mime_type.starts_with("image/") {
        return Err(Error::invalid(field, "the asset is not an image").into());
    }
    Ok(asset)
}

/// A LoRA an element names.
pub(super) async fn lora(state: &AppState, field: &str, name: &str) -> Result<Model> {
    match find_model(state, name).await? {
        Some(m) if m.is_lora() => Ok(m),
        Some(m) => Err(Error::invalid(
            field,
            format!("`{}` is a model, not a LoRA; name it in modelId", m.name),
        )
        .into()),
        None => Err(Error::invalid(field, format!("no LoRA named `{name}`")).into()),
    }
}

/// `12.0` → `"12"`.
pub(super) fn number_name(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// What a request becomes.
pub(super) struct Plan {
    pub(super) model: Model,
    pub(super) input: easel_core::task::TaskInput,
    pub(super) names: WireNames,
}

/// Translate and check a request (everything but the submit).
pub(super) async fn plan(state: &AppState, who: &Principal, r: &GenerationRequest) -> Result<Plan> {
    check_fields(r)?;
    let mut names = WireNames {
        model: "modelId",
        ..Default::default()
    };

    // The task and its images.
    let canvas = match (&r.canvasRequestType, r.canvasRequest) {
        (Some(t), _) => Some(t.as_str()),
        (None, Some(true)) => {
            return Err(Error::invalid(
                "canvasRequestType",
                "required when canvasRequest is true (INPAINT or IMG2IMG)",
            )
            .into())
        }
        (None, _) => None,
    };
    let (task, image, mask): (
        &'static str,
        Option<(&'static str, &String)>,
        Option<&String>,
    ) = match canvas {
        Some(t) => {
            one_of_s(
                "canvasRequestType",
                t,
                &["INPAINT", "OUTPAINT", "SKETCH2IMG", "IMG2IMG"],
            )?;
            if t == "OUTPAINT" || t == "SKETCH2IMG" {
                return Err(unsupported(
                    "canvasRequestType",
                    format!("`{t}` is not supported by this server; INPAINT and IMG2IMG are"),
                ));
            }
            for (field, v) in [
                ("init_image_id", &r.init_image_id),
                ("init_generation_image_id", &r.init_generation_image_id),
            ] {
                if v.is_some() {
                    return Err(Error::invalid(
                        field,
                        "not with a canvas request: its image is canvasInitId",
                    )
                    .into());
                }
            }
            let init = r.canvasInitId.as_ref().ok_or_else(|| {
                Error::invalid("canvasInitId", format!("required for a {t} canvas request"))
            })?;
            if t == "INPAINT" {
                let m = r.canvasMaskId.as_ref().ok_or_else(|| {
                    Error::invalid(
                        "canvasMaskId",
                        "required for an INPAINT canvas request (white = repaint)",
                    )
                })?;
                ("inpaint", Some(("canvasInitId", init)), Some(m))
            } else {
                if r.canvasMaskId.is_some() {
                    return Err(
                        Error::invalid("canvasMaskId", "only for INPAINT canvas requests").into(),
                    );
                }
                ("img2img", Some(("canvasInitId", init)), None)
            }
        }
        None => {
            for (field, v) in [
                ("canvasInitId", &r.canvasInitId),
                ("canvasMaskId", &r.canvasMaskId),
            ] {
                if v.is_some() {
                    return Err(Error::invalid(
                        field,
                        "needs canvasRequestType (INPAINT or IMG2IMG)",
                    )
                    .into());
                }
            }
            match (&r.init_image_id, &r.init_generation_image_id) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        "init_generation_image_id",
                        "give one of init_image_id and init_generation_image_id",
                    )
                    .into())
                }
                (Some(i), None) => ("img2img", Some(("init_image_id", i)), None),
                (None, Some(i)) => ("img2img", Some(("init_generation_image_id", i)), None),
                (None, None) => ("txt2img", None, None),
            }
        }
    };
    if task == "txt2img" && r.init_strength.is_some() {
        return Err(Error::invalid(
            "init_strength",
            "only with an init image (init_image_id, init_generation_image_id or a canvas request)",
        )
        .into());
    }
    let image = match image {
        Some((field, id)) => {
            names.image = Some(field);
            Some(image_asset(state, who, field, id).await?)
        }
        None => None,
    };
    let mask = match mask {
        Some(id) => Some(image_asset(state, who, "canvasMaskId", id).await?),
        None => None,
    };

    // The model.
    let model = match (&r.modelId, &r.sd_version) {
        (Some(id), _) => {
            let m = find_model(state, id).await?.ok_or_else(|| {
                Error::invalid(
                    "modelId",
                    format!("no model `{id}`; GET /v1/models lists the installed ones"),
                )
            })?;
            if m.is_lora() {
                return Err(Error::invalid(
                    "modelId",
                    format!("`{}` is a LoRA; name it in elements", m.name),
                )
                .into());
            }
            m
        }
        (None, Some(v)) => {
            names.model = "sd_version";
            let families = tables::sd_version(v).unwrap_or(&[]);
            if families.is_empty() {
                return Err(Error::invalid(
                    "sd_version",
                    format!(
                        "`{v}` has no local model family on this server; name an installed \
                         model in modelId"
                    ),
                )
                .into());
            }
            service::pick_model(state, task, Some(families))
                .await?
                .ok_or_else(|| {
                    Error::invalid(
                        "sd_version",
                        format!(
                            "no installed model of `{v}` (family {}) does {task}; install one \
                             or name a model in modelId",
                            families.join(" or ")
                        ),
                    )
                })?
        }
        (None, None) => service::pick_model(state, task, None)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "modelId",
                    format!(
                        "no model for `{task}` is installed: put a diffusers folder or a \
                     .safetensors checkpoint in <data-dir>/models/, or run `easel models pull \
                     <repo>`"
                    ),
                )
            })?,
    };

    // LoRAs.
    let mut loras = Vec::new();
    for (i, e) in r.elements.iter().flatten().enumerate() {
        let base = format!("elements[{i}]");
        let m = lora(state, &format!("{base}.akUUID"), &e.ak_uuid).await?;
        loras.push(LoraRef {
            model: m.name,
            scale: e.weight.unwrap_or(1.0) as f32,
        });
        names.loras.push((base, "akUUID", "weight"));
    }
    for (i, e) in r.userElements.iter().flatten().enumerate() {
        let base = format!("userElements[{i}]");
        let field = format!("{base}.userLoraId");
        let id = e
            .user_lora_id
            .ok_or_else(|| Error::invalid(&field, "required"))?;
        let m = lora(state, &field, &number_name(id)).await?;
        loras.push(LoraRef {
            model: m.name,
            scale: e.weight.unwrap_or(1.0) as f32,
        });
        names.loras.push((base, "userLoraId", "weight"));
    }

    // The core input.
    let style_name = r.presetStyle.as_deref().unwrap_or("DYNAMIC");
    let style =
        easel_core::style::find(styles::STYLES, style_name).expect("checked by check_fields");
    let (prompt, negative) = style.apply(&r.prompt, r.negative_prompt.as_deref());
    // The core's typed input, field by field as `FIELDS` pairs them (which names the core's
    // errors back).
    let scheduler = match (&r.scheduler, &model.defaults.scheduler) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(_)) => None,
        (None, None) => Some("EULER_DISCRETE".to_string()),
    };
    let g = GenerateInput {
        prompt,
        negative_prompt: negative,
        width: r.width,
        height: r.height,
        count: Some(r.num_images.unwrap_or(4)),
        steps: r.num_inference_steps,
        guidance: r.guidance_scale.map(|g| g as f32),
        seed: r.seed,
        scheduler,
        strength: r
            .init_strength
            .map(|s| (((1.0 - s) * 1e6).round() / 1e6) as f32),
        image: image.as_ref().map(|a| a.id.clone()),
        mask: mask.as_ref().map(|a| a.id.clone()),
        loras,
        ..Default::default()
    };
    let input = TaskInput::generation_of(task, g)?;

    // What the core will run, with its defaults: the core's own rules, and the spec's count
    // rule on the sides that run.
    input.check(&state.limits).map_err(|e| names.rename(e))?;
    let mut probe = input.clone();
    if let Some(g) = probe.generation_mut() {
        let size = image.as_ref().and_then(|a| a.width.zip(a.height));
        g.fill_defaults(
            task,
            &easel_providers::family::defaults(&model.family),
            &model.defaults,
            size,
            0,
        );
        let run = g.resolved();
        if (run.width > 768 || run.height > 768) && run.count > 4 {
            return Err(Error::invalid(
                "num_images",
                format!(
                    "must be between 1 and 4 when width or height is above 768 (this \
                     generation is {}x{})",
                    run.width, run.height
                ),
            )
            .into());
        }
    }
    Ok(Plan {
        model,
        input,
        names,
    })
}
