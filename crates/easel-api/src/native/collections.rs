//! `/v1/collections`: a user's named sets of assets and models (`easel_store::collections`).
//! Only the owner sees a collection (others get 404); assets added must be the owner's,
//! models ones the owner can see.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use easel_core::asset::{check_collection_name, Collection};
use easel_core::Error;
use easel_store::collections::{self, Kind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::service;
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionName {
    /// 1 to 200 characters.
    pub name: String,
}

/// Create a collection.
#[utoipa::path(post, path = "/v1/collections", tag = "assets", request_body = CollectionName,
    responses((status = 201, body = Collection), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<CollectionName>,
) -> ApiResult<(StatusCode, axum::Json<Collection>)> {
    let name = check_collection_name("name", &body.name)?;
    let c = collections::create(&state.store.db, &who.user_id, &name).await?;
    Ok((StatusCode::CREATED, axum::Json(c)))
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub data: Vec<Collection>,
    pub next_cursor: Option<String>,
}

/// The caller's collections, newest first.
#[utoipa::path(get, path = "/v1/collections", tag = "assets", params(super::CursorParams),
    responses((status = 200, body = CollectionList), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<super::CursorParams>,
) -> ApiResult<axum::Json<CollectionList>> {
    let limit = super::page_limit(q.limit)?;
    let rows = collections::list(
        &state.store.db,
        &who.user_id,
        q.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = super::page(rows, limit, |c| &c.id);
    Ok(axum::Json(CollectionList {
        data: rows,
        next_cursor,
    }))
}

/// A collection with its counts.
#[utoipa::path(get, path = "/v1/collections/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 200, body = Collection), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Collection>> {
    Ok(axum::Json(
        service::owned_collection(&state, &who, &id).await?,
    ))
}

/// Rename a collection.
#[utoipa::path(patch, path = "/v1/collections/{id}", tag = "assets", params(("id" = String, Path)), request_body = CollectionName,
    responses((status = 200, body = Collection), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rename(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<CollectionName>,
) -> ApiResult<axum::Json<Collection>> {
    let name = check_collection_name("name", &body.name)?;
    let c = service::owned_collection(&state, &who, &id).await?;
    let c = collections::rename(&state.store.db, &c.id, &name)
        .await?
        .ok_or_else(|| Error::not_found("collection"))?;
    Ok(axum::Json(c))
}

/// Delete a collection (its assets and models stay).
#[utoipa::path(delete, path = "/v1/collections/{id}", tag = "assets", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = service::owned_collection(&state, &who, &id).await?;
    collections::delete(&state.store.db, &c.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsChange {
    /// Asset ids to add and to remove (each list at most 49): the caller's own assets.
    #[serde(default)]
    pub add_assets: Vec<String>,
    #[serde(default)]
    pub remove_assets: Vec<String>,
    /// Models (id, name or alias) to add and to remove (each list at most 49).
    #[serde(default)]
    pub add_models: Vec<String>,
    #[serde(default)]
    pub remove_models: Vec<String>,
}

/// Add and remove a collection's assets and models; adding what is there and removing what
/// is not change nothing.
#[utoipa::path(put, path = "/v1/collections/{id}/items", tag = "assets", params(("id" = String, Path)), request_body = ItemsChange,
    responses((status = 200, body = Collection), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn items(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<ItemsChange>,
) -> ApiResult<axum::Json<Collection>> {
    let c = service::owned_collection(&state, &who, &id).await?;
    let assets = service::collection_items(
        &state,
        &who,
        Kind::Asset,
        (&body.add_assets, "add_assets"),
        (&body.remove_assets, "remove_assets"),
    )
    .await?;
    let models = service::collection_items(
        &state,
        &who,
        Kind::Model,
        (&body.add_models, "add_models"),
        (&body.remove_models, "remove_models"),
    )
    .await?;
    let db = &state.store.db;
    collections::change(db, &c.id, Kind::Asset, &assets.0, &assets.1).await?;
    collections::change(db, &c.id, Kind::Model, &models.0, &models.1).await?;
    let c = collections::get(db, &c.id)
        .await?
        .ok_or_else(|| Error::not_found("collection"))?;
    Ok(axum::Json(c))
}
