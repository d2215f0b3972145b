//! Assets: list, upload, read, read in bulk, delete in bulk.

use easel_core::task::{ConvertInput, OutputFormat, TaskInput};

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AssetsQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    #[serde(rename = "type")]
    asset_type: Option<String>,
    types: Option<String>,
    model_id: Option<String>,
    inference_id: Option<String>,
    parent_asset_id: Option<String>,
    root_asset_id: Option<String>,
    author_id: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    privacy: Option<String>,
    tags: Option<String>,
    collection_id: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

/// The most ids `DELETE /assets` and `POST /assets/get-bulk` take (the spec's).
const MAX_DELETE: usize = 100;
const MAX_BULK: usize = 200;

/// An asset id of a request: Scenario's or Easel's form, else a 400 naming `field`.
fn asset_id(field: &str, s: &str) -> Result<String, Error> {
    ids::asset_in(s).ok_or_else(|| Error::invalid(field, format!("`{s}` is not an asset id")))
}

/// `GET /assets`: the caller's assets, newest first. Filters: `type`/`types` (the asset
/// types Easel makes: `uploaded`, `inference-txt2img`, `inference-img2img`,
/// `inference-inpaint`, `upscale`, `pixelization`, `canvas`; others match nothing), `modelId`,
/// `inferenceId` (a job id), `parentAssetId`, `rootAssetId`, `privacy`, `tags` (any of them),
/// `collectionId`, `createdAfter`/`createdBefore`/`updatedAfter`/`updatedBefore` (RFC 3339 or
/// a day), `authorId` (the caller: every asset here is its owner's work). The order stays
/// newest first (`sortBy` and `sortDirection` are read without changing it).
#[utoipa::path(get, path = "/scenario/v1/assets", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("type" = Option<String>, Query), ("types" = Option<String>, Query), ("modelId" = Option<String>, Query), ("inferenceId" = Option<String>, Query), ("parentAssetId" = Option<String>, Query), ("rootAssetId" = Option<String>, Query), ("authorId" = Option<String>, Query), ("privacy" = Option<String>, Query), ("tags" = Option<String>, Query), ("collectionId" = Option<String>, Query), ("createdAfter" = Option<String>, Query), ("createdBefore" = Option<String>, Query), ("updatedAfter" = Option<String>, Query), ("updatedBefore" = Option<String>, Query)), responses((status = 200, body = AssetsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<AssetsQuery>,
) -> Result<axum::Json<AssetsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 50, 100)?;
    let mut types = query::list_param(q.types.as_deref());
    types.extend(query::list_param(q.asset_type.as_deref()));
    let tasks: Vec<String> = types
        .iter()
        .filter_map(|t| view::tasks_of_type(t))
        .map(str::to_string)
        .collect();
    let empty = || {
        axum::Json(AssetsPage {
            assets: Vec::new(),
            next_pagination_token: None,
        })
    };
    if !types.is_empty() && tasks.is_empty() {
        return Ok(empty());
    }
    let model = match q.model_id.as_deref() {
        None => None,
        // A model the caller sees, as its jobs name it (a user's model by its id).
        Some(m) => match service::find_model(&state, Some(&who), &ids::model_ref(m)).await? {
            Some(m) => Some(m.job_name().to_string()),
            None => return Ok(empty()),
        },
    };
    // Every asset here is its owner's work: another author has none.
    if q.author_id
        .as_deref()
        .is_some_and(|a| !a.is_empty() && a != who.user_id)
    {
        return Ok(empty());
    }
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| easel_core::time::parse_time(field, s).map(easel_core::time::to_millis))
            .transpose()
    };
    // The spec's bounds are exclusive.
    let created_after = time("createdAfter", &q.created_after)?.map(|ms| ms + 1);
    let created_before = time("createdBefore", &q.created_before)?;
    // Ids sort by creation time: a creation bound is an id bound.
    let id_at = |ms: i64| easel_core::id::lower_bound(easel_core::id::ASSET, ms.max(0) as u64);
    let before = match q.pagination_token.as_deref() {
        None => None,
        Some(t) => Some(asset_id("paginationToken", t)?),
    };
    let before = match (before, created_before.map(id_at)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let parent_id = match q.parent_asset_id.as_deref() {
        None => None,
        Some(p) => Some(asset_id("parentAssetId", p)?),
    };
    let root_id = match q.root_asset_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(asset_id("rootAssetId", p)?),
    };
    let privacy = match q.privacy.as_deref() {
        None | Some("") => None,
        Some(p) => Some(easel_core::asset::Privacy::parse(p).ok_or_else(|| {
            Error::invalid("privacy", "must be `private`, `unlisted` or `public`")
        })?),
    };
    let filter = easel_store::assets::AssetFilter {
        owner_id: who.user_id.clone(),
        before,
        since: created_after.map(id_at),
        job_id: q.inference_id.clone(),
        parent_id,
        root_id,
        updated_after: time("updatedAfter", &q.updated_after)?.map(|ms| ms + 1),
        updated_before: time("updatedBefore", &q.updated_before)?,
        model,
        tasks,
        tags: tag_list(q.tags.as_deref())?,
        privacy,
        collection_id: match q.collection_id.as_deref() {
            None | Some("") => None,
            Some(c) => {
                let id = ids::collection_in(c)
                    .ok_or_else(|| Error::not_found(&format!("collection {c}")))?;
                Some(service::owned_collection(&state, &who, &id).await?.id)
            }
        },
        // Hidden assets are left out of lists (Scenario's `hide`).
        hidden: Some(false),
        limit: size + 1,
        ..Default::default()
    };
    let rows = easel_store::assets::list(&state.store.db, &filter).await?;
    let (rows, next) = query::paged(rows, size, |a| ids::asset(&a.id));
    Ok(axum::Json(AssetsPage {
        assets: view::assets(&state, Some(&who.user_id), rows).await?,
        next_pagination_token: next,
    }))
}

/// `POST /assets`: `image` in base64 (or a `data:` URL), stored as an upload of the caller
/// (`name` is the record's name), added to the caller's `collectionIds`; or, without
/// `image`, `canvas` (stringified JSON) made a canvas (`canvases::create`, with its
/// `thumbnail` and `collectionIds`).
#[utoipa::path(post, path = "/scenario/v1/assets", tag = "scenario", request_body = AssetUpload, responses((status = 200, body = AssetOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn upload(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<AssetUpload>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let parent = match body.parent_id.as_deref() {
        None => None,
        Some(p) => Some(
            service::owned_asset(&state, &who, &asset_id("parentId", p)?)
                .await
                .map_err(|_| Error::invalid("parentId", format!("asset {p} not found")))?,
        ),
    };
    let Some(image) = body.image.as_deref() else {
        let Some(document) = body.canvas.clone() else {
            return Err(Error::invalid(
                "image",
                "send the image in base64 as `image`, or a canvas as `canvas`",
            )
            .into());
        };
        let asset = canvases::create(&state, &who, body, document, parent.map(|p| p.id)).await?;
        return Ok(axum::Json(AssetOne { asset }));
    };
    let bytes = service::base64_bytes("image", image)?;
    // The collections are the caller's, checked before anything is stored.
    let collections = ids::collections_in(
        "collectionIds",
        body.collection_ids.as_deref().unwrap_or_default(),
    )?;
    service::check_own_collections(&state, &who, &collections)
        .await
        .map_err(|e| error::renamed(e, canvases::FIELDS))?;
    let asset = service::store_upload_into(
        &state,
        &who,
        bytes,
        json!({"name": body.name}),
        parent.as_ref().map(|p| p.id.as_str()),
        &collections,
        body.hide == Some(true),
    )
    .await
    .map_err(|e| service::refield(e, "file", "image"))?;
    let asset = view::assets(&state, Some(&who.user_id), vec![asset])
        .await?
        .remove(0);
    Ok(axum::Json(AssetOne { asset }))
}

/// `GET /assets/{assetId}`.
#[utoipa::path(get, path = "/scenario/v1/assets/{assetId}", tag = "scenario", params(("assetId" = String, Path)), responses((status = 200, body = AssetOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let id = ids::asset_in(&id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    let a = service::owned_asset(&state, &who, &id).await?;
    let asset = view::assets(&state, Some(&who.user_id), vec![a])
        .await?
        .remove(0);
    Ok(axum::Json(AssetOne { asset }))
}

/// `POST /assets/get-bulk`: the caller's assets among the ids (at most 200); others and
/// unknown ids are left out.
#[utoipa::path(post, path = "/scenario/v1/assets/get-bulk", tag = "scenario", request_body = AssetIds, responses((status = 200, body = AssetsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn bulk(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<AssetIds>,
) -> Result<axum::Json<AssetsPage>, Failure> {
    if body.asset_ids.len() > MAX_BULK {
        return Err(Error::invalid("assetIds", format!("at most {MAX_BULK} ids")).into());
    }
    let wanted: Vec<String> = body
        .asset_ids
        .iter()
        .filter_map(|s| ids::asset_in(s))
        .collect();
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut found: Vec<Asset> = easel_store::assets::get_many(&state.store.db, &refs)
        .await?
        .into_iter()
        .filter(|a| a.owner_id == who.user_id || who.is_admin())
        .collect();
    found.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(axum::Json(AssetsPage {
        assets: view::assets(&state, Some(&who.user_id), found).await?,
        next_pagination_token: None,
    }))
}

/// `DELETE /assets` with `{assetIds}` (at most 100): each of the caller's assets is deleted
/// (row, then file, as the native API does); every id must name one of them, else nothing
/// is deleted and the answer is 404 naming the first that does not.
#[utoipa::path(delete, path = "/scenario/v1/assets", tag = "scenario", request_body = AssetIds, responses((status = 200, description = "Deleted: `{}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<AssetIds>,
) -> Result<axum::Json<Value>, Failure> {
    if body.asset_ids.is_empty() || body.asset_ids.len() > MAX_DELETE {
        return Err(Error::invalid("assetIds", format!("give 1 to {MAX_DELETE} ids")).into());
    }
    let mut owned = Vec::new();
    for s in &body.asset_ids {
        let id = ids::asset_in(s).ok_or_else(|| Error::not_found(&format!("asset {s}")))?;
        owned.push(service::owned_asset(&state, &who, &id).await?);
    }
    // A canvas under a live lock: 409 before anything is deleted (all or none).
    let ids: Vec<&str> = owned.iter().map(|a| a.id.as_str()).collect();
    let canvases =
        easel_store::canvases::get_many(&state.store.db, &ids, easel_core::time::now()).await?;
    if let Some(l) = canvases.values().find_map(|c| c.lock.as_ref()) {
        let mut e = easel_core::canvas::locked(l, "assetIds");
        e.field = None;
        return Err(Failure::locked(e));
    }
    for a in owned {
        // Locked since the check: 409 too.
        service::delete_asset(&state, &a)
            .await
            .map_err(Failure::locked)?;
    }
    Ok(axum::Json(json!({})))
}

/// An asset the caller owns, by a path id (admins too: a copy or a conversion is made for
/// the caller, from the caller's own images); others' and malformed ids are 404.
async fn path_asset(state: &AppState, who: &Principal, id: &str) -> Result<Asset, Error> {
    let id = ids::asset_in(id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    easel_store::assets::get(&state.store.db, &id)
        .await?
        .filter(|a| a.owner_id == who.user_id)
        .ok_or_else(|| Error::not_found(&format!("asset {id}")))
}

/// `POST /assets/{assetId}/copy`: a new upload of the caller with the same image, derived
/// from the original (`parentId`), its name kept and `copiedAt` set.
#[utoipa::path(post, path = "/scenario/v1/assets/{assetId}/copy", tag = "scenario", params(("assetId" = String, Path)), responses((status = 200, body = AssetOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn copy(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let a = path_asset(&state, &who, &id).await?;
    if a.kind == AssetKind::Canvas {
        let copy = service::copy_canvas(&state, &who, &a).await?;
        let asset = view::assets(&state, Some(&who.user_id), vec![copy.asset])
            .await?
            .remove(0);
        return Ok(axum::Json(AssetOne { asset }));
    }
    let bytes = service::asset_content(&state.store, &a).await?;
    let mut metadata = json!({"copiedAt": ids::time(&easel_core::time::now())});
    if let Some(name) = &a.name {
        metadata["name"] = json!(name);
    }
    let copy = service::store_upload(&state, &who, bytes, metadata, Some(&a.id))
        .await
        .map_err(|e| service::refield(e, "file", "assetId"))?;
    Ok(axum::Json(AssetOne {
        asset: view::asset(&state, copy, None, Vec::new()),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DownloadRequest {
    #[serde(default)]
    target_format: Option<String>,
}

/// `POST /assets/{assetId}/download` with `{targetFormat}`: `{url}`, a signed URL of the
/// image in that format. PNG, JPEG (`jpeg`, `jpg`) and WebP are made by the `convert` tool
/// (a job the answer waits for; the converted image is a new asset derived from this one,
/// reused by later downloads in that format), or are the asset itself when it is already in
/// that format or no format is given. Other formats (`gif`, `heif`, `svg`, `avif`) are a
/// 400 naming `targetFormat`.
#[utoipa::path(post, path = "/scenario/v1/assets/{assetId}/download", tag = "scenario", params(("assetId" = String, Path)), request_body(content = Object, description = "`{targetFormat}`: png, jpeg, jpg or webp"), responses((status = 200, description = "`{url}`, signed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn download(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<DownloadRequest>,
) -> Result<axum::Json<Value>, Failure> {
    let a = path_asset(&state, &who, &id).await?;
    let format = match body.target_format.as_deref() {
        None => None,
        Some("png") => Some(OutputFormat::Png),
        Some("jpeg" | "jpg") => Some(OutputFormat::Jpeg),
        Some("webp") => Some(OutputFormat::Webp),
        Some(other) => {
            return Err(Error::invalid(
                "targetFormat",
                format!("`{other}` is not made here: png, jpeg, jpg or webp"),
            )
            .into())
        }
    };
    if a.kind == AssetKind::Canvas && format.is_some() {
        return Err(Error::invalid(
            "targetFormat",
            "a canvas is a JSON document: download it without a targetFormat",
        )
        .into());
    }
    let target = match format {
        Some(f) if a.mime_type != f.mime() => match converted(&state, &a, f.mime()).await? {
            Some(done) => done,
            None => convert(&state, &who, &a, f).await?,
        },
        _ => a.id,
    };
    Ok(axum::Json(
        json!({"url": service::asset_url(&state, &target)}),
    ))
}

/// A conversion of `a` to `mime` made earlier.
async fn converted(state: &AppState, a: &Asset, mime: &str) -> Result<Option<String>, Error> {
    let filter = easel_store::assets::AssetFilter {
        owner_id: a.owner_id.clone(),
        parent_id: Some(a.id.clone()),
        tasks: vec!["convert".into()],
        limit: 100,
        ..Default::default()
    };
    Ok(easel_store::assets::list(&state.store.db, &filter)
        .await?
        .into_iter()
        .find(|c| c.mime_type == mime)
        .map(|c| c.id))
}

/// `a` converted by the `convert` tool (a job the caller waits for); the new asset's id.
async fn convert(
    state: &AppState,
    who: &Principal,
    a: &Asset,
    format: OutputFormat,
) -> Result<String, Error> {
    let req = TaskRequest {
        preset: None,
        model: None,
        input: TaskInput::Convert(ConvertInput {
            image: a.id.clone(),
            format,
            quality: None,
        }),
        priority: None,
        webhook: None,
        idempotency_key: None,
        request: None,
        external_id: None,
        // A conversion of a hidden asset is hidden too.
        hide_outputs: a.hidden,
        inline: Default::default(),
    };
    let (job, _) = service::submit(state, who, req).await.map_err(|e| {
        let e = service::refield(e, "input.format", "targetFormat");
        service::refield(e, "input", "assetId")
    })?;
    let job = service::wait_job(state, job, state.sync_timeout).await?;
    if let Some(e) = job.failure() {
        return Err(e);
    }
    job.outputs.first().cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "the conversion did not finish in time; poll GET /jobs/{}",
                job.id
            ),
        )
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagsChange {
    #[serde(default)]
    pub(super) add: Vec<String>,
    #[serde(default)]
    pub(super) delete: Vec<String>,
    /// Scenario's default: a tag already there, or one missing, is an error.
    #[serde(default = "yes")]
    pub(super) strict: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, ToSchema)]
pub(super) struct TagsChanged {
    pub(super) added: Vec<String>,
    pub(super) deleted: Vec<String>,
}

/// `PUT /assets/{assetId}/tags`: add and remove tags (`easel_store::tags::change`).
#[utoipa::path(put, path = "/scenario/v1/assets/{assetId}/tags", tag = "scenario", params(("assetId" = String, Path)), request_body = TagsChange,
    responses((status = 200, body = TagsChanged), (status = 400, body = ErrorBody, description = "Bad tags, or (strict) a tag already there or missing"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put_tags(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<TagsChange>,
) -> Result<axum::Json<TagsChanged>, Failure> {
    let id = ids::asset_in(&id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    let c = service::change_tags(&state, &who, &id, &body.add, &body.delete, body.strict).await?;
    Ok(axum::Json(TagsChanged {
        added: c.added,
        deleted: c.deleted,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagView {
    tag_name: String,
    item_count: u64,
    owner_id: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TagsPage {
    tags: Vec<TagView>,
}

/// `GET /tags`: the caller's tags with how many assets carry each (one page: every tag;
/// `pageSize` and `paginationToken` are accepted).
#[utoipa::path(get, path = "/scenario/v1/tags", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query)),
    responses((status = 200, body = TagsPage), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn tags(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<axum::Json<TagsPage>, Failure> {
    let list = easel_store::tags::list(&state.store.db, &who.user_id).await?;
    Ok(axum::Json(TagsPage {
        tags: list
            .into_iter()
            .map(|t| TagView {
                tag_name: t.name,
                item_count: t.count,
                owner_id: who.user_id.clone(),
                created_at: ids::time(&t.created_at),
                updated_at: ids::time(&t.updated_at),
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AssetEdit {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// The canvas fields (`canvas`, `thumbnail`, `lockId`, `lockExpiresAt`,
    /// `disableSnapshot`): a canvas's only (`canvases::save`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    others: Map<String, Value>,
}

/// `PUT /assets/{assetId}`: the asset's `name` and `description` (`easel_store::assets::edit`);
/// of a canvas, also its canvas fields, under its lock (`canvases::save`).
#[utoipa::path(put, path = "/scenario/v1/assets/{assetId}", tag = "scenario", params(("assetId" = String, Path)), request_body = AssetEdit,
    responses((status = 200, body = AssetOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<AssetEdit>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let id = ids::asset_in(&id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    let a = service::owned_asset(&state, &who, &id).await?;
    let e = easel_core::asset::AssetEdit {
        name: body.name,
        description: body.description,
        privacy: None,
        hidden: None,
    };
    if a.kind == AssetKind::Canvas {
        let asset = canvases::save(&state, &who, &a, e, &body.others).await?;
        return Ok(axum::Json(AssetOne { asset }));
    }
    if let Some(k) = body
        .others
        .keys()
        .find(|k| canvases::SAVE_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::invalid(k, "only a canvas has it; this asset is an image").into());
    }
    e.validate()?;
    let a = easel_store::assets::edit(&state.store.db, &a.id, &e)
        .await?
        .ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    let asset = view::assets(&state, Some(&who.user_id), vec![a])
        .await?
        .remove(0);
    Ok(axum::Json(AssetOne { asset }))
}

/// A `tags` query: comma-separated (or repeated, as `ListQuery` joins them) tags.
fn tag_list(q: Option<&str>) -> Result<Vec<String>, Error> {
    easel_core::asset::check_tags("tags", &query::list_param(q))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    tags: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

/// `GET /assets/public`: every user's public assets, newest first, without a key; `tags`
/// narrows to those carrying any of them. Other filters are read without narrowing.
#[utoipa::path(get, path = "/scenario/v1/assets/public", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query), ("tags" = Option<String>, Query)),
    responses((status = 200, body = AssetsPage), (status = 400, body = ErrorBody)))]
pub(super) async fn list_public(
    State(state): State<AppState>,
    ListQuery(q): ListQuery<PublicQuery>,
) -> Result<axum::Json<AssetsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 50, 100)?;
    let before = match q.pagination_token.as_deref() {
        None => None,
        Some(t) => Some(asset_id("paginationToken", t)?),
    };
    let tags = tag_list(q.tags.as_deref())?;
    let rows =
        easel_store::assets::list_public(&state.store.db, before.as_deref(), &tags, size + 1)
            .await?;
    let (rows, next) = query::paged(rows, size, |a| ids::asset(&a.id));
    Ok(axum::Json(AssetsPage {
        assets: view::assets(&state, None, rows).await?,
        next_pagination_token: next,
    }))
}

/// `GET /assets/public/{assetId}`: a public or unlisted asset, without a key (private ones
/// read as absent).
#[utoipa::path(get, path = "/scenario/v1/assets/public/{assetId}", tag = "scenario", params(("assetId" = String, Path)),
    responses((status = 200, body = AssetOne), (status = 404, body = ErrorBody)))]
pub(super) async fn read_public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let aid = ids::asset_in(&id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    let a = service::public_asset(&state, &aid).await?;
    let asset = view::assets(&state, None, vec![a]).await?.remove(0);
    Ok(axum::Json(AssetOne { asset }))
}
