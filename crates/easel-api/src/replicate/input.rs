//! A prediction's input as the core's task input (the one mapping of fields), and its webhook.

use super::*;

pub(super) fn in_range(field: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), Error> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(Error::invalid(
            format!("input.{field}"),
            format!("must be between {lo} and {hi}"),
        )),
        _ => Ok(()),
    }
}

/// The input fields that map onto the core's generation input, as (Replicate's name, the
/// core's name): how `core_input` fills the core's typed input, and the table that names
/// core errors back (`ReplicateNames`). `image` and `mask` are read apart (they are resolved first);
/// `model_variant` names the model.
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("prompt", "prompt"),
    ("negative_prompt", "negative_prompt"),
    ("width", "width"),
    ("height", "height"),
    ("num_inference_steps", "steps"),
    ("guidance_scale", "guidance"),
    ("pag_guidance_scale", "pag_guidance"),
    ("seed", "seed"),
    ("num_outputs", "count"),
    ("scheduler", "scheduler"),
    ("prompt_strength", "strength"),
    ("output_format", "format"),
    ("output_quality", "quality"),
];

/// The task and core input of a prediction's input. Image references are made asset ids
/// where they are URLs of this server (`submit` reads ids and `data:` URLs).
/// Remote image URLs of an input, fetched once the rest is checked.
pub(super) type Remote = Vec<(&'static str, ImageSource)>;

/// Where a remote image goes until it is fetched (an id no asset has): the core checks every
/// other field first.
pub(super) const PENDING_IMAGE: &str = "ast_00000000000000000000000000";

pub(super) fn core_input(state: &AppState, i: &Input) -> Result<(TaskInput, Remote), Error> {
    in_range("guidance_scale", i.guidance_scale, 1.0, 20.0)?;
    in_range("pag_guidance_scale", i.pag_guidance_scale, 1.0, 20.0)?;
    if i.num_inference_steps == Some(0) {
        return Err(Error::invalid(
            "input.num_inference_steps",
            "must be at least 1",
        ));
    }
    let format = match &i.output_format {
        None => None,
        Some(f) => Some(
            easel_core::error::from_json::<OutputFormat>(json!(f))
                .map_err(|e| e.with_field("input.format"))?,
        ),
    };
    // Asset ids and data: URLs go as they are (`submit` reads them); this server's asset
    // URLs become ids; other URLs are fetched in `submit`, after every field is checked.
    let mut remote = Vec::new();
    let mut image_ref = |field: &'static str, s: &str| -> Result<String, Error> {
        let f = format!("input.{field}");
        Ok(match service::image_source(state, &f, s)? {
            ImageSource::Asset(id) => id,
            ImageSource::Bytes(_) => s.trim().to_string(),
            src @ ImageSource::Url(_) => {
                remote.push((field, src));
                PENDING_IMAGE.to_string()
            }
        })
    };
    let (task, image, mask) = match (&i.image, &i.mask) {
        (None, Some(_)) => return Err(Error::invalid("input.mask", "needs `image`")),
        (None, None) => {
            if i.prompt_strength.is_some() {
                return Err(Error::invalid("input.prompt_strength", "needs `image`"));
            }
            ("txt2img", None, None)
        }
        (Some(img), None) => ("img2img", Some(image_ref("image", img)?), None),
        (Some(img), Some(m)) => (
            "inpaint",
            Some(image_ref("image", img)?),
            Some(image_ref("mask", m)?),
        ),
    };
    let mut g = generation(i, format);
    g.image = image;
    g.mask = mask;
    Ok((TaskInput::generation_of(task, g)?, remote))
}

/// The core's generation input of a prediction's input (images apart), field by field as
/// `FIELDS` pairs them (a test holds the two together).
pub(super) fn generation(i: &Input, format: Option<OutputFormat>) -> GenerateInput {
    GenerateInput {
        prompt: i
            .prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_PROMPT.to_string()),
        negative_prompt: i.negative_prompt.clone().filter(|n| !n.is_empty()),
        width: i.width,
        height: i.height,
        steps: i.num_inference_steps,
        guidance: i.guidance_scale,
        pag_guidance: i.pag_guidance_scale,
        seed: i.seed,
        count: i.num_outputs,
        scheduler: i.scheduler.clone(),
        strength: i.prompt_strength,
        format,
        quality: i.output_quality,
        ..Default::default()
    }
}

/// The webhook of a request, if any.
pub(super) fn webhook_of(req: &PredictionRequest) -> Result<Option<Webhook>, Error> {
    let events = |names: &[EventName]| {
        let mut events = Vec::new();
        for n in names {
            let e = match n {
                EventName::Start => WebhookEvent::Start,
                EventName::Logs => WebhookEvent::Progress,
                EventName::Output | EventName::Completed => WebhookEvent::Completed,
            };
            if !events.contains(&e) {
                events.push(e);
            }
        }
        events
    };
    let hook = match (&req.webhook, &req.webhook_completed) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "webhook_completed",
                "one webhook per prediction: give `webhook` (with `webhook_events_filter`) or \
                 `webhook_completed`",
            ))
        }
        (Some(url), None) => Webhook {
            url: url.clone(),
            events: events(req.webhook_events_filter.as_deref().unwrap_or(&[
                EventName::Start,
                EventName::Output,
                EventName::Logs,
                EventName::Completed,
            ])),
            format: Some(WEBHOOK_FORMAT.into()),
        },
        (None, Some(url)) => Webhook {
            url: url.clone(),
            events: vec![WebhookEvent::Completed],
            format: Some(WEBHOOK_FORMAT.into()),
        },
        (None, None) => {
            if req.webhook_events_filter.is_some() {
                return Err(Error::invalid("webhook_events_filter", "needs `webhook`"));
            }
            return Ok(None);
        }
    };
    hook.validate()
        .map_err(|e| Error::invalid("webhook", e.message))?;
    Ok(Some(hook))
}
