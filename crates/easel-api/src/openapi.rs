//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::native::{
    assets, canvases, collections, downloads, jobs, keys, models, options, pulls, uploads,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Easel", description = "Self-hosted image generation: a durable job queue (txt2img, img2img, inpaint and image tools), assets, models and API keys. \
        Job events (SSE): `status`, `progress`, `preview` (`{step, total_steps, image: data URL}`), `cancel_requested`, `log` (`{message}`: what a provider reported, a retry or a fallback), then `job`. \
        Errors are `{\"error\": {\"type\", \"message\", \"field\"}}`."),
    paths(
        jobs::create, jobs::get, jobs::list, jobs::cancel, jobs::events, jobs::webhooks,
        assets::upload, assets::get, assets::list, assets::content, assets::delete, assets::put_tags, assets::tags, assets::edit, assets::list_public, assets::get_public, collections::create, collections::list, collections::get, collections::rename, collections::delete, collections::items,
        canvases::create, canvases::get, canvases::save, canvases::lock, canvases::unlock, canvases::snapshots,
        downloads::create, downloads::get, downloads::archive,
        uploads::create, uploads::import, uploads::list, uploads::get, uploads::put_part, uploads::complete, uploads::delete,
        models::list, models::get, models::create, models::update, models::delete, models::copy, models::transfer, models::download, models::prompt_check, models::presets, models::create_preset, models::update_preset, models::delete_preset, models::list_public, models::get_public, models::scan, models::make_tiny, pulls::create, pulls::list, pulls::get, options::get,
        keys::create, keys::list, keys::revoke, keys::create_user, keys::list_users, keys::me, keys::usage,
    ),
    components(schemas(
        ErrorBody, ErrorDetail,
        easel_core::task::UpscaleInput, easel_core::task::ResizeInput,
        easel_core::task::PixelateInput, easel_core::task::ConvertInput,
        easel_core::generate::GenerateInput, easel_core::generate::LoraRef,
        easel_core::generate::Decoder,
    )),
    modifiers(&Security),
    tags(
        (name = "jobs", description = "Submit work and follow it"),
        (name = "assets", description = "Uploaded and generated images, canvases, uploads in parts, archives"),
        (name = "models", description = "The models registry"),
        (name = "keys", description = "Users, API keys, the caller, usage"),
    )
)]
pub struct ApiDoc;

/// The whole document: the native API and each dialect's part.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::openai::ApiDoc::openapi());
    doc.merge(crate::leonardo::ApiDoc::openapi());
    doc.merge(crate::replicate::ApiDoc::openapi());
    doc.merge(crate::sartiq::ApiDoc::openapi());
    doc.merge(crate::scenario::ApiDoc::openapi());
    doc
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The Replicate dialect's spec (api.market) sends the key in this header.
        c.add_security_scheme(
            "api_market_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-market-key"))),
        );
    }
}
