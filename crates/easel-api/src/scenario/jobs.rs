//! Jobs: `GET /jobs`, `GET /jobs/{jobId}`, `POST /jobs/{jobId}/action` (cancel).

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobsQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    types: Option<String>,
    status: Option<String>,
    author_id: Option<String>,
    /// Read and not used: Easel has no workflows, so no job is a workflow's.
    #[serde(rename = "workflowId")]
    _workflow_id: Option<String>,
}

/// `GET /jobs`: the caller's jobs, newest first (admins: everyone's). `types` wins over
/// `type`; `authorId` must be a user the caller may see.
#[utoipa::path(get, path = "/scenario/v1/jobs", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("type" = Option<String>, Query), ("types" = Option<String>, Query), ("status" = Option<String>, Query), ("authorId" = Option<String>, Query)), responses((status = 200, body = JobsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<JobsQuery>,
) -> Result<axum::Json<JobsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 10, 200)?;
    let mut types = query::list_param(q.types.as_deref());
    if types.is_empty() {
        types = query::list_param(q.job_type.as_deref());
    }
    let mut tasks: Vec<String> = types
        .iter()
        .flat_map(|t| view::tasks_of_job_type(t))
        .collect();
    if !types.is_empty() && tasks.is_empty() {
        // Only types Easel never runs: no job matches.
        return Ok(axum::Json(JobsPage {
            jobs: Vec::new(),
            next_pagination_token: None,
        }));
    }
    tasks.dedup();
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            easel_core::JobStatus::ALL
                .into_iter()
                .find(|st| STATUS.name(*st) == s)
                .ok_or_else(|| {
                    Error::invalid(
                        "status",
                        format!(
                            "unknown status `{s}`; the statuses Easel's jobs take: {}",
                            easel_core::JobStatus::ALL
                                .map(|s| STATUS.name(s))
                                .join(", ")
                        ),
                    )
                })?,
        ),
    };
    let owner_id = match (&q.author_id, who.is_admin()) {
        (Some(a), true) => Some(a.clone()),
        (Some(a), false) if *a != who.user_id => {
            return Err(
                Error::new(ErrorKind::Forbidden, "you may list only your own jobs")
                    .with_field("authorId")
                    .into(),
            )
        }
        _ if who.is_admin() => None,
        _ => Some(who.user_id.clone()),
    };
    let before =
        match q.pagination_token.as_deref() {
            None => None,
            Some(t) => Some(ids::job_in(t).ok_or_else(|| {
                Error::invalid("paginationToken", "is not a token this server gave")
            })?),
        };
    let filter = easel_store::jobs::JobFilter {
        owner_id,
        status,
        tasks,
        before,
        limit: size + 1,
        ..Default::default()
    };
    let rows = easel_store::jobs::list(&state.store.db, &filter).await?;
    let (rows, next) = query::paged(rows, size, |j| j.id.clone());
    Ok(axum::Json(JobsPage {
        jobs: view::jobs(&state, rows).await?,
        next_pagination_token: next,
    }))
}

/// A job of the caller by its path id; others' and malformed ids are 404.
async fn owned(state: &AppState, who: &Principal, id: &str) -> Result<Job, Error> {
    let id = ids::job_in(id).ok_or_else(|| Error::not_found(&format!("job {id}")))?;
    service::owned_job(state, who, &id).await
}

/// `GET /jobs/{jobId}`.
#[utoipa::path(get, path = "/scenario/v1/jobs/{jobId}", tag = "scenario", params(("jobId" = String, Path)), responses((status = 200, body = JobOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<JobOne>, Failure> {
    if easel_core::id::is_valid(easel_core::id::DOWNLOAD, &id) {
        let d = service::owned_download(&state, &who, &id).await?;
        let url = service::download_url(&state, &d);
        return Ok(axum::Json(JobOne {
            job: view::download_job(&d, url),
        }));
    }
    let job = owned(&state, &who, &id).await?;
    let history = easel_store::jobs::history(&state.store.db, &job.id).await?;
    Ok(axum::Json(JobOne {
        job: view::job(job, &history),
    }))
}

/// `POST /jobs/{jobId}/action` with `{"action": "cancel"}`: a queued job ends at once, a
/// running one at its next step (through the queue, which tells every worker).
#[utoipa::path(post, path = "/scenario/v1/jobs/{jobId}/action", tag = "scenario", params(("jobId" = String, Path)), request_body = JobAction, responses((status = 200, body = JobOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn action(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<JobAction>,
) -> Result<axum::Json<JobOne>, Failure> {
    if body.action != "cancel" {
        return Err(Error::invalid("action", "the one action is `cancel`").into());
    }
    let job = owned(&state, &who, &id).await?;
    if job.status.is_terminal() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("the job has already ended ({})", STATUS.name(job.status)),
        )
        .into());
    }
    let job = state.queue.cancel(&job.id, None).await?;
    let history = easel_store::jobs::history(&state.store.db, &job.id).await?;
    Ok(axum::Json(JobOne {
        job: view::job(job, &history),
    }))
}
