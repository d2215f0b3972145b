//! The Sartiq generation-models registry (`../shared/specs/sartiq-generation-models.md`),
//! mounted at `/sartiq/api/v1/generation-models/`. It is a view of the one models registry
//! (`easel_store::models`): a model created here is a model of `/v1/models` and of every
//! dialect, and a model discovered in `<data-dir>/models/` is listed here. This module only
//! translates; the rules (names, providers, limits) are `easel_core::model`'s.
//!
//! # Endpoints
//!
//! | Sartiq | Easel |
//! |---|---|
//! | `GET /generation-models/?skip&limit` (public; without `support_dir`/`base_url`) → `{data, count}` | `models::list`, by name |
//! | `GET /generation-models/{id}` (public; without `support_dir`/`base_url`) | `models::get` / `models::resolve` |
//! | `POST /generation-models/` (admin) → 200 with the model | `models::create` |
//! | `PUT /generation-models/{id}` (admin, partial) | `models::update` |
//! | `DELETE /generation-models/{id}` (admin) → `{"message"}` | `models::delete` |
//!
//! The collection answers with and without its trailing slash (FastAPI would redirect).
//! `{id}` is the model's UUID (below), its Easel id (`mdl_…`), or any of its names and
//! aliases (a discovered model by its folder or file name). Create answers 200, as FastAPI
//! does when a route sets no status (the spec names none).
//!
//! # Fields
//!
//! | Sartiq | Easel `Model` | Notes |
//! |---|---|---|
//! | `id` (uuid) | `id` | The 128 bits of the id's ULID as a UUID (`easel_core::id::to_uuid`); reversible, so no column holds it. Not a v4 UUID. |
//! | `name` | `name` | Unique and URL-safe: 1–100 letters, digits, `-`, `_`, `.`. |
//! | `icon` | `icon` | |
//! | `provider` | `provider` | Free string, stored as given. Easel runs `local`, `openai`, `replicate` and `easel`. |
//! | `provider_config` | `provider_config` | Any object, stored as is (`local` reads `support_dir`). |
//! | `provider_capabilities` | `provider_capabilities` | List of strings or null. |
//! | `fallback_provider` | `fallback_provider` | |
//! | `fallback_provider_config` | `fallback_provider_config` | Object or null. |
//! | `fallback_provider_capabilities` | `fallback_provider_capabilities` | |
//! | `tool_types` | `tool_types` | Default `[]`. |
//! | `recommended`, `beta` | `recommended`, `beta` | Default false. |
//! | `max_output_width` | `limits.max_width` | Enforced at submit (`GenerateInput::check_limits`) in every dialect. |
//! | `max_output_height` | `limits.max_height` | ″ |
//! | `max_size_pixels` | `limits.max_pixels` | ″ |
//!
//! Easel's own fields (`aliases`, `family`, `tasks`, `source`, `defaults`, other `limits`,
//! `tags`) have no Sartiq counterpart: a model created here gets their defaults (family
//! `unknown`, no tasks, no weights), an update here keeps them, and `/v1/models` sets them
//! (a `local` model needs its `source` there before it can generate). The ProviderType,
//! GenerationTool and ProviderCapability enums are not in the spec, so their values are
//! free strings (1–100 characters).
//!
//! # Requests
//!
//! As pydantic does by default, unknown body fields are ignored (a client may PUT a whole
//! model back, `id` included), and every invalid field is reported, not only the first.
//! Integers are JSON integers (or floats without a fractional part) from 1 up to the
//! largest Easel stores (2³²−1 for sides, 2⁶⁴−1 for pixels); booleans are JSON booleans.
//! In a PUT, only the fields present change; `null` clears a nullable field (`icon`, the
//! capabilities, the fallback fields, the maxima) and leaves a non-nullable one (`name`,
//! `provider`, `provider_config`, `tool_types`, `recommended`, `beta`) as it was, since the
//! spec allows `null` for every field of an update. `skip` must be ≥ 0 and `limit` ≥ 0
//! (default 100); a `limit` above 1000 is served as 1000.
//!
//! # Errors (FastAPI's shapes)
//!
//! * Validation: 422 `{"detail": [{"loc": ["body", field, …], "msg", "type", "input"?,
//!   "ctx"?}]}` with pydantic's types and messages (`missing`, `string_type`, `dict_type`,
//!   `list_type`, `bool_type`, `int_type`, `int_from_float`, `int_parsing`,
//!   `greater_than_equal`, `less_than_equal`, `model_attributes_type`); malformed JSON is
//!   422 `json_invalid` at `["body"]`; a rule of the core (a name with spaces, …) is
//!   `value_error` at the Sartiq name of the core's field (`limits.max_width` →
//!   `max_output_width`). Query parameters are at `["query", name]`.
//! * Everything else: the core error's status with `{"detail": "<message>"}` (Easel's
//!   messages): 401 without a valid key (with `WWW-Authenticate: Bearer`), 403 for a
//!   non-admin key, 404 for an unknown model (`"Generation model not found"`) or route
//!   under the mount, 405 for a known route with another method, 409 for a name another
//!   model uses, 413 over the body limit, 429 with `Retry-After`.
//!
//! The contract tests (`scripts/schemathesis.sh`) run the spec's own JSON Schemas against
//! this module: `scripts/sartiq_openapi.py` rebuilds the OpenAPI document the Markdown page
//! was rendered from; the statuses the page leaves out (401, 403, 404, 409, 413 with
//! `{"detail"}`) are added by `scripts/schemathesis_hooks.py`.
//!
//! The router state is `dialect::DialectState<Sartiq>`, so the shared extractors
//! (`auth::Admin`, `extract::Json`) and the mount's 404/405 reject as a [`Failure`].

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use easel_core::model::{Model, ModelSpec};
use easel_core::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::dialect::{self, Dialect, DialectState};
use crate::fastapi::{self, Detail, WireNames};
use crate::AppState;

/// Where the dialect is mounted.
pub const BASE: &str = "/sartiq/api/v1";

const NOT_FOUND: &str = "Generation model not found";

/// The dialect: its errors are [`Failure`]s.
pub struct Sartiq;

impl Dialect for Sartiq {
    type Error = Failure;
}

type St = DialectState<Sartiq>;

pub fn routes(state: &AppState) -> Router<AppState> {
    let api: Router<St> = Router::new()
        .route("/generation-models/", get(list).post(create))
        .route("/generation-models", get(list).post(create))
        .route(
            "/generation-models/{id}",
            get(read).put(update).delete(delete),
        );
    Router::new().nest(BASE, dialect::mount(api, state))
}

/// Sartiq's names of the core's fields.
pub struct SartiqNames;

impl WireNames for SartiqNames {
    fn wire(core: &str) -> Option<String> {
        let wire = match core {
            "limits.max_width" => "max_output_width",
            "limits.max_height" => "max_output_height",
            "limits.max_pixels" => "max_size_pixels",
            _ => return None,
        };
        Some(wire.into())
    }
}

/// A handler's failure in FastAPI's shapes, under Sartiq's field names.
pub type Failure = fastapi::Failure<SartiqNames>;

#[cfg(test)]
fn body_loc(field: &str) -> Vec<Value> {
    fastapi::body_loc::<SartiqNames>(field)
}

fn core_failure(e: Error, body: &Map<String, Value>) -> Failure {
    fastapi::core_failure(e, body)
}

mod fields;
mod handlers;
mod wire;

use fields::*;
pub use handlers::ApiDoc;
use handlers::*;
pub use wire::{ErrorDoc, ListPublic, Public};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_fields_become_sartiq_locations() {
        assert_eq!(body_loc("name"), [json!("body"), json!("name")]);
        assert_eq!(
            body_loc("limits.max_width"),
            [json!("body"), json!("max_output_width")]
        );
        assert_eq!(
            body_loc("limits.max_pixels"),
            [json!("body"), json!("max_size_pixels")]
        );
        assert_eq!(
            body_loc("tool_types[1]"),
            [json!("body"), json!("tool_types"), json!(1)]
        );
        assert_eq!(
            body_loc("limits.max_steps"),
            [json!("body"), json!("limits"), json!("max_steps")]
        );
    }
}
