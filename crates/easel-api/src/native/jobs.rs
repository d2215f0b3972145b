//! `/v1/jobs`: create, get (with long-poll), list, cancel, Server-Sent Events and webhook
//! delivery records.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use easel_core::job::{JobError, StatusChange};
use easel_core::{Error, Job, JobStatus, Webhook};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::service::{self, TaskRequest};
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// `txt2img`, `img2img`, `inpaint` (input: `GenerateInput`), `upscale`, `resize`,
    /// `pixelate` or `convert` (input: `UpscaleInput`, …).
    pub task: String,
    /// Model name, alias or id. Generation tasks default to an installed model that does
    /// the task (a recommended one first).
    #[serde(default)]
    pub model: Option<String>,
    /// A preset of the model (id or name): its parameters fill what `input` leaves out.
    /// Absent: the model's default preset, if it has one (`/v1/models/{id}/presets`).
    #[serde(default)]
    pub preset: Option<String>,
    /// The task's input (see the `*Input` schemas); images as asset ids or `data:` URLs.
    /// The created job's `input` has every default filled in, the seed included.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// -100..100, higher first. Default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub webhook: Option<Webhook>,
    /// Store the outputs hidden from the caller's lists (`GET /v1/assets?hidden=true`
    /// lists them; the job names them as any other). Default false.
    #[serde(default)]
    pub hide_outputs: bool,
    /// What becomes of the images the input sends inline (`data:` URLs), which are stored
    /// as the caller's uploads: `{"hidden": true}` keeps them out of the caller's lists,
    /// `{"parent_id": "ast_…"}` derives them from one of the caller's assets.
    #[serde(default)]
    pub inline_images: Option<InlineImagesBody>,
}

/// `inline_images` of a job request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineImagesBody {
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub parent_id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Serialize, ToSchema)]
pub struct OutputRef {
    pub asset_id: String,
    /// Signed URL of the content, fetchable without a key until it expires.
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    pub units: f64,
}

#[derive(Serialize, ToSchema)]
pub struct JobUrls {
    pub get: String,
    pub cancel: String,
    pub events: String,
}

/// A job as the native API shows it.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// The user the job belongs to.
    pub owner_id: String,
    pub task: String,
    pub model: Option<String>,
    pub status: JobStatus,
    pub priority: i32,
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// 0..1
    pub progress: f32,
    pub step: Option<u32>,
    pub total_steps: Option<u32>,
    pub error: Option<JobError>,
    pub outputs: Vec<OutputRef>,
    pub usage: Usage,
    pub webhook: Option<Webhook>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    pub provider: Option<String>,
    /// Its outputs are stored hidden (shown when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hide_outputs: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// Status changes with times (single-job responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChange>>,
    pub urls: JobUrls,
}

use easel_core::time::rfc3339;

pub fn view(state: &AppState, j: Job, history: Option<Vec<StatusChange>>) -> JobView {
    let base = format!("{}/v1/jobs/{}", state.public_url, j.id);
    JobView {
        outputs: j
            .outputs
            .iter()
            .map(|a| OutputRef {
                asset_id: a.clone(),
                url: service::asset_url(state, a),
            })
            .collect(),
        urls: JobUrls {
            cancel: format!("{base}/cancel"),
            events: format!("{base}/events"),
            get: base,
        },
        id: j.id,
        owner_id: j.owner_id,
        task: j.task,
        model: j.model,
        status: j.status,
        priority: j.priority,
        input: j.input,
        progress: j.progress,
        step: j.step,
        total_steps: j.total_steps,
        error: j.error,
        hide_outputs: j.hide_outputs,
        usage: Usage {
            units: easel_core::usage::round_units(j.usage_units),
        },
        webhook: j.webhook,
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        cancel_requested: j.cancel_requested,
        provider: j.provider,
        created_at: rfc3339(j.created_at),
        started_at: j.started_at.map(rfc3339),
        completed_at: j.completed_at.map(rfc3339),
        history,
    }
}

async fn full_view(state: &AppState, j: Job) -> ApiResult<JobView> {
    let history = easel_store::jobs::history(&state.store.db, &j.id).await?;
    Ok(view(state, j, Some(history)))
}

/// Create a job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and owner within 24 h returns the same job")),
    responses((status = 201, body = JobView, description = "Created"), (status = 200, body = JobView, description = "Existing job for this Idempotency-Key"),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(body): Json<CreateJob>,
) -> ApiResult<impl IntoResponse> {
    let idempotency_key = service::idempotency_key(&headers)?;
    let req = TaskRequest {
        model: body.model,
        preset: body.preset,
        input: easel_core::task::TaskInput::from_json(&body.task, body.input)?,
        priority: body.priority,
        webhook: body.webhook,
        idempotency_key,
        request: None,
        external_id: None,
        hide_outputs: body.hide_outputs,
        inline: body
            .inline_images
            .map(|i| service::InlineImages {
                hidden: i.hidden,
                parent_id: i.parent_id,
            })
            .unwrap_or_default(),
    };
    let (job, created) =
        service::submit(&state, &who, req)
            .await
            .map_err(|e| match e.field.as_deref() {
                Some("inline.parent_id") => e.with_field("inline_images.parent_id"),
                _ => e,
            })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(full_view(&state, job).await?)))
}

#[derive(Deserialize, IntoParams)]
pub struct GetParams {
    /// Wait up to this many seconds (at most 60) for the job to finish.
    pub wait: Option<f64>,
}

/// Get a job; `?wait=N` long-polls until it finishes or N seconds pass.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), GetParams),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(q): Query<GetParams>,
) -> ApiResult<axum::Json<JobView>> {
    let mut job = service::owned_job(&state, &who, &id).await?;
    if let Some(w) = q.wait {
        if !(0.0..=60.0).contains(&w) {
            return Err(Error::invalid("wait", "must be between 0 and 60 seconds").into());
        }
        if !job.status.is_terminal() && w > 0.0 {
            if let Some(j) = state
                .queue
                .wait_terminal(&id, Duration::from_secs_f64(w))
                .await?
            {
                job = j;
            }
        }
    }
    Ok(axum::Json(full_view(&state, job).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<JobStatus>,
    pub task: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1..100, default 20.
    pub limit: Option<u32>,
    /// Admins: `all` for every user's jobs, or a user id (default: your own).
    pub owner: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub data: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's jobs, newest first; admins may list every user's (`owner=all`) or one
/// user's.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = JobList), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<JobList>> {
    let limit = super::page_limit(q.limit)?;
    let filter = easel_store::jobs::JobFilter {
        owner_id: service::owner_scope(&who, q.owner.as_deref())?,
        status: q.status,
        tasks: q.task.into_iter().collect(),
        before: q.cursor,
        limit: limit + 1,
        ..Default::default()
    };
    let jobs = easel_store::jobs::list(&state.store.db, &filter).await?;
    let (jobs, next_cursor) = super::page(jobs, limit, |j| &j.id);
    Ok(axum::Json(JobList {
        data: jobs.into_iter().map(|j| view(&state, j, None)).collect(),
        next_cursor,
    }))
}

/// Cancel: a queued job ends at once; a running job stops at its next step.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Already finished")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<JobView>> {
    let job = service::owned_job(&state, &who, &id).await?;
    let job = state.queue.cancel(&job.id, None).await?;
    Ok(axum::Json(full_view(&state, job).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct EventParams {
    /// Resume after this event id (same as the `Last-Event-ID` header).
    pub last_event_id: Option<i64>,
}

/// Server-Sent Events: `status`, `progress`, `preview`, `cancel_requested` and `log` events
/// with ids (resume with `Last-Event-ID`), then a final `job` event with the whole job, then
/// the stream ends.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path), EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", description = "Event stream"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<EventParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = service::owned_job(&state, &who, &id).await?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| Error::invalid("Last-Event-ID", "must be an event id (an integer)"))?,
        None => q.last_event_id.unwrap_or(0),
    };
    let stream = event_stream(state, job.id, after);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn event_stream(
    state: AppState,
    job_id: String,
    mut after: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let mut notices = state.queue.subscribe();
        loop {
            let events = match easel_store::jobs::events_after(&state.store.db, &job_id, after).await {
                Ok(e) => e,
                Err(e) => {
                    yield Ok(Event::default().event("error").data(e.to_string()));
                    return;
                }
            };
            for e in events {
                after = e.id;
                let mut data = e.data.clone();
                data["at"] = rfc3339(e.at).into();
                yield Ok(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data.to_string()));
            }
            match easel_store::jobs::get(&state.store.db, &job_id).await {
                Ok(Some(j)) if j.status.is_terminal() => {
                    // Everything up to the terminal status is sent; close with the job.
                    let rest = easel_store::jobs::events_after(&state.store.db, &job_id, after).await.unwrap_or_default();
                    if rest.is_empty() {
                        let v = view(&state, j, None);
                        yield Ok(Event::default().event("job").data(serde_json::to_string(&v).unwrap_or_default()));
                        return;
                    }
                    continue;
                }
                Ok(Some(_)) => {}
                _ => return,
            }
            // Wait for a notice about this job, or re-read after a second.
            easel_queue::wait_notice(&mut notices, &job_id, Duration::from_secs(1)).await;
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub event: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: Vec<AttemptView>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub at: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Webhook deliveries of a job, with every attempt.
#[utoipa::path(get, path = "/v1/jobs/{id}/webhooks", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Vec<DeliveryView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn webhooks(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<DeliveryView>>> {
    let job = service::owned_job(&state, &who, &id).await?;
    let rows = easel_store::webhooks::for_job(&state.store.db, &job.id).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(d, attempts)| DeliveryView {
                id: d.id,
                event: d.event,
                url: d.url,
                status: d.status,
                attempts: attempts
                    .into_iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        at: rfc3339(a.at),
                        status_code: a.status_code,
                        error: a.error,
                        duration_ms: a.duration_ms,
                    })
                    .collect(),
            })
            .collect(),
    ))
}
