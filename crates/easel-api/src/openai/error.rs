//! OpenAI's error shape (`{"error": {message, type, param, code}}`) for core errors, with the
//! wire name of the field at fault.

use super::*;

/// A core error in OpenAI's shape, with an optional code of its own (a failed job's code)
/// and whether the SDKs may retry the request.
#[derive(Debug)]
pub struct OpenAiError {
    pub error: Error,
    pub code: Option<Box<str>>,
    pub retry: bool,
    /// The wire field, where the core field path does not say it (`input` of
    /// `/embeddings` is a wire field, not the core's task input).
    pub param: Option<Box<str>>,
}

impl From<Error> for OpenAiError {
    fn from(error: Error) -> Self {
        OpenAiError {
            error,
            code: None,
            retry: true,
            param: None,
        }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        e.0.into()
    }
}

impl OpenAiError {
    pub(super) fn param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }
    pub(super) fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into().into_boxed_str());
        self
    }
    /// The work was done (or is still running): a retry would submit it again.
    pub(super) fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

/// `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorBody)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiErrorObject)]
pub struct ErrorObject {
    /// Starts with the field (`n: must be between 1 and 8`) when there is one.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error`, `not_implemented_error`, `timeout_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, by its wire name.
    pub param: Option<String>,
    /// `invalid_value`, `missing_required_parameter`, `invalid_api_key`, `model_not_found`,
    /// `rate_limit_exceeded`, `timeout`, a failed job's code, …
    pub code: String,
}

/// A core field path by its name on this dialect's wire: core input fields (`input.…`) are
/// renamed back; wire fields are already named so.
pub(super) fn wire_field(field: &str) -> Option<String> {
    let Some(f) = field.strip_prefix("input.") else {
        return match field {
            "" | "input" => None,
            f => Some(f.to_string()),
        };
    };
    if f == "width" || f == "height" {
        return Some("size".into());
    }
    let wire = FIELDS.iter().find(|(_, core)| *core == f).map(|(w, _)| *w);
    Some(wire.unwrap_or(f).to_string())
}

pub(super) fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::NotImplemented => "not_implemented_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Internal | ErrorKind::Unavailable => "server_error",
        ErrorKind::BadRequest
        | ErrorKind::Invalid
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge => "invalid_request_error",
    }
}

impl OpenAiError {
    pub(super) fn body(&self) -> (StatusCode, ErrorBody) {
        let e = &self.error;
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            k => crate::error::status_of(k),
        };
        let param = self
            .param
            .as_deref()
            .map(str::to_string)
            .or_else(|| e.field.as_deref().and_then(wire_field));
        let message = match &param {
            Some(p) => format!("{p}: {}", e.message),
            None => e.message.clone(),
        };
        let code = self.code.as_deref().map(str::to_string).unwrap_or_else(|| {
            match e.kind {
                ErrorKind::Invalid if e.message.starts_with("missing field") => {
                    "missing_required_parameter"
                }
                ErrorKind::Invalid => "invalid_value",
                ErrorKind::Unauthorized => "invalid_api_key",
                ErrorKind::RateLimited => "rate_limit_exceeded",
                k => k.as_str(),
            }
            .to_string()
        });
        let body = ErrorBody {
            error: ErrorObject {
                message,
                kind: error_type(e.kind).to_string(),
                param,
                code,
            },
        };
        (status, body)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut resp = (status, axum::Json(body)).into_response();
        error_headers(&self.error, &mut resp);
        if !self.retry {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}
