//! Creating predictions: `POST`, `PUT` with an id, by model; `Prefer: wait`.

use super::*;

/// The spec's defaults (`num_inference_steps`, `guidance_scale`, `pag_guidance_scale`),
/// applied on Sana models.
const SANA_DEFAULT_STEPS: u32 = 18;
const SANA_DEFAULT_GUIDANCE: f32 = 5.0;
const SANA_DEFAULT_PAG: f32 = 2.0;

/// A registry model by a wire field's value; unknown: 422 at `field`.
pub(super) async fn named_model(state: &AppState, field: &str, name: &str) -> Result<Model, Error> {
    // The server's models only: users' models are run through the native API, Scenario and
    // OpenAI's `model`.
    easel_store::models::resolve(&state.store.db, name)
        .await?
        .filter(|m| m.owner_id.is_none())
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "no model, alias or id `{name}` in the registry (GET /v1/models lists them; \
                     an admin adds an alias with PATCH /v1/models/{{name}})"
                ),
            )
        })
}

/// The model a path's `owner/name` names: the whole as a name or alias, then `name`.
pub(super) async fn path_model(state: &AppState, owner: &str, name: &str) -> Result<Model, Error> {
    let db = &state.store.db;
    if let Some(m) = easel_store::models::resolve(db, &format!("{owner}/{name}"))
        .await?
        .filter(|m| m.owner_id.is_none())
    {
        return Ok(m);
    }
    easel_store::models::resolve(db, name)
        .await?
        .filter(|m| m.owner_id.is_none())
        .ok_or_else(|| Error::not_found(&format!("model {owner}/{name}")))
}

/// How long `Prefer` asks to wait: `wait` → 60 s, `wait=N` → N s (1–60).
/// A bad value is a 422 at `["header", "prefer"]`, as FastAPI reports header parameters.
pub(super) fn prefer_wait(headers: &HeaderMap) -> Result<Option<Duration>> {
    let Some(v) = headers.get("prefer") else {
        return Ok(None);
    };
    let bad = || {
        Failure::Invalid(vec![fastapi::Detail::new(
            vec![json!("header"), json!("prefer")],
            "value_error",
            "use `wait` or `wait=N` with N from 1 to 60",
        )])
    };
    let v = v.to_str().map_err(|_| bad())?;
    for pref in v.split([',', ';']).map(str::trim) {
        if pref.eq_ignore_ascii_case("wait") {
            return Ok(Some(MAX_WAIT));
        }
        if let Some(n) = pref
            .split_once('=')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("wait"))
        {
            let secs: u64 = n.1.trim().parse().map_err(|_| bad())?;
            if !(1..=60).contains(&secs) {
                return Err(bad());
            }
            return Ok(Some(Duration::from_secs(secs)));
        }
    }
    Ok(None)
}

/// Where a create came from.
pub(super) struct Create {
    /// The body as sent (kept, and echoed as `input`).
    raw: Value,
    /// `owner/name` of the path, if any.
    path: Option<(String, String)>,
    /// The id a `PUT` chose.
    id: Option<String>,
}

pub(super) async fn submit(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    c: Create,
) -> Result<Response> {
    let wait = prefer_wait(headers)?;
    let request: PredictionRequest = easel_core::error::from_json(c.raw.clone())?;
    let req = &request;
    if req.stream == Some(true) {
        return Err(Error::invalid(
            "stream",
            "streaming is not supported; leave it unset or false",
        )
        .into());
    }
    let (mut input, remote) = core_input(state, &req.input)?;
    let task = input.task();
    let webhook = webhook_of(req)?;
    let model = if let Some(v) = &req.input.model_variant {
        Some(named_model(state, "input.model_variant", v).await?)
    } else if let Some((owner, name)) = &c.path {
        Some(path_model(state, owner, name).await?)
    } else if let Some(v) = &req.version {
        Some(named_model(state, "version", v).await?)
    } else {
        // The model that will run: whether it can apply PAG, and whether it is a Sana model
        // (the spec's defaults).
        match service::default_model(state, task).await {
            Ok(m) => Some(m),
            Err(e) if req.input.pag_guidance_scale.is_some() => return Err(e.into()),
            Err(_) => None,
        }
    };
    // On a Sana model the spec's own defaults apply to what the request leaves out.
    if model
        .as_ref()
        .is_some_and(|m| m.family == easel_providers::family::SANA)
    {
        if let Some(g) = input.generation_mut() {
            g.steps.get_or_insert(SANA_DEFAULT_STEPS);
            g.guidance.get_or_insert(SANA_DEFAULT_GUIDANCE);
            g.pag_guidance.get_or_insert(SANA_DEFAULT_PAG);
        }
    }
    if let Some(id) = &c.id {
        if id.is_empty() || id.len() > 255 || id.contains('/') {
            return Err(Error::invalid("id", "must be 1 to 255 characters, without `/`").into());
        }
    }
    if !remote.is_empty() {
        // Every other field must pass first (the remote images wait as `PENDING_IMAGE`).
        input.check(&state.limits)?;
        for (field, src) in remote {
            let id = service::source_asset(state, who, &format!("input.{field}"), src).await?;
            for (name, slot) in input.images_mut() {
                if name == field {
                    *slot = id.clone();
                }
            }
        }
    }

    let model_ref = match (&c.path, &model) {
        (Some((o, n)), _) => Some(format!("{o}/{n}")),
        _ => None,
    };
    let mut record = c.raw;
    if record.get("input").is_none() {
        record["input"] = json!({});
    }
    record["dialect"] = json!("replicate");
    if let Some(m) = model_ref {
        record["model"] = json!(m);
    }
    if let Some(id) = &c.id {
        record["id"] = json!(id);
    }
    // Whether the local engine applies perturbed-attention guidance to this model (its family
    // has it), and a model none of whose providers applies it is known not to, before it runs.
    let family_pag = model
        .as_ref()
        .is_some_and(|m| easel_providers::family::by_name(&m.family).is_some_and(|f| f.pag));
    if family_pag {
        record["family_pag"] = json!(true);
    }
    if req.input.pag_guidance_scale.is_some()
        && !model.as_ref().is_some_and(|m| m.may_apply_pag(family_pag))
    {
        record["pag_not_applied"] = json!(true);
    }
    let (job, created) = service::submit(
        state,
        who,
        TaskRequest {
            preset: None,
            model: model.map(|m| m.name),
            input,
            priority: None,
            webhook,
            idempotency_key: service::idempotency_key(headers)?,
            request: Some(record),
            external_id: c.id.map(|id| ExternalId {
                namespace: PREDICTION_IDS,
                id,
            }),
            hide_outputs: false,
            inline: Default::default(),
        },
    )
    .await
    .map_err(|e| match e.field.as_deref() {
        // The receiver's address is checked at submit: name the request's own field.
        Some("webhook.url") => {
            let field = if req.webhook.is_some() {
                "webhook"
            } else {
                "webhook_completed"
            };
            e.with_field(field)
        }
        _ => e,
    })?;
    answer(state, job, created, wait).await
}

/// The answer to a create: the prediction (after waiting up to `wait`), 201 when it was
/// created now, 200 when the request named one that exists.
pub(super) async fn answer(
    state: &AppState,
    job: Job,
    created: bool,
    wait: Option<Duration>,
) -> Result<Response> {
    let (job, waited_out) = match wait {
        Some(d) => {
            let j = service::wait_job(state, job, d).await?;
            let out = !j.status.is_terminal();
            (j, out)
        }
        None => (job, false),
    };
    let mut p = read_prediction(state, &job).await?;
    if waited_out {
        p.status = "starting";
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(p)).into_response())
}

/// Create a prediction.
#[utoipa::path(post, path = "/replicate/v1/predictions", tag = "replicate", request_body = PredictionRequest,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` (1–60 s): answer when it finishes, or after N seconds")),
    responses((status = 201, body = Prediction), (status = 401, body = DetailBody), (status = 422, body = ValidationBody), (status = 429, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let c = Create {
        raw,
        path: None,
        id: None,
    };
    submit(&state, &who, &headers, c).await
}

/// Create a prediction with a client-chosen id; the same id again answers the first.
#[utoipa::path(put, path = "/replicate/v1/predictions/{id}", tag = "replicate", request_body = PredictionRequest,
    params(("id" = String, Path), ("Prefer" = Option<String>, Header)),
    responses((status = 201, body = Prediction, description = "Created"), (status = 200, body = Prediction, description = "Already created with this id"),
        (status = 401, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create_with_id(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let id = id.map(|Path(id)| id).unwrap_or_default();
    // An id that already names one of the caller's predictions (one a PUT chose, or the id
    // of one created with POST) answers it: a PUT never shadows a prediction.
    if let Ok(job) = find(&state, &who, Ok(Path(id.clone()))).await {
        return answer(&state, job, false, prefer_wait(&headers)?).await;
    }
    let c = Create {
        raw,
        path: None,
        id: Some(id),
    };
    submit(&state, &who, &headers, c).await
}

/// Create a prediction of the model the path names.
#[utoipa::path(post, path = "/replicate/v1/models/{owner}/{name}/predictions", tag = "replicate", request_body = PredictionRequest,
    params(("owner" = String, Path), ("name" = String, Path), ("Prefer" = Option<String>, Header)),
    responses((status = 201, body = Prediction), (status = 404, body = DetailBody), (status = 422, body = ValidationBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn create_for_model(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Json(raw): Json<Value>,
) -> Result<Response> {
    let Ok(Path((owner, name))) = path else {
        return Err(Error::not_found("model").into());
    };
    let c = Create {
        raw,
        path: Some((owner, name)),
        id: None,
    };
    submit(&state, &who, &headers, c).await
}
