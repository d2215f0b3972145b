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

/// The task and core input of a prediction's input. Image references are made asset ids
/// where they are URLs of this server (`submit` reads ids and `data:` URLs).
/// Remote image URLs of an input, fetched once the rest is checked.
pub(super) type Remote = Vec<(&'static str, ImageSource)>;

pub(super) fn core_input(
    state: &AppState,
    i: &Input,
) -> Result<(&'static str, Map<String, Value>, Remote), Error> {
    in_range("guidance_scale", i.guidance_scale, 1.0, 20.0)?;
    in_range("pag_guidance_scale", i.pag_guidance_scale, 1.0, 20.0)?;
    if i.num_inference_steps == Some(0) {
        return Err(Error::invalid(
            "input.num_inference_steps",
            "must be at least 1",
        ));
    }
    let mut input = Map::new();
    input.insert(
        "prompt".into(),
        json!(i.prompt.as_deref().unwrap_or(DEFAULT_PROMPT)),
    );
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            input.insert(k.into(), v);
        }
    };
    put(
        "negative_prompt",
        i.negative_prompt
            .as_ref()
            .filter(|n| !n.is_empty())
            .map(|n| json!(n)),
    );
    put("width", i.width.map(Value::from));
    put("height", i.height.map(Value::from));
    put("steps", i.num_inference_steps.map(Value::from));
    put("guidance", i.guidance_scale.map(Value::from));
    put("pag_guidance", i.pag_guidance_scale.map(Value::from));
    put("seed", i.seed.map(Value::from));
    put("count", i.num_outputs.map(Value::from));
    put("scheduler", i.scheduler.clone().map(Value::from));
    put("strength", i.prompt_strength.map(Value::from));
    put("format", i.output_format.clone().map(Value::from));
    put("quality", i.output_quality.map(Value::from));
    // Asset ids and data: URLs go as they are (`submit` reads them); this server's asset
    // URLs become ids; other URLs are fetched in `submit`, after every field is checked.
    let mut remote = Vec::new();
    let mut image_ref = |field: &'static str, s: &str| -> Result<Value, Error> {
        let f = format!("input.{field}");
        Ok(match service::image_source(state, &f, s)? {
            ImageSource::Asset(id) => json!(id),
            ImageSource::Bytes(_) => json!(s.trim()),
            src @ ImageSource::Url(_) => {
                remote.push((field, src));
                Value::Null
            }
        })
    };
    let task = match (&i.image, &i.mask) {
        (None, Some(_)) => return Err(Error::invalid("input.mask", "needs `image`")),
        (None, None) => {
            if i.prompt_strength.is_some() {
                return Err(Error::invalid("input.prompt_strength", "needs `image`"));
            }
            "txt2img"
        }
        (Some(img), mask) => {
            input.insert("image".into(), image_ref("image", img)?);
            match mask {
                Some(m) => {
                    input.insert("mask".into(), image_ref("mask", m)?);
                    "inpaint"
                }
                None => "img2img",
            }
        }
    };
    Ok((task, input, remote))
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
            format: WebhookFormat::Replicate,
        },
        (None, Some(url)) => Webhook {
            url: url.clone(),
            events: vec![WebhookEvent::Completed],
            format: WebhookFormat::Replicate,
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
