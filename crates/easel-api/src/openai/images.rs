//! Generations, edits and job polls: submit, wait within `--sync-timeout`, answer with URLs or
//! base64.

use super::*;

pub(super) fn status_name(job: &Job) -> &'static str {
    STATUS.name(job.status)
}

pub(super) fn credits_of(job: &Job) -> Usage {
    let credits = easel_core::usage::credits(job.usage_units);
    Usage {
        credits_used: credits,
        credits_breakdown: Some([(job.task.clone(), credits)].into_iter().collect()),
    }
}

/// The items of an answer for a finished job (one per output image).
pub(super) async fn image_data(
    state: &AppState,
    job: &Job,
    format: ResponseFormat,
    prompt: Option<&str>,
) -> Result<Vec<ImageData>> {
    let b64 = format == ResponseFormat::B64Json;
    Ok(service::job_outputs(state, job, b64)
        .await?
        .into_iter()
        .map(|o| ImageData {
            url: (!b64).then_some(o.url),
            b64_json: o.base64,
            revised_prompt: prompt.map(str::to_string),
            width: o.asset.width,
            height: o.asset.height,
        })
        .collect())
}

/// What a generation or edit submits and how it answers.
pub(super) struct Submission {
    model: Option<String>,
    input: TaskInput,
    prompt: String,
    format: ResponseFormat,
    asynchronous: bool,
}

pub(super) async fn run(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    s: Submission,
) -> Result<Response> {
    let deadline = tokio::time::Instant::now() + state.sync_timeout;
    let idempotency_key = service::idempotency_key(headers)?;
    let (job, _) = service::submit(
        state,
        who,
        TaskRequest {
            preset: None,
            model: s.model,
            input: s.input,
            priority: None,
            webhook: None,
            idempotency_key,
            request: None,
            external_id: None,
            hide_outputs: false,
            inline: Default::default(),
        },
    )
    .await?;
    if s.asynchronous {
        let units = easel_core::usage::estimate_units(&job.task, &job.input).unwrap_or(0.0);
        return Ok(axum::Json(ImagesAnswer::Job(AsyncJob {
            status: status_name(&job),
            created: job.created_at.timestamp(),
            estimated_credits: easel_core::usage::credits(units),
            model: job.model.clone(),
            id: job.id,
        }))
        .into_response());
    }
    let job = finished(state, job, deadline).await?;
    let data = image_data(state, &job, s.format, Some(&s.prompt)).await?;
    Ok(axum::Json(ImagesAnswer::Images(ImagesResponse {
        created: job.created_at.timestamp(),
        data,
        model: job.model.clone(),
        usage: credits_of(&job),
    }))
    .into_response())
}

/// Wait for a job until `deadline`; its failure, or a job still running then, is the
/// answer's error.
pub(super) async fn finished(
    state: &AppState,
    job: Job,
    deadline: tokio::time::Instant,
) -> Result<Job> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let job = service::wait_job(state, job, left).await?;
    if !job.status.is_terminal() {
        return Err(OpenAiError::from(Error::new(
            ErrorKind::Timeout,
            format!(
                "the job {id} did not finish within {}s; it keeps running: poll GET \
                 {BASE}/jobs/{id} (or send ?async=true)",
                state.sync_timeout.as_secs_f64(),
                id = job.id
            ),
        ))
        .no_retry());
    }
    if let Some(e) = job.failure() {
        let code = job
            .error
            .as_ref()
            .map(|e| e.code.clone())
            .unwrap_or_else(|| e.kind.as_str().to_string());
        return Err(OpenAiError::from(e).code(code).no_retry());
    }
    Ok(job)
}

/// Create images from a prompt (`txt2img`).
#[utoipa::path(post, path = "/openai/v1/images/generations", tag = "openai", request_body = ImageRequest, params(AsyncParams),
    responses((status = 200, body = ImagesAnswer, description = "The images; with ?async=true, the job"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "Unknown model"),
        (status = 429, body = ErrorBody), (status = 504, body = ErrorBody, description = "Still running at --sync-timeout")),
    security(("bearer" = [])))]
pub async fn generations(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Query(q): Query<AsyncParams>,
    Json(req): Json<ImageRequest>,
) -> Result<Response> {
    for (field, set) in [
        ("image", req.image.is_some()),
        ("mask", req.mask.is_some()),
        ("strength", req.strength.is_some()),
    ] {
        if set {
            return Err(Error::invalid(field, "only for /images/edits").into());
        }
    }
    let (input, prompt) = core_input(&req)?;
    check_model(&state, &who, req.model.as_deref()).await?;
    run(
        &state,
        &who,
        &headers,
        Submission {
            model: req.model,
            input: TaskInput::Txt2img(input),
            prompt,
            format: req.response_format.unwrap_or_default(),
            asynchronous: q.asynchronous.unwrap_or(false),
        },
    )
    .await
}

/// Fields of OpenAI's multipart form that are not text.
pub(super) const FORM_NUMBERS: &[&str] = &[
    "n",
    "seed",
    "steps",
    "guidance",
    "strength",
    "output_compression",
];
pub(super) const FORM_BOOLS: &[&str] = &["stream"];

/// OpenAI's multipart form as the JSON body's fields, and its image and mask files.
pub(super) fn read_form(
    parts: Vec<crate::extract::FormPart>,
) -> Result<(ImageRequest, Option<ImageSource>, Option<ImageSource>)> {
    let mut fields = Map::new();
    let (mut image, mut mask) = (None, None);
    for p in parts {
        let name = p.name.trim_end_matches("[]").to_string();
        if p.file_name.is_some() && (name == "image" || name == "mask") {
            let slot = if name == "image" {
                &mut image
            } else {
                &mut mask
            };
            if slot.is_some() {
                return Err(Error::invalid(
                    name,
                    "one file only: Easel edits one image (with one mask)",
                )
                .into());
            }
            *slot = Some(ImageSource::Bytes(p.data));
            continue;
        }
        let text = p.text()?.to_string();
        let value = if FORM_NUMBERS.contains(&name.as_str()) || FORM_BOOLS.contains(&name.as_str())
        {
            // Numbers and booleans as JSON; anything else stays text, and the field's type
            // check names it.
            serde_json::from_str::<Value>(text.trim())
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        if fields.insert(name.clone(), value).is_some() {
            return Err(Error::invalid(name, "given more than once").into());
        }
    }
    let req: ImageRequest = easel_core::error::from_json(Value::Object(fields))?;
    Ok((req, image, mask))
}

/// Edit an image: `img2img`, or `inpaint` with a mask (or where the image is transparent).
#[utoipa::path(post, path = "/openai/v1/images/edits", tag = "openai", params(AsyncParams),
    request_body(content(
        (ImageRequest = "application/json"),
        (ImageRequest = "multipart/form-data")),
        description = "JSON with `image`/`mask` as asset ids, data: URLs or asset URLs of this server; or OpenAI's multipart form with `image` (or `image[]`) and `mask` files"),
    responses((status = 200, body = ImagesAnswer, description = "The images; with ?async=true, the job"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn edits(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Query(q): Query<AsyncParams>,
    req: Request,
) -> Result<Response> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (body, image_file, mask_file) = if multipart {
        let Form(parts) = Form::from_request(req, &state).await?;
        read_form(parts)?
    } else {
        let Json(body) = Json::<ImageRequest>::from_request(req, &state).await?;
        (body, None, None)
    };
    let source = |file: Option<ImageSource>, text: &Option<String>, field: &str| match (file, text)
    {
        (Some(_), Some(_)) => Err(OpenAiError::from(Error::invalid(
            field,
            "give it as a file or as a URL, not both",
        ))),
        (Some(f), None) => Ok(Some(f)),
        (None, Some(s)) => Ok(Some(service::image_source(&state, field, s)?)),
        (None, None) => Ok(None),
    };
    let image = source(image_file, &body.image, "image")?
        .ok_or_else(|| Error::invalid("image", "required: the image to edit"))?;
    let mask = source(mask_file, &body.mask, "mask")?;
    let (mut input, prompt) = core_input(&body)?;
    check_model(&state, &who, body.model.as_deref()).await?;
    // Every field is checked (by the core) before any image is stored.
    let mut probe = input.clone();
    probe.image = Some("ast_00000000000000000000000000".into());
    probe.mask = probe.image.clone();
    TaskInput::Inpaint(probe).check(&state.limits)?;

    // Remote URLs are fetched once, now that every field passed.
    let image = service::fetched(&state, "image", image).await?;
    let mask = match mask {
        Some(m) => Some(service::fetched(&state, "mask", m).await?),
        None => None,
    };
    // OpenAI's masks: transparent = edit. Converted to Easel's white = repaint.
    let mask_id = match mask {
        Some(m) => {
            let bytes = service::source_bytes(&state, &who, "mask", &m).await?;
            match service::mask_from_transparency(&state, &who, "mask", bytes).await? {
                Some(converted) => Some(converted.id),
                None => Some(service::source_asset(&state, &who, "mask", m).await?),
            }
        }
        None => {
            let bytes = service::source_bytes(&state, &who, "image", &image).await?;
            service::mask_from_transparency(&state, &who, "image", bytes)
                .await?
                .map(|a| a.id)
        }
    };
    let image_id = service::source_asset(&state, &who, "image", image).await?;
    input.image = Some(image_id);
    let input = match mask_id {
        Some(m) => {
            input.mask = Some(m);
            TaskInput::Inpaint(input)
        }
        None => TaskInput::Img2img(input),
    };
    run(
        &state,
        &who,
        &headers,
        Submission {
            model: body.model,
            input,
            prompt,
            format: body.response_format.unwrap_or_default(),
            asynchronous: q.asynchronous.unwrap_or(false),
        },
    )
    .await
}

/// A job of the caller; `?poll=true` waits up to 30 s for it to end.
#[utoipa::path(get, path = "/openai/v1/jobs/{id}", tag = "openai", params(("id" = String, Path), PollParams),
    responses((status = 200, body = JobStatusView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
    Query(q): Query<PollParams>,
) -> Result<axum::Json<JobStatusView>> {
    let Ok(Path(id)) = id else {
        return Err(Error::not_found("job").into());
    };
    let mut job = service::owned_job(&state, &who, &id).await?;
    if q.poll.unwrap_or(false) {
        job = service::wait_job(&state, job, POLL_WAIT).await?;
    }
    let output_data = match job.status {
        easel_core::JobStatus::Succeeded => {
            let prompt = job.input["prompt"].as_str();
            let data = image_data(&state, &job, ResponseFormat::Url, prompt).await?;
            Some(json!({ "data": data }))
        }
        _ => None,
    };
    let progress = if job.status == easel_core::JobStatus::Succeeded {
        100
    } else {
        (job.progress.clamp(0.0, 1.0) * 100.0).floor() as u32
    };
    Ok(axum::Json(JobStatusView {
        status: status_name(&job),
        progress,
        created: job.created_at.timestamp(),
        completed: job.completed_at.map(|t| t.timestamp()),
        model: job.model.clone(),
        output_data,
        error_message: job.failure().map(|e| e.message),
        usage: Usage {
            credits_used: easel_core::usage::credits(job.usage_units),
            credits_breakdown: None,
        },
        id: job.id,
    }))
}
