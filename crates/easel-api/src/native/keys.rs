//! `/v1/keys` (admin), `/v1/me` and `/v1/usage`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use easel_core::auth::{ApiKey, Role, User};
use easel_core::usage::{ModelUsageRow, UsageRow};
use easel_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Auth};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::service;
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for the key.
    #[serde(default)]
    pub name: Option<String>,
    /// Add the key to this existing user; otherwise a new user is created.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Name of the new user (default: the key's name).
    #[serde(default)]
    pub user_name: Option<String>,
    /// Role of the new user, default `user`.
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself: shown only now. Send it as `Authorization: Bearer <key>`.
    pub key: String,
    /// The same key as a pair, for clients that send `Basic base64(api_key:api_secret)`
    /// (Scenario's): the key id ...
    pub api_key: String,
    /// ... and the secret part.
    pub api_secret: String,
    #[serde(flatten)]
    pub info: ApiKey,
}

/// Create an API key (admin). Without `user_id`, a new user is created for it.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    Json(body): Json<CreateKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedKey>)> {
    let name = body.name.unwrap_or_else(|| "default".to_string());
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("name", "must be 1 to 100 characters").into());
    }
    let user = match body.user_id {
        Some(id) => {
            if body.role.is_some() || body.user_name.is_some() {
                return Err(Error::invalid(
                    "user_id",
                    "give `user_id` or `user_name`/`role`, not both",
                )
                .into());
            }
            easel_store::users::get_user(&state.store.db, &id)
                .await?
                .ok_or_else(|| Error::invalid("user_id", format!("no user {id}")))?
        }
        None => {
            let field = if body.user_name.is_some() {
                "user_name"
            } else {
                "name"
            };
            let user_name = body.user_name.unwrap_or_else(|| name.clone());
            easel_core::auth::check_user_name(field, &user_name)?;
            easel_store::users::create_user(
                &state.store.db,
                &user_name,
                body.role.unwrap_or(Role::User),
            )
            .await
            .map_err(|e| match e.kind {
                easel_core::ErrorKind::Conflict => Error::new(
                    easel_core::ErrorKind::Conflict,
                    format!(
                        "a user named `{user_name}` exists: pass its `user_id` (GET /v1/users) \
                         to give it another key, or choose another `user_name`"
                    ),
                )
                .with_field(field),
                _ => e,
            })?
        }
    };
    let (info, key) =
        easel_store::users::create_key(&state.store.db, &user.id, &name, None).await?;
    let (api_key, api_secret) = easel_core::auth::split_key(&key)
        .map(|(id, secret)| (id.to_string(), secret.to_string()))
        .ok_or_else(|| Error::internal("a new key has no id"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKey {
            key,
            api_key,
            api_secret,
            info,
        }),
    ))
}

/// Every key (admin); never the secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = Vec<ApiKey>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _: Admin) -> ApiResult<axum::Json<Vec<ApiKey>>> {
    Ok(axum::Json(
        easel_store::users::list_keys(&state.store.db).await?,
    ))
}

/// Revoke a key (admin).
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !easel_store::users::revoke_key(&state.store.db, &id).await? {
        return Err(Error::not_found("key").into());
    }
    // Other processes heard of it from the revocation's transaction (PostgreSQL).
    state.auth.forget_all();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique.
    pub name: String,
    /// Default `user`.
    #[serde(default)]
    pub role: Option<Role>,
}

/// Create a user (admin); give it keys with `POST /v1/keys {"user_id": …}`.
#[utoipa::path(post, path = "/v1/users", tag = "keys", request_body = CreateUser,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "The name is taken"), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    _: Admin,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    easel_core::auth::check_user_name("name", &body.name)?;
    let user = easel_store::users::create_user(
        &state.store.db,
        &body.name,
        body.role.unwrap_or(Role::User),
    )
    .await
    .map_err(|e| match e.kind {
        easel_core::ErrorKind::Conflict => e.with_field("name"),
        _ => e,
    })?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Every user (admin), oldest first.
#[utoipa::path(get, path = "/v1/users", tag = "keys", responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<axum::Json<Vec<User>>> {
    Ok(axum::Json(
        easel_store::users::list_users(&state.store.db).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user: User,
    pub key_id: String,
    /// Secret that signs this user's webhooks (Standard Webhooks, `whsec_…`).
    pub webhook_secret: String,
}

/// The caller: user, key and webhook signing secret.
#[utoipa::path(get, path = "/v1/me", tag = "keys", responses((status = 200, body = Me)), security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, Auth(who): Auth) -> ApiResult<axum::Json<Me>> {
    let user = easel_store::users::get_user(&state.store.db, &who.user_id)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    let webhook_secret = easel_store::users::webhook_secret(&state.store.db, &who.user_id).await?;
    Ok(axum::Json(Me {
        user,
        key_id: who.key_id,
        webhook_secret,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct UsageParams {
    /// First day (`YYYY-MM-DD`), inclusive.
    pub since: Option<String>,
    /// Admins: `all` for everyone's usage (default: your own).
    pub owner: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageList {
    /// Per day and task, newest day first.
    pub data: Vec<UsageRow>,
    /// Succeeded jobs per day and model, oldest day first.
    pub models: Vec<ModelUsageRow>,
}

/// Usage by day and task, and by day and model: your own; admins may ask for everyone's (`owner=all`) or a user's.
#[utoipa::path(get, path = "/v1/usage", tag = "keys", params(UsageParams),
    responses((status = 200, body = UsageList), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<UsageParams>,
) -> ApiResult<axum::Json<UsageList>> {
    if let Some(s) = &q.since {
        easel_core::time::parse_day("since", s)?;
    }
    let owner = service::owner_scope(&who, q.owner.as_deref())?;
    let data =
        easel_store::usage::list(&state.store.db, owner.as_deref(), q.since.as_deref()).await?;
    let models =
        easel_store::usage::by_model(&state.store.db, owner.as_deref(), q.since.as_deref()).await?;
    Ok(axum::Json(UsageList { data, models }))
}
