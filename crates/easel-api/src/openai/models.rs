//! The registry as OpenAI's model list.

use super::*;

/// `image` for models that do image tasks (or say nothing); else the first task a model
/// registered for an upstream says it does (`chat`, `audio`, …).
pub(super) fn category(tasks: &[String]) -> String {
    match tasks.first() {
        Some(t)
            if !tasks
                .iter()
                .any(|t| easel_core::task::TASKS.contains(&t.as_str())) =>
        {
            t.clone()
        }
        _ => "image".to_string(),
    }
}

pub(super) fn model_object(m: easel_core::model::Model) -> ModelObject {
    ModelObject {
        id: m.job_name().to_string(),
        object: "model",
        created: m.created_at.timestamp(),
        owned_by: "easel",
        category: category(&m.tasks),
        capabilities: m.tasks,
    }
}

/// The models one can name as `model` (LoRAs are left out).
#[utoipa::path(get, path = "/openai/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn models(State(state): State<AppState>, _: Auth) -> Result<axum::Json<ModelList>> {
    let data = service::all_models(&state)
        .await?
        .into_iter()
        .filter(|m| !m.is_lora())
        .map(model_object)
        .collect();
    Ok(axum::Json(ModelList {
        object: "list",
        data,
    }))
}

/// One model, by name, alias or id.
#[utoipa::path(get, path = "/openai/v1/models/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = ModelObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn model(
    State(state): State<AppState>,
    Auth(who): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<ModelObject>> {
    let id = id.map(|Path(id)| id).unwrap_or_default();
    match service::find_model(&state, Some(&who), &id).await? {
        Some(m) if !m.is_lora() => Ok(axum::Json(model_object(m))),
        _ => Err(OpenAiError::from(
            Error::new(
                ErrorKind::NotFound,
                format!("the model `{id}` does not exist"),
            )
            .with_field("model"),
        )
        .code("model_not_found")),
    }
}
