//! Remote providers and fallback, with real HTTP: a second Easel server on loopback (with a
//! tiny SD 1.5 model) is the upstream, reached through each remote kind — `easel` (its
//! native API), `openai` (its `/openai/v1` dialect), `replicate` (its `/replicate/v1`
//! dialect) — and a primary on a closed port fails over to a fallback. The jobs record which
//! provider served them; keys come from the environment and are never stored.

mod common;

use common::*;
use easel_diffusion::tiny::{make_tiny, TinyFamily};
use reqwest::Method;
use serde_json::{json, Value};

/// The upstream: a server with `tiny` (64x64, 2 steps by default).
async fn upstream() -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    make_tiny(&dir.path().join("models/tiny"), TinyFamily::Sd15, 0).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/tiny",
            ADMIN_KEY,
            Some(json!({"defaults": {"width": 64, "height": 64, "steps": 2}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    t
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn add_model(t: &TestServer, spec: Value) {
    let mut spec = spec;
    spec["tasks"] = json!(["txt2img", "img2img", "inpaint"]);
    spec["family"] = json!("sd15");
    spec["defaults"] = json!({"width": 64, "height": 64, "steps": 2});
    let (s, v) = t
        .json(Method::POST, "/v1/models", ADMIN_KEY, Some(spec.clone()))
        .await;
    assert_eq!(s, 201, "{spec}: {v}");
}

async fn run(t: &TestServer, key: &str, body: Value) -> Value {
    let job = t.submit(key, body.clone()).await;
    let id = job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}: {job}"));
    t.wait(key, id).await
}

async fn output_pixels(t: &TestServer, job: &Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for o in job["outputs"].as_array().unwrap() {
        let resp = t.http.get(o["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let img = decode(&resp.bytes().await.unwrap());
        assert_eq!((img.width(), img.height()), (64, 64));
        out.push(img.to_rgb8().into_raw());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_kinds_and_fallback_run_on_a_second_easel() {
    let up = upstream().await;
    let (up_key, _) = up.user("relay").await;
    // The key is named, never stored: the variable is unique to this test.
    let var = "EASEL_TEST_PROVIDERS_UPSTREAM_KEY";
    std::env::set_var(var, &up_key);
    let closed = closed_port().await;

    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("ada").await;
    add_model(
        &t,
        json!({"name": "via-easel", "provider": "easel",
            "provider_config": {"base_url": up.base, "model": "tiny", "api_key_env": var}}),
    )
    .await;
    add_model(
        &t,
        json!({"name": "via-openai", "provider": "openai",
            "provider_config": {"base_url": format!("{}/openai/v1", up.base), "model": "tiny",
                "api_key_env": var, "extensions": true}}),
    )
    .await;
    add_model(
        &t,
        json!({"name": "via-replicate", "provider": "replicate",
            "provider_config": {"base_url": format!("{}/replicate", up.base), "model": "easel/tiny",
                "api_key_env": var}}),
    )
    .await;
    add_model(
        &t,
        json!({"name": "with-fallback", "provider": "openai",
            "provider_config": {"base_url": format!("http://127.0.0.1:{closed}/v1"), "retries": 1},
            "fallback_provider": "easel",
            "fallback_provider_config": {"base_url": up.base, "model": "tiny", "api_key_env": var}}),
    )
    .await;
    add_model(
        &t,
        json!({"name": "all-down", "provider": "openai",
            "provider_config": {"base_url": format!("http://127.0.0.1:{closed}/v1"), "retries": 0},
            "fallback_provider": "replicate",
            "fallback_provider_config": {"base_url": format!("http://127.0.0.1:{closed}"),
                "model": "a/b", "retries": 0}}),
    )
    .await;

    // The reference: the upstream's own job with the same seed.
    let reference = run(
        &up,
        &up_key,
        json!({"task": "txt2img", "model": "tiny", "input": {"prompt": "a lighthouse", "seed": 11}}),
    )
    .await;
    assert_eq!(reference["status"], "succeeded", "{reference}");
    let want = output_pixels(&up, &reference).await;

    for (model, provider, same_pixels) in [
        ("via-easel", "easel", true),
        ("via-openai", "openai", true),
        ("via-replicate", "replicate", true),
        ("with-fallback", "easel (fallback)", true),
    ] {
        let job = run(
            &t,
            &key,
            json!({"task": "txt2img", "model": model, "input": {"prompt": "a lighthouse", "seed": 11}}),
        )
        .await;
        assert_eq!(job["status"], "succeeded", "{model}: {job}");
        let (_, full) = t
            .json(
                Method::GET,
                &format!("/v1/jobs/{}", job["id"].as_str().unwrap()),
                &key,
                None,
            )
            .await;
        assert_eq!(full["provider"], provider, "{model}: {full}");
        let got = output_pixels(&t, &job).await;
        if same_pixels {
            assert_eq!(
                got, want,
                "{model}: the upstream ran the same seed and settings"
            );
        }
    }

    // Several images, and img2img / inpaint carry their images upstream.
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "via-replicate", "input": {"prompt": "boats", "count": 2}}),
    )
    .await;
    assert_eq!(job["outputs"].as_array().unwrap().len(), 2, "{job}");
    let img = t.upload(&key, png(64, 64)).await;
    let mask = t.upload(&key, png(64, 64)).await;
    for (model, task, input) in [
        (
            "via-easel",
            "img2img",
            json!({"prompt": "a boat", "image": img, "strength": 0.5}),
        ),
        (
            "via-openai",
            "inpaint",
            json!({"prompt": "a boat", "image": img, "mask": mask}),
        ),
        (
            "via-replicate",
            "inpaint",
            json!({"prompt": "a boat", "image": img, "mask": mask}),
        ),
    ] {
        let job = run(
            &t,
            &key,
            json!({"task": task, "model": model, "input": input}),
        )
        .await;
        assert_eq!(job["status"], "succeeded", "{model} {task}: {job}");
        output_pixels(&t, &job).await;
    }
    // What the upstream ran: the same tasks, as its own jobs.
    let (_, page) = up
        .json(Method::GET, "/v1/jobs?limit=100", &up_key, None)
        .await;
    let tasks: Vec<&str> = page["data"]
        .as_array()
        .or_else(|| page["jobs"].as_array())
        .or_else(|| page.as_array())
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|j| j["task"].as_str().unwrap())
        .collect();
    assert_eq!(
        tasks.iter().filter(|t| **t == "inpaint").count(),
        2,
        "{tasks:?}"
    );
    assert_eq!(
        tasks.iter().filter(|t| **t == "img2img").count(),
        1,
        "{tasks:?}"
    );

    // Both providers down: the job fails and says what each did.
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "all-down", "input": {"prompt": "x"}}),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(msg.contains("fallback provider replicate"), "{msg}");
    assert!(msg.contains("the provider openai failed first"), "{msg}");

    // Keys are never stored: a config holding one is refused, and no view shows one.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "leaky", "provider": "openai",
                "provider_config": {"base_url": "http://x", "api_key": "sk-secret"}})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "provider_config.api_key", "{v}");
    let (_, models) = t.json(Method::GET, "/v1/models", &key, None).await;
    assert!(
        !models.to_string().contains(&up_key),
        "no key in any model view"
    );
    t.shutdown().await;
    up.shutdown().await;
}

/// A stand-in for a hosted OpenAI-compatible chat API (an external vendor: its answers are
/// canned, what it received is echoed so the test sees what Easel sent).
async fn chat_upstream(fail: bool) -> String {
    use axum::routing::post;
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                use axum::response::IntoResponse;
                if fail {
                    return (axum::http::StatusCode::BAD_GATEWAY, "down").into_response();
                }
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer upstream-secret") {
                    return (axum::http::StatusCode::UNAUTHORIZED, "no key").into_response();
                }
                let said = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
                if body["stream"] == true {
                    let events = format!(
                        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                        json!({"object": "chat.completion.chunk", "model": body["model"], "choices": [{"index": 0, "delta": {"content": "echo: "}}]}),
                        json!({"object": "chat.completion.chunk", "model": body["model"], "choices": [{"index": 0, "delta": {"content": said}}]}),
                    );
                    return ([("content-type", "text/event-stream")], events).into_response();
                }
                axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {said}")}, "finish_reason": "stop"}]}))
                    .into_response()
            }),
        )
        .route(
            "/v1/audio/transcriptions",
            post(|mut form: axum::extract::Multipart| async move {
                let mut model = String::new();
                let mut file = (String::new(), 0);
                while let Some(f) = form.next_field().await.unwrap() {
                    let name = f.name().unwrap_or("").to_string();
                    let fname = f.file_name().map(str::to_string);
                    let data = f.bytes().await.unwrap();
                    match (name.as_str(), fname) {
                        ("model", _) => model = String::from_utf8_lossy(&data).into_owned(),
                        ("file", Some(n)) => file = (n, data.len()),
                        _ => {}
                    }
                }
                axum::Json(json!({"text": format!("{model} heard {} ({} bytes)", file.0, file.1)}))
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_requests_beyond_images_go_to_the_models_upstream() {
    let up = chat_upstream(false).await;
    let down = chat_upstream(true).await;
    let var = "EASEL_TEST_PROVIDERS_CHAT_KEY";
    std::env::set_var(var, "upstream-secret");
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("cal").await;
    for spec in [
        json!({"name": "gpt-4o-mini", "tasks": ["chat"], "provider": "openai",
            "provider_config": {"base_url": up, "model": "upstream-chat", "api_key_env": var}}),
        // The primary answers 502: the fallback serves.
        json!({"name": "flaky-chat", "tasks": ["chat"], "provider": "openai",
            "provider_config": {"base_url": down},
            "fallback_provider": "openai",
            "fallback_provider_config": {"base_url": up, "api_key_env": var}}),
    ] {
        let (s, v) = t
            .json(Method::POST, "/v1/models", ADMIN_KEY, Some(spec))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (_, models) = t.json(Method::GET, "/openai/v1/models", &key, None).await;
    let entry = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "gpt-4o-mini")
        .cloned()
        .unwrap();
    assert_eq!(entry["category"], "chat", "{entry}");
    let chat = "/openai/v1/chat/completions";
    let (s, v) = t
        .json(
            Method::POST,
            chat,
            &key,
            Some(
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(v["model"], "upstream-chat", "the model is renamed upstream");
    let (s, v) = t
        .json(
            Method::POST,
            chat,
            &key,
            Some(
                json!({"model": "flaky-chat", "messages": [{"role": "user", "content": "again"}]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["model"], "flaky-chat",
        "no upstream model named: the request's"
    );

    // Streaming: the events come through as sent.
    let resp = t
        .req(Method::POST, chat, Some(&key))
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("\"echo: \"")
            && text.contains("\"hi\"")
            && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );

    // Multipart: the file and the renamed model go upstream.
    let form = reqwest::multipart::Form::new()
        .text("model", "gpt-4o-mini")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; 1234]).file_name("talk.wav"),
        );
    let resp = t
        .req(Method::POST, "/openai/v1/audio/transcriptions", Some(&key))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "upstream-chat heard talk.wav (1234 bytes)");

    // No upstream for the model, or no model: 501 in OpenAI's shape, naming what is missing.
    for body in [
        json!({"model": "nope", "messages": []}),
        json!({"messages": []}),
    ] {
        let (s, v) = t.json(Method::POST, chat, &key, Some(body.clone())).await;
        assert_eq!(s, 501, "{body}: {v}");
        assert_eq!(v["error"]["type"], "not_implemented_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("provider"),
            "{v}"
        );
    }
    t.shutdown().await;
}
