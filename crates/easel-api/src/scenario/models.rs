//! Models: a view of the one registry (`GET /models`, `GET /models/{modelId}`,
//! `POST /models/get-bulk`). LoRAs are listed as `…-lora` models, usable as `concepts`.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelsQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    #[serde(rename = "type")]
    model_type: Option<String>,
    types: Option<String>,
    status: Option<String>,
    tags: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

/// Registry models a caller may see (non-admins without their files' locations), by id.
pub(super) async fn registry(state: &AppState, who: &Principal) -> Result<Vec<Model>, Error> {
    let mut all = service::all_models(state).await?;
    if !who.is_admin() {
        all = all.into_iter().map(Model::without_locations).collect();
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// `GET /models`: every registry model (they are server-wide: `privacy` does not narrow the
/// list), filtered by `type`/`types`, `status` (`trained` is every model) and `tags` (all of
/// them), in id order.
#[utoipa::path(get, path = "/scenario/v1/models", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("type" = Option<String>, Query), ("types" = Option<String>, Query), ("status" = Option<String>, Query), ("tags" = Option<String>, Query)), responses((status = 200, body = ModelsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<ModelsQuery>,
) -> Result<axum::Json<ModelsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 100, 500)?;
    let mut types = query::list_param(q.types.as_deref());
    types.extend(query::list_param(q.model_type.as_deref()));
    let tags = query::list_param(q.tags.as_deref());
    let after =
        match q.pagination_token.as_deref() {
            None => None,
            Some(t) => Some(ids::model_in(t).ok_or_else(|| {
                Error::invalid("paginationToken", "is not a token this server gave")
            })?),
        };
    // Every registry model is `trained`: another status selects none.
    let any_status = q.status.as_deref().is_none_or(|s| s == "trained");
    let models: Vec<Model> = registry(&state, &who)
        .await?
        .into_iter()
        .filter(|_| any_status)
        .filter(|m| after.as_ref().is_none_or(|a| m.id > *a))
        .filter(|m| types.is_empty() || types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .take(size as usize + 1)
        .collect();
    let (models, next) = query::paged(models, size, |m| ids::model(&m.id));
    Ok(axum::Json(ModelsPage {
        models: models.into_iter().map(view::model).collect(),
        next_pagination_token: next,
    }))
}

/// A registry model by a path or body id: `model_…`, `mdl_…`, a name or an alias.
async fn find(state: &AppState, who: &Principal, id: &str) -> Result<Option<Model>, Error> {
    let m = easel_store::models::resolve(&state.store.db, &ids::model_ref(id)).await?;
    Ok(m.map(|m| {
        if who.is_admin() {
            m
        } else {
            m.without_locations()
        }
    }))
}

/// `GET /models/{modelId}`.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}", tag = "scenario", params(("modelId" = String, Path)), responses((status = 200, body = ModelOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ModelOne>, Failure> {
    let m = find(&state, &who, &id)
        .await?
        .ok_or_else(|| Error::not_found(&format!("model {id}")))?;
    Ok(axum::Json(ModelOne {
        model: view::model(m),
    }))
}

/// `POST /models/get-bulk`: the models among `modelIds` (unknown ones left out).
#[utoipa::path(post, path = "/scenario/v1/models/get-bulk", tag = "scenario", request_body = ModelIds, responses((status = 200, body = ModelsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn bulk(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<ModelIds>,
) -> Result<axum::Json<ModelsPage>, Failure> {
    if body.model_ids.len() > 500 {
        return Err(Error::invalid("modelIds", "at most 500 ids").into());
    }
    let mut out = Vec::new();
    for id in &body.model_ids {
        if let Some(m) = find(&state, &who, id).await? {
            if !out.iter().any(|v: &ModelView| v.id == ids::model(&m.id)) {
                out.push(view::model(m));
            }
        }
    }
    Ok(axum::Json(ModelsPage {
        models: out,
        next_pagination_token: None,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RecommendationsQuery {
    capabilities: Option<String>,
    exclude_model_ids: Option<String>,
    limit: Option<String>,
    next_token: Option<String>,
    #[serde(rename = "type")]
    model_type: Option<String>,
    tags: Option<String>,
    exclude_types: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

/// `GET /recommendations/models`: the registry's recommended models first, then the others,
/// each by name; LoRAs left out (they are not run alone). Filters as `GET /models`, plus
/// `capabilities` (all of them), `excludeModelIds`, `excludeTypes`; `limit` 1–30
/// (default 10); `nextToken` is the offset of the next page.
#[utoipa::path(get, path = "/scenario/v1/recommendations/models", tag = "scenario", params(("capabilities" = Option<String>, Query), ("excludeModelIds" = Option<String>, Query), ("excludeTypes" = Option<String>, Query), ("type" = Option<String>, Query), ("tags" = Option<String>, Query), ("limit" = Option<String>, Query), ("nextToken" = Option<String>, Query)), responses((status = 200, description = "`{models, nextToken}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn recommendations(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<RecommendationsQuery>,
) -> Result<axum::Json<Value>, Failure> {
    let limit = match q.limit.as_deref() {
        None => 10,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=30).contains(&n) => n,
            _ => return Err(Error::invalid("limit", "must be a whole number from 1 to 30").into()),
        },
    };
    let offset = match q.next_token.as_deref() {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 100_000)
            .ok_or_else(|| Error::invalid("nextToken", "is not a token this server gave"))?,
    };
    let capabilities = query::list_param(q.capabilities.as_deref());
    let excluded: Vec<String> = query::list_param(q.exclude_model_ids.as_deref())
        .iter()
        .map(|m| ids::model_ref(m))
        .collect();
    let types = query::list_param(q.model_type.as_deref());
    let excluded_types = query::list_param(q.exclude_types.as_deref());
    let tags = query::list_param(q.tags.as_deref());
    let mut models: Vec<Model> = registry(&state, &who)
        .await?
        .into_iter()
        .filter(|m| !service::is_lora(m))
        .filter(|m| !excluded.iter().any(|x| *x == m.id || *x == m.name))
        .filter(|m| capabilities.iter().all(|c| m.tasks.contains(c)))
        .filter(|m| types.is_empty() || types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| !excluded_types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .collect();
    models.sort_by(|a, b| b.recommended.cmp(&a.recommended).then(a.name.cmp(&b.name)));
    let total = models.len();
    let page: Vec<ModelView> = models
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(view::model)
        .collect();
    let mut out = json!({"models": page});
    if offset.saturating_add(limit) < total {
        out["nextToken"] = json!((offset + limit).to_string());
    }
    Ok(axum::Json(out))
}
