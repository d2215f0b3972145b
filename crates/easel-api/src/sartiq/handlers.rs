//! The handlers of the registry's routes, and their OpenAPI part.

use super::*;

/// `skip`/`limit` as FastAPI reads `int` query parameters.
pub(super) fn query_int(
    q: &[(String, String)],
    name: &str,
    default: i64,
    errors: &mut Vec<Detail>,
) -> i64 {
    let Some((_, raw)) = q.iter().rev().find(|(k, _)| k == name) else {
        return default;
    };
    let loc = vec![json!("query"), json!(name)];
    let t = raw.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(
            Detail::new(
                loc,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
            .input(&json!(raw)),
        );
        return default;
    }
    // Out-of-range digits saturate: a huge skip is past the end, a huge limit is the cap.
    let v = t.parse::<i64>().unwrap_or(if t.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    });
    if v < 0 {
        errors.push(
            Detail::new(
                loc,
                "greater_than_equal",
                "Input should be greater than or equal to 0",
            )
            .input(&json!(raw))
            .ctx(json!({"ge": 0})),
        );
        return default;
    }
    v
}

/// `GET /generation-models/`: public.
#[utoipa::path(get, path = "/sartiq/api/v1/generation-models/", tag = "sartiq",
    params(("skip" = Option<i64>, Query, description = "default 0"), ("limit" = Option<i64>, Query, description = "default 100, at most 1000")),
    responses((status = 200, body = ListPublic), (status = 422, body = ErrorDoc)))]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, Failure> {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let mut errors = Vec::new();
    let skip = query_int(&q, "skip", 0, &mut errors);
    let limit = query_int(&q, "limit", 100, &mut errors);
    if !errors.is_empty() {
        return Err(Failure::Invalid(errors));
    }
    let skip = u32::try_from(skip).unwrap_or(u32::MAX);
    let (models, count) = easel_store::models::list(
        &state.store.db,
        easel_store::models::Scope::Server,
        skip,
        limit.clamp(1, 1000) as u32,
    )
    .await?;
    let take = if limit == 0 { 0 } else { models.len() };
    let data = models
        .into_iter()
        .take(take)
        .map(|m| Public::of(m.without_locations()))
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(ListPublic { data, count }).into_response())
}

/// The model `{id}` names: its UUID, its Easel id, or one of its names.
pub(super) async fn find(
    state: &AppState,
    id: Result<Path<String>, PathRejection>,
) -> Result<Model, Failure> {
    let Path(id) = id.map_err(|_| Error::new(ErrorKind::NotFound, NOT_FOUND))?;
    let db = &state.store.db;
    let by_uuid = match easel_core::id::from_uuid(easel_core::id::MODEL, &id) {
        Some(mid) => easel_store::models::get(db, &mid).await?,
        None => None,
    };
    let found = match by_uuid {
        Some(m) => Some(m),
        None => easel_store::models::resolve(db, &id).await?,
    };
    // The registry speaks of the server's models only (users' models are their owners').
    found
        .filter(|m| m.owner_id.is_none())
        .ok_or_else(|| Failure::Error(Error::new(ErrorKind::NotFound, NOT_FOUND)))
}

/// `GET /generation-models/{id}`: public. `{id}`: the model's UUID, Easel id or a name.
#[utoipa::path(get, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    responses((status = 200, body = Public), (status = 404, body = ErrorDoc)))]
pub(super) async fn read(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Public>, Failure> {
    Ok(axum::Json(Public::of(
        find(&state, id).await?.without_locations(),
    )?))
}

/// `POST /generation-models/`: admin.
#[utoipa::path(post, path = "/sartiq/api/v1/generation-models/", tag = "sartiq",
    request_body(content = Object, description = "`GenerativeModelsCreate`: name, provider, provider_config required"),
    responses((status = 200, body = Public), (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc),
        (status = 409, body = ErrorDoc), (status = 422, body = ErrorDoc)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<axum::Json<Public>, Failure> {
    let obj = as_object(&body)?;
    let spec = Fields::read(obj, Mode::Create)?.apply(None);
    spec.check_paths(state.engine.model_roots())
        .map_err(|e| core_failure(e, obj))?;
    let m = easel_store::models::create(&state.store.db, &spec, false)
        .await
        .map_err(|e| core_failure(e, obj))?;
    Ok(axum::Json(Public::of(m)?))
}

/// `PUT /generation-models/{id}`: admin; only the fields present change.
#[utoipa::path(put, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    request_body(content = Object, description = "`GenerativeModelsUpdate`: any fields; null clears nullable ones"),
    responses((status = 200, body = Public), (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc),
        (status = 404, body = ErrorDoc), (status = 422, body = ErrorDoc)),
    security(("bearer" = [])))]
pub(super) async fn update(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    id: Result<Path<String>, PathRejection>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<axum::Json<Public>, Failure> {
    let m = find(&state, id).await?;
    let obj = as_object(&body)?;
    let spec = Fields::read(obj, Mode::Update)?.apply(Some(m.spec()));
    spec.check_paths(state.engine.model_roots())
        .map_err(|e| core_failure(e, obj))?;
    let m = easel_store::models::update(&state.store.db, &m.id, &spec)
        .await
        .map_err(|e| core_failure(e, obj))?;
    Ok(axum::Json(Public::of(m)?))
}

/// `DELETE /generation-models/{id}`: admin.
#[utoipa::path(delete, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "`{\"message\": \"Generation model deleted successfully\"}`"),
        (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc), (status = 404, body = ErrorDoc)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, Failure> {
    let m = find(&state, id).await?;
    if !crate::service::delete_model(&state, &m).await? {
        return Err(Error::new(ErrorKind::NotFound, NOT_FOUND).into());
    }
    Ok(axum::Json(
        json!({"message": "Generation model deleted successfully"}),
    ))
}

pub(super) fn as_object(body: &Value) -> Result<&Map<String, Value>, Failure> {
    body.as_object().ok_or_else(|| {
        Failure::Invalid(vec![Detail::new(
            vec![json!("body")],
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
        .input(body)])
    })
}

/// The dialect's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, read, create, update, delete),
    components(schemas(Public, ListPublic, ErrorDoc)),
    tags((name = "sartiq", description = "The Sartiq generation-models registry at /sartiq/api/v1: public reads, \
        admin writes; a view of the one models registry. Errors are FastAPI's: 422 {\"detail\": [{loc, msg, type}]}, \
        else {\"detail\": \"...\"}."))
)]
pub struct ApiDoc;
