//! The spec's `ApiError` shape (GraphQL-style `{error, path, extensions.code, locations}`) for
//! core errors.

use super::*;

/// A core error in the spec's `ApiError` shape, with an optional code of its own.
#[derive(Debug)]
pub struct LeonardoError {
    pub error: Error,
    pub code: Option<&'static str>,
}

impl From<Error> for LeonardoError {
    fn from(error: Error) -> Self {
        LeonardoError { error, code: None }
    }
}

impl From<ApiError> for LeonardoError {
    fn from(e: ApiError) -> Self {
        e.0.into()
    }
}

/// A feature of the spec this server does not run: 400 `not-supported` on `field`.
pub(super) fn unsupported(field: &str, message: impl Into<String>) -> LeonardoError {
    LeonardoError {
        error: Error::invalid(field, message),
        code: Some("not-supported"),
    }
}

/// The spec's `ApiError`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoApiError)]
pub struct ApiErrorBody {
    /// Starts with the field (`width: must be a multiple of 8`) when there is one.
    pub message: String,
    /// The offending field's wire path (`["elements", "0", "akUUID"]`); empty when none.
    pub path: Vec<String>,
    /// Line and column of malformed JSON; empty otherwise.
    pub locations: Vec<ErrorLocation>,
    pub extensions: ErrorExtensions,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoErrorLocation)]
pub struct ErrorLocation {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeonardoErrorExtensions)]
pub struct ErrorExtensions {
    /// `validation-failed`, `not-supported`, `parse-failed`, `unauthorized`,
    /// `access-denied`, `not-found`, `method-not-allowed`, `conflict`, `payload-too-large`,
    /// `rate-limited`, `timeout`, `unavailable`, `unexpected`.
    pub code: String,
}

pub(super) fn code_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "validation-failed",
        ErrorKind::BadRequest => "parse-failed",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "access-denied",
        ErrorKind::NotFound => "not-found",
        ErrorKind::MethodNotAllowed => "method-not-allowed",
        ErrorKind::Conflict => "conflict",
        ErrorKind::PayloadTooLarge => "payload-too-large",
        ErrorKind::RateLimited => "rate-limited",
        ErrorKind::NotImplemented => "not-supported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "unexpected",
    }
}

/// `elements[0].akUUID` → `["elements", "0", "akUUID"]`.
pub(super) fn split_path(field: &str) -> Vec<String> {
    field
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// `… at line 1 column 7` in a JSON parser's message.
pub(super) fn json_location(message: &str) -> Option<ErrorLocation> {
    let (_, rest) = message.rsplit_once("line ")?;
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(ErrorLocation {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

impl LeonardoError {
    pub(super) fn body(&self) -> (StatusCode, ApiErrorBody) {
        let e = &self.error;
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            k => status_of(k),
        };
        let field = e.field.as_deref().filter(|f| !f.is_empty());
        let mut message = e.message.clone();
        // serde lists every field it knows after an unknown one: too long to be useful.
        if message.starts_with("unknown field") {
            if let Some((head, _)) = message.split_once(", expected") {
                message = format!(
                    "{head}: not a field of this request (see {BASE}/generations in /openapi.json)"
                );
            }
        }
        let message = match field {
            Some(f) => format!("{f}: {message}"),
            None => message,
        };
        let locations = match e.kind {
            ErrorKind::BadRequest => json_location(&e.message).into_iter().collect(),
            _ => vec![],
        };
        let body = ApiErrorBody {
            message,
            path: field.map(split_path).unwrap_or_default(),
            locations,
            extensions: ErrorExtensions {
                code: self.code.unwrap_or_else(|| code_of(e.kind)).to_string(),
            },
        };
        (status, body)
    }
}

impl IntoResponse for LeonardoError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut resp = (status, axum::Json(body)).into_response();
        error_headers(&self.error, &mut resp);
        resp
    }
}
