//! Models, read: the server's models (every user runs them) and users' own models
//! (compositions: a server's model with LoRAs, defaults and presets on top), as Scenario's
//! models (`GET /models`, `GET /models/{modelId}`, `POST /models/get-bulk`, the
//! recommendations, and the keyless `GET /models/public…`). Who sees what is the core's
//! rule (`Model::visible_to`, through `service::find_model`): another user's private model
//! reads as absent everywhere. LoRAs are listed as `…-lora` models, usable as `concepts`.
//! Writes are in `owned`, presets in `presets`.

use std::collections::{HashMap, HashSet};

use easel_core::model::Privacy;
use easel_store::collections::{self, Kind};
use easel_store::models::Scope;

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
    privacy: Option<String>,
    collection_id: Option<String>,
    #[serde(flatten)]
    _others: HashMap<String, String>,
}

/// The models a caller's lists hold, by id: the server's and the caller's own, and with
/// `public` every user's public models too.
pub(super) async fn listed(
    state: &AppState,
    who: &Principal,
    public: bool,
) -> Result<Vec<Model>, Error> {
    let mut all = service::models_of(state, Scope::For(&who.user_id)).await?;
    if public {
        let have: HashSet<String> = all.iter().map(|m| m.id.clone()).collect();
        let others = service::models_of(state, Scope::Public).await?;
        all.extend(others.into_iter().filter(|m| !have.contains(&m.id)));
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// A model `who` may see (`None`: a caller without a key) by a path or body id: `model_…`,
/// `mdl_…`, or a server model's name or alias; otherwise 404, as if absent.
pub(super) async fn seen(
    state: &AppState,
    who: Option<&Principal>,
    wire: &str,
) -> Result<Model, Error> {
    service::visible_model(state, who, &ids::model_ref(wire))
        .await
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => Error::not_found(&format!("model {wire}")),
            _ => e,
        })
}

/// A model `who` may change (`service::editable_model`: 404 unseen, 403 not theirs).
pub(super) async fn editable(
    state: &AppState,
    who: &Principal,
    wire: &str,
) -> Result<Model, Error> {
    service::editable_model(state, who, &ids::model_ref(wire)).await
}

/// Models as Scenario shows them to `who`: their LoRAs by registry id, and the collections
/// of `who`'s that hold them.
pub(super) async fn views(
    state: &AppState,
    who: Option<&Principal>,
    list: Vec<Model>,
) -> Result<Vec<ModelView>, Error> {
    let db = &state.store.db;
    let mut cx = view::ModelContext::default();
    for l in list.iter().flat_map(|m| &m.loras) {
        if !cx.lora_ids.contains_key(&l.model) {
            if let Some(found) = easel_store::models::resolve(db, &l.model).await? {
                cx.lora_ids.insert(l.model.clone(), found.id);
            }
        }
    }
    if let Some(who) = who {
        let ids: Vec<&str> = list.iter().map(|m| m.id.as_str()).collect();
        let held = collections::of_items(db, Kind::Model, &ids).await?;
        if !held.is_empty() {
            let mine: HashSet<String> = collections::list(db, &who.user_id, None, 1000)
                .await?
                .into_iter()
                .map(|c| c.id)
                .collect();
            cx.collections = held
                .into_iter()
                .map(|(m, cs)| (m, cs.into_iter().filter(|c| mine.contains(c)).collect()))
                .collect();
        }
    }
    Ok(list.into_iter().map(|m| view::model(m, &cx)).collect())
}

/// One model as `{model}`.
pub(super) async fn one(
    state: &AppState,
    who: Option<&Principal>,
    m: Model,
) -> Result<axum::Json<ModelOne>, Failure> {
    let model = views(state, who, vec![m]).await?.remove(0);
    Ok(axum::Json(ModelOne { model }))
}

/// A `privacy` parameter: `private`, `unlisted` or `public`.
fn privacy_param(v: Option<&str>) -> Result<Option<Privacy>, Error> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => Privacy::parse(p)
            .map(Some)
            .ok_or_else(|| Error::invalid("privacy", "must be `private`, `unlisted` or `public`")),
    }
}

/// `GET /models`: the server's models and the caller's own, in id order. `privacy`
/// narrows by the privacy each shows (the server's models show `public`): `public` also
/// lists every user's public models, `private`/`unlisted` the caller's models of that
/// privacy. Filters: `type`/`types`, `status` (`trained` is every model), `tags` (all of
/// them), `collectionId` (the caller's collection; others' 404).
#[utoipa::path(get, path = "/scenario/v1/models", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("type" = Option<String>, Query), ("types" = Option<String>, Query), ("status" = Option<String>, Query), ("tags" = Option<String>, Query), ("privacy" = Option<String>, Query), ("collectionId" = Option<String>, Query)), responses((status = 200, body = ModelsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<ModelsQuery>,
) -> Result<axum::Json<ModelsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 100, 500)?;
    let mut types = query::list_param(q.types.as_deref());
    types.extend(query::list_param(q.model_type.as_deref()));
    let tags = query::list_param(q.tags.as_deref());
    let after = token(q.pagination_token.as_deref())?;
    let privacy = privacy_param(q.privacy.as_deref())?;
    let collection = match q.collection_id.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let id = ids::collection_in(c)
                .ok_or_else(|| Error::not_found(&format!("collection {c}")))?;
            Some(service::owned_collection(&state, &who, &id).await?.id)
        }
    };
    // Every model here is `trained`: another status selects none.
    let any_status = q.status.as_deref().is_none_or(|s| s == "trained");
    let mut models = listed(&state, &who, privacy == Some(Privacy::Public)).await?;
    if let Some(c) = &collection {
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        let held = collections::of_items(&state.store.db, Kind::Model, &ids).await?;
        models.retain(|m| held.get(&m.id).is_some_and(|cs| cs.contains(c)));
    }
    let models: Vec<Model> = models
        .into_iter()
        .filter(|_| any_status)
        .filter(|m| after.as_ref().is_none_or(|a| m.id > *a))
        .filter(|m| privacy.is_none_or(|p| view::model_privacy(m) == p.as_str()))
        .filter(|m| types.is_empty() || types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .take(size as usize + 1)
        .collect();
    let (models, next) = query::paged(models, size, |m| ids::model(&m.id));
    Ok(axum::Json(ModelsPage {
        models: views(&state, Some(&who), models).await?,
        next_pagination_token: next,
    }))
}

/// A list's `paginationToken`: the id of the last model of the previous page.
fn token(t: Option<&str>) -> Result<Option<String>, Error> {
    t.map(|t| {
        ids::model_in(t)
            .ok_or_else(|| Error::invalid("paginationToken", "is not a token this server gave"))
    })
    .transpose()
}

/// `GET /models/{modelId}`: a model the caller sees.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}", tag = "scenario", params(("modelId" = String, Path)), responses((status = 200, body = ModelOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ModelOne>, Failure> {
    let m = seen(&state, Some(&who), &id).await?;
    one(&state, Some(&who), m).await
}

#[derive(Deserialize)]
pub(super) struct PromptQuery {
    prompt: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioPromptScoreDetails)]
pub(super) struct PromptScoreDetails {
    /// Required by the spec; Easel's models have no training captions: zeros (see `status`).
    captions_similarity: Similarity,
    /// Required by the spec; Easel's models have no caption embedding: 0 (see `status`).
    embedding_similarity: f64,
    /// Against the prompts of the model's example images (when some have one).
    #[serde(skip_serializing_if = "Option::is_none")]
    prompts_similarity: Option<Similarity>,
    token_count: usize,
    token_limit: usize,
    truncated_tokens: usize,
    chunks: usize,
}

/// Dice–Sørensen similarities of the prompt to several texts.
#[derive(Serialize, ToSchema, Default)]
#[schema(as = ScenarioSimilarity)]
pub(super) struct Similarity {
    min: f64,
    median: f64,
    mean: f64,
}

/// The Dice–Sørensen coefficient of two texts over their lower-cased character bigrams
/// (counted with repeats): 1 for the same text, 0 for texts sharing no bigram.
fn dice(a: &str, b: &str) -> f64 {
    fn bigrams(s: &str) -> Vec<(char, char)> {
        let c: Vec<char> = s.to_lowercase().chars().collect();
        let mut v: Vec<(char, char)> = c.windows(2).map(|w| (w[0], w[1])).collect();
        v.sort_unstable();
        v
    }
    let (x, y) = (bigrams(a), bigrams(b));
    if x.is_empty() && y.is_empty() {
        return if a.to_lowercase() == b.to_lowercase() {
            1.0
        } else {
            0.0
        };
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f64 / (x.len() + y.len()) as f64
}

/// Min, median and mean of the prompt's similarity to each text; `None` without texts.
fn similarity(prompt: &str, texts: &[String]) -> Option<Similarity> {
    let mut v: Vec<f64> = texts.iter().map(|t| dice(prompt, t)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Similarity {
        min: v[0],
        median,
        mean: v.iter().sum::<f64>() / n as f64,
    })
}

/// The prompts of a model's example images (the jobs that made them).
async fn example_prompts(state: &AppState, m: &Model) -> Result<Vec<String>, Error> {
    let ids: Vec<&str> = m.examples.iter().map(String::as_str).collect();
    let assets = easel_store::assets::get_many(&state.store.db, &ids).await?;
    let jobs: Vec<&str> = assets.iter().filter_map(|a| a.job_id.as_deref()).collect();
    Ok(easel_store::jobs::get_many(&state.store.db, &jobs)
        .await?
        .iter()
        .filter_map(|j| j.input.get("prompt").and_then(Value::as_str))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod dice_tests {
    use super::*;

    #[test]
    fn dice_of_bigrams() {
        assert_eq!(dice("night", "NIGHT"), 1.0);
        // ni ig gh ht / na ac ch ht: one bigram in common of eight.
        assert!((dice("night", "nacht") - 0.25).abs() < 1e-12);
        assert_eq!(dice("ab", "cd"), 0.0);
        let s = similarity(
            "a red fox",
            &["a red fox".into(), "zzz".into(), "a red box".into()],
        )
        .unwrap();
        assert_eq!((s.min, s.median), (0.0, dice("a red fox", "a red box")));
        assert!(similarity("x", &[]).is_none());
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioPromptScore)]
pub(super) struct PromptScore {
    model_id: String,
    score: f64,
    status: &'static str,
    details: PromptScoreDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    syntax_error: Option<&'static str>,
}

/// `GET /models/{modelId}/scores/prompt`: the prompt checked against the model's tokenizer
/// (`service::prompt_check`). `score` is the share of its tokens the text encoder sees (1
/// when none is dropped); `details` the counts, and `promptsSimilarity` (Dice–Sørensen over
/// character bigrams) against the prompts of the model's example images. Scenario also
/// scores against a model's training captions and their embedding, which Easel's models do
/// not have: `status` is `incomplete`, and the spec's required `captionsSimilarity` and
/// `embeddingSimilarity` read 0. An emphasis weight outside 0–2 is Scenario's `syntaxError`.
#[utoipa::path(get, path = "/scenario/v1/models/{modelId}/scores/prompt", tag = "scenario", params(("modelId" = String, Path), ("prompt" = Option<String>, Query)),
    responses((status = 200, body = PromptScore), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn prompt_score(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    ListQuery(q): ListQuery<PromptQuery>,
) -> Result<axum::Json<PromptScore>, Failure> {
    let m = seen(&state, Some(&who), &id).await?;
    let prompt = q.prompt.unwrap_or_default();
    let (m, check) = service::prompt_check(&state, &who, &m.id, &prompt)
        .await
        .map_err(|e| match e.field.as_deref() {
            Some("model") => e.with_field("modelId"),
            _ => e,
        })?;
    let prompts = example_prompts(&state, &m).await?;
    Ok(axum::Json(PromptScore {
        model_id: ids::model(&m.id),
        score: check.kept_share(),
        status: "incomplete",
        details: PromptScoreDetails {
            captions_similarity: Similarity::default(),
            embedding_similarity: 0.0,
            prompts_similarity: similarity(&prompt, &prompts),
            token_count: check.tokens,
            token_limit: check.window * check.chunks.max(1),
            truncated_tokens: check.truncated,
            chunks: check.chunks,
        },
        syntax_error: (check.min_weight < 0.0 || check.max_weight > 2.0)
            .then_some("Prompt weight should be between 0 and 2"),
    }))
}

/// `POST /models/get-bulk`: the models among `modelIds` the caller sees (others and unknown
/// ones left out).
#[utoipa::path(post, path = "/scenario/v1/models/get-bulk", tag = "scenario", request_body = ModelIds, responses((status = 200, body = ModelsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn bulk(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<ModelIds>,
) -> Result<axum::Json<ModelsPage>, Failure> {
    if body.model_ids.len() > 500 {
        return Err(Error::invalid("modelIds", "at most 500 ids").into());
    }
    let mut found: Vec<Model> = Vec::new();
    for id in &body.model_ids {
        if let Some(m) = service::find_model(&state, Some(&who), &ids::model_ref(id)).await? {
            if !found.iter().any(|f| f.id == m.id) {
                found.push(m);
            }
        }
    }
    Ok(axum::Json(ModelsPage {
        models: views(&state, Some(&who), found).await?,
        next_pagination_token: None,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicModelsQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    #[serde(rename = "type")]
    model_type: Option<String>,
    types: Option<String>,
    tags: Option<String>,
    #[serde(flatten)]
    _others: HashMap<String, String>,
}

/// `GET /models/public`, without a key: every public model (users' and the server's marked
/// public), in id order; `type`/`types` and `tags` (all of them) narrow it, other filters
/// are read without narrowing. `pageSize` 1–500 (50).
#[utoipa::path(get, path = "/scenario/v1/models/public", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("type" = Option<String>, Query), ("types" = Option<String>, Query), ("tags" = Option<String>, Query)),
    responses((status = 200, body = ModelsPage), (status = 400, body = ErrorBody)))]
pub(super) async fn list_public(
    State(state): State<AppState>,
    ListQuery(q): ListQuery<PublicModelsQuery>,
) -> Result<axum::Json<ModelsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 50, 500)?;
    let mut types = query::list_param(q.types.as_deref());
    types.extend(query::list_param(q.model_type.as_deref()));
    let tags = query::list_param(q.tags.as_deref());
    let after = token(q.pagination_token.as_deref())?;
    let mut models = service::models_of(&state, Scope::Public).await?;
    models.sort_by(|a, b| a.id.cmp(&b.id));
    let models: Vec<Model> = models
        .into_iter()
        .filter(|m| after.as_ref().is_none_or(|a| m.id > *a))
        .filter(|m| types.is_empty() || types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .take(size as usize + 1)
        .collect();
    let (models, next) = query::paged(models, size, |m| ids::model(&m.id));
    Ok(axum::Json(ModelsPage {
        models: views(&state, None, models).await?,
        next_pagination_token: next,
    }))
}

/// `GET /models/public/{modelId}`, without a key: a public or unlisted model (a private one
/// reads as absent).
#[utoipa::path(get, path = "/scenario/v1/models/public/{modelId}", tag = "scenario", params(("modelId" = String, Path)),
    responses((status = 200, body = ModelOne), (status = 404, body = ErrorBody)))]
pub(super) async fn read_public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ModelOne>, Failure> {
    let m = seen(&state, None, &id).await?;
    one(&state, None, m).await
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
    _others: HashMap<String, String>,
}

/// `GET /recommendations/models`: the caller's models to run (the server's and their own),
/// recommended first, then by name; LoRAs left out (they are not run alone). Filters as
/// `GET /models`, plus `capabilities` (all of them), `excludeModelIds`, `excludeTypes`;
/// `limit` 1–30 (default 10); `nextToken` is the offset of the next page.
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
    let mut models: Vec<Model> = listed(&state, &who, false)
        .await?
        .into_iter()
        .filter(|m| !m.is_lora())
        .filter(|m| !excluded.iter().any(|x| *x == m.id || *x == m.name))
        .filter(|m| capabilities.iter().all(|c| m.tasks.contains(c)))
        .filter(|m| types.is_empty() || types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| !excluded_types.iter().any(|t| t == view::model_type(m)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .collect();
    models.sort_by(|a, b| b.recommended.cmp(&a.recommended).then(a.name.cmp(&b.name)));
    let total = models.len();
    let page: Vec<Model> = models.into_iter().skip(offset).take(limit).collect();
    let mut out = json!({"models": views(&state, Some(&who), page).await?});
    if offset.saturating_add(limit) < total {
        out["nextToken"] = json!((offset + limit).to_string());
    }
    Ok(axum::Json(out))
}
