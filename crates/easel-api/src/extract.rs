//! Extractors whose rejections are core errors, so malformed bodies and queries get the
//! dialect's error shape (400 for bad JSON, 413 over the body limit, 422 for wrong fields):
//! each rejects with the error type of the router's state (`dialect::ApiState`).

use axum::extract::multipart::MultipartError;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use easel_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;

use crate::dialect::ApiState;

/// The body-size error every extractor reports past the limit.
pub fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

pub fn bytes_rejection(r: &BytesRejection, limit: usize) -> Error {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        Error::bad_request(format!(
            "could not read the request body: {}",
            r.body_text()
        ))
    }
}

/// JSON body; unknown and wrong fields are 422 with the field named.
pub struct Json<T>(pub T);

impl<S: ApiState, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = S::Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(usize::MAX);
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(JsonRejection::BytesRejection(r)) => return Err(bytes_rejection(&r, limit).into()),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(Error::bad_request("expected Content-Type: application/json").into())
            }
            Err(e) => {
                return Err(Error::bad_request(format!("malformed JSON: {}", e.body_text())).into())
            }
        };
        Ok(Json(easel_core::error::from_json(value)?))
    }
}

/// Query string; bad parameters are 422 with the parameter named.
pub struct Query<T>(pub T);

impl<S: ApiState, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let msg = e.body_text();
                // `Failed to deserialize query string: <param>: <why>` names the parameter
                // by its path; a missing one is `missing field `<param>``.
                let detail = msg
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&msg);
                let by_path = detail.split_once(": ").filter(|(p, _)| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                });
                let (field, msg) = match by_path {
                    Some((p, why)) => (p.to_string(), why.to_string()),
                    None => (
                        msg.split_once("field `")
                            .and_then(|(_, r)| r.split('`').next())
                            .unwrap_or("query")
                            .to_string(),
                        msg.clone(),
                    ),
                };
                Err(Error::invalid(field, msg).into())
            }
            Err(e) => Err(Error::bad_request(e.body_text()).into()),
        }
    }
}

/// One part of a `multipart/form-data` body.
pub struct FormPart {
    pub name: String,
    /// Set for file parts.
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: bytes::Bytes,
}

impl FormPart {
    /// The part as text (form fields), or an error naming it.
    pub fn text(&self) -> Result<&str, Error> {
        let text = std::str::from_utf8(&self.data)
            .map_err(|_| Error::invalid(self.name.clone(), "must be UTF-8 text"))?;
        if text.contains('\0') {
            return Err(Error::invalid(
                self.name.clone(),
                easel_core::error::NUL_MESSAGE,
            ));
        }
        Ok(text)
    }
}

/// A `multipart/form-data` body read whole (within the body limit): its parts, in order.
/// Malformed bodies are 400, bodies over the limit 413.
pub struct Form(pub Vec<FormPart>);

impl<S: ApiState> FromRequest<S> for Form {
    type Rejection = S::Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(usize::MAX);
        let mut mp = Multipart::from_request(req, state).await.map_err(|e| {
            Error::bad_request(format!(
                "expected a multipart/form-data body: {}",
                e.body_text()
            ))
        })?;
        let malformed = |e: MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                Error::bad_request(format!("malformed multipart body: {}", e.body_text()))
            }
        };
        let mut parts = Vec::new();
        while let Some(field) = mp.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let data = field.bytes().await.map_err(malformed)?;
            parts.push(FormPart {
                name,
                file_name,
                content_type,
                data,
            });
        }
        Ok(Form(parts))
    }
}

/// The configured body limit, put in request extensions so extractors can quote it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Middleware: refuse a request whose path or query string, percent-decoded, is not text
/// that can be stored or looked up — a NUL character (PostgreSQL's text cannot hold one) or
/// bytes that are not UTF-8 — with a 422 naming the query parameter (or `path`), in the error
/// shape `E` of the router it is layered on. Ids, names and cursors then never reach the
/// database malformed, and every backend answers the same.
pub async fn valid_text<E: From<Error> + IntoResponse>(req: Request, next: Next) -> Response {
    match check_uri(req.uri()) {
        Ok(()) => next.run(req).await,
        Err(e) => E::from(e).into_response(),
    }
}

/// The check of `valid_text`.
pub fn check_uri(uri: &Uri) -> Result<(), Error> {
    /// Percent-decoded text, if it is UTF-8 without a NUL (a `+` is a plain character here).
    fn text(raw: &str) -> Option<String> {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        (!decoded.contains('\0')).then(|| decoded.into_owned())
    }
    // A URI holds visible ASCII only (`http::Uri` checks): without a `%` there is nothing
    // to decode, and nothing to refuse.
    if !uri.path().contains('%') && !uri.query().is_some_and(|q| q.contains('%')) {
        return Ok(());
    }
    let why = "must be UTF-8 text without NUL characters";
    if text(uri.path()).is_none() {
        return Err(Error::invalid("path", why));
    }
    for pair in uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = text(k) else {
            return Err(Error::invalid("query", why));
        };
        if text(v).is_none() {
            return Err(Error::invalid(name.replace('+', " "), why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn paths_and_queries_must_be_text_without_nul() {
        let check = |u: &str| check_uri(&u.parse::<Uri>().unwrap()).map_err(|e| e.field);
        assert_eq!(check("/v1/jobs/job_1?wait=3&after=a%20b+c"), Ok(()));
        assert_eq!(check("/v1/jobs/%E2%9C%93"), Ok(()));
        assert_eq!(check("/v1/jobs/100%"), Ok(()), "a lone % is itself");
        assert_eq!(check("/v1/jobs/job%00"), Err(Some("path".into())));
        assert_eq!(check("/v1/jobs/%FF"), Err(Some("path".into())));
        assert_eq!(check("/v1/jobs?cursor=a%00"), Err(Some("cursor".into())));
        assert_eq!(check("/v1/jobs?x=1&name=%C3"), Err(Some("name".into())));
        assert_eq!(check("/v1/jobs?a%00=1"), Err(Some("query".into())));
    }
}
