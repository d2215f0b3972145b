//! Canvases (`service::create_canvas` and the rest): made by `POST /assets` with `canvas`,
//! saved by `PUT /assets/{assetId}` with its canvas fields, locked, unlocked, and their
//! snapshots listed. A canvas shows as an asset of `kind: json`, `source: canvas`, with its
//! `thumbnail` and, while locked, `metadata.lockExpiresAt`.

use easel_core::asset::AssetEdit;

use super::*;
use crate::service::{CanvasSave, NewCanvas};

/// Scenario's canvas fields by the service's names (errors are renamed by it).
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("canvas", "document"),
    ("lockId", "lock_id"),
    ("lockExpiresAt", "lock_expires_at"),
    ("parentId", "parent_id"),
    ("collectionIds", "collection_ids"),
];

/// The fields of `PUT /assets/{assetId}` that only a canvas has.
pub(super) const SAVE_FIELDS: [&str; 5] = [
    "canvas",
    "thumbnail",
    "lockId",
    "lockExpiresAt",
    "disableSnapshot",
];

/// An error of the service in Scenario's names; a lock held by another is a 409.
fn renamed(e: Error) -> Failure {
    Failure::locked(error::renamed(e, FIELDS))
}

/// An asset and its canvas as Scenario shows them.
async fn view_of(state: &AppState, who: &Principal, a: Asset) -> Result<AssetView, Error> {
    Ok(view::assets(state, Some(&who.user_id), vec![a])
        .await?
        .remove(0))
}

/// `POST /assets` with `canvas` (stringified JSON) and no `image`: a canvas of the caller,
/// named `name`, with its `thumbnail`, `parentId` and `collectionIds`.
pub(super) async fn create(
    state: &AppState,
    who: &Principal,
    body: AssetUpload,
    document: String,
    parent_id: Option<String>,
) -> Result<AssetView, Failure> {
    let n = NewCanvas {
        document,
        collection_ids: ids::collections_in(
            "collectionIds",
            body.collection_ids.as_deref().unwrap_or_default(),
        )?,
        name: Some(body.name),
        description: None,
        parent_id,
        thumbnail: body
            .thumbnail
            .as_deref()
            .map(|t| service::base64_bytes("thumbnail", t))
            .transpose()?,
        hidden: body.hide == Some(true),
    };
    let r = service::create_canvas(state, who, n)
        .await
        .map_err(renamed)?;
    Ok(view_of(state, who, r.asset).await?)
}

/// `PUT /assets/{assetId}` of a canvas: its `canvas` (a snapshot taken unless
/// `disableSnapshot`), `thumbnail`, `name`, `description`, and `lockExpiresAt` (extends the
/// lock held with `lockId`). While it is locked, only the lock's `lockId` passes (409).
pub(super) async fn save(
    state: &AppState,
    who: &Principal,
    a: &Asset,
    edit: AssetEdit,
    fields: &Map<String, Value>,
) -> Result<AssetView, Failure> {
    let text = |k: &str| -> Result<Option<String>, Error> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::invalid(k, "must be a string")),
        }
    };
    let snapshot = match fields.get("disableSnapshot") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(_) => return Err(Error::invalid("disableSnapshot", "must be a boolean").into()),
    };
    let s = CanvasSave {
        document: text("canvas")?,
        thumbnail: text("thumbnail")?
            .map(|t| service::base64_bytes("thumbnail", &t))
            .transpose()?,
        lock_id: text("lockId")?,
        lock_until: text("lockExpiresAt")?
            .map(|t| easel_core::time::parse_time("lockExpiresAt", &t))
            .transpose()?,
        snapshot,
        edit,
    };
    let r = service::save_canvas(state, who, a, s)
        .await
        .map_err(renamed)?;
    Ok(view_of(state, who, r.asset).await?)
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ScenarioLockRequest)]
#[serde(rename_all = "camelCase")]
pub(super) struct LockRequest {
    /// RFC 3339; at most 24 hours ahead.
    lock_expires_at: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioLockResponse)]
#[serde(rename_all = "camelCase")]
pub(super) struct LockResponse {
    lock_id: String,
    asset: AssetView,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ScenarioUnlockRequest)]
#[serde(rename_all = "camelCase")]
pub(super) struct UnlockRequest {
    #[serde(default)]
    lock_id: Option<String>,
    #[serde(default)]
    force_unlock: Option<bool>,
}

/// One of the caller's canvases by a path id (admins: anyone's); 404 otherwise.
async fn path_canvas(state: &AppState, who: &Principal, id: &str) -> Result<Asset, Error> {
    let id = ids::asset_in(id).ok_or_else(|| Error::not_found(&format!("asset {id}")))?;
    Ok(service::owned_canvas(state, who, &id).await?.asset)
}

/// `PUT /assets/{assetId}/lock`: `{lockId, asset}`; the `lockId` is what saves and the
/// unlock present. A canvas locked already, by anyone, is a 409 naming the holder and the
/// lock's end.
#[utoipa::path(put, path = "/scenario/v1/assets/{assetId}/lock", tag = "scenario", params(("assetId" = String, Path)), request_body = LockRequest,
    responses((status = 200, body = LockResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn lock(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<LockRequest>,
) -> Result<axum::Json<LockResponse>, Failure> {
    let a = path_canvas(&state, &who, &id).await?;
    let until = easel_core::time::parse_time("lockExpiresAt", &body.lock_expires_at)?;
    let c = service::lock_canvas(&state, &who, &a, "lockExpiresAt", until)
        .await
        .map_err(renamed)?;
    let lock_id = c.lock.and_then(|l| l.id).unwrap_or_default();
    Ok(axum::Json(LockResponse {
        lock_id,
        asset: view_of(&state, &who, a).await?,
    }))
}

/// `PUT /assets/{assetId}/unlock`: with the lock's `lockId`, or `forceUnlock` (the owner
/// and admins may end any lock on a canvas). `{asset}`.
#[utoipa::path(put, path = "/scenario/v1/assets/{assetId}/unlock", tag = "scenario", params(("assetId" = String, Path)), request_body = UnlockRequest,
    responses((status = 200, body = AssetOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn unlock(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<UnlockRequest>,
) -> Result<axum::Json<AssetOne>, Failure> {
    let a = path_canvas(&state, &who, &id).await?;
    easel_store::canvases::unlock(
        &state.store.db,
        &a.id,
        body.lock_id.as_deref(),
        body.force_unlock.unwrap_or(false),
        easel_core::time::now(),
    )
    .await
    .map_err(renamed)?;
    let a = service::owned_asset(&state, &who, &a.id).await?;
    Ok(axum::Json(AssetOne {
        asset: view_of(&state, &who, a).await?,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SnapshotQuery {
    page_size: Option<String>,
    pagination_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioSnapshot)]
#[serde(rename_all = "camelCase")]
pub(super) struct SnapshotView {
    /// Unix milliseconds.
    taken_at: i64,
    raw_data: String,
    author_id: String,
    hash: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioSnapshots)]
#[serde(rename_all = "camelCase")]
pub(super) struct SnapshotsPage {
    snapshots: Vec<SnapshotView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_pagination_token: Option<String>,
}

/// `GET /assets/{assetId}/snapshots`: the canvas's saved versions, newest first (`pageSize`
/// 10–100, default 10; at most 100 are kept; a page stops early past 16 MiB of documents).
#[utoipa::path(get, path = "/scenario/v1/assets/{assetId}/snapshots", tag = "scenario", params(("assetId" = String, Path), ("pageSize" = Option<String>, Query), ("paginationToken" = Option<String>, Query)),
    responses((status = 200, body = SnapshotsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn snapshots(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    ListQuery(q): ListQuery<SnapshotQuery>,
) -> Result<axum::Json<SnapshotsPage>, Failure> {
    let a = path_canvas(&state, &who, &id).await?;
    let size = query::page_size(q.page_size.as_deref(), 10, 100)?.max(10);
    let before = match q.pagination_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| Error::invalid("paginationToken", "not a token of this list"))?,
        ),
    };
    let (rows, more) =
        easel_store::canvases::snapshots(&state.store.db, &a.id, before, size).await?;
    let next = rows.last().filter(|_| more).map(|s| s.version.to_string());
    Ok(axum::Json(SnapshotsPage {
        snapshots: rows
            .into_iter()
            .map(|s| SnapshotView {
                taken_at: easel_core::time::to_millis(s.taken_at),
                raw_data: s.document,
                author_id: s.author_id,
                hash: s.sha256,
            })
            .collect(),
        next_pagination_token: next,
    }))
}
