//! The one error type that crosses crate boundaries up to the HTTP layer. Each dialect renders
//! it in its own wire shape; the kind decides the status code, `field` names the offending input.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request (bad JSON, wrong content type): 400.
    BadRequest,
    /// Missing or invalid credentials: 401.
    Unauthorized,
    /// Authenticated but not allowed: 403.
    Forbidden,
    /// Not found, or owned by someone else: 404.
    NotFound,
    /// The path exists but not with this HTTP method: 405.
    MethodNotAllowed,
    /// State conflict (e.g. cancel of a finished job): 409.
    Conflict,
    /// Body or image too large: 413.
    PayloadTooLarge,
    /// Well-formed but invalid input: 422.
    Invalid,
    /// Rate limit or queue cap: 429.
    RateLimited,
    /// The server does not implement this request (a dialect endpoint Easel cannot serve): 501.
    NotImplemented,
    /// A dependency (database, blob store) is unavailable: 503.
    Unavailable,
    /// A synchronous request's work did not finish in time (it may still finish): 504.
    Timeout,
    /// A bug or an unexpected failure: 500.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Invalid => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
        }
    }

    /// Stable machine-readable name, used as the `type` of native API errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Invalid => "invalid_request",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Dotted path of the offending input field (`input.factor`), when there is one.
    pub field: Option<String>,
    /// Seconds the client should wait (rate limits).
    pub retry_after: Option<u64>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Invalid, message).with_field(field)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(what: &str) -> Self {
        Error::new(ErrorKind::NotFound, format!("{what} not found"))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// Prefix the field path (`factor` → `input.factor`).
    pub fn under(mut self, parent: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(f) if !f.is_empty() => format!("{parent}.{f}"),
            _ => parent.to_string(),
        });
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}", field, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Deserialize `value`, naming the failing field by its path (`palette[1]`, `webhook.url`;
/// a missing field by its own name). Errors are `Invalid`.
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    if let Some(field) = nul_in(&value) {
        return Err(Error::invalid(field, NUL_MESSAGE));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = inner.split(" at line").next().unwrap_or(&inner).to_string();
        // A missing field is reported at its parent; an unknown one is already in the path.
        let missing = message
            .split_once("missing field `")
            .and_then(|(_, r)| r.split('`').next())
            .map(str::to_string);
        let field = match (missing, path.as_str()) {
            (Some(m), ".") => Some(m),
            (Some(m), p) => Some(format!("{p}.{m}")),
            (None, ".") => None,
            (None, p) => Some(p.to_string()),
        };
        let err = Error::new(ErrorKind::Invalid, message);
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    })
}

/// What a request is told when text holds a NUL character.
pub const NUL_MESSAGE: &str = "must not contain NUL characters";

/// The path (`input.prompt`, `loras[0].model`) of the first string or key in `v` that
/// holds a NUL character: no text Easel stores or looks up may hold one (PostgreSQL's text
/// cannot), so requests are refused before they reach the database.
pub fn nul_in(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &mut String) -> bool {
        let len = path.len();
        let found = match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push_str(&format!("[{i}]"));
                let hit = walk(item, path);
                if !hit {
                    path.truncate(len);
                }
                hit
            }),
            serde_json::Value::Object(map) => map.iter().any(|(k, item)| {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let hit = k.contains('\0') || walk(item, path);
                if !hit {
                    path.truncate(len);
                }
                hit
            }),
            _ => false,
        };
        found
    }
    let mut path = String::new();
    walk(v, &mut path).then(|| if path.is_empty() { "body".into() } else { path })
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let v = serde_json::json!({"a": "ok", "b": [1, {"c": "x\u{0}y"}]});
        assert_eq!(nul_in(&v).as_deref(), Some("b[1].c"));
        assert_eq!(
            nul_in(&serde_json::json!({"k\u{0}": 1})).as_deref(),
            Some("k\u{0}")
        );
        assert_eq!(nul_in(&serde_json::json!("\u{0}")).as_deref(), Some("body"));
        assert_eq!(
            nul_in(&serde_json::json!({"a": ["x", "y"], "b": {"c": 1}})),
            None
        );
        let e = from_json::<serde_json::Value>(v).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("b[1].c"))
        );
    }
}
