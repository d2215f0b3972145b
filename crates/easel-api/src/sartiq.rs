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
    fn wire(core: &str) -> Option<&'static str> {
        match core {
            "limits.max_width" => Some("max_output_width"),
            "limits.max_height" => Some("max_output_height"),
            "limits.max_pixels" => Some("max_size_pixels"),
            _ => None,
        }
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
    fn of(m: Model) -> Result<Public, Error> {
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

/// `skip`/`limit` as FastAPI reads `int` query parameters.
fn query_int(q: &[(String, String)], name: &str, default: i64, errors: &mut Vec<Detail>) -> i64 {
    let Some((_, raw)) = q.iter().rev().find(|(k, _)| k == name) else {
        return default;
    };
    let loc = vec![json!("query"), json!(name)];
    let t = raw.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(
            Detail::new(
                loc,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
            .input(&json!(raw)),
        );
        return default;
    }
    // Out-of-range digits saturate: a huge skip is past the end, a huge limit is the cap.
    let v = t.parse::<i64>().unwrap_or(if t.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    });
    if v < 0 {
        errors.push(
            Detail::new(
                loc,
                "greater_than_equal",
                "Input should be greater than or equal to 0",
            )
            .input(&json!(raw))
            .ctx(json!({"ge": 0})),
        );
        return default;
    }
    v
}

/// `{"detail": [...]}` (422) or `{"detail": "..."}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SartiqError)]
pub struct ErrorDoc {
    /// A message, or (422) the list of `{loc, msg, type}`.
    #[schema(value_type = Value)]
    pub detail: Value,
}

/// `GET /generation-models/`: public.
#[utoipa::path(get, path = "/sartiq/api/v1/generation-models/", tag = "sartiq",
    params(("skip" = Option<i64>, Query, description = "default 0"), ("limit" = Option<i64>, Query, description = "default 100, at most 1000")),
    responses((status = 200, body = ListPublic), (status = 422, body = ErrorDoc)))]
async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, Failure> {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let mut errors = Vec::new();
    let skip = query_int(&q, "skip", 0, &mut errors);
    let limit = query_int(&q, "limit", 100, &mut errors);
    if !errors.is_empty() {
        return Err(Failure::Invalid(errors));
    }
    let skip = u32::try_from(skip).unwrap_or(u32::MAX);
    let (models, count) =
        easel_store::models::list(&state.store.db, skip, limit.clamp(1, 1000) as u32).await?;
    let take = if limit == 0 { 0 } else { models.len() };
    let data = models
        .into_iter()
        .take(take)
        .map(|m| Public::of(m.without_locations()))
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(ListPublic { data, count }).into_response())
}

/// The model `{id}` names: its UUID, its Easel id, or one of its names.
async fn find(state: &AppState, id: Result<Path<String>, PathRejection>) -> Result<Model, Failure> {
    let Path(id) = id.map_err(|_| Error::new(ErrorKind::NotFound, NOT_FOUND))?;
    let db = &state.store.db;
    let by_uuid = match easel_core::id::from_uuid(easel_core::id::MODEL, &id) {
        Some(mid) => easel_store::models::get(db, &mid).await?,
        None => None,
    };
    let found = match by_uuid {
        Some(m) => Some(m),
        None => easel_store::models::resolve(db, &id).await?,
    };
    found.ok_or_else(|| Failure::Error(Error::new(ErrorKind::NotFound, NOT_FOUND)))
}

/// `GET /generation-models/{id}`: public. `{id}`: the model's UUID, Easel id or a name.
#[utoipa::path(get, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    responses((status = 200, body = Public), (status = 404, body = ErrorDoc)))]
async fn read(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Public>, Failure> {
    Ok(axum::Json(Public::of(
        find(&state, id).await?.without_locations(),
    )?))
}

/// `POST /generation-models/`: admin.
#[utoipa::path(post, path = "/sartiq/api/v1/generation-models/", tag = "sartiq",
    request_body(content = Object, description = "`GenerativeModelsCreate`: name, provider, provider_config required"),
    responses((status = 200, body = Public), (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc),
        (status = 409, body = ErrorDoc), (status = 422, body = ErrorDoc)),
    security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<axum::Json<Public>, Failure> {
    let obj = as_object(&body)?;
    let spec = Fields::read(obj, Mode::Create)?.apply(None);
    spec.check_paths(state.engine.model_roots())
        .map_err(|e| core_failure(e, obj))?;
    let m = easel_store::models::create(&state.store.db, &spec, false)
        .await
        .map_err(|e| core_failure(e, obj))?;
    Ok(axum::Json(Public::of(m)?))
}

/// `PUT /generation-models/{id}`: admin; only the fields present change.
#[utoipa::path(put, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    request_body(content = Object, description = "`GenerativeModelsUpdate`: any fields; null clears nullable ones"),
    responses((status = 200, body = Public), (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc),
        (status = 404, body = ErrorDoc), (status = 422, body = ErrorDoc)),
    security(("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    id: Result<Path<String>, PathRejection>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<axum::Json<Public>, Failure> {
    let m = find(&state, id).await?;
    let obj = as_object(&body)?;
    let spec = Fields::read(obj, Mode::Update)?.apply(Some(m.spec()));
    spec.check_paths(state.engine.model_roots())
        .map_err(|e| core_failure(e, obj))?;
    let m = easel_store::models::update(&state.store.db, &m.id, &spec)
        .await
        .map_err(|e| core_failure(e, obj))?;
    Ok(axum::Json(Public::of(m)?))
}

/// `DELETE /generation-models/{id}`: admin.
#[utoipa::path(delete, path = "/sartiq/api/v1/generation-models/{id}", tag = "sartiq", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "`{\"message\": \"Generation model deleted successfully\"}`"),
        (status = 401, body = ErrorDoc), (status = 403, body = ErrorDoc), (status = 404, body = ErrorDoc)),
    security(("bearer" = [])))]
async fn delete(
    State(state): State<AppState>,
    _: crate::auth::Admin,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, Failure> {
    let m = find(&state, id).await?;
    if !easel_store::models::delete(&state.store.db, &m.id).await? {
        return Err(Error::new(ErrorKind::NotFound, NOT_FOUND).into());
    }
    Ok(axum::Json(
        json!({"message": "Generation model deleted successfully"}),
    ))
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, Failure> {
    body.as_object().ok_or_else(|| {
        Failure::Invalid(vec![Detail::new(
            vec![json!("body")],
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
        .input(body)])
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Create,
    Update,
}

/// A body field as read: absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq)]
enum Got<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Got<T> {
    /// Set `slot` (a nullable field) when the body names the field.
    fn set_nullable(self, slot: &mut Option<T>) {
        match self {
            Got::Absent => {}
            Got::Null => *slot = None,
            Got::Value(v) => *slot = Some(v),
        }
    }
    /// Set `slot` (a non-nullable field) when the body gives a value.
    fn set(self, slot: &mut T) {
        if let Got::Value(v) = self {
            *slot = v;
        }
    }
}

/// The body's fields, type-checked the way pydantic checks `GenerativeModelsCreate` /
/// `GenerativeModelsUpdate`.
struct Fields {
    name: Got<String>,
    icon: Got<String>,
    provider: Got<String>,
    provider_config: Got<Value>,
    provider_capabilities: Got<Vec<String>>,
    fallback_provider: Got<String>,
    fallback_provider_config: Got<Value>,
    fallback_provider_capabilities: Got<Vec<String>>,
    tool_types: Got<Vec<String>>,
    recommended: Got<bool>,
    beta: Got<bool>,
    max_output_width: Got<u64>,
    max_output_height: Got<u64>,
    max_size_pixels: Got<u64>,
}

/// What a field may hold.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Object,
    Strings,
    Bool,
    /// An integer from 1 to the bound.
    Int(u64),
}

struct Reader<'a> {
    body: &'a Map<String, Value>,
    mode: Mode,
    errors: Vec<Detail>,
}

impl Reader<'_> {
    /// Read `field`. `required`/`nullable` are the Create schema's; in an update every
    /// field is optional and nullable.
    fn read(&mut self, field: &str, kind: Kind, required: bool, nullable: bool) -> Got<Value> {
        let loc = vec![json!("body"), json!(field)];
        let create = self.mode == Mode::Create;
        match self.body.get(field) {
            None => {
                if create && required {
                    self.errors.push(
                        Detail::new(loc, "missing", "Field required")
                            .input(&Value::Object(self.body.clone())),
                    );
                }
                Got::Absent
            }
            Some(Value::Null) if nullable || !create => Got::Null,
            Some(v) => match check(v, kind, &loc) {
                Ok(v) => Got::Value(v),
                Err(mut d) => {
                    self.errors.append(&mut d);
                    Got::Absent
                }
            },
        }
    }
}

/// Type-check one value; the details of what is wrong otherwise.
fn check(v: &Value, kind: Kind, loc: &[Value]) -> Result<Value, Vec<Detail>> {
    let err = |kind: &str, msg: &str| vec![Detail::new(loc.to_vec(), kind, msg).input(v)];
    match kind {
        Kind::Str if v.is_string() => Ok(v.clone()),
        Kind::Str => Err(err("string_type", "Input should be a valid string")),
        Kind::Object if v.is_object() => Ok(v.clone()),
        Kind::Object => Err(err("dict_type", "Input should be a valid dictionary")),
        Kind::Bool if v.is_boolean() => Ok(v.clone()),
        Kind::Bool => Err(err("bool_type", "Input should be a valid boolean")),
        Kind::Strings => {
            let Some(items) = v.as_array() else {
                return Err(err("list_type", "Input should be a valid list"));
            };
            let bad: Vec<Detail> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| !item.is_string())
                .map(|(i, item)| {
                    let mut loc = loc.to_vec();
                    loc.push(json!(i));
                    Detail::new(loc, "string_type", "Input should be a valid string").input(item)
                })
                .collect();
            if bad.is_empty() {
                Ok(v.clone())
            } else {
                Err(bad)
            }
        }
        Kind::Int(max) => {
            let n =
                match v {
                    Value::Number(n) if n.is_u64() || n.is_i64() => {
                        n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
                    }
                    Value::Number(n) => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.is_finite() => Some(f as i128),
                        _ => return Err(err(
                            "int_from_float",
                            "Input should be a valid integer, got a number with a fractional part",
                        )),
                    },
                    _ => None,
                };
            let Some(n) = n else {
                return Err(err("int_type", "Input should be a valid integer"));
            };
            if n < 1 {
                return Err(vec![Detail::new(
                    loc.to_vec(),
                    "greater_than_equal",
                    "Input should be greater than or equal to 1",
                )
                .input(v)
                .ctx(json!({"ge": 1}))]);
            }
            if n > max as i128 {
                return Err(vec![Detail::new(
                    loc.to_vec(),
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                )
                .input(v)
                .ctx(json!({"le": max}))]);
            }
            Ok(json!(n as u64))
        }
    }
}

impl Fields {
    fn read(body: &Map<String, Value>, mode: Mode) -> Result<Fields, Failure> {
        let mut r = Reader {
            body,
            mode,
            errors: Vec::new(),
        };
        let str_of = |g: Got<Value>| map(g, |v| v.as_str().unwrap_or_default().to_string());
        let strings_of = |g: Got<Value>| {
            map(g, |v| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
        };
        let int_of = |g: Got<Value>| map(g, |v| v.as_u64().unwrap_or_default());
        let side = Kind::Int(u32::MAX as u64);
        let f = Fields {
            name: str_of(r.read("name", Kind::Str, true, false)),
            icon: str_of(r.read("icon", Kind::Str, false, true)),
            provider: str_of(r.read("provider", Kind::Str, true, false)),
            provider_config: r.read("provider_config", Kind::Object, true, false),
            provider_capabilities: strings_of(r.read(
                "provider_capabilities",
                Kind::Strings,
                false,
                true,
            )),
            fallback_provider: str_of(r.read("fallback_provider", Kind::Str, false, true)),
            fallback_provider_config: r.read("fallback_provider_config", Kind::Object, false, true),
            fallback_provider_capabilities: strings_of(r.read(
                "fallback_provider_capabilities",
                Kind::Strings,
                false,
                true,
            )),
            tool_types: strings_of(r.read("tool_types", Kind::Strings, false, false)),
            recommended: map(r.read("recommended", Kind::Bool, false, false), |v| {
                v.as_bool().unwrap_or_default()
            }),
            beta: map(r.read("beta", Kind::Bool, false, false), |v| {
                v.as_bool().unwrap_or_default()
            }),
            max_output_width: int_of(r.read("max_output_width", side, false, true)),
            max_output_height: int_of(r.read("max_output_height", side, false, true)),
            max_size_pixels: int_of(r.read("max_size_pixels", Kind::Int(u64::MAX), false, true)),
        };
        if r.errors.is_empty() {
            Ok(f)
        } else {
            Err(Failure::Invalid(r.errors))
        }
    }

    /// The spec these fields make: over `base` (an update), or a new model's defaults.
    fn apply(self, base: Option<ModelSpec>) -> ModelSpec {
        let mut s = base.unwrap_or_else(|| ModelSpec {
            name: String::new(),
            aliases: vec![],
            family: easel_core::model::family::UNKNOWN.to_string(),
            tasks: vec![],
            source: None,
            provider: String::new(),
            provider_config: json!({}),
            provider_capabilities: None,
            fallback_provider: None,
            fallback_provider_config: None,
            fallback_provider_capabilities: None,
            defaults: Default::default(),
            limits: Default::default(),
            icon: None,
            tool_types: vec![],
            recommended: false,
            beta: false,
            tags: vec![],
        });
        self.name.set(&mut s.name);
        self.icon.set_nullable(&mut s.icon);
        self.provider.set(&mut s.provider);
        self.provider_config.set(&mut s.provider_config);
        self.provider_capabilities
            .set_nullable(&mut s.provider_capabilities);
        self.fallback_provider
            .set_nullable(&mut s.fallback_provider);
        self.fallback_provider_config
            .set_nullable(&mut s.fallback_provider_config);
        self.fallback_provider_capabilities
            .set_nullable(&mut s.fallback_provider_capabilities);
        self.tool_types.set(&mut s.tool_types);
        self.recommended.set(&mut s.recommended);
        self.beta.set(&mut s.beta);
        map(self.max_output_width, |v| v as u32).set_nullable(&mut s.limits.max_width);
        map(self.max_output_height, |v| v as u32).set_nullable(&mut s.limits.max_height);
        self.max_size_pixels.set_nullable(&mut s.limits.max_pixels);
        s
    }
}

fn map<T, U>(g: Got<T>, f: impl FnOnce(T) -> U) -> Got<U> {
    match g {
        Got::Absent => Got::Absent,
        Got::Null => Got::Null,
        Got::Value(v) => Got::Value(f(v)),
    }
}

/// The dialect's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, read, create, update, delete),
    components(schemas(Public, ListPublic, ErrorDoc)),
    tags((name = "sartiq", description = "The Sartiq generation-models registry at /sartiq/api/v1: public reads, \
        admin writes; a view of the one models registry. Errors are FastAPI's: 422 {\"detail\": [{loc, msg, type}]}, \
        else {\"detail\": \"...\"}."))
)]
pub struct ApiDoc;

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

    #[test]
    fn create_needs_name_provider_and_config_and_reports_every_error() {
        let body =
            json!({"icon": 3, "tool_types": ["A", 1], "max_output_width": 0.5, "beta": "yes"});
        let Err(Failure::Invalid(d)) = Fields::read(body.as_object().unwrap(), Mode::Create) else {
            panic!("invalid");
        };
        let got: Vec<(String, String)> = d
            .iter()
            .map(|d| (serde_json::to_string(&d.loc).unwrap(), d.kind.clone()))
            .collect();
        let want = [
            (r#"["body","name"]"#, "missing"),
            (r#"["body","icon"]"#, "string_type"),
            (r#"["body","provider"]"#, "missing"),
            (r#"["body","provider_config"]"#, "missing"),
            (r#"["body","tool_types",1]"#, "string_type"),
            (r#"["body","beta"]"#, "bool_type"),
            (r#"["body","max_output_width"]"#, "int_from_float"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())),
            "{d:?}"
        );
    }

    #[test]
    fn update_null_clears_nullable_fields_and_keeps_the_others() {
        let base = Fields::read(
            json!({"name": "a", "provider": "local", "provider_config": {"k": 1},
                "icon": "i", "max_output_width": 64, "tool_types": ["T"], "beta": true})
            .as_object()
            .unwrap(),
            Mode::Create,
        )
        .ok()
        .unwrap()
        .apply(None);
        assert_eq!(base.limits.max_width, Some(64));
        let up = Fields::read(
            json!({"name": null, "icon": null, "max_output_width": null, "tool_types": null,
                "beta": null, "recommended": true, "max_size_pixels": 4096.0})
            .as_object()
            .unwrap(),
            Mode::Update,
        )
        .ok()
        .unwrap()
        .apply(Some(base.clone()));
        assert_eq!(up.name, "a");
        assert_eq!(up.icon, None);
        assert_eq!(up.limits.max_width, None);
        assert_eq!(up.limits.max_pixels, Some(4096));
        assert_eq!(up.tool_types, ["T"]);
        assert!(up.beta && up.recommended);
        assert_eq!(up.provider_config, json!({"k": 1}));
    }
}
