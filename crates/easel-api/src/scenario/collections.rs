//! Collections: Scenario's nine operations on the core's collections (`service::owned_collection`,
//! `service::collection_items`). Ids are `collection_<ulid>` (Easel's `col_<ulid>`).

use easel_core::asset::{check_collection_name, Collection};
use easel_store::collections::{self, Kind};

use super::*;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioCollection)]
pub(super) struct CollectionView {
    id: String,
    owner_id: String,
    name: String,
    asset_count: u64,
    model_count: u64,
    item_count: u64,
    created_at: String,
    updated_at: String,
}

fn view(c: Collection) -> CollectionView {
    CollectionView {
        id: ids::collection(&c.id),
        owner_id: c.owner_id,
        name: c.name,
        asset_count: c.asset_count,
        model_count: c.model_count,
        item_count: c.asset_count + c.model_count,
        created_at: ids::time(&c.created_at),
        updated_at: ids::time(&c.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct CollectionOne {
    collection: CollectionView,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CollectionsPage {
    collections: Vec<CollectionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_pagination_token: Option<String>,
}

async fn owned(state: &AppState, who: &Principal, wire: &str) -> Result<Collection, Error> {
    let id =
        ids::collection_in(wire).ok_or_else(|| Error::not_found(&format!("collection {wire}")))?;
    service::owned_collection(state, who, &id).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

/// `GET /collections`: the caller's, newest first.
#[utoipa::path(get, path = "/scenario/v1/collections", tag = "scenario", params(("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query)),
    responses((status = 200, body = CollectionsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<axum::Json<CollectionsPage>, Failure> {
    let size = query::page_size(q.page_size.as_deref(), 50, 100)?;
    let before = match q.pagination_token.as_deref() {
        None => None,
        Some(t) => Some(ids::collection_in(t).ok_or_else(|| {
            Error::invalid(
                "paginationToken",
                format!("`{t}` is not a pagination token"),
            )
        })?),
    };
    let rows =
        collections::list(&state.store.db, &who.user_id, before.as_deref(), size + 1).await?;
    let (rows, next) = query::paged(rows, size, |c| ids::collection(&c.id));
    Ok(axum::Json(CollectionsPage {
        collections: rows.into_iter().map(view).collect(),
        next_pagination_token: next,
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct NewCollection {
    name: String,
}

/// `POST /collections`.
#[utoipa::path(post, path = "/scenario/v1/collections", tag = "scenario", request_body = NewCollection,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<NewCollection>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    let name = check_collection_name("name", &body.name)?;
    let c = collections::create(&state.store.db, &who.user_id, &name).await?;
    Ok(axum::Json(CollectionOne {
        collection: view(c),
    }))
}

/// `GET /collections/{collectionId}`.
#[utoipa::path(get, path = "/scenario/v1/collections/{collectionId}", tag = "scenario", params(("collectionId" = String, Path)),
    responses((status = 200, body = CollectionOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    let c = owned(&state, &who, &id).await?;
    Ok(axum::Json(CollectionOne {
        collection: view(c),
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct CollectionEdit {
    #[serde(default)]
    name: Option<String>,
    /// Collection thumbnails are not kept: a value other than `null` is a 400.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    thumbnail: Option<Value>,
}

/// `PUT /collections/{collectionId}`: rename.
#[utoipa::path(put, path = "/scenario/v1/collections/{collectionId}", tag = "scenario", params(("collectionId" = String, Path)), request_body = CollectionEdit,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn update(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<CollectionEdit>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    if body.thumbnail.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(Error::invalid(
            "thumbnail",
            "collection thumbnails are not kept on this server",
        )
        .into());
    }
    let c = owned(&state, &who, &id).await?;
    let c = match body.name {
        Some(n) => {
            let name = check_collection_name("name", &n)?;
            collections::rename(&state.store.db, &c.id, &name)
                .await?
                .ok_or_else(|| Error::not_found(&format!("collection {id}")))?
        }
        None => c,
    };
    Ok(axum::Json(CollectionOne {
        collection: view(c),
    }))
}

/// `DELETE /collections/{collectionId}`: the collection goes, its items stay.
#[utoipa::path(delete, path = "/scenario/v1/collections/{collectionId}", tag = "scenario", params(("collectionId" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Failure> {
    let c = owned(&state, &who, &id).await?;
    collections::delete(&state.store.db, &c.id).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AssetIds {
    asset_ids: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelIds {
    model_ids: Vec<String>,
}

/// Add (`add`) or remove the items of one kind; ids in Scenario's or Easel's form.
async fn change(
    state: &AppState,
    who: &Principal,
    wire: &str,
    kind: Kind,
    items: Vec<String>,
    add: bool,
) -> Result<axum::Json<CollectionOne>, Failure> {
    let c = owned(state, who, wire).await?;
    let field = match kind {
        Kind::Asset => "assetIds",
        Kind::Model => "modelIds",
    };
    let items: Vec<String> = items
        .into_iter()
        .map(|i| match kind {
            Kind::Asset => ids::asset_in(&i).unwrap_or(i),
            Kind::Model => ids::model_ref(&i),
        })
        .collect();
    let none: &[String] = &[];
    let (adds, removes) = if add {
        (&items[..], none)
    } else {
        (none, &items[..])
    };
    let (a, r) =
        service::collection_items(state, who, kind, (adds, field), (removes, field)).await?;
    let db = &state.store.db;
    collections::change(db, &c.id, kind, &a, &r).await?;
    let c = collections::get(db, &c.id)
        .await?
        .ok_or_else(|| Error::not_found(&format!("collection {wire}")))?;
    Ok(axum::Json(CollectionOne {
        collection: view(c),
    }))
}

/// `PUT /collections/{collectionId}/assets` (at most 49; the caller's own assets).
#[utoipa::path(put, path = "/scenario/v1/collections/{collectionId}/assets", tag = "scenario", params(("collectionId" = String, Path)), request_body = AssetIds,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn add_assets(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<AssetIds>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    change(&state, &who, &id, Kind::Asset, body.asset_ids, true).await
}

/// `DELETE /collections/{collectionId}/assets` (at most 49).
#[utoipa::path(delete, path = "/scenario/v1/collections/{collectionId}/assets", tag = "scenario", params(("collectionId" = String, Path)), request_body = AssetIds,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn remove_assets(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<AssetIds>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    change(&state, &who, &id, Kind::Asset, body.asset_ids, false).await
}

/// `PUT /collections/{collectionId}/models` (at most 49; models of the registry).
#[utoipa::path(put, path = "/scenario/v1/collections/{collectionId}/models", tag = "scenario", params(("collectionId" = String, Path)), request_body = ModelIds,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn add_models(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelIds>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    change(&state, &who, &id, Kind::Model, body.model_ids, true).await
}

/// `DELETE /collections/{collectionId}/models` (at most 49).
#[utoipa::path(delete, path = "/scenario/v1/collections/{collectionId}/models", tag = "scenario", params(("collectionId" = String, Path)), request_body = ModelIds,
    responses((status = 200, body = CollectionOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn remove_models(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ModelIds>,
) -> Result<axum::Json<CollectionOne>, Failure> {
    change(&state, &who, &id, Kind::Model, body.model_ids, false).await
}
