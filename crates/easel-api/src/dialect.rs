//! What a dialect module plugs into. A dialect chooses its error shape through the state of
//! its router: the shared extractors (`auth::Auth`, `auth::Admin`, `extract::Json`,
//! `extract::Query`, `extract::Form`) reject with the error type of the router's state, so a
//! missing key, a malformed body or a wrong field comes back in the dialect's own shape with
//! no second set of extractors. The native API's state is `AppState` itself (errors:
//! `ApiError`); a dialect's is `DialectState<D>`, whose errors are `D::Error`.
//!
//! ```ignore
//! struct OpenAi;
//! impl Dialect for OpenAi { type Error = OpenAiError; }  // From<core Error> + IntoResponse
//! let routes: Router<DialectState<OpenAi>> = Router::new().route("/models", get(list));
//! router.nest("/openai/v1", dialect::mount(routes, &state));
//! ```
//!
//! Handlers still extract `State<AppState>` (it converts from every `DialectState`).

use std::marker::PhantomData;

use axum::extract::{FromRef, OriginalUri};
use axum::http::Method;
use axum::response::IntoResponse;
use axum::Router;
use easel_core::{Error, ErrorKind};

use crate::error::ApiError;
use crate::AppState;

/// A webhook body a dialect sends instead of Easel's envelope: the job as its own object.
pub type WebhookBody = fn(&AppState, &easel_core::Job) -> serde_json::Value;

/// The dialects' webhook bodies by the name jobs record (`Webhook::format`).
pub const WEBHOOK_FORMATS: &[(&str, WebhookBody)] = &[(
    crate::replicate::WEBHOOK_FORMAT,
    crate::replicate::webhook_body,
)];

/// The body of a webhook format; `None` for a name no dialect has (Easel's envelope is sent).
pub fn webhook_format(name: &str) -> Option<WebhookBody> {
    WEBHOOK_FORMATS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, body)| *body)
}

/// A client dialect: its error type renders a core error in the dialect's wire shape.
pub trait Dialect: Send + Sync + 'static {
    type Error: From<Error> + IntoResponse + Send + 'static;
}

/// The state of a dialect's router: the app's state, typed by the dialect.
pub struct DialectState<D> {
    pub app: AppState,
    _dialect: PhantomData<fn() -> D>,
}

impl<D> DialectState<D> {
    pub fn new(app: AppState) -> Self {
        DialectState {
            app,
            _dialect: PhantomData,
        }
    }
}

impl<D> Clone for DialectState<D> {
    fn clone(&self) -> Self {
        DialectState::new(self.app.clone())
    }
}

impl<D> FromRef<DialectState<D>> for AppState {
    fn from_ref(s: &DialectState<D>) -> AppState {
        s.app.clone()
    }
}

/// A router state the shared extractors work with, and the error they reject with.
pub trait ApiState: Clone + Send + Sync + 'static {
    type Error: From<Error> + IntoResponse + Send + 'static;
    fn app(&self) -> &AppState;
}

impl ApiState for AppState {
    type Error = ApiError;
    fn app(&self) -> &AppState {
        self
    }
}

impl<D: Dialect> ApiState for DialectState<D> {
    type Error = D::Error;
    fn app(&self) -> &AppState {
        &self.app
    }
}

/// A dialect's routes, ready to `nest` under its base URL: unknown paths (404) and known
/// paths with another method (405) answer in the dialect's shape too, and so does a path or
/// query that is not storable text (`extract::valid_text`).
pub fn mount<D: Dialect>(routes: Router<DialectState<D>>, app: &AppState) -> Router<AppState> {
    routes
        .fallback(|method: Method, OriginalUri(uri): OriginalUri| async move {
            D::Error::from(Error::not_found(&format!("route {method} {}", uri.path())))
        })
        .method_not_allowed_fallback(|method: Method, OriginalUri(uri): OriginalUri| async move {
            D::Error::from(Error::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {}", uri.path()),
            ))
        })
        .layer(axum::middleware::from_fn(
            crate::extract::valid_text::<D::Error>,
        ))
        .with_state(DialectState::new(app.clone()))
}
