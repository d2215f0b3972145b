//! Chat, completions, audio, video, music and variations relayed to the model's OpenAI-
//! compatible upstream.

use super::*;

/// What the relayed endpoints send upstream.
pub(super) enum Relay {
    Json(Value),
    Form(Vec<crate::extract::FormPart>),
}

/// Chat, completions, audio, video, music and image variations: relayed to the upstream
/// OpenAI-compatible provider of the requested `model` (a registry model whose `provider`,
/// or else `fallback_provider`, is `openai`; `model` is rewritten to the config's `model`),
/// the answer streamed back as it comes (`stream: true` server-sent events included). The
/// fallback is tried when the first cannot be reached or answers 429 or 5xx. Without such a
/// model: 501, naming what is missing.
pub(super) async fn upstream(
    State(state): State<AppState>,
    _: Auth,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    req: Request,
) -> Result<Response> {
    let path = uri.path().to_string();
    let what = path.strip_prefix(BASE).unwrap_or(&path).to_string();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (name, relay) = if multipart {
        let Form(parts) = Form::from_request(req, &state).await?;
        let name = parts
            .iter()
            .find(|p| p.name == "model")
            .map(|p| p.text().map(str::to_string))
            .transpose()?;
        (name, Relay::Form(parts))
    } else {
        let Json(body) = Json::<Value>::from_request(req, &state).await?;
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
        (name, Relay::Json(body))
    };
    let hint = if what == "/images/variations" {
        "; make variations with POST /images/edits (an image without a mask runs img2img)"
    } else {
        ""
    };
    let missing = |why: String| -> OpenAiError {
        OpenAiError::from(Error::new(
            ErrorKind::NotImplemented,
            format!(
                "POST {what} is not served here: Easel generates images, and {why}; an admin \
                 registers an upstream with POST /v1/models {{\"name\": …, \"provider\": \
                 \"openai\", \"provider_config\": {{\"base_url\": …, \"api_key_env\": …}}}}{hint}"
            ),
        ))
    };
    let Some(name) = name else {
        return Err(missing(
            "the request names no `model` to find an upstream provider by".into(),
        ));
    };
    // Upstreams are the server's models' (a user's model is a composition, never relayed).
    let model = easel_store::models::resolve(&state.store.db, &name)
        .await?
        .filter(|m| m.owner_id.is_none());
    let Some(model) = model else {
        return Err(missing(format!("no model `{name}` is registered")));
    };
    let mut upstreams = Vec::new();
    if model.provider == "openai" {
        upstreams.push((model.provider_config.clone(), "provider_config"));
    }
    if model.fallback_provider.as_deref() == Some("openai") {
        let c = model.fallback_provider_config.clone().unwrap_or_default();
        upstreams.push((c, "fallback_provider_config"));
    }
    if upstreams.is_empty() {
        return Err(missing(format!(
            "the model `{}` runs on the `{}` provider, not an OpenAI-compatible upstream",
            model.name, model.provider
        )));
    }
    // The query goes along (`?async=true` of video and music requests).
    let target = match uri.query() {
        Some(q) => format!("{what}?{q}"),
        None => what.clone(),
    };
    let mut last = None;
    for (config, field) in upstreams {
        let remote = easel_providers::remote::Remote::from_config("openai", &config, field)?;
        let upstream_model = remote.model.clone().unwrap_or_else(|| name.clone());
        // `timeout_s` bounds connecting and each wait for data, not the whole answer: a
        // streamed answer (SSE) may go on for as long as the upstream keeps sending.
        let client = reqwest::Client::builder()
            .connect_timeout(remote.timeout.min(std::time::Duration::from_secs(30)))
            .read_timeout(remote.timeout)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let r = remote.request(&client, reqwest::Method::POST, &target);
        let r = match &relay {
            Relay::Json(body) => {
                let mut body = body.clone();
                body["model"] = json!(upstream_model);
                r.json(&body)
            }
            Relay::Form(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for p in parts {
                    let data = if p.name == "model" {
                        bytes::Bytes::from(upstream_model.clone())
                    } else {
                        p.data.clone()
                    };
                    let mut part = reqwest::multipart::Part::stream(data);
                    if let Some(f) = &p.file_name {
                        part = part.file_name(f.clone());
                    }
                    if let Some(ct) = &p.content_type {
                        part = part.mime_str(ct).map_err(|_| {
                            Error::invalid(&p.name, format!("bad content type `{ct}`"))
                        })?;
                    }
                    form = form.part(p.name.clone(), part);
                }
                r.multipart(form)
            }
        };
        match r.send().await {
            Ok(resp) if !(resp.status().is_server_error() || resp.status().as_u16() == 429) => {
                let status =
                    StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut out = Response::builder().status(status);
                for (h, v) in resp.headers() {
                    if relayed_header(h.as_str()) {
                        if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                            out = out.header(h.as_str(), v);
                        }
                    }
                }
                return out
                    .body(axum::body::Body::from_stream(resp.bytes_stream()))
                    .map_err(|e| Error::internal(e.to_string()).into());
            }
            Ok(resp) => {
                last = Some(format!("HTTP {}", resp.status().as_u16()));
                tracing::warn!(model = %model.name, upstream = %remote.base_url, status = %resp.status(), "the upstream failed");
            }
            Err(e) => {
                tracing::warn!(model = %model.name, upstream = %remote.base_url, error = %e, "the upstream cannot be reached");
                // The answer names no upstream address (`base_url` is for admins).
                last = Some(e.without_url().to_string());
            }
        }
    }
    Err(Error::unavailable(format!(
        "the upstream of `{}` failed: {}",
        model.name,
        last.unwrap_or_default()
    ))
    .into())
}

/// The upstream's answer headers passed back to the client: the body's type, caching, and
/// what OpenAI's SDKs read (request ids, rate limits, `retry-after`).
pub(super) fn relayed_header(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "cache-control" | "retry-after" | "x-request-id"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("openai-")
}
