//! Remote providers and fallback, with real HTTP: a second Easel server on loopback (with a
//! tiny SD 1.5 model) is the upstream, reached through each remote kind — `easel` (its
//! native API), `openai` (its `/openai/v1` dialect), `replicate` (its `/replicate/v1`
//! dialect) — and a primary on a closed port fails over to a fallback. The jobs record which
//! provider served them; keys come from the environment and are never stored.

mod common;

use common::*;
use easel_diffusion::tiny::make_tiny;
use reqwest::Method;
use serde_json::{json, Value};

/// The upstream: a server with `tiny` (64x64, 2 steps by default).
async fn upstream() -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
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

    // `pag_guidance` goes to a Replicate upstream as `pag_guidance_scale`; the job's upscale
    // is done here, after the download.
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "via-replicate",
            "input": {"prompt": "a lighthouse", "seed": 11, "pag_guidance": 3.0, "upscale": 2}}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, newest) = up
        .json(Method::GET, "/v1/jobs?limit=1", &up_key, None)
        .await;
    let upstream_job = easel_store::jobs::get(
        &up.server().state.store.db,
        newest["data"][0]["id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        upstream_job.request.unwrap()["input"]["pag_guidance_scale"],
        3.0
    );
    assert_eq!(
        upstream_job.input["width"], 64,
        "the upstream ran the generated size"
    );
    let o = &job["outputs"][0];
    assert_eq!(
        job["usage"]["units"],
        128.0 * 128.0 / 1e6,
        "upscaled megapixels: {job}"
    );
    let resp = t.http.get(o["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(decode(&resp.bytes().await.unwrap()).width(), 128);

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
            "/v1/videos/generations",
            post(|axum::extract::RawQuery(q): axum::extract::RawQuery, axum::Json(body): axum::Json<Value>| async move {
                (
                    [("x-request-id", "req_upstream_1"), ("x-ratelimit-remaining-requests", "41")],
                    axum::Json(json!({"id": "vid_1", "status": "queued", "query": q, "model": body["model"]})),
                )
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

    // The query goes along (an async video request), and the upstream's request id and
    // rate-limit headers come back.
    let resp = t
        .req(
            Method::POST,
            "/openai/v1/videos/generations?async=true",
            Some(&key),
        )
        .json(&json!({"model": "gpt-4o-mini", "prompt": "waves"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req_upstream_1");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "41");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["query"].as_str(), v["model"].as_str()),
        (Some("async=true"), Some("upstream-chat")),
        "{v}"
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

/// A port that accepts connections and never answers.
async fn hanging_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// A proxy in front of `upstream` that answers the first poll of a job (`GET /v1/jobs/…`)
/// with 503 and counts the jobs submitted through it.
async fn flaky_proxy(upstream: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let posts = Arc::new(AtomicU32::new(0));
    let polls = Arc::new(AtomicU32::new(0));
    let client = reqwest::Client::new();
    let counted = posts.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (client, upstream, posts, polls) = (
                client.clone(),
                upstream.clone(),
                counted.clone(),
                polls.clone(),
            );
            async move {
                use axum::response::IntoResponse;
                let path = uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .to_string();
                if method == axum::http::Method::POST && path == "/v1/jobs" {
                    posts.fetch_add(1, Ordering::SeqCst);
                }
                if method == axum::http::Method::GET
                    && path.starts_with("/v1/jobs/")
                    && polls.fetch_add(1, Ordering::SeqCst) == 0
                {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                }
                let mut r = client
                    .request(method, format!("{upstream}{path}"))
                    .body(body);
                for name in ["authorization", "content-type", "idempotency-key"] {
                    if let Some(v) = headers.get(name) {
                        r = r.header(name, v.clone());
                    }
                }
                let resp = r.send().await.unwrap();
                let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
                (
                    status,
                    [("content-type", "application/json")],
                    resp.bytes().await.unwrap(),
                )
                    .into_response()
            }
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_fall_back_and_a_failed_poll_does_not_submit_again() {
    let up = upstream().await;
    let (up_key, _) = up.user("relay").await;
    let var = "EASEL_TEST_PROVIDERS_TIMEOUT_KEY";
    std::env::set_var(var, &up_key);
    let hanging = hanging_port().await;
    let (proxy, posts) = flaky_proxy(up.base.clone()).await;

    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("tim").await;
    add_model(
        &t,
        json!({"name": "slow-primary", "provider": "easel",
            "provider_config": {"base_url": format!("http://127.0.0.1:{hanging}"), "model": "tiny",
                "timeout_s": 1, "retries": 3},
            "fallback_provider": "easel",
            "fallback_provider_config": {"base_url": up.base, "model": "tiny", "api_key_env": var}}),
    )
    .await;
    add_model(
        &t,
        json!({"name": "flaky-poll", "provider": "easel",
            "provider_config": {"base_url": proxy, "model": "tiny", "api_key_env": var}}),
    )
    .await;

    // The primary never answers: its deadline (1 s, retries included) ends it, the fallback
    // serves.
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "slow-primary", "input": {"prompt": "fog", "seed": 3}}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["provider"], "easel (fallback)", "{job}");
    output_pixels(&t, &job).await;
    // What the providers reported is in the job's event log (`log` events, on its SSE).
    let sse = t
        .req(
            Method::GET,
            &format!("/v1/jobs/{}/events", job["id"].as_str().unwrap()),
            Some(&key),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs: Vec<&str> = sse
        .split("\n\n")
        .filter(|e| e.contains("event: log"))
        .collect();
    assert!(
        logs.iter()
            .any(|e| e.contains("provider easel failed")
                && e.contains("running on the fallback easel")),
        "{sse}"
    );

    // A Replicate prediction shows them in its logs.
    let resp = t
        .req(
            Method::POST,
            "/replicate/v1/models/easel/slow-primary/predictions",
            Some(&key),
        )
        .header("Prefer", "wait")
        .json(&json!({"input": {"prompt": "fog", "seed": 3}}))
        .send()
        .await
        .unwrap();
    let (s, p) = get(resp).await;
    assert_eq!((s, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    let (_, p) = t
        .json(
            Method::GET,
            &format!("/replicate/v1/predictions/{}", p["id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    let plogs = p["logs"].as_str().unwrap();
    assert!(plogs.contains("running on the fallback easel"), "{plogs}");

    // A 503 while polling the upstream job: polled again, not submitted again.
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "flaky-poll", "input": {"prompt": "rain", "seed": 4}}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one submission upstream"
    );
    output_pixels(&t, &job).await;
    t.shutdown().await;
    up.shutdown().await;
}

/// Read a Leonardo generation until it ends.
async fn leonardo_done(t: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (s, v) = t
            .json(
                Method::GET,
                &format!("/leonardo/v1/generations/{id}"),
                key,
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let g = &v["generations_by_pk"];
        if g["status"] != "PENDING" {
            return g.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("generation {id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_registered_through_sartiq_generates_in_every_dialect() {
    let up = upstream().await;
    let (up_key, _) = up.user("relay").await;
    let var = "EASEL_TEST_PROVIDERS_SARTIQ_KEY";
    std::env::set_var(var, &up_key);
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("sam").await;
    let sartiq = "/sartiq/api/v1/generation-models/";
    let (s, created) = t
        .json(
            Method::POST,
            sartiq,
            ADMIN_KEY,
            Some(json!({"name": "studio", "provider": "easel",
                "provider_config": {"base_url": up.base, "model": "tiny", "api_key_env": var},
                "max_output_width": 512})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let uuid = created["id"].as_str().unwrap().to_string();
    // A `local` model created there without weights, and one on a provider this server does
    // not have: refused at submit, saying why, in each dialect's shape.
    for body in [
        json!({"name": "no-weights", "provider": "local", "provider_config": {}}),
        json!({"name": "elsewhere", "provider": "fal_standard", "provider_config": {}}),
    ] {
        let (s, v) = t.json(Method::POST, sartiq, ADMIN_KEY, Some(body)).await;
        assert_eq!(s, 200, "{v}");
    }

    // OpenAI: synchronous, by name.
    let (s, v) = t
        .json(
            Method::POST,
            "/openai/v1/images/generations",
            &key,
            Some(
                json!({"model": "studio", "prompt": "a harbour", "size": "64x64", "seed": 5,
                "response_format": "b64_json"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(decode(&png).width(), 64);

    // Replicate: by owner/name, waiting.
    let resp = t
        .req(
            Method::POST,
            "/replicate/v1/models/easel/studio/predictions",
            Some(&key),
        )
        .header("Prefer", "wait")
        .json(&json!({"input": {"prompt": "a harbour", "width": 64, "height": 64}}))
        .send()
        .await
        .unwrap();
    let (s, p) = get(resp).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["status"], "succeeded", "{p}");
    let img = t
        .http
        .get(p["output"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(decode(&img.bytes().await.unwrap()).height(), 64);

    // Leonardo: by the Sartiq UUID.
    let (s, v) = t
        .json(
            Method::POST,
            "/leonardo/v1/generations",
            &key,
            Some(
                json!({"modelId": uuid, "prompt": "a harbour", "width": 64, "height": 64,
                "num_images": 1, "num_inference_steps": 10}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let g = leonardo_done(
        &t,
        &key,
        v["sdGenerationJob"]["generationId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(g["status"], "COMPLETE", "{g}");
    let url = g["generated_images"][0]["url"].as_str().unwrap();
    let img = t.http.get(url).send().await.unwrap();
    assert_eq!(decode(&img.bytes().await.unwrap()).width(), 64);

    // The registry's limit holds in every dialect.
    let (s, v) = t
        .json(
            Method::POST,
            "/openai/v1/images/generations",
            &key,
            Some(json!({"model": "studio", "prompt": "x", "size": "640x64"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("size")),
        "{v}"
    );

    // Models that cannot run here are refused before they are queued.
    for (model, why) in [
        ("no-weights", "`source`"),
        ("elsewhere", "no provider `fal_standard`"),
    ] {
        let (s, v) = t
            .json(
                Method::POST,
                "/openai/v1/images/generations",
                &key,
                Some(json!({"model": model, "prompt": "x"})),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["param"], "model", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
        let (s, v) = t
            .json(
                Method::POST,
                "/replicate/v1/predictions",
                &key,
                Some(json!({"version": model, "input": {"prompt": "x"}})),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        assert!(v["detail"][0]["msg"].as_str().unwrap().contains(why), "{v}");
        let (s, v) = t
            .json(
                Method::POST,
                "/leonardo/v1/generations",
                &key,
                Some(json!({"modelId": model, "prompt": "x"})),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["path"], json!(["modelId"]), "{v}");
    }
    let (_, jobs) = t.json(Method::GET, "/v1/jobs?limit=100", &key, None).await;
    assert_eq!(
        jobs["data"].as_array().map(Vec::len),
        Some(3),
        "only the three runnable requests were queued: {jobs}"
    );
    t.shutdown().await;
    up.shutdown().await;
}

/// An upstream's answer cannot point this server into its own network: an output URL on
/// another non-public host than the upstream's is refused (nothing is fetched from it), and
/// the job's error names no upstream address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_urls_of_an_upstream_are_fetched_under_the_address_policy() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    // The "inside" host: 127.0.0.2, counting what reaches it.
    let hits = Arc::new(AtomicU32::new(0));
    let inside = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let inside_url = format!("http://{}/secret.png", inside.local_addr().unwrap());
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let c = counted.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            "secret"
        }
    });
    tokio::spawn(async move { axum::serve(inside, app).await.unwrap() });
    // An OpenAI-compatible upstream on 127.0.0.1 whose image points there.
    let answer = json!({"created": 1, "data": [{"url": inside_url}]});
    let app = axum::Router::new().route(
        "/v1/images/generations",
        axum::routing::post(move || {
            let a = answer.clone();
            async move { axum::Json(a) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("ssrf").await;
    add_model(
        &t,
        json!({"name": "pointing-inside", "provider": "openai",
            "provider_config": {"base_url": base, "model": "x", "retries": 0}}),
    )
    .await;
    let job = run(
        &t,
        &key,
        json!({"task": "txt2img", "model": "pointing-inside", "input": {"prompt": "x"}}),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    let text = job["error"].to_string();
    assert!(text.contains("non-public"), "{text}");
    assert!(!text.contains("127.0.0.1"), "no upstream address: {text}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the inside host"
    );
    t.shutdown().await;
}
