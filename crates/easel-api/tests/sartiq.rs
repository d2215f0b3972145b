//! The Sartiq generation-models dialect (`/sartiq/api/v1/generation-models/`) against a real
//! server: CRUD, who may do what, FastAPI's error shapes, pagination, and that it is a view
//! of the one models registry (`/v1/models`, model limits at submit, discovered models).

mod common;

use common::*;
use easel_diffusion::tiny::make_tiny;
use reqwest::Method;
use serde_json::{json, Value};

const BASE: &str = "/sartiq/api/v1/generation-models";

/// A request to the dialect, with an optional key and an optional JSON body.
async fn sq(
    t: &TestServer,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = t.req(method, &format!("{BASE}{path}"), key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    get(r.send().await.unwrap()).await
}

/// A body sent as is, with a JSON content type.
async fn raw(t: &TestServer, method: Method, path: &str, body: &str) -> (u16, Value) {
    let r = t
        .req(method, &format!("{BASE}{path}"), Some(ADMIN_KEY))
        .header("content-type", "application/json")
        .body(body.to_string());
    get(r.send().await.unwrap()).await
}

fn full_body() -> Value {
    json!({
        "name": "flux-pro",
        "icon": "https://example.test/flux.png",
        "provider": "fal_standard",
        "provider_config": {"provider_type": "fal_standard", "fal_app_id": "fal-ai/flux-pro",
            "additional_static_params": {"safety_tolerance": 2}, "additional_properties": {}},
        "provider_capabilities": ["TEXT_TO_IMAGE", "IMAGE_TO_IMAGE"],
        "fallback_provider": "replicate",
        "fallback_provider_config": {"model": "black-forest-labs/flux-pro"},
        "fallback_provider_capabilities": ["TEXT_TO_IMAGE"],
        "tool_types": ["BASE_GENERATION"],
        "recommended": true,
        "beta": false,
        "max_output_width": 2048,
        "max_output_height": 1536,
        "max_size_pixels": 3145728,
    })
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_as_admin_public_reads_and_who_may_write() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (user, _) = t.user("bob").await;

    // Public reads: no key needed.
    let (s, v) = sq(&t, Method::GET, "/", None, None).await;
    assert_eq!(s, 200, "{v}");
    insta::assert_json_snapshot!("sartiq_list_empty", v);

    // Writes: 401 without a key, 403 with a user's key, in FastAPI's shape.
    let resp = t
        .req(Method::POST, &format!("{BASE}/"), None)
        .json(&full_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (s, v) = get(resp).await;
    assert_eq!(s, 401, "{v}");
    insta::assert_json_snapshot!("sartiq_unauthorized", v);
    let (s, v) = sq(&t, Method::POST, "/", Some("not-a-key"), Some(full_body())).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["detail"].is_string(), "{v}");
    let (s, v) = sq(&t, Method::POST, "/", Some(&user), Some(full_body())).await;
    assert_eq!(s, 403, "{v}");
    insta::assert_json_snapshot!("sartiq_forbidden", v);

    // Create: every field, then the required ones only (defaults filled in).
    let (s, created) = sq(&t, Method::POST, "/", Some(ADMIN_KEY), Some(full_body())).await;
    assert_eq!(s, 200, "{created}");
    insta::assert_json_snapshot!("sartiq_created", created, {".id" => "[uuid]"});
    let id = created["id"].as_str().unwrap().to_string();
    assert!(is_uuid(&id), "{id}");
    let (s, minimal) = sq(
        &t,
        Method::POST,
        "",
        Some(ADMIN_KEY),
        Some(json!({"name": "sd-local", "provider": "local", "provider_config": {}})),
    )
    .await;
    assert_eq!(s, 200, "{minimal}");
    insta::assert_json_snapshot!("sartiq_created_minimal", minimal, {".id" => "[uuid]"});

    // Read: by UUID (any case, with or without hyphens), by Easel id, by name; public.
    let mdl = easel_core::id::from_uuid(easel_core::id::MODEL, &id).unwrap();
    for path in [
        id.clone(),
        id.to_uppercase(),
        id.replace('-', ""),
        mdl.clone(),
        "flux-pro".into(),
    ] {
        let (s, v) = sq(&t, Method::GET, &format!("/{path}"), None, None).await;
        assert_eq!((s, &v), (200, &created), "{path}");
    }
    // A user's key (or a wrong one) on a public read is no hindrance.
    let (s, _) = sq(&t, Method::GET, &format!("/{id}"), Some(&user), None).await;
    assert_eq!(s, 200);

    // Update is partial: only the fields present change; null clears a nullable field and
    // leaves a non-nullable one; unknown fields (the whole object sent back) are ignored.
    let (s, updated) = sq(
        &t,
        Method::PUT,
        &format!("/{id}"),
        Some(ADMIN_KEY),
        Some(
            json!({"icon": null, "max_output_width": null, "max_size_pixels": 4194304,
            "name": null, "tool_types": ["BASE_GENERATION", "UPSCALE"], "beta": true,
            "id": "00000000-0000-0000-0000-000000000000", "created_at": "yesterday"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{updated}");
    insta::assert_json_snapshot!("sartiq_updated", updated, {".id" => "[uuid]"});
    assert_eq!(updated["id"], created["id"]);
    let mut whole = updated.clone();
    whole["name"] = json!("flux-pro-1.1");
    let (s, renamed) = sq(
        &t,
        Method::PUT,
        &format!("/{id}"),
        Some(ADMIN_KEY),
        Some(whole.clone()),
    )
    .await;
    assert_eq!(s, 200, "{renamed}");
    assert_eq!(renamed, whole);
    let (s, v) = sq(&t, Method::GET, "/flux-pro", None, None).await;
    assert_eq!(s, 404, "the old name is free: {v}");

    // Writes with a user's key or none.
    for (key, status) in [(Some(user.as_str()), 403), (None, 401)] {
        let (s, v) = sq(
            &t,
            Method::PUT,
            &format!("/{id}"),
            key,
            Some(json!({"beta": false})),
        )
        .await;
        assert_eq!(s, status, "{v}");
        let (s, v) = sq(&t, Method::DELETE, &format!("/{id}"), key, None).await;
        assert_eq!(s, status, "{v}");
    }

    // A name another model has: 409.
    let (s, v) = sq(
        &t,
        Method::PUT,
        &format!("/{id}"),
        Some(ADMIN_KEY),
        Some(json!({"name": "sd-local"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    insta::assert_json_snapshot!("sartiq_name_taken", v);

    // Delete → {message}; then it is gone.
    let (s, v) = sq(&t, Method::DELETE, &format!("/{id}"), Some(ADMIN_KEY), None).await;
    assert_eq!(s, 200, "{v}");
    insta::assert_json_snapshot!("sartiq_deleted", v);
    let (s, v) = sq(&t, Method::GET, &format!("/{id}"), None, None).await;
    assert_eq!(s, 404, "{v}");
    insta::assert_json_snapshot!("sartiq_not_found", v);
    for method in [Method::PUT, Method::DELETE] {
        let (s, v) = sq(
            &t,
            method.clone(),
            &format!("/{id}"),
            Some(ADMIN_KEY),
            Some(json!({"beta": true})),
        )
        .await;
        assert_eq!(
            (s, &v),
            (404, &json!({"detail": "Generation model not found"})),
            "{method}"
        );
    }
    let (s, v) = sq(&t, Method::GET, "/no-such-model", None, None).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = sq(&t, Method::GET, "/", None, None).await;
    assert_eq!((s, v["count"].clone()), (200, json!(1)), "{v}");

    // Other routes and methods under the mount answer in the dialect's shape.
    let (s, v) = sq(&t, Method::GET, "/a/b", None, None).await;
    assert_eq!(s, 404, "{v}");
    assert!(v["detail"].is_string(), "{v}");
    let (s, v) = sq(&t, Method::PATCH, "/", Some(ADMIN_KEY), None).await;
    assert_eq!(s, 405, "{v}");
    assert!(v["detail"].is_string(), "{v}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_fastapi_details() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let post = |body: Value| {
        let t = &t;
        async move { sq(t, Method::POST, "/", Some(ADMIN_KEY), Some(body)).await }
    };

    // The required fields, each named, with the body as `input`.
    let (s, v) = post(json!({"icon": "x"})).await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_missing", v);

    // Wrong types: every field reported at once.
    let (s, v) = post(json!({
        "name": 5, "icon": false, "provider": null, "provider_config": [1],
        "provider_capabilities": "TEXT_TO_IMAGE", "fallback_provider_config": "x",
        "fallback_provider_capabilities": ["A", 2], "tool_types": null,
        "recommended": "yes", "beta": 1, "max_output_width": "big", "max_output_height": 0,
        "max_size_pixels": 1.5,
    }))
    .await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_types", v);

    // Out of range for Easel's limits; floats without a fraction are integers.
    let (s, v) = post(
        json!({"name": "m", "provider": "local", "provider_config": {},
        "max_output_width": 4294967296u64, "max_output_height": -3, "max_size_pixels": 1024.0}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_range", v);

    // The core's rules, at the Sartiq name of the field.
    let (s, v) =
        post(json!({"name": "not url safe", "provider": "local", "provider_config": {}})).await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_core_rule", v);
    let (s, v) = post(json!({"name": "m", "provider": "two words", "provider_config": {}})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "provider"]), "{v}");
    assert_eq!(v["detail"][0]["input"], "two words", "{v}");
    let (s, v) = post(
        json!({"name": "m", "provider": "local", "provider_config": {},
        "tool_types": ["BASE_GENERATION", ""]}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        v["detail"][0]["loc"],
        json!(["body", "tool_types", 1]),
        "{v}"
    );
    assert_eq!(v["detail"][0]["input"], "", "{v}");

    // Not JSON, not an object.
    let (s, v) = raw(&t, Method::POST, "/", "{\"name\": ").await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_json", v, {".detail[].ctx.error" => "[parser message]"});
    let (s, v) = raw(&t, Method::POST, "/", "[1, 2]").await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_not_object", v);

    // Update: the same checks, every field optional.
    let (s, m) = post(json!({"name": "m", "provider": "local", "provider_config": {}})).await;
    assert_eq!(s, 200, "{m}");
    let (s, v) = sq(
        &t,
        Method::PUT,
        &format!("/{}", m["id"].as_str().unwrap()),
        Some(ADMIN_KEY),
        Some(json!({"provider_config": "x", "beta": "no"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_update", v);
    let (s, v) = sq(&t, Method::GET, "/m", None, None).await;
    assert_eq!((s, &v), (200, &m), "a failed update changes nothing");

    // Query parameters.
    let (s, v) = sq(&t, Method::GET, "/?skip=-1&limit=ten", None, None).await;
    assert_eq!(s, 422, "{v}");
    insta::assert_json_snapshot!("sartiq_422_query", v);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_with_skip_limit_and_count() {
    let t = TestServer::start(|c| c.workers = 0).await;
    for name in ["m-c", "m-a", "m-e", "m-b", "m-d"] {
        let (s, v) = sq(
            &t,
            Method::POST,
            "/",
            Some(ADMIN_KEY),
            Some(json!({"name": name, "provider": "local", "provider_config": {}})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let page = |q: &'static str| {
        let t = &t;
        async move {
            let (s, v) = sq(t, Method::GET, q, None, None).await;
            assert_eq!(s, 200, "{q}: {v}");
            let names: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect();
            (names, v["count"].as_u64().unwrap())
        }
    };
    assert_eq!(
        page("/").await,
        (
            vec![
                "m-a".into(),
                "m-b".into(),
                "m-c".into(),
                "m-d".into(),
                "m-e".into()
            ],
            5
        )
    );
    assert_eq!(
        page("?limit=2").await,
        (vec!["m-a".into(), "m-b".into()], 5)
    );
    assert_eq!(
        page("/?skip=2&limit=2").await,
        (vec!["m-c".into(), "m-d".into()], 5)
    );
    assert_eq!(page("/?skip=4&limit=2").await, (vec!["m-e".into()], 5));
    assert_eq!(page("/?skip=5").await, (vec![], 5));
    assert_eq!(page("/?skip=99999999999999999999").await, (vec![], 5));
    assert_eq!(page("/?limit=0").await, (vec![], 5));
    assert_eq!(page("/?limit=100000").await.0.len(), 5);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_registry_with_the_native_api() {
    let t = TestServer::start(|c| c.workers = 0).await;

    // Created here → a model of /v1/models, with the new fields and the limits.
    let (s, created) = sq(&t, Method::POST, "/", Some(ADMIN_KEY), Some(full_body())).await;
    assert_eq!(s, 200, "{created}");
    let mdl =
        easel_core::id::from_uuid(easel_core::id::MODEL, created["id"].as_str().unwrap()).unwrap();
    let (s, native) = t
        .json(Method::GET, &format!("/v1/models/{mdl}"), ADMIN_KEY, None)
        .await;
    assert_eq!(s, 200, "{native}");
    insta::assert_json_snapshot!("sartiq_native_view", native, {
        ".id" => "[model id]", ".created_at" => "[time]", ".updated_at" => "[time]",
    });
    assert_eq!(native["name"], "flux-pro");
    let (_, list) = t.json(Method::GET, "/v1/models", ADMIN_KEY, None).await;
    assert_eq!(list["count"], 1, "{list}");

    // Changed natively → seen here.
    let (s, v) = t
        .json(
            Method::PATCH,
            &format!("/v1/models/{mdl}"),
            ADMIN_KEY,
            Some(
                json!({"tool_types": ["UPSCALE"], "limits": {"max_width": 1024},
                "aliases": ["flux"]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sq(&t, Method::GET, "/flux", None, None).await;
    assert_eq!(s, 200, "found by its alias: {v}");
    assert_eq!(v["id"], created["id"]);
    assert_eq!(v["tool_types"], json!(["UPSCALE"]));
    assert_eq!(
        (
            v["max_output_width"].clone(),
            v["max_output_height"].clone(),
            v["max_size_pixels"].clone()
        ),
        (json!(1024), json!(null), json!(null)),
        "limits are replaced as a whole natively: {v}"
    );

    // Created natively → listed here; Easel's own fields survive an update here.
    let (s, native) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(
                json!({"name": "sd15", "family": "sd15", "tasks": ["txt2img"],
                "aliases": ["v15"], "limits": {"max_height": 768, "max_steps": 50}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{native}");
    let (_, list) = sq(&t, Method::GET, "/", None, None).await;
    assert_eq!(list["count"], 2, "{list}");
    let seen = &list["data"].as_array().unwrap()[1];
    assert_eq!(seen["name"], "sd15", "{list}");
    assert_eq!(
        seen["id"].as_str(),
        easel_core::id::to_uuid(easel_core::id::MODEL, native["id"].as_str().unwrap()).as_deref()
    );
    assert_eq!(
        (seen["provider"].clone(), seen["max_output_height"].clone()),
        (json!("local"), json!(768))
    );
    assert_eq!(seen["tool_types"], json!([]));
    let (s, v) = sq(
        &t,
        Method::PUT,
        "/v15",
        Some(ADMIN_KEY),
        Some(json!({"max_output_width": 640, "icon": "sd.png"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, after) = t
        .json(Method::GET, "/v1/models/sd15", ADMIN_KEY, None)
        .await;
    assert_eq!(after["family"], "sd15", "{after}");
    assert_eq!(after["tasks"], json!(["txt2img"]));
    assert_eq!(after["aliases"], json!(["v15"]));
    assert_eq!(after["icon"], "sd.png");
    assert_eq!(
        after["limits"],
        json!({"max_width": 640, "max_height": 768, "max_steps": 50})
    );

    // Deleted natively → gone here.
    let (s, _) = t
        .json(Method::DELETE, "/v1/models/sd15", ADMIN_KEY, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = sq(&t, Method::GET, "/v15", None, None).await;
    assert_eq!(s, 404);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_models_are_listed_and_limits_set_here_hold_at_submit() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let tiny = dir.path().join("models/tiny");
    make_tiny(&tiny, "sd15", 7).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, _) = t.user("alice").await;

    // The model found on disk is listed here, by its folder name.
    let (_, list) = sq(&t, Method::GET, "/", None, None).await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["data"][0]["name"], "tiny");
    assert_eq!(list["data"][0]["provider"], "local");

    // Limits set here hold for every submit of the model.
    let (s, v) = sq(
        &t,
        Method::PUT,
        "/tiny",
        Some(ADMIN_KEY),
        Some(
            json!({"max_output_width": 64, "max_output_height": 96, "max_size_pixels": 4096,
            "recommended": true}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let submit = |w: u32, h: u32| {
        let t = &t;
        let key = key.clone();
        async move {
            t.json(
                Method::POST,
                "/v1/jobs",
                &key,
                Some(json!({"task": "txt2img", "model": "tiny",
                    "input": {"prompt": "a fox", "width": w, "height": h, "steps": 2, "seed": 1}})),
            )
            .await
        }
    };
    let (s, v) = submit(128, 64).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "input.width", "{v}");
    let (s, v) = submit(64, 128).await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (422, json!("input.height")),
        "{v}"
    );
    let (s, v) = submit(64, 96).await;
    assert_eq!(s, 422, "over max_size_pixels: {v}");

    // Within the limits it generates.
    let (s, job) = submit(64, 64).await;
    assert_eq!(s, 201, "{job}");
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // A model created here generates once its weights are named natively (`source`).
    let (s, v) = sq(
        &t,
        Method::POST,
        "/",
        Some(ADMIN_KEY),
        Some(
            json!({"name": "mine", "provider": "local", "provider_config": {},
            "max_output_width": 64}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/mine",
            ADMIN_KEY,
            Some(
                json!({"source": std::fs::canonicalize(&tiny).unwrap().display().to_string(),
                "family": "sd15", "tasks": ["txt2img"]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let job = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": "mine",
                "input": {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, "seed": 1}}),
        )
        .await;
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "model": "mine", "input": {"prompt": "a fox", "width": 128, "height": 64}})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (422, json!("input.width")),
        "{v}"
    );
    t.shutdown().await;
}
