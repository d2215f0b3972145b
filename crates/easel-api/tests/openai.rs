//! The OpenAI-compatible dialect at `/openai/v1` against a real server with a tiny SD 1.5
//! model (64x64, 2 steps through the model's registry defaults): synchronous and async
//! generations, job polling, edits (JSON and multipart, masks by transparency), models, every
//! error's shape and status, snapshots of the wire shapes and of what requests become, and
//! the official `openai` Python package when `EASEL_PYTHON` names a Python that has it.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use easel_diffusion::tiny::make_tiny;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

const GEN: &str = "/openai/v1/images/generations";
const EDITS: &str = "/openai/v1/images/edits";

/// A server with the tiny model `tiny`, whose defaults are 64x64 and 2 steps.
async fn server(f: impl FnOnce(&mut easel_api::server::Config)) -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir, |c| {
        c.scan_models = true;
        f(c)
    })
    .await;
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

/// Send a request; the status, the JSON body (or the text) and the headers.
async fn send(r: reqwest::RequestBuilder) -> (u16, Value, HeaderMap) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, headers)
}

async fn post(t: &TestServer, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = send(t.req(Method::POST, path, Some(key)).json(&body)).await;
    (s, v)
}

async fn fetch(t: &TestServer, url: &str) -> Vec<u8> {
    let resp = t.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp.bytes().await.unwrap().to_vec()
}

fn size_of(png: &[u8]) -> (u32, u32) {
    let img = decode(png);
    (img.width(), img.height())
}

fn b64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

fn data_url(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// A 64x64 RGBA PNG whose left half is transparent (OpenAI's mask: edit there).
fn left_half_transparent() -> Vec<u8> {
    let img = image::RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([0, 0, 0, if x < 32 { 0 } else { 255 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// The caller's newest job in the native API.
async fn newest_job(t: &TestServer, key: &str) -> Value {
    let (s, v) = t.json(Method::GET, "/v1/jobs?limit=1", key, None).await;
    assert_eq!(s, 200, "{v}");
    v["data"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_generations_return_images_of_the_requested_size() {
    let t = server(|_| {}).await;
    let (key, _) = t.user("alice").await;

    // URLs, two images, the spec's size syntax.
    let (s, v) = post(
        &t,
        GEN,
        &key,
        json!({"prompt": "a red fox", "n": 2, "size": "64x64", "seed": 5, "user": "u-1"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mut pixels = Vec::new();
    for d in data {
        let png = fetch(&t, d["url"].as_str().unwrap()).await;
        assert_eq!(size_of(&png), (64, 64));
        assert_eq!(
            (d["width"].as_u64(), d["height"].as_u64()),
            (Some(64), Some(64))
        );
        pixels.push(decode(&png).to_rgb8().into_raw());
    }
    assert_ne!(pixels[0], pixels[1], "image i uses seed + i");
    insta::assert_json_snapshot!("generation_url", v, {".created" => "[time]", ".data[].url" => "[url]"});

    // base64, a size outside the spec's enum, the model's default steps.
    let (s, v) = post(
        &t,
        GEN,
        &key,
        json!({"prompt": "a red fox", "size": "96x64", "response_format": "b64_json", "model": "tiny", "seed": 5}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(size_of(&b64(&v["data"][0]["b64_json"])), (96, 64));
    assert!(v["data"][0].get("url").is_none(), "{v}");
    insta::assert_json_snapshot!("generation_b64", v, {".created" => "[time]", ".data[].b64_json" => "[base64]"});

    // No size: the model's registry default (64x64 here); a style rewrites the prompt.
    let (s, v) = post(
        &t,
        GEN,
        &key,
        json!({"prompt": "a red fox", "style": "vivid", "output_format": "jpeg"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let revised = v["data"][0]["revised_prompt"].as_str().unwrap();
    assert!(revised.starts_with("a red fox, vivid colors"), "{revised}");
    let jpeg = fetch(&t, v["data"][0]["url"].as_str().unwrap()).await;
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG");
    assert_eq!(size_of(&jpeg), (64, 64));

    // Upscale: the one job upscales each output before it is stored.
    let (s, v) = post(
        &t,
        GEN,
        &key,
        json!({"prompt": "a red fox", "n": 2, "upscale": "2x"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    for d in v["data"].as_array().unwrap() {
        assert_eq!(
            size_of(&fetch(&t, d["url"].as_str().unwrap()).await),
            (128, 128)
        );
    }
    assert!(
        v["usage"]["credits_breakdown"]["txt2img"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let job = newest_job(&t, &key).await;
    assert_eq!(
        (job["task"].as_str(), job["input"]["upscale"].as_u64()),
        (Some("txt2img"), Some(2)),
        "{job}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_generations_are_jobs_to_poll() {
    let t = server(|_| {}).await;
    let (key, _) = t.user("bob").await;
    let (s, job) = post(
        &t,
        &format!("{GEN}?async=true"),
        &key,
        json!({"prompt": "a castle", "negative_prompt": "fog", "n": 2, "size": "64x96",
            "seed": 11, "style": "natural", "steps": 3, "output_format": "webp", "output_compression": 90}),
    )
    .await;
    assert_eq!(s, 200, "{job}");
    insta::assert_json_snapshot!("async_job", job, {".id" => "[job id]", ".created" => "[time]"});
    let id = job["id"].as_str().unwrap();

    // What the request became: the core task and its filled-in input.
    let (_, native) = t
        .json(Method::GET, &format!("/v1/jobs/{id}"), &key, None)
        .await;
    insta::assert_json_snapshot!(
        "async_job_core_request",
        json!({
        "task": native["task"], "model": native["model"], "input": native["input"]})
    );

    let mut done = Value::Null;
    for _ in 0..20 {
        let (s, v) = t
            .json(
                Method::GET,
                &format!("/openai/v1/jobs/{id}?poll=true"),
                &key,
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(
            ["pending", "processing", "completed"].contains(&v["status"].as_str().unwrap()),
            "{v}"
        );
        if v["status"] == "completed" {
            done = v;
            break;
        }
    }
    assert_eq!(done["progress"], 100, "{done}");
    let images = done["outputData"]["data"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for d in images {
        let webp = fetch(&t, d["url"].as_str().unwrap()).await;
        assert_eq!(&webp[8..12], b"WEBP");
        assert_eq!(size_of(&webp), (64, 96));
    }
    insta::assert_json_snapshot!("job_completed", done, {
        ".id" => "[job id]", ".created" => "[time]", ".completed" => "[time]",
        ".outputData.data[].url" => "[url]"});

    // `upscale` with `?async=true`: the job's outputs are upscaled.
    let (s, job) = post(
        &t,
        &format!("{GEN}?async=true"),
        &key,
        json!({"prompt": "a castle", "size": "64x96", "upscale": "2x"}),
    )
    .await;
    assert_eq!(s, 200, "{job}");
    let (s, v) = t
        .json(
            Method::GET,
            &format!("/openai/v1/jobs/{}?poll=true", job["id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("completed")), "{v}");
    let png = fetch(&t, v["outputData"]["data"][0]["url"].as_str().unwrap()).await;
    assert_eq!(size_of(&png), (128, 192));
    assert_eq!(v["outputData"]["data"][0]["width"], 128, "{v}");

    // Without poll: at once. A canceled job is `failed`, saying so.
    let (_, queued) = post(
        &t,
        &format!("{GEN}?async=true"),
        &key,
        json!({"prompt": "a castle", "steps": 50}),
    )
    .await;
    let qid = queued["id"].as_str().unwrap();
    let (s, _) = t
        .json(Method::POST, &format!("/v1/jobs/{qid}/cancel"), &key, None)
        .await;
    assert_eq!(s, 200);
    let mut v = Value::Null;
    for _ in 0..10 {
        v = t
            .json(
                Method::GET,
                &format!("/openai/v1/jobs/{qid}?poll=true"),
                &key,
                None,
            )
            .await
            .1;
        if v["status"] == "failed" {
            break;
        }
    }
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("canceled"),
        "{v}"
    );
    assert!(v["outputData"].is_null());

    // Another user's job is not found.
    let (other, _) = t.user("mallory").await;
    let (s, v) = t
        .json(Method::GET, &format!("/openai/v1/jobs/{id}"), &other, None)
        .await;
    assert_eq!(s, 404, "{v}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_take_json_and_multipart_and_convert_masks() {
    let t = server(|_| {}).await;
    let (key, _) = t.user("carol").await;
    let image = png(64, 64);

    // JSON, no mask: img2img.
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": data_url(&image), "prompt": "a watercolor", "seed": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let url = v["data"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(size_of(&fetch(&t, &url).await), (64, 64));
    assert_eq!(newest_job(&t, &key).await["task"], "img2img");

    // JSON with an OpenAI mask (transparent = edit) on an asset URL of this server: inpaint,
    // with the mask converted to white = repaint.
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": url, "mask": data_url(&left_half_transparent()), "prompt": "a boat",
            "size": "64x64", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(size_of(&b64(&v["data"][0]["b64_json"])), (64, 64));
    insta::assert_json_snapshot!("edit_b64", v, {".created" => "[time]", ".data[].b64_json" => "[base64]"});
    let job = newest_job(&t, &key).await;
    assert_eq!(job["task"], "inpaint", "{job}");
    insta::assert_json_snapshot!(
        "edit_core_request",
        json!({"task": job["task"], "model": job["model"], "input": job["input"]}),
        {".input.image" => "[asset id]", ".input.mask" => "[asset id]", ".input.seed" => "[seed]"}
    );
    let mask_id = job["input"]["mask"].as_str().unwrap();
    let (_, mask_asset) = t
        .json(Method::GET, &format!("/v1/assets/{mask_id}"), &key, None)
        .await;
    let mask = decode(&fetch(&t, mask_asset["url"].as_str().unwrap()).await).to_luma8();
    assert_eq!(mask.get_pixel(5, 5).0[0], 255, "transparent → repaint");
    assert_eq!(mask.get_pixel(60, 5).0[0], 0, "opaque → keep");

    // Multipart, as OpenAI's SDKs send it.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a boat")
        .text("n", "2")
        .text("size", "64x64")
        .text("response_format", "b64_json")
        .text("model", "tiny")
        .part(
            "image",
            reqwest::multipart::Part::bytes(image.clone())
                .file_name("image.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "mask",
            reqwest::multipart::Part::bytes(left_half_transparent())
                .file_name("mask.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let (s, v, _) = send(t.req(Method::POST, EDITS, Some(&key)).multipart(form)).await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        assert_eq!(size_of(&b64(&d["b64_json"])), (64, 64));
    }
    assert_eq!(newest_job(&t, &key).await["task"], "inpaint");

    // No mask but a transparent image: inpainted where it is transparent.
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": data_url(&left_half_transparent()), "prompt": "a sky"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let job = newest_job(&t, &key).await;
    assert_eq!(job["task"], "inpaint", "{job}");

    // Multipart errors name the field.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a boat")
        .text("n", "two");
    let (s, v, _) = send(t.req(Method::POST, EDITS, Some(&key)).multipart(form)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "n", "{v}");
    let form = reqwest::multipart::Form::new().text("prompt", "a boat");
    let (s, v, _) = send(t.req(Method::POST, EDITS, Some(&key)).multipart(form)).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("image")),
        "{v}"
    );

    // Every field is checked before an image is stored.
    let assets = |v: Value| v["data"].as_array().unwrap().len();
    let before = assets(
        t.json(Method::GET, "/v1/assets?limit=100", &key, None)
            .await
            .1,
    );
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": data_url(&image), "mask": data_url(&left_half_transparent()), "prompt": "x", "n": 0}),
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("n")), "{v}");
    let after = assets(
        t.json(Method::GET, "/v1/assets?limit=100", &key, None)
            .await
            .1,
    );
    assert_eq!(before, after, "nothing stored");

    // URLs of loopback or private hosts are not fetched (the default `public` policy).
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": "http://127.0.0.1:9/cat.png", "prompt": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    insta::assert_json_snapshot!("error_remote_image", v, {".error.message" => insta::dynamic_redaction(|v, _| {
        let m = v.as_str().unwrap();
        assert!(m.starts_with("image: 127.0.0.1 is a loopback, private or otherwise non-public address"), "{m}");
        "[message]"
    })});
    t.shutdown().await;
}

/// Image URLs the server fetches: from a loopback server (allowed with `fetch_images: Any`),
/// through redirects, within the body limit; refused when fetching is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_urls_are_fetched_within_the_policy() {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let image = png(64, 64);
    let served = image.clone();
    let app = axum::Router::new()
        .route(
            "/cat.png",
            get(move || {
                let b = served.clone();
                async move { ([("content-type", "image/png")], b).into_response() }
            }),
        )
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::temporary("/cat.png") }),
        )
        .route("/huge", get(|| async { vec![0u8; 3 << 20] }))
        .route("/gone", get(|| async { axum::http::StatusCode::NOT_FOUND }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let t = server(|c| {
        c.fetch_images = easel_api::service::FetchImages::Any;
        c.limits.max_body_bytes = 2 << 20;
    })
    .await;
    let (key, _) = t.user("fern").await;
    for path in ["/cat.png", "/moved"] {
        let (s, v) = post(
            &t,
            EDITS,
            &key,
            json!({"image": format!("{origin}{path}"), "prompt": "a cat", "strength": 0.5}),
        )
        .await;
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!(
            size_of(&fetch(&t, v["data"][0]["url"].as_str().unwrap()).await),
            (64, 64)
        );
    }
    let (_, list) = t
        .json(Method::GET, "/v1/assets?limit=100", &key, None)
        .await;
    let uploads: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "upload")
        .collect();
    assert_eq!(
        uploads.len(),
        2,
        "each fetched image is stored as an upload: {list}"
    );
    for (path, status) in [("/huge", 413), ("/gone", 400)] {
        let (s, v) = post(
            &t,
            EDITS,
            &key,
            json!({"image": format!("{origin}{path}"), "prompt": "x"}),
        )
        .await;
        assert_eq!(s, status, "{path}: {v}");
        assert_eq!(v["error"]["param"], "image", "{v}");
    }
    // The Replicate dialect fetches its `image` the same way.
    let (s, v, _) = send(
        t.req(Method::POST, "/replicate/v1/predictions", Some(&key))
            .header("Prefer", "wait")
            .json(&json!({"input": {"prompt": "a cat", "image": format!("{origin}/cat.png")}})),
    )
    .await;
    assert_eq!((s, &v["status"]), (201, &json!("succeeded")), "{v}");
    t.shutdown().await;

    let t = server(|c| c.fetch_images = easel_api::service::FetchImages::Off).await;
    let (key, _) = t.user("gil").await;
    let (s, v) = post(
        &t,
        EDITS,
        &key,
        json!({"image": format!("{origin}/cat.png"), "prompt": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--fetch-images off"),
        "{v}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_from_the_registry() {
    let t = server(|c| c.workers = 0).await;
    let (key, _) = t.user("dave").await;
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "a-lora", "family": "sd15", "tags": ["lora"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = t.json(Method::GET, "/openai/v1/models", &key, None).await;
    assert_eq!(s, 200, "{v}");
    insta::assert_json_snapshot!("models", v, {".data[].created" => "[time]"});
    let (s, v) = t
        .json(Method::GET, "/openai/v1/models/tiny", &key, None)
        .await;
    assert_eq!((s, v["id"].as_str()), (200, Some("tiny")), "{v}");
    insta::assert_json_snapshot!("model", v, {".created" => "[time]"});
    let (s, v) = t
        .json(Method::GET, "/openai/v1/models/a-lora", &key, None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    t.shutdown().await;
}

/// Every error path: the status, and the body's shape (snapshots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_openai_shape() {
    let t = server(|c| c.workers = 0).await;
    let (key, _) = t.user("erin").await;
    let body = json!({"prompt": "x"});

    // Auth.
    let (s, v, h) = send(t.req(Method::POST, GEN, None).json(&body)).await;
    assert_eq!(s, 401);
    assert_eq!(h["www-authenticate"], "Bearer");
    insta::assert_json_snapshot!("error_missing_key", v);
    let (s, v, _) = send(
        t.req(Method::GET, "/openai/v1/models", Some("nope"))
            .json(&body),
    )
    .await;
    assert_eq!(s, 401);
    insta::assert_json_snapshot!("error_invalid_key", v);

    // Bodies the extractors refuse.
    let (s, v, _) = send(
        t.req(Method::POST, GEN, Some(&key))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{v}"
    );
    let (s, v, _) = send(t.req(Method::POST, GEN, Some(&key)).body("prompt=x")).await;
    assert_eq!(s, 400);
    insta::assert_json_snapshot!("error_content_type", v);

    // Fields: each named, 400 (OpenAI's status for invalid parameters).
    let cases = [
        ("unknown_field", json!({"prompt": "x", "colour": "red"})),
        ("missing_prompt", json!({"n": 1})),
        ("n_zero", json!({"prompt": "x", "n": 0})),
        ("n_above_limit", json!({"prompt": "x", "n": 9})),
        ("n_type", json!({"prompt": "x", "n": "two"})),
        ("size_syntax", json!({"prompt": "x", "size": "big"})),
        ("size_multiple", json!({"prompt": "x", "size": "100x100"})),
        (
            "size_too_large",
            json!({"prompt": "x", "size": "4096x4096"}),
        ),
        ("style", json!({"prompt": "x", "style": "pastel"})),
        (
            "response_format",
            json!({"prompt": "x", "response_format": "png"}),
        ),
        ("upscale", json!({"prompt": "x", "upscale": "3x"})),
        ("stream", json!({"prompt": "x", "stream": true})),
        (
            "background",
            json!({"prompt": "x", "background": "transparent"}),
        ),
        ("seed", json!({"prompt": "x", "seed": -1})),
        ("steps", json!({"prompt": "x", "steps": 0})),
        (
            "image_on_generations",
            json!({"prompt": "x", "image": "ast_x"}),
        ),
        ("prompt_too_long", json!({"prompt": "x".repeat(4001)})),
    ];
    let mut shapes = serde_json::Map::new();
    for (name, body) in cases {
        let (s, v) = post(&t, GEN, &key, body).await;
        assert_eq!(s, 400, "{name}: {v}");
        let param = v["error"]["param"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {v}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{param}: ")),
            "{v}"
        );
        shapes.insert(name.into(), v);
    }
    insta::assert_json_snapshot!("error_fields", shapes);

    // Upscaled outputs over the server's pixel limit are refused at once.
    let (s, v) = post(
        &t,
        &format!("{GEN}?async=true"),
        &key,
        json!({"prompt": "x", "size": "2048x2048", "upscale": "4x"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("upscale")),
        "{v}"
    );
    let (s, v) = post(&t, &format!("{GEN}?async=maybe"), &key, body.clone()).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("async")),
        "{v}"
    );

    // Unknown model: 404 model_not_found; a LoRA as the model: 400.
    let (s, v) = post(&t, GEN, &key, json!({"prompt": "x", "model": "dall-e-3"})).await;
    assert_eq!(s, 404);
    insta::assert_json_snapshot!("error_unknown_model", v);
    t.json(
        Method::POST,
        "/v1/models",
        ADMIN_KEY,
        Some(json!({"name": "a-lora", "tags": ["lora"]})),
    )
    .await;
    let (s, v) = post(&t, GEN, &key, json!({"prompt": "x", "model": "a-lora"})).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("model")),
        "{v}"
    );

    // Routes.
    let (s, v) = t
        .json(
            Method::GET,
            "/openai/v1/jobs/job_01jd0000000000000000000000",
            &key,
            None,
        )
        .await;
    assert_eq!(s, 404);
    insta::assert_json_snapshot!("error_job_not_found", v);
    let (s, v) = t.json(Method::GET, "/openai/v1/nothing", &key, None).await;
    assert_eq!(s, 404);
    insta::assert_json_snapshot!("error_unknown_route", v);
    let (s, v) = t.json(Method::GET, GEN, &key, None).await;
    assert_eq!(s, 405);
    insta::assert_json_snapshot!("error_method", v);

    // What Easel does not serve: 501, naming what is missing.
    let mut unsupported = serde_json::Map::new();
    for path in [
        "/openai/v1/chat/completions",
        "/openai/v1/audio/speech",
        "/openai/v1/videos/generations",
        "/openai/v1/music/generations",
        "/openai/v1/images/variations",
    ] {
        let (s, v) = post(&t, path, &key, json!({"model": "x", "input": "hi"})).await;
        assert_eq!(s, 501, "{path}: {v}");
        unsupported.insert(path.into(), v);
    }
    insta::assert_json_snapshot!("error_not_implemented", unsupported);
    let (s, _) = post(&t, "/openai/v1/chat/completions", "bad-key", json!({})).await;
    assert_eq!(s, 401, "auth comes first");
    t.shutdown().await;
}

/// Text embeddings from the tiny model's CLIP text encoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_come_from_the_text_encoder() {
    let t = server(|_| {}).await;
    let (key, _) = t.user("emma").await;
    let (s, v) = post(
        &t,
        "/openai/v1/embeddings",
        &key,
        json!({"input": ["a red fox", "a red fox", "a blue car"], "model": "tiny"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["object"].as_str(), v["model"].as_str()),
        (Some("list"), Some("tiny"))
    );
    let vecs: Vec<Vec<f64>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(
                (d["object"].as_str(), d["index"].as_u64()),
                (Some("embedding"), Some(i as u64))
            );
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vecs.len(), 3);
    let dim = vecs[0].len();
    assert!(dim > 0 && vecs.iter().all(|v| v.len() == dim));
    for v in &vecs {
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
    }
    assert_eq!(vecs[0], vecs[1], "the same text, the same vector");
    assert_ne!(vecs[0], vecs[2], "different texts differ");
    // [BOS, a, red, fox, EOS] twice and [BOS, a, blue, car, EOS].
    assert_eq!(v["usage"]["prompt_tokens"], 15, "{v}");
    insta::assert_json_snapshot!("embeddings", v, {".data[].embedding" => "[floats]"});

    // base64: the same floats, little-endian; the default model; one string.
    let (s, b) = post(
        &t,
        "/openai/v1/embeddings",
        &key,
        json!({"input": "a red fox", "encoding_format": "base64", "dimensions": dim}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    insta::assert_json_snapshot!("embeddings_base64", b, {".data[].embedding" => "[base64]"});
    let bytes = b64(&b["data"][0]["embedding"]);
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let as_f32: Vec<f32> = vecs[0].iter().map(|x| *x as f32).collect();
    assert_eq!(floats, as_f32, "JSON floats are the f32s, shortest form");

    for (body, status, param) in [
        (json!({"input": []}), 400, "input"),
        (json!({"input": [1, 2]}), 400, "input[0]"),
        (json!({"input": ""}), 400, "input"),
        (json!({"input": "x", "dimensions": 3}), 400, "dimensions"),
        (
            json!({"input": "x", "encoding_format": "int8"}),
            400,
            "encoding_format",
        ),
        (json!({"input": "x", "model": "nope"}), 404, "model"),
        (json!({"input": "x", "colour": 1}), 400, "colour"),
    ] {
        let (s, v) = post(&t, "/openai/v1/embeddings", &key, body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    t.shutdown().await;
}

/// A job still running at the synchronous deadline: 504 naming the job, not to be retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_requests_time_out_with_the_job_to_poll() {
    let t = server(|c| {
        c.workers = 0;
        c.sync_timeout = Duration::from_millis(300);
    })
    .await;
    let (key, _) = t.user("frank").await;
    let (s, v, h) = send(
        t.req(Method::POST, GEN, Some(&key))
            .header("idempotency-key", "same-request")
            .json(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(s, 504, "{v}");
    assert_eq!(h["x-should-retry"], "false");
    let job = newest_job(&t, &key).await;
    let id = job["id"].as_str().unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("GET /openai/v1/jobs/{id}")),
        "{message}"
    );
    let redacted = json!(v).to_string().replace(id, "[job id]");
    insta::assert_json_snapshot!(
        "error_timeout",
        serde_json::from_str::<Value>(&redacted).unwrap()
    );

    // The same Idempotency-Key finds the same job instead of submitting another.
    let (s, _, _) = send(
        t.req(Method::POST, GEN, Some(&key))
            .header("idempotency-key", "same-request")
            .json(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(s, 504);
    let (_, jobs) = t.json(Method::GET, "/v1/jobs", &key, None).await;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1, "{jobs}");

    // It runs once a worker comes, and the poll sees it through.
    let (stop, handle) = worker(t.server());
    let (s, v) = t
        .json(
            Method::GET,
            &format!("/openai/v1/jobs/{id}?poll=true"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, 200);
    let mut v = v;
    for _ in 0..10 {
        if v["status"] == "completed" {
            break;
        }
        v = t
            .json(
                Method::GET,
                &format!("/openai/v1/jobs/{id}?poll=true"),
                &key,
                None,
            )
            .await
            .1;
    }
    assert_eq!(v["status"], "completed", "{v}");
    let _ = stop.send(true);
    let _ = handle.await;
    t.shutdown().await;
}

/// The OpenAPI document has the dialect's paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_dialect() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (_, doc, _) = send(t.req(Method::GET, "/openapi.json", None)).await;
    for p in [
        "/openai/v1/images/generations",
        "/openai/v1/images/edits",
        "/openai/v1/jobs/{id}",
        "/openai/v1/models",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    assert!(doc["components"]["schemas"]
        .get("OpenAiImageRequest")
        .is_some());
    t.shutdown().await;
}

/// The official `openai` Python package against this server (`EASEL_PYTHON`: a Python with
/// `openai` installed; `.ci/run` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let Some(python) = std::env::var_os("EASEL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipping official_python_client: set EASEL_PYTHON to a Python with the `openai` \
             package (python -m venv .ci-venv && .ci-venv/bin/pip install openai)"
        );
        return;
    };
    let t = server(|_| {}).await;
    let (key, _) = t.user("python").await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("image.png"), png(64, 64)).unwrap();
    std::fs::write(files.path().join("mask.png"), left_half_transparent()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .env("EASEL_BASE_URL", format!("{}/openai/v1", t.base))
        .env("EASEL_KEY", &key)
        .env("EASEL_IMAGE", files.path().join("image.png"))
        .env("EASEL_MASK", files.path().join("mask.png"))
        .output()
        .await
        .expect("runs the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    t.shutdown().await;
}
