//! FastAPI's error shapes, for the dialects whose servers are FastAPI apps (the Sartiq
//! registry; Replicate/Cog predictions). One implementation, parameterised by the dialect's
//! names of the core's fields ([`WireNames`]):
//!
//! * validation: **422** `{"detail": [{"loc": ["body", field, …], "msg", "type", "input"?,
//!   "ctx"?}]}` (pydantic's `ValidationError` list); a core `Invalid` error becomes one
//!   `value_error` entry at the wire name of its field; a body that is not JSON is
//!   `json_invalid` at `["body"]`;
//! * everything else: the core error's status with `{"detail": "<message>"}`, and the usual
//!   headers (`WWW-Authenticate`, `Retry-After`).

use std::convert::Infallible;
use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use easel_core::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{error_headers, status_of};

/// A dialect's names for core field paths: `Some(wire)` where it names a field otherwise
/// (`limits.max_width` → `max_output_width`); the path as is otherwise. Matched on whole
/// paths (`input.steps`), before they are split into a location.
pub trait WireNames: 'static {
    fn wire(core: &str) -> Option<String>;
}

/// A handler's failure in FastAPI's shapes: a core error, or validation details.
pub enum Failure<N> {
    Error(Error),
    Invalid(Vec<Detail>),
    #[doc(hidden)]
    Names(Infallible, PhantomData<fn() -> N>),
}

impl<N> std::fmt::Debug for Failure<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Failure::Invalid(d) => f.debug_tuple("Invalid").field(d).finish(),
            Failure::Names(never, _) => match *never {},
        }
    }
}

impl<N> From<Error> for Failure<N> {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl<N: WireNames> IntoResponse for Failure<N> {
    fn into_response(self) -> Response {
        let e = match self {
            Failure::Invalid(d) => return invalid(d),
            Failure::Error(e) => e,
            Failure::Names(never, _) => match never {},
        };
        let mut resp = match e.kind {
            ErrorKind::Invalid => {
                let loc = match &e.field {
                    Some(f) => body_loc::<N>(f),
                    None => vec![json!("body")],
                };
                invalid(vec![Detail::new(loc, "value_error", e.message.clone())])
            }
            // What FastAPI says of a body it cannot read as JSON.
            ErrorKind::BadRequest => invalid(vec![Detail::new(
                vec![json!("body")],
                "json_invalid",
                "JSON decode error",
            )
            .ctx(json!({"error": e.message}))]),
            kind => (status_of(kind), axum::Json(json!({"detail": e.message}))).into_response(),
        };
        error_headers(&e, &mut resp);
        resp
    }
}

fn invalid(details: Vec<Detail>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": details})),
    )
        .into_response()
}

/// One entry of FastAPI's `detail` list (pydantic's `ValidationError`).
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl Detail {
    pub fn new(loc: Vec<Value>, kind: &str, msg: impl Into<String>) -> Detail {
        Detail {
            loc,
            msg: msg.into(),
            kind: kind.to_string(),
            input: None,
            ctx: None,
        }
    }
    pub fn input(mut self, v: &Value) -> Detail {
        self.input = Some(v.clone());
        self
    }
    pub fn ctx(mut self, v: Value) -> Detail {
        self.ctx = Some(v);
        self
    }
}

/// A core field path as a FastAPI body location under the dialect's names:
/// `tool_types[1]` → `["body", "tool_types", 1]`.
pub fn body_loc<N: WireNames>(field: &str) -> Vec<Value> {
    let renamed = N::wire(field);
    let field = renamed.as_deref().unwrap_or(field);
    let mut loc = vec![json!("body")];
    for part in field.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            loc.push(json!(&rest[..i]));
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let Some((n, after)) = r.split_once(']') else {
                    break;
                };
                loc.push(n.parse::<u64>().map(Value::from).unwrap_or(json!(n)));
                rest = after;
            }
        } else {
            loc.push(json!(rest));
        }
    }
    loc
}

/// A core error about a request body, with the offending value of `body` as `input`.
pub fn core_failure<N: WireNames>(e: Error, body: &Map<String, Value>) -> Failure<N> {
    if e.kind != ErrorKind::Invalid {
        return Failure::Error(e);
    }
    let loc = body_loc::<N>(e.field.as_deref().unwrap_or(""));
    let mut d = Detail::new(loc.clone(), "value_error", e.message);
    let mut at = loc
        .get(1)
        .and_then(|k| k.as_str())
        .and_then(|k| body.get(k));
    for step in loc.iter().skip(2) {
        at = at.and_then(|v| match step {
            Value::Number(n) => v.get(n.as_u64().unwrap_or(u64::MAX) as usize),
            Value::String(s) => v.get(s),
            _ => None,
        });
    }
    if let Some(v) = at {
        d = d.input(v);
    }
    Failure::Invalid(vec![d])
}
