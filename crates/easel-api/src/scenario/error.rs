//! Scenario's error shapes: `{apiError, createdAt, error, id, infos, updatedAt}` (the spec's
//! `InternalServerErrorResponse`, used for every status), and `{reason, name, details}` for
//! 429. The field at fault is named in `infos.field` by its wire name (`wire_field`).

use super::*;

/// A core error in Scenario's shape, with the status when it is not the kind's
/// (`status_of`).
#[derive(Debug)]
pub struct Failure(pub Error, pub Option<StatusCode>);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e, None)
    }
}

impl Failure {
    /// A canvas's lock held by another (a conflict): 409, as Scenario answers it, where
    /// other conflicts are 400.
    pub(super) fn locked(e: Error) -> Failure {
        let status = (e.kind == ErrorKind::Conflict).then_some(StatusCode::CONFLICT);
        Failure(e, status)
    }
}

/// `apiError` of each status: Scenario names its errors in words (`"Bad Request"` style
/// codes are its gateway's); these are Easel's, stable and documented.
fn api_error(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest | ErrorKind::Invalid => "badRequest",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::NotFound => "notFound",
        ErrorKind::MethodNotAllowed => "methodNotAllowed",
        ErrorKind::Conflict => "conflict",
        ErrorKind::PayloadTooLarge => "payloadTooLarge",
        ErrorKind::RateLimited => "tooManyRequests",
        ErrorKind::NotImplemented => "notImplemented",
        ErrorKind::Unavailable => "serviceUnavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "internalError",
    }
}

/// The HTTP status: Scenario answers invalid input with 400 (never 422) and a state
/// conflict (cancel of a finished job) with 400 too.
pub(super) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid | ErrorKind::Conflict => StatusCode::BAD_REQUEST,
        k => StatusCode::from_u16(k.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `{apiError, createdAt, error, id, infos, updatedAt}`.
#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioErrorBody)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub api_error: String,
    pub created_at: String,
    pub error: String,
    /// A fresh id for this error (`err_…`), for support requests.
    pub id: String,
    /// `{field}` where one field is at fault (its wire name); `{}` otherwise.
    #[schema(value_type = Object)]
    pub infos: Value,
    pub updated_at: String,
}

/// `{reason, name, details}` (429).
#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioTooManyRequests)]
pub struct TooManyBody {
    pub reason: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = self.1.unwrap_or_else(|| status_of(e.kind));
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e.message, "scenario request failed");
        }
        let mut resp = if e.kind == ErrorKind::RateLimited {
            let body = TooManyBody {
                reason: e.message.clone(),
                name: "TooManyRequestsError".into(),
                details: json!({"retryAfter": e.retry_after}),
            };
            (status, axum::Json(body)).into_response()
        } else {
            let now = ids::time(&easel_core::time::now());
            let infos = match e.field.as_deref() {
                Some(f) => json!({"field": wire_field(f)}),
                None => json!({}),
            };
            let message = match e.field.as_deref() {
                Some(f) if !e.message.starts_with(&wire_field(f)) => {
                    format!("{}: {}", wire_field(f), e.message)
                }
                _ => e.message.clone(),
            };
            let body = ErrorBody {
                api_error: api_error(e.kind).into(),
                created_at: now.clone(),
                error: message,
                id: easel_core::id::new("err"),
                infos,
                updated_at: now,
            };
            (status, axum::Json(body)).into_response()
        };
        let headers = resp.headers_mut();
        if let Some(s) = e.retry_after {
            headers.insert(header::RETRY_AFTER, s.into());
        }
        if e.kind == ErrorKind::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"scenario\", Bearer"),
            );
        }
        resp
    }
}

/// The wire name of a core field path: the task input's fields through `FIELDS` (and the
/// LoRAs as `concepts`), the job's model as `modelId`; other paths are already wire names.
pub(super) fn wire_field(core: &str) -> String {
    if core == "model" {
        return "modelId".into();
    }
    let Some(rest) = core.strip_prefix("input.") else {
        return core.to_string();
    };
    if let Some(l) = rest.strip_prefix("loras") {
        return format!("concepts{}", l.replace(".model", ".modelId"));
    }
    by_table(rest, FIELDS).unwrap_or_else(|| rest.to_string())
}

/// The same error, naming the field by the table of (wire, core) names where it has it.
pub(super) fn renamed(e: Error, table: &[(&str, &str)]) -> Error {
    match e.field.as_deref().and_then(|f| by_table(f, table)) {
        Some(w) => e.with_field(w),
        None => e,
    }
}

/// A path inside the task input (`count`, `loras[0].scale`) by a table of (wire, core)
/// names: its first segment renamed, the rest kept; `None` when the table lacks it.
pub(super) fn by_table(rest: &str, table: &[(&str, &str)]) -> Option<String> {
    let (head, tail) = rest.split_at(rest.find(['.', '[']).unwrap_or(rest.len()));
    let (wire, _) = table.iter().find(|(_, core)| *core == head)?;
    Some(format!("{wire}{tail}"))
}
