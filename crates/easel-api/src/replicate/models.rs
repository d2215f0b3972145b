//! Models and versions as Replicate's clients look them up.

use super::*;

pub(super) fn version_of(m: &Model, id: &str) -> Version {
    Version {
        id: id.to_string(),
        created_at: rfc3339(m.created_at),
        cog_version: concat!("easel-", env!("CARGO_PKG_VERSION")).to_string(),
        openapi_schema: json!({
            "openapi": "3.0.2",
            "info": {"title": m.name, "version": id},
            "components": {"schemas": {
                "Input": {"type": "object", "title": "Input"},
                "Output": {"type": "string", "format": "uri", "title": "Output"}
            }}
        }),
    }
}

/// A model by `owner/name`.
#[utoipa::path(get, path = "/replicate/v1/models/{owner}/{name}", tag = "replicate",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ModelView), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn model(
    State(state): State<AppState>,
    _: Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<axum::Json<ModelView>> {
    let Ok(Path((owner, name))) = path else {
        return Err(Error::not_found("model").into());
    };
    let m = path_model(&state, &owner, &name).await?;
    Ok(axum::Json(ModelView {
        url: format!("{}{BASE}/models/{owner}/{name}", state.public_url),
        description: Some(format!("{} ({}): {}", m.name, m.family, m.tasks.join(", "))),
        visibility: "private",
        github_url: None,
        paper_url: None,
        license_url: None,
        run_count: 0,
        cover_image_url: None,
        default_example: None,
        latest_version: version_of(&m, &m.id),
        owner,
        name,
    }))
}

/// A version of a model: its id, or any name or alias of the same model.
#[utoipa::path(get, path = "/replicate/v1/models/{owner}/{name}/versions/{id}", tag = "replicate",
    params(("owner" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Version), (status = 401, body = DetailBody), (status = 404, body = DetailBody)),
    security(("bearer" = []), ("api_market_key" = [])))]
pub async fn version(
    State(state): State<AppState>,
    _: Auth,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<axum::Json<Version>> {
    let Ok(Path((owner, name, id))) = path else {
        return Err(Error::not_found("version").into());
    };
    let m = path_model(&state, &owner, &name).await?;
    let v = easel_store::models::resolve(&state.store.db, &id).await?;
    match v {
        Some(v) if v.id == m.id => Ok(axum::Json(version_of(&m, &id))),
        _ => Err(Error::not_found(&format!("version {id} of {owner}/{name}")).into()),
    }
}
