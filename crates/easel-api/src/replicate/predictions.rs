//! Jobs as predictions (logs, metrics, URLs), and the read, cancel and list handlers.

use super::*;

pub(super) use easel_core::time::rfc3339;

/// The id a prediction is known by: the one a `PUT` chose, else the job's ULID.
pub fn prediction_id(job: &Job) -> String {
    job.request
        .as_ref()
        .filter(|r| r["dialect"] == "replicate")
        .and_then(|r| r["id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| job.id.strip_prefix("job_").unwrap_or(&job.id).to_string())
}

/// One tqdm-style progress line (what Replicate's clients parse as progress).
pub(super) fn progress_line(done: u32, total: u32) -> String {
    let pct = (u64::from(done) * 100 / u64::from(total.max(1))) as u32;
    let filled = (pct / 10) as usize;
    format!(
        "{pct:>3}%|{}{}| {done}/{total}",
        "#".repeat(filled),
        " ".repeat(10 - filled.min(10))
    )
}

/// The logs of a prediction: what runs, what was not applied, one line per step done.
pub(super) fn logs(job: &Job, request: Option<&Value>, provider_log: &[String]) -> String {
    let mut lines = Vec::new();
    let i = &job.input;
    if job.input.get("prompt").is_some() {
        let scheduler = match i["scheduler"].as_str() {
            Some(name) => format!("scheduler {name}"),
            None => "the model's scheduler".to_string(),
        };
        lines.push(format!(
            "Running {} with {}: {}x{}, {} steps, guidance {}, {scheduler}, seed {}",
            job.task,
            job.model.as_deref().unwrap_or("the default model"),
            i["width"],
            i["height"],
            i["steps"],
            i["guidance"],
            i["seed"],
        ));
    }
    // Once it ran, whether the provider that served applied perturbed-attention guidance.
    match (i["pag_guidance"].as_f64(), job.provider.as_deref()) {
        (Some(pag), Some(p))
            if easel_core::model::provider_applies_pag(
                p,
                request.is_some_and(|r| r["family_pag"] == true),
            ) =>
        {
            lines.push(if p.starts_with("local") {
                format!("pag_guidance_scale {pag} was applied by the local engine")
            } else {
                format!("pag_guidance_scale {pag} was passed to the {p} provider")
            })
        }
        (Some(pag), Some(p)) => lines.push(format!(
            "pag_guidance_scale {pag} was not applied: the {p} provider that ran this model \
             has no perturbed-attention guidance; the image uses guidance_scale only"
        )),
        (Some(pag), None) if request.is_some_and(|r| r["pag_not_applied"] == true) => {
            lines.push(format!(
                "pag_guidance_scale {pag} was not applied: this model's providers have no \
                 perturbed-attention guidance; the image uses guidance_scale only"
            ))
        }
        _ => {}
    }
    if request.is_some_and(|r| r.get("output_file_prefix").is_some()) {
        lines.push("output_file_prefix was not applied: outputs are stored as Easel assets".into());
    }
    lines.extend(provider_log.iter().cloned());
    if let Some(total) = job.total_steps.filter(|t| *t > 0) {
        let done = if job.status == JobStatus::Succeeded {
            total
        } else {
            job.step.unwrap_or(0).min(total)
        };
        lines.extend((1..=done).map(|d| progress_line(d, total)));
    }
    if let Some(e) = &job.error {
        lines.push(format!("error: {}", e.message));
    }
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Jobs as predictions, with what their providers reported (one query for all their `log`
/// events).
pub(super) async fn predictions(state: &AppState, jobs: &[Job]) -> Result<Vec<Prediction>> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let mut logs = easel_store::jobs::log_lines(&state.store.db, &ids).await?;
    Ok(jobs
        .iter()
        .map(|j| prediction(state, j, &logs.remove(&j.id).unwrap_or_default()))
        .collect())
}

/// One job as a prediction, with what its provider reported.
pub(super) async fn read_prediction(state: &AppState, job: &Job) -> Result<Prediction> {
    let mut p = predictions(state, std::slice::from_ref(job)).await?;
    Ok(p.remove(0))
}

/// A job as a prediction (no I/O: webhook deliveries render it too). `provider_log` is what
/// its provider reported (`easel_store::jobs::log_lines`: retries, a fallback).
pub fn prediction(state: &AppState, job: &Job, provider_log: &[String]) -> Prediction {
    let request = job.request.as_ref().filter(|r| r["dialect"] == "replicate");
    let id = prediction_id(job);
    let base = format!("{}{BASE}/predictions/{id}", state.public_url);
    let model = request
        .and_then(|r| r["model"].as_str())
        .map(str::to_string)
        .or_else(|| {
            job.model.as_ref().map(|m| match m.contains('/') {
                true => m.clone(),
                false => format!("easel/{m}"),
            })
        })
        .unwrap_or_else(|| format!("easel/{}", job.task));
    let version = request
        .and_then(|r| r["version"].as_str())
        .map(str::to_string)
        .or_else(|| job.model.clone())
        .unwrap_or_else(|| job.task.clone());
    let urls: Vec<String> = job
        .outputs
        .iter()
        .map(|a| service::asset_url(state, a))
        .collect();
    let output = match (job.status, urls.len()) {
        (JobStatus::Succeeded, 1) => json!(urls[0]),
        (JobStatus::Succeeded, _) => json!(urls),
        _ => Value::Null,
    };
    let mut metrics = Map::new();
    if let (Some(s), Some(c)) = (job.started_at, job.completed_at) {
        metrics.insert(
            "predict_time".into(),
            json!((c - s).num_milliseconds() as f64 / 1000.0),
        );
    }
    if let Some(c) = job.completed_at {
        metrics.insert(
            "total_time".into(),
            json!((c - job.created_at).num_milliseconds() as f64 / 1000.0),
        );
    }
    if job.status == JobStatus::Succeeded {
        metrics.insert("image_count".into(), json!(job.outputs.len()));
    }
    Prediction {
        model,
        version,
        input: request
            .map(|r| r["input"].clone())
            .unwrap_or_else(|| job.input.clone()),
        logs: logs(job, request, provider_log),
        output,
        error: job.failure().map(|e| e.message),
        status: STATUS.name(job.status),
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        completed_at: job.completed_at.map(rfc3339),
        urls: Urls {
            cancel: format!("{base}/cancel"),
            get: base,
        },
        metrics: Value::Object(metrics),
        id,
    }
}

/// A webhook delivery's body: the prediction.
pub fn webhook_body(state: &AppState, job: &Job) -> Value {
    // Rendered at send time without I/O: the provider's own lines are in the prediction as
    // read (`GET /predictions/{id}`), not in deliveries.
    serde_json::to_value(prediction(state, job, &[])).unwrap_or_default()
}

/// A prediction of the caller by the id it is known by.
pub(super) async fn find(
    state: &AppState,
    who: &Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Job> {
    let not_found = || Failure::from(Error::not_found("prediction"));
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    let chosen =
        easel_store::external_ids::find(&state.store.db, PREDICTION_IDS, &who.user_id, &id).await?;
    let job_id = match chosen {
        Some(j) => j,
        None => format!("job_{id}"),
    };
    if !easel_core::id::is_valid(easel_core::id::JOB, &job_id) {
        return Err(not_found());
    }
    service::owned_job(state, who, &job_id)
        .await
        .map_err(|_| not_found())
}

/// One prediction.
#[utoipa::path(get, path = "/replicate/v1/predictions/{id}", tag = "replicate", params(("id" = String, Path)),
    responses((status = 200, body = Prediction), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Prediction>> {
    let job = find(&state, &who, id).await?;
    Ok(axum::Json(read_prediction(&state, &job).await?))
}

/// Cancel a prediction; a finished one is answered as it is.
#[utoipa::path(post, path = "/replicate/v1/predictions/{id}/cancel", tag = "replicate", params(("id" = String, Path)),
    responses((status = 200, body = Prediction), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Prediction>> {
    let job = find(&state, &who, id).await?;
    let job = if job.status.is_terminal() {
        job
    } else {
        state.queue.cancel(&job.id, None).await?
    };
    Ok(axum::Json(read_prediction(&state, &job).await?))
}

/// The caller's predictions, newest first (every job of the caller, whichever API made it).
#[utoipa::path(get, path = "/replicate/v1/predictions", tag = "replicate", params(ListParams),
    responses((status = 200, body = Page), (status = 401, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ListParams>,
) -> Result<axum::Json<Page>> {
    let before = match q.cursor {
        Some(c) if easel_core::id::is_valid(easel_core::id::JOB, &c) => Some(c),
        Some(_) => {
            return Err(fastapi::Failure::Invalid(vec![fastapi::Detail::new(
                vec![json!("query"), json!("cursor")],
                "value_error",
                "not a cursor of this list (use the `next` URL as given)",
            )]))
        }
        None => None,
    };
    let filter = easel_store::jobs::JobFilter {
        owner_id: Some(who.user_id.clone()),
        before,
        limit: PAGE + 1,
        ..Default::default()
    };
    let mut jobs = easel_store::jobs::list(&state.store.db, &filter).await?;
    let next = (jobs.len() > PAGE as usize).then(|| {
        jobs.truncate(PAGE as usize);
        let last = &jobs[jobs.len() - 1].id;
        format!("{}{BASE}/predictions?cursor={last}", state.public_url)
    });
    Ok(axum::Json(Page {
        previous: None,
        next,
        results: predictions(&state, &jobs).await?,
    }))
}
