//! Create, read, delete, list by user, `/me`.

use super::*;

/// Create a generation: `txt2img`, `img2img` (`init_image_id`, canvas `IMG2IMG`) or
/// `inpaint` (canvas `INPAINT`). Answers at once; poll `GET /generations/{id}`.
#[utoipa::path(post, path = "/leonardo/v1/generations", tag = "leonardo",
    request_body = GenerationRequest,
    responses((status = 200, body = CreateAnswer),
        (status = 400, body = ApiErrorBody, description = "Invalid or unsupported field"),
        (status = 401, body = ApiErrorBody), (status = 413, body = ApiErrorBody),
        (status = 429, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<axum::Json<CreateAnswer>> {
    let req: GenerationRequest = easel_core::error::from_json(body.clone())?;
    let plan = plan(&state, &who, &req).await?;
    let mut stored = match body {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let ignored = ignored_in(&Value::Object(stored.clone()));
    stored.insert("ignored".into(), json!(ignored));
    let generation_id = new_uuid_v4();
    let (job, created) = service::submit(
        &state,
        &who,
        TaskRequest {
            preset: None,
            model: Some(plan.model.name.clone()),
            input: plan.input,
            priority: None,
            webhook: None,
            idempotency_key: service::idempotency_key(&headers)?,
            request: Some(Value::Object(stored)),
            external_id: Some(ExternalId {
                namespace: NS_GENERATION,
                id: generation_id.clone(),
            }),
            hide_outputs: false,
            inline: Default::default(),
        },
    )
    .await
    .map_err(|e| plan.names.rename(e))?;
    let generation_id = if created {
        generation_id
    } else {
        // An idempotent replay: the first job's id.
        easel_store::external_ids::get_or_assign(
            &state.store.db,
            NS_GENERATION,
            &who.user_id,
            &job.id,
            new_uuid_v4,
        )
        .await?
    };
    let units = easel_core::usage::estimate_units(&job.task, &job.input).unwrap_or(0.0);
    let credits = easel_core::usage::credits(units);
    Ok(axum::Json(CreateAnswer {
        sd_generation_job: SdGenerationJob {
            generation_id,
            api_credit_cost: credits,
            cost: Cost {
                amount: credits.to_string(),
                unit: "CREDITS",
            },
        },
    }))
}

/// One generation of the caller (`null` when it has none with this id).
#[utoipa::path(get, path = "/leonardo/v1/generations/{id}", tag = "leonardo",
    params(("id" = String, Path, description = "A generation id (UUIDv4)")),
    responses((status = 200, body = GenerationAnswer), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<GenerationAnswer>> {
    let id = path_id("id", id)?;
    let found = match owned_generation(&state, &who, &id).await? {
        Some(job) => Some(generation(&state, &job, id).await?),
        None => None,
    };
    Ok(axum::Json(GenerationAnswer {
        generations_by_pk: found,
    }))
}

/// Delete a generation of the caller: cancel it if it is still running, then delete it with
/// its images (`null` when it has none with this id).
#[utoipa::path(delete, path = "/leonardo/v1/generations/{id}", tag = "leonardo",
    params(("id" = String, Path, description = "A generation id (UUIDv4)")),
    responses((status = 200, body = DeleteAnswer), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeleteAnswer>> {
    let id = path_id("id", id)?;
    let Some(job) = owned_generation(&state, &who, &id).await? else {
        return Ok(axum::Json(DeleteAnswer {
            delete_generations_by_pk: None,
        }));
    };
    let db = &state.store.db;
    if !job.status.is_terminal() {
        // Stop the work at its next step; a job that ended meanwhile is deleted as it is.
        match state.queue.cancel(&job.id, Some(&job.owner_id)).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Conflict || e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(gone) = easel_store::jobs::delete(db, &job.id).await? {
        let blobs: Vec<_> = gone
            .assets
            .iter()
            .map(|a| (a.clone(), blob_key(&gone.job.owner_id, a)))
            .collect();
        easel_store::intents::remove(&state.store, &blobs).await?;
    }
    Ok(axum::Json(DeleteAnswer {
        delete_generations_by_pk: Some(DeletedRef { id }),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Generations to skip (default 0).
    #[serde(default)]
    pub offset: Option<u32>,
    /// At most this many (default 10, at most 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The caller's generations, newest first. `userId` must be the caller's own Leonardo user
/// id (`GET /me`); another is 403.
#[utoipa::path(get, path = "/leonardo/v1/generations/user/{userId}", tag = "leonardo",
    params(("userId" = String, Path, description = "The caller's Leonardo user id (UUIDv4)"), ListParams),
    responses((status = 200, body = GenerationList), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn by_user(
    State(state): State<AppState>,
    Auth(who): Auth,
    user_id: Result<Path<String>, PathRejection>,
    Query(q): Query<ListParams>,
) -> Result<axum::Json<GenerationList>> {
    let user_id = path_id("userId", user_id)?;
    if user_id != user_uuid(&state, &who).await? {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!("not your user id; GET {BASE}/me gives yours"),
        )
        .with_field("userId")
        .into());
    }
    let limit = q.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
    if limit == 0 {
        return Ok(axum::Json(GenerationList {
            generations: vec![],
        }));
    }
    let db = &state.store.db;
    let jobs = easel_store::jobs::list(
        db,
        &easel_store::jobs::JobFilter {
            owner_id: Some(who.user_id.clone()),
            namespace: Some(NS_GENERATION),
            offset: q.offset.unwrap_or(0),
            limit,
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut gen_ids = easel_store::external_ids::of(db, NS_GENERATION, &ids).await?;
    let mut generations = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if let Some(g) = gen_ids.remove(&job.id) {
            generations.push(generation(&state, job, g).await?);
        }
    }
    Ok(axum::Json(GenerationList { generations }))
}

/// The caller: its Leonardo user id and name.
#[utoipa::path(get, path = "/leonardo/v1/me", tag = "leonardo",
    responses((status = 200, body = MeAnswer), (status = 401, body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, Auth(who): Auth) -> Result<axum::Json<MeAnswer>> {
    let id = user_uuid(&state, &who).await?;
    let username = easel_store::users::get_user(&state.store.db, &who.user_id)
        .await?
        .map(|u| u.name)
        .unwrap_or_default();
    Ok(axum::Json(MeAnswer {
        user_details: vec![UserDetails {
            user: UserRef { id, username },
        }],
    }))
}
