//! The web UI: one page (`static/index.html`), its script and its style sheet, embedded in
//! the binary and served at `/` and `/ui/…`. No Node toolchain builds them and nothing is
//! loaded from elsewhere (the page works offline).
//!
//! The page is a client of the native API and nothing else: every screen is a `/v1` call
//! the user's key could make with curl, so the UI has no privileges and no routes of its
//! own. The key is kept in the tab's `sessionStorage` and sent as `Authorization: Bearer`;
//! there are no cookies, so there is no ambient credential a cross-site request could ride
//! on (no CSRF surface), and the key never appears in a URL. Job events are read with
//! `fetch` streaming (an `EventSource` cannot send the header). Images load from the signed
//! URLs the API returns.
//!
//! Every user-supplied string is put in the page as text (`textContent`), never as HTML;
//! the Content-Security-Policy below allows only this server's own script and styles
//! (no inline script), so an injected tag could not run even if one got through.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::AppState;

const INDEX: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/app.js");
const STYLE: &str = include_str!("static/app.css");
const ICON: &str = include_str!("static/icon.svg");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

/// The page's policy: this server's script, styles and API; images also from the public
/// URL (signed asset URLs) and `data:`/`blob:` (previews, the mask being painted).
pub fn content_security_policy(public_url: &str) -> String {
    let origin = origin_of(public_url);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {origin}; \
         connect-src 'self' {origin}; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of a URL (what a CSP source names).
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

async fn index(State(state): State<AppState>) -> Response {
    let csp = content_security_policy(&state.public_url);
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    secure_headers(h);
    r
}

fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn file(Path(name): Path<String>) -> Response {
    let (body, ctype) = match name.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    secure_headers(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_public_origin_and_no_inline_script() {
        let p = content_security_policy("https://img.example.com/base/");
        assert!(
            p.contains("img-src 'self' data: blob: https://img.example.com;"),
            "{p}"
        );
        assert!(p.contains("script-src 'self';"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
    }

    #[test]
    fn the_script_never_writes_html_from_strings() {
        // User strings reach the page only through `textContent` (the `h` helper).
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "app.js uses {banned}");
        }
        assert!(
            !INDEX.contains("<script>"),
            "no inline script in index.html"
        );
    }
}
