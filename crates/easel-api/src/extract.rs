//! Extractors whose rejections are core errors, so malformed bodies and queries get the
//! dialect's error shape (400 for bad JSON, 413 over the body limit, 422 for wrong fields).

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use easel_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

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
        easel_core::error::from_json(value)
            .map(Json)
            .map_err(ApiError)
    }
}

/// Query string; bad parameters are 422 with the parameter named.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let msg = e.body_text();
                let field = msg
                    .split_once("field `")
                    .and_then(|(_, r)| r.split('`').next())
                    .unwrap_or("query")
                    .to_string();
                Err(Error::invalid(field, msg).into())
            }
            Err(e) => Err(Error::bad_request(e.body_text()).into()),
        }
    }
}

/// The configured body limit, put in request extensions so extractors can quote it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);
