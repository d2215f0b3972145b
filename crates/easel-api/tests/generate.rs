//! The diffusion engine through the queue: `POST /v1/jobs` with `txt2img`, `img2img` and
//! `inpaint` on tiny random-weight models made by `easel_diffusion::tiny`, SSE progress and
//! previews, outputs with A1111 metadata, seeds, cancel and validation.

mod common;

use std::time::Duration;

use common::*;
use easel_diffusion::tiny::make_tiny;
use reqwest::Method;
use serde_json::{json, Value};

/// A server whose models folder holds tiny models of the given families, named
/// `tiny-<family>`.
async fn server_with(families: &[&str]) -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    for f in families {
        make_tiny(&dir.path().join(format!("models/tiny-{f}")), f, 7).unwrap();
    }
    TestServer::start_in(dir, |c| c.scan_models = true).await
}

async fn content(t: &TestServer, key: &str, asset_id: &str) -> Vec<u8> {
    let resp = t
        .req(
            Method::GET,
            &format!("/v1/assets/{asset_id}/content"),
            Some(key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.bytes().await.unwrap().to_vec()
}

fn output_ids(job: &Value) -> Vec<String> {
    job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["asset_id"].as_str().unwrap().to_string())
        .collect()
}

fn text_chunk(png: &[u8], key: &str) -> String {
    easel_imageops::read_png_text(png)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no `{key}` chunk"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt2img_streams_progress_and_previews_and_stores_images_with_metadata() {
    let t = server_with(&["sd15"]).await;
    let (key, _) = t.user("alice").await;
    let body = json!({"task": "txt2img", "model": "tiny-sd15", "input": {
        "prompt": "a (red:1.3) fox in the snow", "negative_prompt": "blurry",
        "width": 64, "height": 64, "steps": 3, "count": 2, "seed": 42,
        "scheduler": "euler_a", "preview_every": 1}});
    let job = t.submit(&key, body.clone()).await;
    let id = job["id"].as_str().unwrap();
    // The stored input says what runs: defaults are filled in.
    assert_eq!(job["input"]["guidance"], 7.5, "{job}");
    assert_eq!(job["model"], "tiny-sd15");

    let resp = t
        .req(Method::GET, &format!("/v1/jobs/{id}/events"), Some(&key))
        .send()
        .await
        .unwrap();
    let sse = tokio::time::timeout(Duration::from_secs(120), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(sse.contains("event: progress"), "{sse}");
    assert!(sse.contains("\"total_steps\":6"), "{sse}");
    assert!(sse.contains("event: preview"), "{sse}");
    assert!(sse.contains("data:image/jpeg;base64,"), "{sse}");
    assert!(sse.contains("\"status\":\"succeeded\""), "{sse}");

    let done = t.wait(&key, id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let ids = output_ids(&done);
    assert_eq!(ids.len(), 2);
    let mut images = Vec::new();
    for (i, a) in ids.iter().enumerate() {
        let png = content(&t, &key, a).await;
        let img = decode(&png);
        assert_eq!((img.width(), img.height()), (64, 64));
        let params = text_chunk(&png, "parameters");
        assert!(
            params.starts_with("a (red:1.3) fox in the snow\nNegative prompt: blurry\nSteps: 3, Sampler: euler_a, CFG scale: 7.5, "),
            "{params}"
        );
        assert!(params.contains(&format!("Seed: {}", 42 + i)), "{params}");
        assert!(params.contains("Size: 64x64, Model: tiny-sd15"), "{params}");
        let meta: Value = serde_json::from_str(&text_chunk(&png, "easel")).unwrap();
        assert_eq!(meta["seed"], 42 + i as u64);
        assert_eq!(meta["index"], i as u64);
        let (_, asset) = t
            .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
            .await;
        assert_eq!(asset["metadata"]["seed"], 42 + i as u64, "{asset}");
        images.push(png);
    }
    assert_ne!(images[0], images[1], "image i uses seed + i");

    // The same request again gives the same pixels; another seed does not.
    let again = t.submit(&key, body.clone()).await;
    let again = t.wait(&key, again["id"].as_str().unwrap()).await;
    let first = content(&t, &key, &output_ids(&again)[0]).await;
    assert_eq!(
        decode(&first).to_rgb8().as_raw(),
        decode(&images[0]).to_rgb8().as_raw()
    );
    let mut other = body.clone();
    other["input"]["seed"] = json!(43);
    other["input"]["count"] = json!(1);
    let other = t.submit(&key, other).await;
    let other = t.wait(&key, other["id"].as_str().unwrap()).await;
    let png = content(&t, &key, &output_ids(&other)[0]).await;
    assert_eq!(
        decode(&png).to_rgb8().as_raw(),
        decode(&images[1]).to_rgb8().as_raw(),
        "seed 43 alone is image 1 of seed 42"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_and_inpaint_with_both_kinds_of_model() {
    let t = server_with(&["sd15", "sd15-inpaint"]).await;
    let (key, _) = t.user("bob").await;
    let init = t.upload(&key, png(128, 96)).await;
    // A mask as a data URL: white (repaint) on the right half.
    let mask = {
        let img =
            image::GrayImage::from_fn(128, 96, |x, _| image::Luma([if x >= 64 { 255 } else { 0 }]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        use base64::Engine;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(out.into_inner())
        )
    };
    let cases = [
        json!({"task": "img2img", "model": "tiny-sd15", "input": {"prompt": "a boat", "image": init, "steps": 4, "strength": 0.5, "seed": 1}}),
        json!({"task": "inpaint", "model": "tiny-sd15", "input": {"prompt": "a boat", "image": init, "mask": mask, "steps": 3, "seed": 1, "strength": 0.8}}),
        json!({"task": "inpaint", "model": "tiny-sd15-inpaint", "input": {"prompt": "a boat", "image": init, "mask": mask, "steps": 3, "seed": 1, "format": "webp", "quality": 80}}),
    ];
    for body in cases {
        let job = t.submit(&key, body.clone()).await;
        // Size defaults to the init image's.
        assert_eq!(
            (
                job["input"]["width"].as_u64(),
                job["input"]["height"].as_u64()
            ),
            (Some(128), Some(96)),
            "{job}"
        );
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{body}: {done}");
        let a = &output_ids(&done)[0];
        let bytes = content(&t, &key, a).await;
        let img = decode(&bytes);
        assert_eq!((img.width(), img.height()), (128, 96));
        let (_, asset) = t
            .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
            .await;
        assert_eq!(asset["parent_id"], init.as_str(), "{asset}");
        if body["input"]["format"] == "webp" {
            assert_eq!(asset["mime_type"], "image/webp");
        } else {
            assert!(text_chunk(&bytes, "parameters").contains("Denoising strength: "));
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_generation_can_be_canceled() {
    let t = server_with(&["sd15"]).await;
    let (key, _) = t.user("carol").await;
    let job = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": "tiny-sd15", "input": {
                "prompt": "x", "width": 256, "height": 256, "steps": 150, "count": 8}}),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    // Wait for the first progress, then cancel.
    for _ in 0..600 {
        let (_, v) = t
            .json(Method::GET, &format!("/v1/jobs/{id}"), &key, None)
            .await;
        if v["progress"].as_f64().unwrap_or(0.0) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = t
        .json(Method::POST, &format!("/v1/jobs/{id}/cancel"), &key, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let done = t.wait(&key, id).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(done["progress"].as_f64().unwrap() < 1.0, "{done}");
    assert!(done["outputs"].as_array().unwrap().is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_requests_are_validated_with_fields() {
    // No model installed: a clear error naming `model`.
    let t = TestServer::start(|c| c.workers = 0).await;
    let (key, _) = t.user("dan").await;
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "input": {"prompt": "x"}})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "model", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("models pull"));
    t.shutdown().await;

    let t = server_with(&["sd15"]).await;
    let (key, _) = t.user("dan").await;
    let bad = [
        (
            json!({"task": "txt2img", "model": "nope", "input": {"prompt": "x"}}),
            "model",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": "x", "scheduler": "warp"}}),
            "input.scheduler",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": "x", "width": 70}}),
            "input.width",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": "x", "steps": 151}}),
            "input.steps",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": "x", "count": 9}}),
            "input.count",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": "x", "loras": [{"model": "tiny-sd15"}]}}),
            "input.loras[0].model",
        ),
        (
            json!({"task": "img2img", "input": {"prompt": "x"}}),
            "input.image",
        ),
        (
            json!({"task": "inpaint", "input": {"prompt": "x", "image": "ast_01jd0000000000000000000000", "mask": "ast_01jd0000000000000000000000"}}),
            "input.image",
        ),
        (
            json!({"task": "txt2img", "input": {"prompt": 5}}),
            "input.prompt",
        ),
    ];
    for (body, field) in bad {
        let (s, v) = t
            .json(Method::POST, "/v1/jobs", &key, Some(body.clone()))
            .await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    // Without a model, the installed one is used.
    let job = t
        .submit(
            &key,
            json!({"task": "txt2img", "input": {"prompt": "x", "width": 64, "height": 64, "steps": 1}}),
        )
        .await;
    assert_eq!(job["model"], "tiny-sd15");
    assert!(
        job["input"]["seed"].as_u64().is_some(),
        "the seed is recorded"
    );
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd2_sdxl_and_distilled_settings_run_through_the_queue() {
    let t = server_with(&["sd2", "sdxl"]).await;
    let (key, _) = t.user("erin").await;
    let cases = [
        // SD 2.x (v-prediction, OpenCLIP text encoder) with a long weighted prompt.
        json!({"task": "txt2img", "model": "tiny-sd2", "input": {"prompt": format!("a (castle:1.4) {}", "on a hill, ".repeat(40)), "width": 64, "height": 64, "steps": 2}}),
        // SDXL with its default guidance (5) and a negative prompt.
        json!({"task": "txt2img", "model": "tiny-sdxl", "input": {"prompt": "a castle", "negative_prompt": "fog", "width": 64, "height": 64, "steps": 2}}),
        // Turbo/LCM-style: guidance off, one step, the LCM scheduler.
        json!({"task": "txt2img", "model": "tiny-sdxl", "input": {"prompt": "a castle", "width": 64, "height": 64, "steps": 1, "guidance": 0, "scheduler": "lcm"}}),
    ];
    for body in cases {
        let job = t.submit(&key, body.clone()).await;
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{body}: {done}");
        let png = content(&t, &key, &output_ids(&done)[0]).await;
        assert_eq!(decode(&png).width(), 64);
        let params = text_chunk(&png, "parameters");
        assert!(
            params.contains(&format!("Model: {}", body["model"].as_str().unwrap())),
            "{params}"
        );
    }
    let (_, sdxl) = t
        .json(Method::GET, "/v1/models/tiny-sdxl", &key, None)
        .await;
    assert_eq!(sdxl["family"], "sdxl", "{sdxl}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_loras_with_scales_change_the_image() {
    use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    make_tiny(&models.join("tiny-sd15"), "sd15", 7).unwrap();
    make_tiny_lora(
        &models.join("tiny-sd15"),
        &models.join("style-a.safetensors"),
        LoraLayout::Kohya,
        4,
        1,
    )
    .unwrap();
    make_tiny_lora(
        &models.join("tiny-sd15"),
        &models.join("style-b.safetensors"),
        LoraLayout::Peft,
        4,
        2,
    )
    .unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, _) = t.user("fay").await;
    let (_, lora) = t.json(Method::GET, "/v1/models/style-a", &key, None).await;
    assert!(
        lora["tags"].as_array().unwrap().contains(&json!("lora")),
        "{lora}"
    );

    let body = |loras: Value| {
        json!({"task": "txt2img", "model": "tiny-sd15", "input": {
            "prompt": "a fox", "width": 64, "height": 64, "steps": 2, "seed": 3, "loras": loras}})
    };
    let mut pixels = Vec::new();
    for loras in [
        json!([]),
        json!([{"model": "style-a", "scale": 1.0}]),
        json!([{"model": "style-a", "scale": 1.0}, {"model": "style-b", "scale": 0.5}]),
        json!([{"model": "style-a", "scale": 0.0}]),
    ] {
        let job = t.submit(&key, body(loras.clone())).await;
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{loras}: {done}");
        let png = content(&t, &key, &output_ids(&done)[0]).await;
        let meta: Value = serde_json::from_str(&text_chunk(&png, "easel")).unwrap();
        assert_eq!(
            meta["loras"].as_array().unwrap().len(),
            loras.as_array().unwrap().len()
        );
        pixels.push(decode(&png).to_rgb8().into_raw());
    }
    assert_ne!(pixels[0], pixels[1], "a LoRA changes the image");
    assert_ne!(pixels[1], pixels[2], "a second LoRA changes it again");
    assert_eq!(pixels[0], pixels[3], "scale 0 is the base model");
    t.shutdown().await;
}

/// A user's model (a composition over `tiny-sd15` with a LoRA, defaults and presets) runs
/// its base with its LoRA first: the same image as naming the base and the LoRA directly.
/// Its default preset fills what a request leaves out, a named preset wins over the default,
/// the request's own values over both; the job names the user's model by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_composition_runs_its_base_with_its_loras_defaults_and_presets() {
    use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    make_tiny(&models.join("tiny-sd15"), "sd15", 7).unwrap();
    make_tiny_lora(
        &models.join("tiny-sd15"),
        &models.join("style-a.safetensors"),
        LoraLayout::Kohya,
        4,
        1,
    )
    .unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, _) = t.user("gus").await;
    let (other, _) = t.user("hal").await;
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/models",
            &key,
            Some(json!({
                "name": "Gus's fox style",
                "base_model": "tiny-sd15",
                "loras": [{"model": "style-a", "scale": 1.0}],
                "defaults": {"width": 64, "height": 64, "steps": 2},
            })),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["family"], "sd15", "the base lends its family: {m}");
    assert!(m["owner_id"].as_str().is_some(), "{m}");
    let (_, base) = t
        .json(Method::GET, "/v1/models/tiny-sd15", &key, None)
        .await;
    assert_eq!(m["base_model"], base["id"], "stored by id: {m}");

    // The same image as the base with the LoRA named directly.
    let direct = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": "tiny-sd15", "input": {"prompt": "a fox",
                "width": 64, "height": 64, "steps": 2, "seed": 5,
                "loras": [{"model": "style-a", "scale": 1.0}]}}),
        )
        .await;
    let composed = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": id, "input": {"prompt": "a fox", "seed": 5}}),
        )
        .await;
    assert_eq!(composed["model"], id.as_str(), "{composed}");
    assert_eq!(
        composed["input"]["steps"], 2,
        "the model's defaults: {composed}"
    );
    assert_eq!(
        composed["input"]["loras"][0]["model"], "style-a",
        "{composed}"
    );
    let mut images = Vec::new();
    for job in [&direct, &composed] {
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let png = content(&t, &key, &output_ids(&done)[0]).await;
        images.push(decode(&png).to_rgb8().into_raw());
    }
    assert_eq!(
        images[0], images[1],
        "a composition runs its base with its LoRA"
    );

    // Presets: only the owner writes them; the default fills what a request leaves out.
    let presets = format!("/v1/models/{id}/presets");
    let (s, _) = t
        .json(Method::POST, &presets, &other, Some(json!({"name": "x"})))
        .await;
    assert_eq!(s, 404, "another user does not see a private model");
    let (s, e) = t
        .json(
            Method::POST,
            &presets,
            &key,
            Some(json!({"name": "bad", "params": {"guidance": 99}})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("params.guidance")),
        "{e}"
    );
    let (s, p) = t
        .json(
            Method::POST,
            &presets,
            &key,
            Some(json!({"name": "soft", "is_default": true,
                "params": {"guidance": 3.0, "negative_prompt": "harsh"}})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let (_, slow) = t
        .json(
            Method::POST,
            &presets,
            &key,
            Some(json!({"name": "slow", "params": {"steps": 3, "guidance": 4.0}})),
        )
        .await;
    let run = |body: Value| {
        let (t, key) = (&t, key.clone());
        async move { t.submit(&key, body).await }
    };
    let j = run(json!({"task": "txt2img", "model": id, "input": {"prompt": "a fox"}})).await;
    assert_eq!(
        (
            &j["input"]["guidance"],
            &j["input"]["negative_prompt"],
            &j["input"]["steps"]
        ),
        (&json!(3.0), &json!("harsh"), &json!(2)),
        "the default preset, then the model's defaults: {j}"
    );
    let j = run(json!({"task": "txt2img", "model": id, "preset": "slow",
        "input": {"prompt": "a fox", "guidance": 6.0}}))
    .await;
    assert_eq!(
        (
            &j["input"]["guidance"],
            &j["input"]["steps"],
            &j["input"]["negative_prompt"]
        ),
        (&json!(6.0), &json!(3), &Value::Null),
        "a named preset replaces the default; the request wins: {j}"
    );
    let j = run(json!({"task": "txt2img", "model": id, "preset": slow["id"],
        "input": {"prompt": "a fox"}}))
    .await;
    assert_eq!(j["input"]["steps"], 3, "by id too: {j}");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(
                json!({"task": "txt2img", "model": id, "preset": "nope", "input": {"prompt": "x"}}),
            ),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("preset")),
        "{e}"
    );
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "upscale", "preset": "slow",
                "input": {"image": output_ids(&t.wait(&key, j["id"].as_str().unwrap()).await)[0], "factor": 2}})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("preset")),
        "{e}"
    );
    // Another user cannot run a private model; a public one they can.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &other,
            Some(json!({"task": "txt2img", "model": id, "input": {"prompt": "x"}})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("model")),
        "{e}"
    );
    let (s, _) = t
        .json(
            Method::PATCH,
            &format!("/v1/models/{id}"),
            &key,
            Some(json!({"privacy": "public"})),
        )
        .await;
    assert_eq!(s, 200);
    let j = t
        .submit(
            &other,
            json!({"task": "txt2img", "model": id, "input": {"prompt": "a fox"}}),
        )
        .await;
    assert_eq!(
        j["input"]["guidance"], 3.0,
        "its default preset applies: {j}"
    );
    let done = t.wait(&other, j["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    t.shutdown().await;
}

/// `POST /v1/uploads/import`: an image by URL is complete at once (201, its options applied);
/// a LoRA by URL is fetched in the background (202 `validating`, then `complete` naming the
/// caller's model by the name given); asset options on a LoRA, both or neither source, and a
/// hub import on a server without hub access are refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_fetch_images_at_once_and_loras_in_the_background() {
    use axum::response::IntoResponse;
    use axum::routing::get;
    use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
    let src = tempfile::tempdir().unwrap();
    make_tiny(&src.path().join("tiny"), "sd15", 7).unwrap();
    let lora_path = src.path().join("ink.safetensors");
    make_tiny_lora(
        &src.path().join("tiny"),
        &lora_path,
        LoraLayout::Kohya,
        4,
        1,
    )
    .unwrap();
    let lora = std::fs::read(&lora_path).unwrap();
    let image = png(40, 30);
    let (l, i, slow) = (lora.clone(), image.clone(), lora.clone());
    let app = axum::Router::new()
        .route(
            "/ink.safetensors",
            get(move || {
                let b = l.clone();
                async move { b.into_response() }
            }),
        )
        .route(
            "/cat.png",
            get(move || {
                let b = i.clone();
                async move { ([("content-type", "image/png")], b).into_response() }
            }),
        )
        .route(
            "/slow/{name}",
            get(move || {
                let b = slow.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    b.into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let t = TestServer::start(|c| c.fetch_images = easel_api::service::FetchImages::Any).await;
    let (key, owner_id) = t.user("kim").await;
    let import = |body: Value| {
        let (t, key) = (&t, key.clone());
        async move {
            t.json(Method::POST, "/v1/uploads/import", &key, Some(body))
                .await
        }
    };

    let (s, u) = import(json!({"url": format!("{origin}/cat.png"), "hidden": true})).await;
    assert_eq!((s, u["status"].as_str()), (201, Some("complete")), "{u}");
    let asset = u["asset_id"].as_str().unwrap();
    let (_, a) = t
        .json(Method::GET, &format!("/v1/assets/{asset}"), &key, None)
        .await;
    assert_eq!(
        (a["width"].as_u64(), a["hidden"].as_bool()),
        (Some(40), Some(true)),
        "{a}"
    );

    let (s, u) = import(
        json!({"kind": "lora", "url": format!("{origin}/ink.safetensors"),
        "name": "my ink"}),
    )
    .await;
    assert_eq!((s, u["status"].as_str()), (202, Some("validating")), "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    let mut done = u;
    for _ in 0..200 {
        if done["status"] != "validating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        done = t
            .json(Method::GET, &format!("/v1/uploads/{id}"), &key, None)
            .await
            .1;
    }
    assert_eq!(
        (done["status"].as_str(), done["file_size"].as_u64()),
        (Some("complete"), Some(lora.len() as u64)),
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let (s, m) = t
        .json(Method::GET, &format!("/v1/models/{model}"), &key, None)
        .await;
    assert_eq!(
        (s, m["name"].as_str(), m["owner_id"].as_str()),
        (200, Some("my ink"), Some(owner_id.as_str())),
        "{m}"
    );

    // While imports are fetched: completing one is a conflict; at most 4 per user at once
    // (429); each is named from its URL, decoded.
    let mut slow = Vec::new();
    for i in 0..4 {
        let (s, u) = import(json!({"kind": "lora",
            "url": format!("{origin}/slow/ink%20{i}.safetensors")}))
        .await;
        assert_eq!((s, u["status"].as_str()), (202, Some("validating")), "{u}");
        slow.push(u["id"].as_str().unwrap().to_string());
    }
    let (s, e) =
        import(json!({"kind": "lora", "url": format!("{origin}/slow/x.safetensors")})).await;
    assert_eq!(s, 429, "{e}");
    let path = format!("/v1/uploads/{}", slow[0]);
    let (s, e) = t
        .json(Method::POST, &format!("{path}/complete"), &key, None)
        .await;
    assert_eq!(s, 409, "{e}");
    // Deleting one cancels it: gone, and it makes no model.
    let (s, e) = t.json(Method::DELETE, &path, &key, None).await;
    assert!(s == 200 || s == 204, "{s} {e}");
    let (s, _) = t.json(Method::GET, &path, &key, None).await;
    assert_eq!(s, 404);
    for (i, id) in slow.iter().enumerate().skip(1) {
        let mut u = Value::Null;
        for _ in 0..200 {
            u = t
                .json(Method::GET, &format!("/v1/uploads/{id}"), &key, None)
                .await
                .1;
            if u["status"] != "validating" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(u["status"], "complete", "{u}");
        let (_, m) = t
            .json(
                Method::GET,
                &format!("/v1/models/{}", u["model_id"].as_str().unwrap()),
                &key,
                None,
            )
            .await;
        assert_eq!(m["name"], format!("ink {i}"), "{m}");
    }

    let url = format!("{origin}/ink.safetensors");
    for (body, status, field) in [
        (
            json!({"kind": "lora", "url": url, "hidden": true}),
            422,
            "hidden",
        ),
        (
            json!({"kind": "lora", "url": url, "parent_id": asset}),
            422,
            "parent_id",
        ),
        (json!({"url": url, "hub": {"repo": "a/b"}}), 422, "hub"),
        (json!({"kind": "lora"}), 422, "url"),
        (
            json!({"kind": "lora", "url": "ftp://x/y.safetensors"}),
            422,
            "url",
        ),
        (json!({"kind": "lora", "hub": {"repo": "a/b"}}), 501, "hub"),
    ] {
        let (s, e) = import(body.clone()).await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {e}"
        );
    }
    t.shutdown().await;
}

/// A LoRA uploaded in parts (`kind: lora`) becomes a private model of its uploader: the same
/// image as the same file registered by the server, usable by its owner (directly and in
/// their compositions, which others may then run), refused to anyone else; its file cannot
/// be re-pointed; pickles and files without LoRA weights fail the upload; deleting the
/// model deletes its blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_lora_is_its_owners_model() {
    use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    make_tiny(&models.join("tiny-sd15"), "sd15", 7).unwrap();
    make_tiny_lora(
        &models.join("tiny-sd15"),
        &models.join("style-a.safetensors"),
        LoraLayout::Kohya,
        4,
        1,
    )
    .unwrap();
    let file = std::fs::read(models.join("style-a.safetensors")).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, owner_id) = t.user("ivy").await;
    let (other, _) = t.user("jon").await;

    let (s, u) = t
        .upload_in_parts(
            &key,
            json!({"file_name": "my-style.safetensors", "kind": "lora"}),
            &file,
            2,
        )
        .await;
    assert_eq!((s, u["status"].as_str()), (200, Some("complete")), "{u}");
    assert_eq!(u["kind"], "lora");
    assert_eq!(u["asset_id"], Value::Null, "{u}");
    let id = u["model_id"].as_str().unwrap().to_string();
    let (s, m) = t
        .json(Method::GET, &format!("/v1/models/{id}"), &key, None)
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["name"], "my-style", "{m}");
    assert_eq!(
        (m["family"].as_str(), m["privacy"].as_str()),
        (Some("lora"), Some("private"))
    );
    assert_eq!(m["tags"], json!(["lora"]));
    assert_eq!(m["owner_id"], owner_id.as_str());
    assert_eq!(
        m["source"],
        Value::Null,
        "where the file is stays on the server: {m}"
    );
    let (s, _) = t
        .json(Method::GET, &format!("/v1/models/{id}"), &other, None)
        .await;
    assert_eq!(s, 404, "a private LoRA is its owner's");

    // Its owner applies it: the same image as the server's copy of the file.
    let body = |lora: &str| {
        json!({"task": "txt2img", "model": "tiny-sd15", "input": {"prompt": "a fox",
            "width": 64, "height": 64, "steps": 2, "seed": 9,
            "loras": [{"model": lora, "scale": 1.0}]}})
    };
    let mut images = Vec::new();
    for lora in ["style-a", id.as_str()] {
        let job = t.submit(&key, body(lora)).await;
        assert_eq!(job["input"]["loras"][0]["model"], lora, "{job}");
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let png = content(&t, &key, &output_ids(&done)[0]).await;
        images.push(decode(&png).to_rgb8().into_raw());
    }
    assert_eq!(
        images[0], images[1],
        "the uploaded file is the LoRA applied"
    );

    // Anyone else: not found, in a request or in a composition of their own.
    let (s, e) = t
        .json(Method::POST, "/v1/jobs", &other, Some(body(&id)))
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("input.loras[0].model")),
        "{e}"
    );
    let composition = |lora: &str| {
        json!({"name": "fox look", "base_model": "tiny-sd15",
            "loras": [{"model": lora, "scale": 1.0}],
            "defaults": {"width": 64, "height": 64, "steps": 2}})
    };
    let (s, e) = t
        .json(Method::POST, "/v1/models", &other, Some(composition(&id)))
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("loras[0].model")),
        "{e}"
    );
    // The owner's public composition over it runs for others too.
    let mut c = composition(&id);
    c["privacy"] = json!("public");
    let (s, comp) = t.json(Method::POST, "/v1/models", &key, Some(c)).await;
    assert_eq!(s, 201, "{comp}");
    let job = t
        .submit(
            &other,
            json!({"task": "txt2img", "model": comp["id"], "input": {"prompt": "a fox", "seed": 9}}),
        )
        .await;
    let done = t.wait(&other, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let png = content(&t, &other, &output_ids(&done)[0]).await;
    assert_eq!(decode(&png).to_rgb8().into_raw(), images[0]);

    // Its file is the upload's: neither source nor shape can change; the name can.
    for (patch, field) in [
        (json!({"source": "blob:models/x.safetensors"}), "source"),
        (json!({"tags": []}), "tags"),
        (json!({"base_model": "tiny-sd15"}), "base_model"),
    ] {
        let (s, e) = t
            .json(
                Method::PATCH,
                &format!("/v1/models/{id}"),
                &key,
                Some(patch.clone()),
            )
            .await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{patch}: {e}"
        );
    }
    let (s, m) = t
        .json(
            Method::PATCH,
            &format!("/v1/models/{id}"),
            &key,
            Some(json!({"name": "Ivy's style", "tags": ["lora", "fox"]})),
        )
        .await;
    assert_eq!((s, m["name"].as_str()), (200, Some("Ivy's style")), "{m}");
    // Nobody makes a model of their own point at a blob.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/models",
            &other,
            Some(json!({"name": "stolen", "family": "lora", "tags": ["lora"],
                "source": format!("blob:models/{id}.safetensors")})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("source")),
        "{e}"
    );

    // Pickles and files without LoRA weights fail their upload, saying why.
    let mut plain = Vec::new();
    let header = br#"{"model.diffusion_model.out.2.weight":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    plain.extend((header.len() as u64).to_le_bytes());
    plain.extend(header);
    plain.extend([0u8; 4]);
    for (bytes, says) in [
        (b"PK\x03\x04 a torch zip".to_vec(), "pickle"),
        (plain, "no LoRA weights"),
        (file[..file.len() - 1].to_vec(), "past the end"),
    ] {
        let (s, e) = t
            .upload_in_parts(
                &key,
                json!({"file_name": "bad.safetensors", "kind": "lora"}),
                &bytes,
                1,
            )
            .await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (422, Some("file")),
            "{e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{e}"
        );
    }

    // Its owner downloads it (alone, or with the composition over it); nobody else does,
    // and the server's models stay on the server.
    let unzip = |bytes: &[u8]| {
        use std::io::Read;
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a ZIP");
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                (f.name().to_string(), data)
            })
            .collect::<Vec<_>>()
    };
    let mut urls = Vec::new();
    for (model, files) in [
        (id.as_str(), ["model.json", "Ivy_s style.safetensors"]),
        (
            comp["id"].as_str().unwrap(),
            ["model.json", "Ivy_s style.safetensors"],
        ),
    ] {
        let path = format!("/v1/models/{model}/download");
        let (s, d) = t.json(Method::POST, &path, &key, None).await;
        assert_eq!((s, d["model_id"].as_str()), (201, Some(model)), "{d}");
        urls.push(d["url"].as_str().unwrap().to_string());
        let r = t.http.get(d["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let entries = unzip(&r.bytes().await.unwrap());
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, files, "{model}");
        assert_eq!(entries[1].1, file, "the LoRA's file as uploaded");
        let record: Value = serde_json::from_slice(&entries[0].1).unwrap();
        assert_eq!(record["model"]["id"], model, "{record}");
        assert_eq!(record["model"]["source"], Value::Null, "{record}");
        let (s, _) = t.json(Method::POST, &path, &other, None).await;
        assert_eq!(s, if model == id { 404 } else { 403 }, "{model}");
    }
    let (s, e) = t
        .json(Method::POST, "/v1/models/tiny-sd15/download", &key, None)
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("id")), "{e}");
    // Given away, the composition's earlier download no longer opens.
    let (s, moved) = t
        .json(
            Method::POST,
            &format!("/v1/models/{}/transfer", comp["id"].as_str().unwrap()),
            &key,
            Some(json!({"to": "jon"})),
        )
        .await;
    assert_eq!(s, 200, "{moved}");
    let r = t.http.get(&urls[1]).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "the model is no longer the downloader's"
    );

    // Deleted, its blob goes with it (its composition then names a LoRA that is gone).
    let blobs = &t.server().state.store.blobs;
    let blob = format!("models/{id}.safetensors");
    assert_eq!(blobs.get(&blob).await.unwrap().len(), file.len());
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/models/{id}"), &key, None)
        .await;
    assert_eq!(s, 204);
    assert!(
        blobs.get(&blob).await.is_err(),
        "the LoRA's blob is deleted"
    );
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "model": comp["id"], "input": {"prompt": "a fox"}})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("input.loras[0].model")),
        "{e}"
    );
    t.shutdown().await;
}
