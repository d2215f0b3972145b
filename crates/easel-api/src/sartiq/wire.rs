//! Sartiq's wire shapes: a model as the registry shows it, a page of them, an error.

use super::*;

/// `GenerativeModelsPublic`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SartiqGenerationModel)]
pub struct Public {
    pub id: String,
    pub name: String,
    pub icon: Option<String>,
    pub provider: String,
    #[schema(value_type = Object)]
    pub provider_config: Value,
    pub provider_capabilities: Option<Vec<String>>,
    pub fallback_provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<Value>,
    pub fallback_provider_capabilities: Option<Vec<String>>,
    pub tool_types: Vec<String>,
    pub recommended: bool,
    pub beta: bool,
    pub max_output_width: Option<u32>,
    pub max_output_height: Option<u32>,
    pub max_size_pixels: Option<u64>,
}

impl Public {
    pub(super) fn of(m: Model) -> Result<Public, Error> {
        let id = easel_core::id::to_uuid(easel_core::id::MODEL, &m.id)
            .ok_or_else(|| Error::internal(format!("model id `{}` is not a ULID", m.id)))?;
        Ok(Public {
            id,
            name: m.name,
            icon: m.icon,
            provider: m.provider,
            provider_config: m.provider_config,
            provider_capabilities: m.provider_capabilities,
            fallback_provider: m.fallback_provider,
            fallback_provider_config: m.fallback_provider_config,
            fallback_provider_capabilities: m.fallback_provider_capabilities,
            tool_types: m.tool_types,
            recommended: m.recommended,
            beta: m.beta,
            max_output_width: m.limits.max_width,
            max_output_height: m.limits.max_height,
            max_size_pixels: m.limits.max_pixels,
        })
    }
}

/// `GenerativeModelsListPublic`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SartiqGenerationModelList)]
pub struct ListPublic {
    pub data: Vec<Public>,
    pub count: u64,
}

/// `{"detail": [...]}` (422) or `{"detail": "..."}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SartiqError)]
pub struct ErrorDoc {
    /// A message, or (422) the list of `{loc, msg, type}`.
    #[schema(value_type = Value)]
    pub detail: Value,
}
