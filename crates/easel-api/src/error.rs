//! Native API errors: `{"error": {"type", "message", "field"}}` with the status of the core
//! error's kind, and `Retry-After` for 429.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use easel_core::{Error, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// A core error rendered in the native shape.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable kind: `invalid_request`, `not_found`, `unauthorized`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// Dotted path of the offending field (`input.factor`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Headers every dialect adds for an error (`Retry-After`, `WWW-Authenticate`).
pub fn error_headers(e: &Error, resp: &mut Response) {
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if e.kind == ErrorKind::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                kind: e.kind.as_str().to_string(),
                message: e.message.clone(),
                field: e.field.clone(),
            },
        };
        let mut resp = (status_of(e.kind), axum::Json(body)).into_response();
        error_headers(&e, &mut resp);
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
