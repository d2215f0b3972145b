//! The Scenario dialect at `/scenario/v1` against a real server with a tiny SD 1.5 model
//! (64x64 and 2 steps by its registry defaults) and a tiny LoRA: Basic and Bearer auth;
//! txt2img, img2img and inpaint run, polled and downloaded; uploads; dry runs; cancel of a
//! running job; lists with pagination and filters; models; every error's shape; snapshots
//! of the wire shapes; and the official `scenario-sdk` Python package when `EASEL_PYTHON`
//! names a Python that has it.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
use easel_diffusion::tiny::make_tiny;
use reqwest::Method;
use serde_json::{json, Value};

const BASE: &str = "/scenario/v1";

/// A server with the tiny model `tiny` (alias `flux.1-dev`: a Scenario id reaching an
/// installed model) and the LoRA `style-a`.
async fn server(f: impl FnOnce(&mut easel_api::server::Config)) -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    make_tiny(&models.join("tiny"), "sd15", 0).unwrap();
    make_tiny_lora(
        &models.join("tiny"),
        &models.join("style-a.safetensors"),
        LoraLayout::Kohya,
        4,
        1,
    )
    .unwrap();
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
            Some(json!({"defaults": {"width": 64, "height": 64, "steps": 2},
                "aliases": ["flux.1-dev"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    t
}

/// A user's key as Scenario's pair: `Authorization: Basic base64(api_key:api_secret)`.
struct Pair {
    basic: String,
    user_id: String,
}

async fn pair(t: &TestServer, name: &str) -> Pair {
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (id, secret) = (
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap(),
    );
    assert_eq!(
        v["key"].as_str().unwrap(),
        format!("esk_{id}_{secret}"),
        "the pair is the key's two parts"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    Pair {
        basic: format!("Basic {b64}"),
        user_id: v["user_id"].as_str().unwrap().to_string(),
    }
}

async fn call(
    t: &TestServer,
    who: &Pair,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = t
        .http
        .request(method, format!("{}{BASE}{path}", t.base))
        .header("authorization", &who.basic);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Poll the job until it ends.
async fn finished(t: &TestServer, who: &Pair, job_id: &str) -> Value {
    for _ in 0..1200 {
        let (s, v) = call(t, who, Method::GET, &format!("/jobs/{job_id}"), None).await;
        assert_eq!(s, 200, "{v}");
        let status = v["job"]["status"].as_str().unwrap().to_string();
        if ["success", "failure", "canceled"].contains(&status.as_str()) {
            return v["job"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job_id} did not end");
}

/// Generate and wait; the finished job.
async fn run(t: &TestServer, who: &Pair, endpoint: &str, body: Value) -> Value {
    let (s, v) = call(
        t,
        who,
        Method::POST,
        &format!("/generate/{endpoint}"),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let job = finished(t, who, v["job"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    job
}

/// The bytes behind an asset's signed URL, decoded.
async fn pixels(t: &TestServer, url: &str) -> image::DynamicImage {
    let resp = t.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the signed URL needs no key");
    decode(&resp.bytes().await.unwrap())
}

fn data_url(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt2img_runs_and_its_job_and_assets_read_back() {
    let t = server(|_| {}).await;
    let alice = pair(&t, "alice").await;
    let body = json!({"modelId": "tiny", "prompt": "a red fox", "negativePrompt": "blur",
        "numSamples": 2, "width": 64, "height": 96, "seed": "7", "numInferenceSteps": 2,
        "guidance": 6.5, "scheduler": "EulerAncestralDiscreteScheduler", "modelEpoch": "e1",
        "concepts": [{"modelId": "style-a", "scale": 0.5}]});
    let (s, created) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        created["creativeUnitsCost"], 1.0,
        "2 × 64×96 px: 0.012 units, one credit"
    );
    assert_eq!(created["inference"]["type"], "txt2img");
    assert_eq!(created["inference"]["seed"], "7", "the seed is a string");
    assert_eq!(
        created["inference"]["easelNotApplied"],
        json!(["modelEpoch"])
    );
    insta::assert_json_snapshot!("scenario_inference", created, {
        ".job.jobId" => "[job id]", ".job.createdAt" => "[time]", ".job.updatedAt" => "[time]",
        ".job.statusHistory[].date" => "[time]", ".job.ownerId" => "[user]", ".job.authorId" => "[user]",
        ".job.status" => "[status]", ".job.statusHistory" => "[history]", ".job.progress" => "[progress]"
    });
    let job_id = created["job"]["jobId"].as_str().unwrap();
    let job = finished(&t, &alice, job_id).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["ownerId"], alice.user_id);
    let history: Vec<&str> = job["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["queued", "in-progress", "success"]);
    insta::assert_json_snapshot!("scenario_job", job, {
        ".jobId" => "[job id]", ".createdAt" => "[time]", ".updatedAt" => "[time]",
        ".statusHistory[].date" => "[time]", ".ownerId" => "[user]", ".authorId" => "[user]",
        ".metadata.assetIds[]" => "[asset id]"
    });
    let asset_ids: Vec<String> = job["metadata"]["assetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(asset_ids.len(), 2);
    let mut images = Vec::new();
    for id in &asset_ids {
        assert!(id.starts_with("asset_"), "{id}");
        let (s, v) = call(&t, &alice, Method::GET, &format!("/assets/{id}"), None).await;
        assert_eq!(s, 200, "{v}");
        let a = &v["asset"];
        assert_eq!(a["id"], *id);
        assert_eq!(a["source"], "inference-txt");
        assert_eq!(a["metadata"]["type"], "inference-txt2img");
        assert_eq!(a["metadata"]["inferenceId"], job_id);
        assert_eq!(
            (
                a["properties"]["width"].as_u64(),
                a["properties"]["height"].as_u64()
            ),
            (Some(64), Some(96))
        );
        let img = pixels(&t, a["url"].as_str().unwrap()).await;
        assert_eq!((img.width(), img.height()), (64, 96));
        images.push(img.to_rgb8().into_raw());
    }
    assert_ne!(images[0], images[1], "image i uses seed + i");
    let (_, first) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/assets/{}", asset_ids[1]),
        None,
    )
    .await;
    insta::assert_json_snapshot!("scenario_asset", first, {
        ".asset.id" => "[asset id]", ".asset.url" => "[url]", ".asset.createdAt" => "[time]",
        ".asset.updatedAt" => "[time]", ".asset.ownerId" => "[user]", ".asset.authorId" => "[user]",
        ".asset.metadata.inferenceId" => "[job id]", ".asset.metadata.parentJobId" => "[job id]",
        ".asset.properties.size" => "[bytes]"
    });
    // What the request became in the core.
    let (_, native) = t
        .json(Method::GET, &format!("/v1/jobs/{job_id}"), ADMIN_KEY, None)
        .await;
    insta::assert_json_snapshot!(
        "scenario_core_request",
        json!({
        "task": native["task"], "model": native["model"], "input": native["input"]})
    );
    assert_eq!(native["input"]["loras"][0]["model"], "style-a");

    // The same request with the same seed gives the same pixels, through the alias and a
    // Bearer key too.
    let (bearer_key, _) = t.user("bob").await;
    let bob = Pair {
        basic: format!("Bearer {bearer_key}"),
        user_id: String::new(),
    };
    let again = run(
        &t,
        &bob,
        "txt2img",
        json!({"modelId": "flux.1-dev", "prompt": "a red fox",
        "negativePrompt": "blur", "numSamples": 1, "width": 64, "height": 96, "seed": 7,
        "numInferenceSteps": 2, "guidance": 6.5, "scheduler": "EulerAncestralDiscreteScheduler",
        "concepts": [{"modelId": "style-a", "scale": 0.5}]}),
    )
    .await;
    let (_, a) = call(
        &t,
        &bob,
        Method::GET,
        &format!(
            "/assets/{}",
            again["metadata"]["assetIds"][0].as_str().unwrap()
        ),
        None,
    )
    .await;
    let img = pixels(&t, a["asset"]["url"].as_str().unwrap()).await;
    assert_eq!(
        img.to_rgb8().into_raw(),
        images[0],
        "same seed, same pixels"
    );
    // Others' jobs and assets read as absent.
    let (s, _) = call(&t, &bob, Method::GET, &format!("/jobs/{job_id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/assets/{}", asset_ids[0]),
        None,
    )
    .await;
    assert_eq!(s, 404);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_and_inpaint_take_uploads_and_data_urls() {
    let t = server(|_| {}).await;
    let alice = pair(&t, "alice").await;
    // An upload in base64, with a name.
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(64, 64));
    let (s, up) = call(
        &t,
        &alice,
        Method::POST,
        "/assets",
        Some(json!({"name": "cat.png", "image": b64})),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["asset"]["source"], "uploaded");
    assert_eq!(up["asset"]["metadata"]["name"], "cat.png");
    let upload = up["asset"]["id"].as_str().unwrap().to_string();
    assert!(upload.starts_with("asset_"));
    // A child upload (a data URL this time) records its parent.
    let (s, child) = call(
        &t,
        &alice,
        Method::POST,
        "/assets",
        Some(json!({"name": "c2.png", "image": data_url(&png(32, 32)), "parentId": upload})),
    )
    .await;
    assert_eq!(s, 200, "{child}");
    assert_eq!(child["asset"]["metadata"]["parentId"], upload.as_str());

    let job = run(
        &t,
        &alice,
        "img2img",
        json!({"modelId": "tiny", "prompt": "a cat",
        "image": upload, "strength": 0.5, "numSamples": 1}),
    )
    .await;
    assert_eq!(
        job["metadata"]["input"]["image"],
        upload.as_str(),
        "the image as an asset id"
    );
    assert_eq!(job["metadata"]["input"]["strength"], 0.5);
    let (_, a) = call(
        &t,
        &alice,
        Method::GET,
        &format!(
            "/assets/{}",
            job["metadata"]["assetIds"][0].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(a["asset"]["source"], "inference-img");
    let img = pixels(&t, a["asset"]["url"].as_str().unwrap()).await;
    assert_eq!((img.width(), img.height()), (64, 64));

    // Inpaint with the legacy `imageId` and a data URL mask.
    let mut mask = image::GrayImage::new(64, 64);
    for (x, _, p) in mask.enumerate_pixels_mut() {
        p.0 = [if x < 32 { 255 } else { 0 }];
    }
    let mut mask_png = Vec::new();
    image::DynamicImage::ImageLuma8(mask)
        .write_to(
            &mut std::io::Cursor::new(&mut mask_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    let job = run(
        &t,
        &alice,
        "inpaint",
        json!({"modelId": "tiny", "prompt": "a cat",
        "imageId": upload, "mask": data_url(&mask_png), "numSamples": 1,
        "disableMerging": true}),
    )
    .await;
    assert_eq!(job["metadata"]["input"]["type"], "inpaint");
    assert_eq!(
        job["metadata"]["input"]["easelNotApplied"],
        json!(["disableMerging"])
    );
    let (_, a) = call(
        &t,
        &alice,
        Method::GET,
        &format!(
            "/assets/{}",
            job["metadata"]["assetIds"][0].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(a["asset"]["source"], "inference-in-paint");

    // Filters: by type and by inference.
    // Two uploads, and the data URL mask (stored as an upload of the caller).
    let (_, uploads) = call(&t, &alice, Method::GET, "/assets?type=uploaded", None).await;
    assert_eq!(uploads["assets"].as_array().unwrap().len(), 3, "{uploads}");
    let (_, mix) = call(
        &t,
        &alice,
        Method::GET,
        "/assets?types=inference-img2img,inference-inpaint",
        None,
    )
    .await;
    assert_eq!(mix["assets"].as_array().unwrap().len(), 2, "{mix}");
    let (_, by_job) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/assets?inferenceId={}", job["jobId"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(by_job["assets"].as_array().unwrap().len(), 1);
    // The child upload, and the img2img and inpaint outputs (derived from their input).
    let (_, kids) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/assets?parentAssetId={upload}"),
        None,
    )
    .await;
    assert_eq!(kids["assets"].as_array().unwrap().len(), 3, "{kids}");
    let (_, by_model) = call(&t, &alice, Method::GET, "/assets?modelId=tiny", None).await;
    assert_eq!(by_model["assets"].as_array().unwrap().len(), 2);
    let (_, none) = call(&t, &alice, Method::GET, "/assets?type=vectorization", None).await;
    assert!(none["assets"].as_array().unwrap().is_empty());
    // Arrays also come as repeated keys (OpenAPI's default form).
    let (_, repeated) = call(
        &t,
        &alice,
        Method::GET,
        "/assets?types=inference-img2img&types=inference-inpaint",
        None,
    )
    .await;
    assert_eq!(
        repeated["assets"].as_array().unwrap().len(),
        2,
        "{repeated}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_pixelate_upscale_and_fill() {
    let t = server(|_| {}).await;
    let alice = pair(&t, "alice").await;
    let (s, up) = call(
        &t,
        &alice,
        Method::POST,
        "/assets",
        Some(json!({"name": "a.png", "image": data_url(&png(64, 64))})),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    let image = up["asset"]["id"].as_str().unwrap().to_string();
    // Pixelate answers with the finished job and its asset.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/pixelate",
        Some(json!({"image": image,
        "pixelGridSize": 16, "removeNoise": true, "colorPalette": [[0, 0, 0], [255, 255, 255]]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["status"], "success");
    assert_eq!(v["job"]["jobType"], "pixelate");
    assert_eq!(v["asset"]["source"], "pixelization");
    assert_eq!(
        v["asset"]["metadata"]["parentId"],
        image.as_str(),
        "lineage"
    );
    let img = pixels(&t, v["asset"]["url"].as_str().unwrap())
        .await
        .to_rgb8();
    assert!(
        img.pixels()
            .all(|p| p.0 == [0, 0, 0] || p.0 == [255, 255, 255]),
        "the palette is applied"
    );
    insta::assert_json_snapshot!("scenario_pixelate", v, {
        ".job.jobId" => "[job id]", ".job.createdAt" => "[time]", ".job.updatedAt" => "[time]",
        ".job.statusHistory[].date" => "[time]", ".job.ownerId" => "[user]", ".job.authorId" => "[user]",
        ".job.metadata.assetIds[]" => "[asset id]", ".job.metadata.input.image" => "[asset id]",
        ".asset.id" => "[asset id]", ".asset.url" => "[url]", ".asset.createdAt" => "[time]",
        ".asset.updatedAt" => "[time]", ".asset.ownerId" => "[user]", ".asset.authorId" => "[user]",
        ".asset.metadata.inferenceId" => "[job id]", ".asset.metadata.parentJobId" => "[job id]",
        ".asset.metadata.parentId" => "[asset id]", ".asset.metadata.rootParentId" => "[asset id]",
        ".asset.properties.size" => "[bytes]"
    });
    for (body, field) in [
        (
            json!({"image": image, "pixelGridSize": 20, "removeNoise": false}),
            "pixelGridSize",
        ),
        (json!({"image": image, "pixelGridSize": 16}), "removeNoise"),
        (
            json!({"image": image, "pixelGridSize": 16, "removeNoise": false, "removeBackground": true}),
            "removeBackground",
        ),
        (
            json!({"image": image, "pixelGridSize": 16, "removeNoise": false, "colorPalette": [[1, 2]]}),
            "colorPalette[0]",
        ),
    ] {
        let (s, v) = call(&t, &alice, Method::POST, "/generate/pixelate", Some(body)).await;
        assert_eq!((s, v["infos"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    // Upscale: the factor applies, the creative fields are recorded as not applied.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale",
        Some(json!({"image": image, "scalingFactor": 2, "preset": "balanced", "creativity": 30})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let job = finished(&t, &alice, v["job"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["metadata"]["input"]["preset"], "balanced");
    let (_, a) = call(
        &t,
        &alice,
        Method::GET,
        &format!(
            "/assets/{}",
            job["metadata"]["assetIds"][0].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(a["asset"]["source"], "upscale");
    assert_eq!(
        (
            a["asset"]["properties"]["width"].as_u64(),
            a["asset"]["properties"]["height"].as_u64()
        ),
        (Some(128), Some(128))
    );
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale",
        Some(json!({"image": image, "scalingFactor": 12})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("scalingFactor")),
        "a core rule (at most 8) by its wire name: {v}"
    );
    // Upscale's dry run prices the output: 4096 px² → one credit.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale?dryRun=1",
        Some(json!({"image": image, "scalingFactor": 2})),
    )
    .await;
    assert_eq!((s, &v["creativeUnitsCost"]), (269, &json!(1.0)), "{v}");
    // Generative fill: inpaint on the default model, `promptFidelity` as the guidance.
    let mask = data_url(&png(64, 64));
    let (s, v) = call(&t, &alice, Method::POST, "/generate/generative-fill",
        Some(json!({"image": image, "mask": mask, "prompt": "a cat", "promptFidelity": 5, "numInferenceSteps": 5, "seed": 3}))).await;
    assert_eq!(s, 200, "{v}");
    let job = finished(&t, &alice, v["job"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    let (_, native) = t
        .json(
            Method::GET,
            &format!("/v1/jobs/{}", job["jobId"].as_str().unwrap()),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(native["task"], "inpaint");
    assert_eq!(native["input"]["guidance"], 5.0);
    assert_eq!(native["input"]["steps"], 5);
    assert_eq!(native["input"]["seed"], 3);
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/generative-fill",
        Some(json!({"image": image})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("mask")),
        "{v}"
    );

    // Copy: a new asset with the same pixels, derived from the original.
    let (s, c) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/copy"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{c}");
    assert_ne!(c["asset"]["id"], image.as_str());
    assert_eq!(c["asset"]["metadata"]["parentId"], image.as_str());
    assert_eq!(c["asset"]["metadata"]["name"], "a.png");
    let (a, b) = (
        pixels(&t, c["asset"]["url"].as_str().unwrap())
            .await
            .to_rgb8(),
        pixels(&t, up["asset"]["url"].as_str().unwrap())
            .await
            .to_rgb8(),
    );
    assert_eq!(a.into_raw(), b.into_raw());
    // Download in another format: converted (a job), else the asset itself.
    let (s, d) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "jpeg"})),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let resp = t.http.get(d["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let (s, d) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "png"})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        d["url"]
            .as_str()
            .unwrap()
            .contains(&image.replace("asset_", "ast_")),
        "{d}"
    );
    let (s, d) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "svg"})),
    )
    .await;
    assert_eq!(
        (s, d["infos"]["field"].as_str()),
        (400, Some("targetFormat")),
        "{d}"
    );
    let bob = pair(&t, "bob").await;
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/assets/{image}/copy"),
        None,
    )
    .await;
    assert_eq!(s, 404, "others' assets are not found");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_price_without_queuing() {
    let t = server(|c| c.workers = 0).await;
    let alice = pair(&t, "alice").await;
    let (s, v) = call(&t, &alice, Method::POST, "/generate/txt2img?dryRun=true",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 3, "width": 1024, "height": 1024}))).await;
    assert_eq!(s, 269, "{v}");
    assert_eq!(
        v,
        json!({"creativeUnitsCost": 4.0, "creativeUnitsDiscount": 0.0}),
        "3 × 1.05 MP → 4 credits"
    );
    // A data URL is read for its size and not stored.
    let (s, v) = call(&t, &alice, Method::POST, "/generate/img2img?dryRun=1",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 1, "image": data_url(&png(64, 64))}))).await;
    assert_eq!(s, 269, "{v}");
    assert_eq!(v["creativeUnitsCost"], 1.0);
    // Invalid requests fail as a submit would.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img?dryRun=1",
        Some(json!({"modelId": "nope", "prompt": "x"})),
    )
    .await;
    assert_eq!((s, &v["infos"]["field"]), (400, &json!("modelId")), "{v}");
    let (_, jobs) = call(&t, &alice, Method::GET, "/jobs", None).await;
    assert_eq!(jobs, json!({"jobs": []}), "nothing queued");
    let (_, assets) = call(&t, &alice, Method::GET, "/assets", None).await;
    assert_eq!(assets, json!({"assets": []}), "nothing stored");
    insta::assert_json_snapshot!(
        "scenario_dry_run",
        json!({"creativeUnitsCost": 4.0, "creativeUnitsDiscount": 0.0})
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_canceled_with_its_history() {
    let t = server(|c| c.workers = 0).await;
    let alice = pair(&t, "alice").await;
    let gate = gated_worker(t.server());
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 1})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["status"], "queued");
    let job_id = v["job"]["jobId"].as_str().unwrap().to_string();
    gate.started.notified().await;
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/jobs/{job_id}/action"),
        Some(json!({"action": "refund"})),
    )
    .await;
    assert_eq!((s, &v["infos"]["field"]), (400, &json!("action")), "{v}");
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/jobs/{job_id}/action"),
        Some(json!({"action": "cancel"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let job = finished(&t, &alice, &job_id).await;
    assert_eq!(job["status"], "canceled", "{job}");
    let history: Vec<&str> = job["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["queued", "in-progress", "canceled"]);
    assert_eq!(
        job["metadata"]["output"]["error"]["code"], "canceled",
        "{job}"
    );
    insta::assert_json_snapshot!("scenario_canceled", job, {
        ".jobId" => "[job id]", ".createdAt" => "[time]", ".updatedAt" => "[time]",
        ".statusHistory[].date" => "[time]", ".ownerId" => "[user]", ".authorId" => "[user]",
        ".progress" => "[progress]", ".metadata.input.seed" => "[seed]"
    });
    // A finished job cannot be canceled again.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/jobs/{job_id}/action"),
        Some(json!({"action": "cancel"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let _ = gate.stop.send(true);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_tokens_and_filter() {
    let t = server(|c| c.workers = 0).await;
    let alice = pair(&t, "alice").await;
    let bob = pair(&t, "bob").await;
    for i in 0..3 {
        let (s, v) = call(
            &t,
            &alice,
            Method::POST,
            "/assets",
            Some(json!({"name": format!("{i}.png"), "image": data_url(&png(16, 16))})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let mut seen = Vec::new();
    let mut path = "/assets?pageSize=1".to_string();
    loop {
        let (s, v) = call(&t, &alice, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{v}");
        let page = v["assets"].as_array().unwrap();
        assert!(page.len() <= 1);
        seen.extend(page.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        match v.get("nextPaginationToken").and_then(Value::as_str) {
            Some(tok) => path = format!("/assets?pageSize=1&paginationToken={tok}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");
    let (_, theirs) = call(&t, &bob, Method::GET, "/assets", None).await;
    assert_eq!(theirs, json!({"assets": []}));
    // Bulk reads leave out others' and unknown ids; bulk deletes are all or nothing.
    let (s, v) = call(
        &t,
        &bob,
        Method::POST,
        "/assets/get-bulk",
        Some(json!({"assetIds": seen})),
    )
    .await;
    assert_eq!((s, v), (200, json!({"assets": []})));
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/assets/get-bulk",
        Some(json!({"assetIds": [seen[0], "asset_nope"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["assets"].as_array().unwrap().len(), 1);
    let (s, v) = call(
        &t,
        &bob,
        Method::DELETE,
        "/assets",
        Some(json!({"assetIds": [seen[0]]})),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(
        &t,
        &alice,
        Method::DELETE,
        "/assets",
        Some(json!({"assetIds": [seen[0], seen[1]]})),
    )
    .await;
    assert_eq!((s, v), (200, json!({})));
    let (_, v) = call(&t, &alice, Method::GET, "/assets", None).await;
    assert_eq!(v["assets"].as_array().unwrap().len(), 1);
    // Jobs: pages, filters by type and status.
    for _ in 0..3 {
        let (s, v) = call(
            &t,
            &alice,
            Method::POST,
            "/generate/txt2img",
            Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 1})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, p1) = call(&t, &alice, Method::GET, "/jobs?pageSize=2", None).await;
    assert_eq!(p1["jobs"].as_array().unwrap().len(), 2);
    let tok = p1["nextPaginationToken"].as_str().unwrap();
    let (_, p2) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/jobs?pageSize=2&paginationToken={tok}"),
        None,
    )
    .await;
    assert_eq!(p2["jobs"].as_array().unwrap().len(), 1);
    assert!(p2.get("nextPaginationToken").is_none(), "{p2}");
    let (_, q) = call(
        &t,
        &alice,
        Method::GET,
        "/jobs?types=inference&status=queued",
        None,
    )
    .await;
    assert_eq!(q["jobs"].as_array().unwrap().len(), 3);
    let (_, none) = call(&t, &alice, Method::GET, "/jobs?type=upscale", None).await;
    assert_eq!(none, json!({"jobs": []}));
    let (s, v) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/jobs?authorId={}", bob.user_id),
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    insta::assert_json_snapshot!("scenario_error_forbidden", v, {
        ".id" => "[id]", ".createdAt" => "[time]", ".updatedAt" => "[time]"
    });
    for bad in [
        "/jobs?pageSize=0",
        "/jobs?pageSize=201",
        "/assets?pageSize=x",
        "/jobs?status=done",
    ] {
        let (s, v) = call(&t, &alice, Method::GET, bad, None).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    insta::assert_json_snapshot!("scenario_jobs_page", p2, {
        ".jobs[].jobId" => "[job id]", ".jobs[].createdAt" => "[time]", ".jobs[].updatedAt" => "[time]",
        ".jobs[].statusHistory[].date" => "[time]", ".jobs[].ownerId" => "[user]", ".jobs[].authorId" => "[user]",
        ".jobs[].metadata.input.seed" => "[seed]"
    });
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_the_registry() {
    let t = server(|c| c.workers = 0).await;
    let alice = pair(&t, "alice").await;
    let (s, v) = call(&t, &alice, Method::GET, "/models", None).await;
    assert_eq!(s, 200, "{v}");
    let models = v["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"tiny") && names.contains(&"style-a"),
        "{names:?}"
    );
    let tiny = models.iter().find(|m| m["name"] == "tiny").unwrap();
    assert_eq!(tiny["type"], "sd-1_5");
    assert!(tiny["id"].as_str().unwrap().starts_with("model_"));
    insta::assert_json_snapshot!("scenario_model", tiny, {
        ".id" => "[model id]", ".createdAt" => "[time]", ".updatedAt" => "[time]"
    });
    // A discovered LoRA's base family is not known: its type is `custom`.
    let (_, custom) = call(&t, &alice, Method::GET, "/models?type=custom", None).await;
    let custom: Vec<&Value> = custom["models"].as_array().unwrap().iter().collect();
    assert_eq!(custom.len(), 1, "{custom:?}");
    assert_eq!(custom[0]["name"], "style-a");
    let (_, sd) = call(&t, &alice, Method::GET, "/models?types=sd-1_5,sd-xl", None).await;
    assert_eq!(sd["models"].as_array().unwrap().len(), 1, "{sd}");
    let (_, none) = call(&t, &alice, Method::GET, "/models?status=training", None).await;
    assert_eq!(none, json!({"models": []}));
    let id = tiny["id"].as_str().unwrap();
    let (s, one) = call(&t, &alice, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!((s, &one["model"]["name"]), (200, &json!("tiny")));
    let (s, _) = call(&t, &alice, Method::GET, "/models/flux.1-dev", None).await;
    assert_eq!(s, 200, "aliases name models");
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/models/get-bulk",
        Some(json!({"modelIds": [id, "nope", "tiny"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["models"].as_array().unwrap().len(), 1, "{v}");
    // Recommendations: runnable models (no LoRAs), recommended first.
    let (s, r) = call(
        &t,
        &alice,
        Method::GET,
        "/recommendations/models?capabilities=txt2img,inpaint",
        None,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiny"]);
    let (_, r) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/recommendations/models?excludeModelIds={id}"),
        None,
    )
    .await;
    assert_eq!(r, json!({"models": []}));
    let (s, _) = call(
        &t,
        &alice,
        Method::GET,
        "/recommendations/models?limit=31",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (_, p) = call(&t, &alice, Method::GET, "/models?pageSize=1", None).await;
    let tok = p["nextPaginationToken"].as_str().unwrap();
    let (_, p2) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/models?pageSize=1&paginationToken={tok}"),
        None,
    )
    .await;
    assert_ne!(p["models"][0]["id"], p2["models"][0]["id"]);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_scenarios_shape() {
    let t = server(|c| c.workers = 0).await;
    let alice = pair(&t, "alice").await;
    let scrub = |mut v: Value| {
        for k in ["createdAt", "updatedAt", "id"] {
            if v.get(k).is_some() {
                v[k] = json!(format!("[{k}]"));
            }
        }
        v
    };
    // No credential, a wrong one.
    let resp = t
        .http
        .get(format!("{}{BASE}/jobs", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Basic"));
    let v: Value = resp.json().await.unwrap();
    insta::assert_json_snapshot!("scenario_error_unauthorized", scrub(v));
    let wrong = Pair {
        basic: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("key_01jb0000000000000000000000:nope")
        ),
        user_id: String::new(),
    };
    let (s, _) = call(&t, &wrong, Method::GET, "/jobs", None).await;
    assert_eq!(s, 401);
    // An invalid field, by its wire name: a core rule (at most 8 images) named back
    // through the table, and a rule of the spec.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 20})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["infos"]["field"], "numSamples", "{v}");
    let (s, spec) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 0})),
    )
    .await;
    assert_eq!(
        (s, &spec["infos"]["field"]),
        (400, &json!("numSamples")),
        "{spec}"
    );
    insta::assert_json_snapshot!("scenario_error_field", scrub(v));
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(
            json!({"modelId": "tiny", "prompt": "x", "numSamples": 1, "numInferenceSteps": 100000}),
        ),
    )
    .await;
    assert_eq!(
        (s, &v["infos"]["field"]),
        (400, &json!("numInferenceSteps")),
        "{v}"
    );
    let (s, v) = call(&t, &alice, Method::POST, "/generate/txt2img",
        Some(json!({"modelId": "tiny", "prompt": "x", "concepts": [{"modelId": "nope", "scale": 1}]}))).await;
    assert_eq!(
        (s, &v["infos"]["field"]),
        (400, &json!("concepts[0].modelId")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!((s, &v["infos"]["field"]), (400, &json!("modelId")), "{v}");
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img",
        Some(json!({"modelId": "tiny", "prompt": "x", "controlImage": "a"})),
    )
    .await;
    assert_eq!(
        (s, &v["infos"]["field"]),
        (400, &json!("controlImage")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/img2img",
        Some(
            json!({"modelId": "tiny", "prompt": "x", "image": "asset_01jb0000000000000000000000"}),
        ),
    )
    .await;
    assert_eq!((s, &v["infos"]["field"]), (400, &json!("image")), "{v}");
    // Unknown ids and routes; unbuilt operations; malformed JSON.
    let (s, v) = call(
        &t,
        &alice,
        Method::GET,
        "/jobs/job_01jb0000000000000000000000",
        None,
    )
    .await;
    assert_eq!(s, 404);
    insta::assert_json_snapshot!("scenario_error_not_found", scrub(v));
    let (s, _) = call(&t, &alice, Method::GET, "/no/such/route", None).await;
    assert_eq!(s, 404);
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/vectorize",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 501);
    insta::assert_json_snapshot!("scenario_error_unbuilt", scrub(v));
    let (s, v) = call(&t, &alice, Method::GET, "/workflows/tags", None).await;
    assert_eq!((s, v["apiError"].as_str()), (501, Some("notImplemented")));
    let resp = t
        .http
        .post(format!("{}{BASE}/generate/txt2img", t.base))
        .header("authorization", &alice.basic)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    t.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_key_gets_the_429_shape() {
    let t = server(|c| {
        c.workers = 0;
        c.rate_limit = easel_api::auth::RateLimit {
            per_second: 0.001,
            burst: 4.0,
        };
    })
    .await;
    let alice = pair(&t, "alice").await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(call(&t, &alice, Method::GET, "/jobs", None).await);
    }
    assert_eq!(answers[0].0, 200, "{:?}", answers[0]);
    let (s, v) = answers.pop().unwrap();
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["name"], "TooManyRequestsError");
    assert!(v["details"]["retryAfter"].as_u64().unwrap() >= 1, "{v}");
    insta::assert_json_snapshot!("scenario_error_too_many", v, {".details.retryAfter" => "[seconds]"});
    assert!(v["reason"].as_str().unwrap().contains("rate limit"), "{v}");
    t.shutdown().await;
}

/// The official `scenario-sdk` Python package against this server (`EASEL_PYTHON`: a
/// Python with `scenario-sdk` installed; `.ci/run` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let Some(python) = std::env::var_os("EASEL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipping official_python_client: set EASEL_PYTHON to a Python with the \
             `scenario-sdk` package (python -m venv .ci-venv && .ci-venv/bin/pip install scenario-sdk)"
        );
        return;
    };
    let t = server(|c| c.workers = 0).await;
    // Generations run on a worker of their own; the cancel check holds one job running.
    let gate = gated_worker(t.server());
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "python"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, root) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "python-admin", "role": "admin"})),
        )
        .await;
    assert_eq!(s, 201, "{root}");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/scenario_client.py");
    let mut child = tokio::process::Command::new(python)
        .arg(&script)
        .env("EASEL_BASE_URL", format!("{}{BASE}", t.base))
        .env("EASEL_API_KEY", v["api_key"].as_str().unwrap())
        .env("EASEL_API_SECRET", v["api_secret"].as_str().unwrap())
        .env("EASEL_ADMIN_API_KEY", root["api_key"].as_str().unwrap())
        .env(
            "EASEL_ADMIN_API_SECRET",
            root["api_secret"].as_str().unwrap(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs the Python client");
    // The script's first job is the one it cancels while it runs; then the gate opens.
    gate.started.notified().await;
    let out = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let canceled = easel_store::jobs::list(
            &t.server().state.store.db,
            &easel_store::jobs::JobFilter {
                status: Some(easel_core::JobStatus::Canceled),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if !canceled.is_empty() {
            gate.open.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let _ = status;
            break child.wait_with_output().await.unwrap();
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let _ = gate.stop.send(true);
    t.shutdown().await;
}

/// Edge cases: ranges and types of the tool fields, limits named by the field that asked,
/// conversions reused, others' assets out of reach everywhere, dry runs as strict as
/// submits, `dryRun=false`, tokens that are not ours, a credential before a 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_answer_clearly() {
    let t = server(|_| {}).await;
    let alice = pair(&t, "alice").await;
    let bob = pair(&t, "bob").await;
    let (_, up) = call(
        &t,
        &alice,
        Method::POST,
        "/assets",
        Some(json!({"name": "a.png", "image": data_url(&png(64, 64))})),
    )
    .await;
    let image = up["asset"]["id"].as_str().unwrap().to_string();

    // Generative fill reads a string seed too; counts must be whole.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/generative-fill",
        Some(json!({"image": image, "mask": image, "seed": "3", "numInferenceSteps": 5})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, native) = t
        .json(
            Method::GET,
            &format!("/v1/jobs/{}", v["job"]["jobId"].as_str().unwrap()),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(native["input"]["seed"], 3);
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/generative-fill",
        Some(json!({"image": image, "mask": image, "numInferenceSteps": 5.5})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("numInferenceSteps")),
        "{v}"
    );
    let (s, v) = call(&t, &alice, Method::POST, "/generate/pixelate",
        Some(json!({"image": image, "pixelGridSize": 16, "removeNoise": false, "colorPaletteSize": 2.5}))).await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("colorPaletteSize")),
        "{v}"
    );
    // An output over the server's limits names the field that asked for it.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale",
        Some(json!({"image": image, "targetWidth": 16000})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("targetWidth")),
        "{v}"
    );
    // A tool job shows its image as the asset id it was stored as, not the data URL sent.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale",
        Some(json!({"image": data_url(&png(8, 8))})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["job"]["metadata"]["input"]["image"]
            .as_str()
            .unwrap()
            .starts_with("asset_"),
        "{v}"
    );

    // A second download in a format reuses the conversion.
    let (s, d) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "jpeg"})),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let (_, again) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "jpg"})),
    )
    .await;
    let path = |u: &Value| u.as_str().unwrap().split('?').next().unwrap().to_string();
    assert_eq!(path(&again["url"]), path(&d["url"]));

    // Others' assets are out of reach in every operation.
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/assets/{image}/download"),
        Some(json!({"targetFormat": "webp"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = call(
        &t,
        &bob,
        Method::POST,
        "/generate/upscale?dryRun=1",
        Some(json!({"image": image})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("image")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/assets?parentAssetId={image}"),
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({"assets": []})));
    let (s, v) = call(
        &t,
        &bob,
        Method::POST,
        "/assets",
        Some(json!({"name": "b.png", "image": data_url(&png(8, 8)), "parentId": image})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("parentId")),
        "{v}"
    );

    // A data URL over the server's limits (here a side above 16384) fails a dry run as it
    // fails a submit.
    let big = {
        let img = image::RgbImage::new(16_400, 1);
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/img2img?dryRun=1",
        Some(json!({"modelId": "tiny", "prompt": "x", "image": data_url(&big)})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("image")),
        "{v}"
    );
    // `dryRun=false` is not a dry run.
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/txt2img?dryRun=false",
        Some(json!({"modelId": "tiny", "prompt": "x", "numSamples": 1})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["job"]["jobId"].is_string(), "{v}");

    // Tokens this server did not give.
    for bad in [
        "/recommendations/models?limit=31",
        "/recommendations/models?nextToken=18446744073709551615",
        "/recommendations/models?nextToken=x",
        "/models?paginationToken=nope",
        "/assets?paginationToken=nope",
        "/jobs?paginationToken=nope",
    ] {
        let (s, v) = call(&t, &alice, Method::GET, bad, None).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    // A credential comes first, even for an operation that is not built.
    let resp = t
        .http
        .get(format!("{}{BASE}/collections", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_prices() {
    let t = server(|c| {
        c.credit_prices = easel_core::usage::parse_prices("1000:1000:usd,5000:4500:usd").unwrap()
    })
    .await;
    let alice = pair(&t, "alice").await;
    let bob = pair(&t, "bob").await;
    let job = run(
        &t,
        &alice,
        "txt2img",
        json!({"modelId": "tiny", "prompt": "x", "numSamples": 2}),
    )
    .await;
    let (_, up) = call(
        &t,
        &alice,
        Method::POST,
        "/assets",
        Some(json!({"name": "a.png", "image": data_url(&png(64, 64))})),
    )
    .await;
    let (s, v) = call(
        &t,
        &alice,
        Method::POST,
        "/generate/upscale",
        Some(json!({"image": up["asset"]["id"], "scalingFactor": 2})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    finished(&t, &alice, v["job"]["jobId"].as_str().unwrap()).await;

    let (s, u) = call(&t, &alice, Method::GET, "/usages", None).await;
    assert_eq!(s, 200, "{u}");
    let names: Vec<&str> = u["usages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["usageName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["creative-unit-cost", "images-generation", "upscale"],
        "{u}"
    );
    let gen = &u["usages"][1]["points"][0];
    assert_eq!(gen["value"], "2", "two images: {u}");
    assert_eq!(
        u["usages"][0]["points"][0]["value"], "2",
        "one credit per job here: {u}"
    );
    let tiny = &u["modelUsages"][0];
    assert!(
        tiny["modelId"].as_str().unwrap().starts_with("model_"),
        "{u}"
    );
    assert_eq!(tiny["points"][0]["jobs"], 1);
    assert_eq!(u["entities"]["models"][0]["name"], "tiny");
    let activity = u["activity"].as_array().unwrap();
    assert_eq!(activity.len(), 2);
    assert_eq!(activity[0]["action"], "upscale", "newest first");
    assert_eq!(activity[1]["data"]["jobId"], job["jobId"]);
    assert_eq!(
        u["consumption"],
        json!([{"userId": alice.user_id, "value": 2.0}])
    );
    insta::assert_json_snapshot!("scenario_usages", u, {
        ".usages[].points[].time" => "[day]", ".modelUsages[].points[].time" => "[day]",
        ".modelUsages[].modelId" => "[model id]", ".entities.models[].id" => "[model id]",
        ".activity[].time" => "[time]", ".activity[].userId" => "[user]", ".activity[].data.jobId" => "[job id]",
        ".consumption[].userId" => "[user]"
    });
    // Sections by `type`; offsets; ranges; others' usage.
    let (_, only) = call(
        &t,
        &alice,
        Method::GET,
        "/usages?type=activity&activityOffset=1",
        None,
    )
    .await;
    assert_eq!(
        only.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["activity"]
    );
    assert_eq!(only["activity"].as_array().unwrap().len(), 1);
    let (_, past) = call(
        &t,
        &alice,
        Method::GET,
        "/usages?startDate=2020-01-01&endDate=2020-02-01",
        None,
    )
    .await;
    assert_eq!(past["activity"], json!([]));
    let (_, theirs) = call(&t, &bob, Method::GET, "/usages", None).await;
    assert_eq!(theirs["consumption"], json!([]), "{theirs}");
    let (s, v) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/usages?userId={}", alice.user_id),
        None,
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (403, Some("userId")),
        "{v}"
    );
    for bad in [
        "startDate=2026-01-01",
        "startDate=2020-01-01&endDate=2020-12-01",
        "timeRange=1y",
        "timeRange=%E2%82%AC",
    ] {
        let (s, v) = call(&t, &alice, Method::GET, &format!("/usages?{bad}"), None).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    // Prices are public.
    let resp = t
        .http
        .get(format!("{}{BASE}/oscu/prices", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(
        p,
        json!({"prices": [
        {"creativeUnits": 1000, "unitAmount": 1000, "currency": "usd"},
        {"creativeUnits": 5000, "unitAmount": 4500, "currency": "usd"}]})
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_tagged_and_tags_listed() {
    let t = server(|_| {}).await;
    let (ann, bo) = (pair(&t, "ann").await, pair(&t, "bo").await);
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    let (s, up) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(json!({"name": "a.png", "image": b64})),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    let id = up["asset"]["id"].as_str().unwrap().to_string();
    let path = format!("/assets/{id}/tags");
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &path,
        Some(json!({"add": ["cat", "draft"]})),
    )
    .await;
    assert_eq!(
        (s, v.clone()),
        (200, json!({"added": ["cat", "draft"], "deleted": []}))
    );
    // Strict by default, as Scenario's: a tag already there is refused in its error shape.
    let (s, e) = call(&t, &ann, Method::PUT, &path, Some(json!({"add": ["cat"]}))).await;
    assert_eq!((s, e["apiError"].as_str()), (400, Some("conflict")), "{e}");
    assert_eq!(e["infos"]["field"], "add", "{e}");
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &path,
        Some(json!({"add": ["cat"], "delete": ["draft"], "strict": false})),
    )
    .await;
    assert_eq!((s, v), (200, json!({"added": [], "deleted": ["draft"]})));
    let (s, _) = call(&t, &bo, Method::PUT, &path, Some(json!({"add": ["x"]}))).await;
    assert_eq!(s, 404, "another user's asset");
    let (_, one) = call(&t, &ann, Method::GET, &format!("/assets/{id}"), None).await;
    assert_eq!(one["asset"]["tags"], json!(["cat"]), "{one}");
    // The record: name and description edited; canvas fields refused until canvases exist.
    let (s, put) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"name": "b.png", "description": "a cat"})),
    )
    .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(put["asset"]["metadata"]["name"], "b.png");
    assert_eq!(put["asset"]["description"], "a cat");
    assert_eq!(put["asset"]["privacy"], "private");
    assert!(
        put["asset"]["updatedAt"].as_str() >= put["asset"]["createdAt"].as_str(),
        "{put}"
    );
    let (s, e) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"canvas": "{}"})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("canvas")),
        "{e}"
    );
    let (s, _) = call(
        &t,
        &bo,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    // Filters of the owner's list, and public reads without a key.
    let (_, mine) = call(
        &t,
        &ann,
        Method::GET,
        "/assets?tags=cat&privacy=private",
        None,
    )
    .await;
    assert_eq!(mine["assets"].as_array().unwrap().len(), 1, "{mine}");
    let (_, none) = call(&t, &ann, Method::GET, "/assets?privacy=public", None).await;
    assert_eq!(none["assets"], json!([]));
    let anon = |path: String| {
        let t = &t;
        async move {
            let r = t
                .http
                .get(format!("{}{BASE}{path}", t.base))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (s, _) = anon(format!("/assets/public/{id}")).await;
    assert_eq!(s, 404, "private");
    // The native API makes it public (its ids are `ast_…`).
    let native: Value = t
        .http
        .get(format!("{}/v1/assets", t.base))
        .header("authorization", &ann.basic)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let native_id = native["data"][0]["id"].as_str().unwrap().to_string();
    let patched = t
        .http
        .patch(format!("{}/v1/assets/{native_id}", t.base))
        .header("authorization", &ann.basic)
        .json(&json!({"privacy": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let (s, v) = anon(format!("/assets/public/{id}")).await;
    assert_eq!(
        (s, v["asset"]["privacy"].as_str()),
        (200, Some("public")),
        "{v}"
    );
    let (s, list) = anon("/assets/public?tags=cat".into()).await;
    assert_eq!(
        (s, list["assets"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{list}"
    );
    let (_, list) = anon("/assets/public?tags=dog".into()).await;
    assert_eq!(list["assets"], json!([]));
    let (s, tags) = call(&t, &ann, Method::GET, "/tags", None).await;
    assert_eq!(s, 200, "{tags}");
    assert_eq!(tags["tags"][0]["tagName"], "cat");
    assert_eq!(tags["tags"][0]["itemCount"], 1);
    assert_eq!(tags["tags"][0]["ownerId"], ann.user_id.as_str());
    insta::assert_json_snapshot!("tags_listed", tags, {
        ".tags[].createdAt" => "[time]", ".tags[].updatedAt" => "[time]", ".tags[].ownerId" => "[user id]",
    });
    let (_, none) = call(&t, &bo, Method::GET, "/tags", None).await;
    assert_eq!(none["tags"], json!([]));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_gather_assets_and_models() {
    let t = server(|_| {}).await;
    let (cy, di) = (pair(&t, "cy").await, pair(&t, "di").await);
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    let (_, up) = call(
        &t,
        &cy,
        Method::POST,
        "/assets",
        Some(json!({"name": "c.png", "image": b64})),
    )
    .await;
    let asset = up["asset"]["id"].as_str().unwrap().to_string();
    let (s, c) = call(
        &t,
        &cy,
        Method::POST,
        "/collections",
        Some(json!({"name": "trip"})),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    let id = c["collection"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("collection_"), "{id}");
    let path = |p: &str| format!("/collections/{id}{p}");
    let (s, c) = call(
        &t,
        &cy,
        Method::PUT,
        &path("/assets"),
        Some(json!({"assetIds": [asset]})),
    )
    .await;
    assert_eq!(
        (s, c["collection"]["assetCount"].as_u64()),
        (200, Some(1)),
        "{c}"
    );
    let (s, c) = call(
        &t,
        &cy,
        Method::PUT,
        &path("/models"),
        Some(json!({"modelIds": ["tiny"]})),
    )
    .await;
    assert_eq!(
        (
            s,
            c["collection"]["modelCount"].as_u64(),
            c["collection"]["itemCount"].as_u64()
        ),
        (200, Some(1), Some(2)),
        "{c}"
    );
    let (_, listed) = call(
        &t,
        &cy,
        Method::GET,
        &format!("/assets?collectionId={id}"),
        None,
    )
    .await;
    assert_eq!(listed["assets"][0]["id"], asset.as_str(), "{listed}");
    // Another user sees none of it and cannot add to it.
    let (s, _) = call(&t, &di, Method::GET, &path(""), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &t,
        &di,
        Method::PUT,
        &path("/assets"),
        Some(json!({"assetIds": [asset]})),
    )
    .await;
    assert_eq!(s, 404);
    let many: Vec<String> = (0..50).map(|i| format!("asset_{i}")).collect();
    let (s, e) = call(
        &t,
        &cy,
        Method::PUT,
        &path("/assets"),
        Some(json!({"assetIds": many})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("assetIds")),
        "{e}"
    );
    let (s, c) = call(
        &t,
        &cy,
        Method::PUT,
        &path(""),
        Some(json!({"name": "journey"})),
    )
    .await;
    assert_eq!(
        (s, c["collection"]["name"].as_str()),
        (200, Some("journey"))
    );
    let (s, c) = call(
        &t,
        &cy,
        Method::DELETE,
        &path("/assets"),
        Some(json!({"assetIds": [asset]})),
    )
    .await;
    assert_eq!(
        (s, c["collection"]["assetCount"].as_u64()),
        (200, Some(0)),
        "{c}"
    );
    let (_, all) = call(&t, &cy, Method::GET, "/collections", None).await;
    assert_eq!(all["collections"][0]["id"], id.as_str());
    insta::assert_json_snapshot!("collection", all["collections"][0], {
        ".id" => "[id]", ".ownerId" => "[user id]", ".createdAt" => "[time]", ".updatedAt" => "[time]",
    });
    let (s, v) = call(&t, &cy, Method::DELETE, &path(""), None).await;
    assert_eq!((s, v), (200, json!({})));
    t.shutdown().await;
}

/// `PostSearchAssets`: words of names, descriptions and tags (prefixes, every word), own
/// assets only unless `public`, filters, both pagings with totals, sorting; the refusals name
/// their field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_searched() {
    let t = server(|_| {}).await;
    let (ann, bo) = (pair(&t, "ann").await, pair(&t, "bo").await);
    let upload = |who: &'static str, name: &'static str| {
        let t = &t;
        let who = if who == "ann" { &ann } else { &bo };
        async move {
            let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
            let (s, up) = call(
                t,
                who,
                Method::POST,
                "/assets",
                Some(json!({"name": name, "image": b64})),
            )
            .await;
            assert_eq!(s, 200, "{up}");
            up["asset"]["id"].as_str().unwrap().to_string()
        }
    };
    let fox = upload("ann", "red fox.png").await;
    let boat = upload("ann", "boat.png").await;
    let theirs = upload("bo", "fox of bo.png").await;
    let (s, _) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{boat}"),
        Some(json!({"description": "A harbour at dawn"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{fox}/tags"),
        Some(json!({"add": ["winter"]})),
    )
    .await;
    assert_eq!(s, 200);
    let search = |who: &'static str, body: Value| {
        let t = &t;
        let who = if who == "ann" { &ann } else { &bo };
        async move { call(t, who, Method::POST, "/search/assets", Some(body)).await }
    };
    let hit_ids = |v: &Value| -> Vec<String> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, v) = search("ann", json!({"query": "fox"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(hit_ids(&v), vec![fox.clone()], "{v}");
    assert_eq!(
        (
            v["totalHits"].as_u64(),
            v["offset"].as_u64(),
            v["limit"].as_u64()
        ),
        (Some(1), Some(0), Some(20))
    );
    assert_eq!(v["hits"][0]["teamId"], v["hits"][0]["ownerId"]);
    assert_eq!(v["hits"][0]["nsfw"], json!([]));
    let (_, v) = search("ann", json!({"query": "harb DAWN"})).await;
    assert_eq!(
        hit_ids(&v),
        vec![boat.clone()],
        "descriptions, prefixes, any case"
    );
    let (_, v) = search("ann", json!({"query": "wint"})).await;
    assert_eq!(hit_ids(&v), vec![fox.clone()], "tags");
    // Another user's assets only when public, with `public`.
    let (_, v) = search("ann", json!({"query": "fox", "public": true})).await;
    assert_eq!(v["totalHits"], 1, "{v}");
    let native = t
        .http
        .patch(format!(
            "{}/v1/assets/{}",
            t.base,
            theirs.replace("asset_", "ast_")
        ))
        .header("authorization", &bo.basic)
        .json(&json!({"privacy": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(native.status().as_u16(), 200);
    let (_, v) = search("ann", json!({"query": "fox", "public": true})).await;
    assert_eq!(v["totalHits"], 2, "{v}");
    let (_, v) = search("ann", json!({"query": "fox"})).await;
    assert_eq!(v["totalHits"], 1, "{v}");
    // Filters alone, and with the query.
    let (s, v) = search(
        "ann",
        json!({"filter": "tags = winter AND privacy = private"}),
    )
    .await;
    assert_eq!((s, hit_ids(&v)), (200, vec![fox.clone()]), "{v}");
    let (_, v) = search(
        "ann",
        json!({"query": "boat", "filter": "tags IN [winter]"}),
    )
    .await;
    assert_eq!(v["totalHits"], 0, "{v}");
    let (_, v) = search("ann", json!({"filter": "type = uploaded"})).await;
    assert_eq!(v["totalHits"], 2, "{v}");
    let (_, v) = search("ann", json!({"filter": "type = upscale"})).await;
    assert_eq!(v["totalHits"], 0, "{v}");
    // Pages: page/hitsPerPage with totalPages, offset/limit, sorted.
    let (_, v) = search(
        "ann",
        json!({"filter": "type = uploaded", "page": 2, "hitsPerPage": 1, "sortBy": ["createdAt:asc"]}),
    )
    .await;
    assert_eq!(hit_ids(&v), vec![boat.clone()], "{v}");
    assert_eq!(
        (
            v["page"].as_u64(),
            v["totalPages"].as_u64(),
            v["offset"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    let (_, v) = search(
        "ann",
        json!({"filter": "type = uploaded", "offset": 1, "limit": 1}),
    )
    .await;
    assert_eq!(hit_ids(&v), vec![fox.clone()], "newest first: {v}");
    assert!(v.get("page").is_none(), "{v}");
    // Refusals name the field.
    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": "x", "image": "asset_x"}), "image"),
        (json!({"query": "x", "images": {"like": []}}), "images"),
        (
            json!({"query": "x", "querySemanticRatio": 0.5}),
            "querySemanticRatio",
        ),
        (json!({"query": "x", "page": 1, "offset": 0}), "page"),
        (json!({"query": "x", "limit": 101}), "limit"),
        (json!({"query": "x", "limit": 1.5}), "limit"),
        (json!({"query": "x", "sortBy": ["score:desc"]}), "sortBy"),
        (json!({"filter": "tags = a OR tags = b"}), "filter"),
        (json!({"filter": "width > 5"}), "filter"),
        (json!({"query": "x".repeat(501)}), "query"),
    ] {
        let (s, v) = search("ann", body.clone()).await;
        assert_eq!(
            (s, v["infos"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }
    // A collection filter of another user's collection reads as absent.
    let (_, c) = call(
        &t,
        &bo,
        Method::POST,
        "/collections",
        Some(json!({"name": "b"})),
    )
    .await;
    let cid = c["collection"]["id"].as_str().unwrap();
    let (s, _) = search("ann", json!({"filter": format!("collectionIds = {cid}")})).await;
    assert_eq!(s, 404);

    // Models: the registry by its words, filtered, paged, in the hit shape (the server has
    // the tiny model, aliased flux.1-dev, and its LoRA style-a).
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/tiny",
            ADMIN_KEY,
            Some(json!({"tags": ["portrait"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let models = |body: Value| {
        let t = &t;
        let who = &ann;
        async move { call(t, who, Method::POST, "/search/models", Some(body)).await }
    };
    let names = |v: &Value| -> Vec<String> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, v) = models(json!({"query": "flux"})).await;
    assert_eq!((s, names(&v)), (200, vec!["tiny".to_string()]), "{v}");
    for key in [
        "shortDescription",
        "ownerId",
        "authorId",
        "teamId",
        "concepts",
        "capabilities",
        "type",
    ] {
        assert!(v["hits"][0].get(key).is_some(), "{key}: {v}");
    }
    let (_, v) = models(json!({"query": "lora"})).await;
    assert_eq!(names(&v), ["style-a"], "tags: {v}");
    let (_, v) = models(json!({"filter": "privacy = public", "sortBy": ["name:desc"]})).await;
    assert_eq!(names(&v), ["tiny", "style-a"], "{v}");
    let (_, v) = models(json!({"filter": "type = custom"})).await;
    assert_eq!(names(&v), ["style-a"], "{v}");
    let (_, v) = models(json!({"filter": "capabilities IN [img2img] AND tags = portrait"})).await;
    assert_eq!(names(&v), ["tiny"], "{v}");
    let (_, v) = models(json!({"filter": "privacy = private"})).await;
    assert_eq!(v["totalHits"], 0, "{v}");
    let (_, v) = models(json!({"filter": "privacy = public", "page": 2, "hitsPerPage": 1})).await;
    assert_eq!(
        (names(&v), v["totalPages"].as_u64()),
        (vec!["tiny".to_string()], Some(2)),
        "{v}"
    );
    let (s, v) = models(json!({"filter": "privacy = bogus"})).await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("filter")),
        "{v}"
    );
    let (s, v) = models(json!({"filter": "collectionIds = x"})).await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("filter")),
        "{v}"
    );
    let (s, v) = models(json!({"query": "x", "sortBy": ["score:desc"]})).await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("sortBy")),
        "{v}"
    );
    t.shutdown().await;
}

/// `GetAssets`' lineage and time filters: `rootAssetId` lists every asset derived from the
/// root at any depth (and `metadata.rootParentId` shows it), creation and edit bounds narrow
/// the list, `authorId` other than the caller selects nothing, bad times name their field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_filter_by_lineage_and_time() {
    let t = server(|_| {}).await;
    let ann = pair(&t, "ann").await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(8, 8));
    let mut ids: Vec<String> = Vec::new();
    for i in 0..3 {
        let mut body = json!({"name": format!("{i}.png"), "image": b64});
        if let Some(p) = ids.last() {
            body["parentId"] = json!(p);
        }
        let (s, up) = call(&t, &ann, Method::POST, "/assets", Some(body)).await;
        assert_eq!(s, 200, "{up}");
        // The upload's own answer already names its lineage root.
        if let Some(root) = ids.first() {
            assert_eq!(up["asset"]["metadata"]["rootParentId"], json!(root), "{up}");
        }
        ids.push(up["asset"]["id"].as_str().unwrap().to_string());
    }
    let list = |q: String| {
        let t = &t;
        let ann = &ann;
        async move {
            let (s, v) = call(t, ann, Method::GET, &format!("/assets?{q}"), None).await;
            (s, v)
        }
    };
    let got = |v: &Value| -> Vec<String> {
        v["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, v) = list(format!("rootAssetId={}", ids[0])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(got(&v), vec![ids[2].clone(), ids[1].clone()], "{v}");
    assert_eq!(v["assets"][0]["metadata"]["rootParentId"], ids[0], "{v}");
    assert_eq!(v["assets"][0]["metadata"]["parentId"], ids[1], "{v}");
    // Times: the future selects nothing; the past everything.
    let (_, v) = list("createdAfter=2999-01-01T00:00:00Z".into()).await;
    assert!(got(&v).is_empty(), "{v}");
    let (_, v) = list("createdBefore=2999-01-01&createdAfter=2000-01-01".into()).await;
    assert_eq!(got(&v).len(), 3, "{v}");
    let (_, v) = list("updatedAfter=2999-01-01T00:00:00Z".into()).await;
    assert!(got(&v).is_empty(), "{v}");
    let (_, v) = list("updatedBefore=2999-01-01T00:00:00Z".into()).await;
    assert_eq!(got(&v).len(), 3, "{v}");
    // Authors: the caller, or nothing.
    let (_, v) = list(format!("authorId={}", ann.user_id)).await;
    assert_eq!(got(&v).len(), 3, "{v}");
    let (_, v) = list("authorId=someone-else".into()).await;
    assert!(got(&v).is_empty(), "{v}");
    for (q, field) in [
        ("createdAfter=yesterday", "createdAfter"),
        ("updatedBefore=2026-13-01", "updatedBefore"),
        ("rootAssetId=nope", "rootAssetId"),
    ] {
        let (s, v) = list(q.into()).await;
        assert_eq!(
            (s, v["infos"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {v}"
        );
    }
    t.shutdown().await;
}

/// A call to the native API (`/v1/…`) with the pair's credential: Basic works there too.
async fn native(
    t: &TestServer,
    who: &Pair,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = t
        .http
        .request(method, format!("{}{path}", t.base))
        .header("authorization", &who.basic);
    if let Some(b) = body {
        r = r.json(&b);
    }
    get(r.send().await.unwrap()).await
}

/// A keyless call to the dialect.
async fn keyless(t: &TestServer, path: &str) -> (u16, Value) {
    get(t
        .http
        .get(format!("{}{BASE}{path}", t.base))
        .send()
        .await
        .unwrap())
    .await
}

/// The Easel id of a Scenario model id, for the native API.
fn easel_model(id: &str) -> String {
    id.replacen("model_", "mdl_", 1)
}

/// The `id`s of a list of models (or of search hits).
fn model_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// A model of the caller's own over the tiny model: created, read, listed for its owner
/// only, hidden from others while private (404 everywhere, search included), read by id but
/// not changed by others once unlisted (403), listed for all and read without a key once
/// public; edited, tagged, described, given examples (a generation on it names it back),
/// copied, transferred (the first owner can no longer change it) and deleted; the errors
/// name Scenario's fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_models_are_compositions_of_the_servers() {
    let t = server(|_| {}).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let (_, tiny) = call(&t, &ann, Method::GET, "/models/tiny", None).await;
    let tiny_id = tiny["model"]["id"].as_str().unwrap().to_string();
    let (_, lora) = call(&t, &ann, Method::GET, "/models/style-a", None).await;
    let lora_id = lora["model"]["id"].as_str().unwrap().to_string();
    let (_, col) = call(
        &t,
        &ann,
        Method::POST,
        "/collections",
        Some(json!({"name": "mine"})),
    )
    .await;
    let col = col["collection"]["id"].as_str().unwrap().to_string();
    let (_, bobs_col) = call(
        &t,
        &bob,
        Method::POST,
        "/collections",
        Some(json!({"name": "his"})),
    )
    .await;
    let bobs_col = bobs_col["collection"]["id"].as_str().unwrap().to_string();

    // Create: a composition of the tiny model with the LoRA, in the caller's collection.
    let create = json!({"name": "Foxes", "shortDescription": "red foxes", "baseModelId": tiny_id,
        "concepts": [{"modelId": "style-a", "scale": 0.5}], "type": "sd-1_5-composition",
        "collectionIds": [col], "classSlug": null});
    let (s, v) = call(&t, &ann, Method::POST, "/models", Some(create.clone())).await;
    assert_eq!(s, 200, "{v}");
    let m = &v["model"];
    let id = m["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("model_"), "{id}");
    assert_eq!(
        (&m["type"], &m["privacy"], &m["ownerId"], &m["authorId"]),
        (
            &json!("sd-1_5-composition"),
            &json!("private"),
            &json!(ann.user_id),
            &json!(ann.user_id)
        ),
        "{m}"
    );
    assert_eq!(m["parentModelId"], json!(tiny_id));
    assert_eq!(m["concepts"], json!([{"modelId": lora_id, "scale": 0.5}]));
    assert_eq!(m["collectionIds"], json!([col]));
    assert_eq!(
        m["capabilities"], tiny["model"]["capabilities"],
        "its base's"
    );
    insta::assert_json_snapshot!("scenario_own_model", m, {
        ".id" => "[model id]", ".createdAt" => "[time]", ".updatedAt" => "[time]",
        ".ownerId" => "[user]", ".authorId" => "[user]", ".parentModelId" => "[model id]",
        ".concepts[].modelId" => "[model id]", ".collectionIds[]" => "[collection id]"
    });
    let (_, c) = call(&t, &ann, Method::GET, &format!("/collections/{col}"), None).await;
    assert_eq!(c["collection"]["modelCount"], 1, "{c}");
    // What a create refuses, by Scenario's field names; nothing is made.
    for (change, field, status) in [
        (json!({"baseModelId": null}), "baseModelId", 400),
        (json!({"baseModelId": "nope"}), "baseModelId", 400),
        (json!({"baseModelId": "style-a"}), "baseModelId", 400),
        (json!({"type": "sd-xl-composition"}), "type", 400),
        (
            json!({"concepts": [{"modelId": "nope", "scale": 1}]}),
            "concepts[0].modelId",
            400,
        ),
        (
            json!({"concepts": [{"modelId": "style-a", "scale": 3}]}),
            "concepts[0].scale",
            400,
        ),
        (json!({"name": " "}), "name", 400),
        (json!({"classSlug": "characters"}), "classSlug", 400),
        (
            json!({"collectionIds": [bobs_col]}),
            "collectionIds[0]",
            404,
        ),
        (json!({"color": "red"}), "color", 400),
    ] {
        let mut body = create.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = call(&t, &ann, Method::POST, "/models", Some(body)).await;
        assert_eq!(
            (s, v["infos"]["field"].as_str()),
            (status, Some(field)),
            "{change}: {v}"
        );
    }
    let (_, mine) = call(&t, &ann, Method::GET, "/models?privacy=private", None).await;
    assert_eq!(
        model_ids(&mine["models"]),
        [id.as_str()],
        "one model was made"
    );

    // Private: the owner lists and finds it; another user sees nothing of it.
    let (_, list) = call(&t, &ann, Method::GET, "/models", None).await;
    assert!(model_ids(&list["models"]).contains(&id), "{list}");
    let (_, list) = call(
        &t,
        &ann,
        Method::GET,
        "/models?type=sd-1_5-composition",
        None,
    )
    .await;
    assert_eq!(model_ids(&list["models"]), [id.as_str()]);
    let (_, list) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/models?collectionId={col}"),
        None,
    )
    .await;
    assert_eq!(model_ids(&list["models"]), [id.as_str()]);
    let (_, list) = call(&t, &bob, Method::GET, "/models", None).await;
    assert!(!model_ids(&list["models"]).contains(&id), "{list}");
    let (s, _) = call(&t, &bob, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/models/{}", easel_model(&id)),
        None,
    )
    .await;
    assert_eq!(s, 404, "in Easel's form too");
    let (_, bulk) = call(
        &t,
        &bob,
        Method::POST,
        "/models/get-bulk",
        Some(json!({"modelIds": [id, "tiny"]})),
    )
    .await;
    assert_eq!(model_ids(&bulk["models"]), [tiny_id.as_str()]);
    let (_, hits) = call(
        &t,
        &bob,
        Method::POST,
        "/search/models",
        Some(json!({"query": "foxes", "public": true})),
    )
    .await;
    assert_eq!(hits["totalHits"], 0, "{hits}");
    let (_, hits) = call(
        &t,
        &ann,
        Method::POST,
        "/search/models",
        Some(json!({"query": "foxes"})),
    )
    .await;
    assert_eq!(model_ids(&hits["hits"]), [id.as_str()], "{hits}");
    assert_eq!(hits["hits"][0]["ownerId"], json!(ann.user_id));
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/models/{id}"),
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, format!("/models/{id}"), None),
        (
            Method::PUT,
            format!("/models/{id}/tags"),
            Some(json!({"add": ["x"]})),
        ),
        (Method::GET, format!("/models/{id}/presets"), None),
        (Method::GET, format!("/models/{id}/description"), None),
        (Method::POST, format!("/models/{id}/copy"), Some(json!({}))),
    ] {
        let (s, v) = call(&t, &bob, method.clone(), &path, body).await;
        assert_eq!(s, 404, "{method} {path} by another user: {v}");
    }
    let (s, _) = keyless(&t, &format!("/models/public/{id}")).await;
    assert_eq!(s, 404, "a private model is not public");

    // Unlisted (privacy is set over the native API): read by id, listed for nobody else,
    // and still only its owner's to change.
    let (s, v) = native(
        &t,
        &ann,
        Method::PATCH,
        &format!("/v1/models/{}", easel_model(&id)),
        Some(json!({"privacy": "unlisted"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&t, &bob, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!(
        (s, &v["model"]["privacy"]),
        (200, &json!("unlisted")),
        "{v}"
    );
    let (_, list) = call(&t, &bob, Method::GET, "/models?privacy=public", None).await;
    assert!(!model_ids(&list["models"]).contains(&id), "{list}");
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/models/{id}"),
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, format!("/models/{id}"), None),
        (
            Method::PUT,
            format!("/models/{id}/tags"),
            Some(json!({"add": ["x"]})),
        ),
        (
            Method::PUT,
            format!("/models/{id}/description"),
            Some(json!({"description": "x"})),
        ),
        (
            Method::PUT,
            format!("/models/{id}/examples"),
            Some(json!({"assetIds": []})),
        ),
        (
            Method::DELETE,
            format!("/models/{id}/images?ids=asset_x"),
            None,
        ),
        (
            Method::POST,
            format!("/models/{id}/transfer"),
            Some(json!({"destinationProjectId": bob.user_id})),
        ),
        (
            Method::POST,
            format!("/models/{id}/presets"),
            Some(json!({"inferenceId": "job_x"})),
        ),
    ] {
        let (s, v) = call(&t, &bob, method.clone(), &path, body).await;
        assert_eq!(
            (s, v["apiError"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {v}"
        );
    }
    let (s, v) = keyless(&t, &format!("/models/public/{id}")).await;
    assert_eq!(
        (s, &v["model"]["id"]),
        (200, &json!(id)),
        "unlisted: by id without a key"
    );
    let (_, v) = keyless(&t, "/models/public").await;
    assert!(
        !model_ids(&v["models"]).contains(&id),
        "but not listed: {v}"
    );

    // Public: listed for everyone, with a key or without.
    native(
        &t,
        &ann,
        Method::PATCH,
        &format!("/v1/models/{}", easel_model(&id)),
        Some(json!({"privacy": "public"})),
    )
    .await;
    let (s, v) = keyless(&t, "/models/public").await;
    assert_eq!((s, model_ids(&v["models"])), (200, vec![id.clone()]), "{v}");
    let (_, v) = keyless(&t, "/models/public?type=sd-xl-composition").await;
    assert_eq!(v, json!({"models": []}));
    let (_, list) = call(&t, &bob, Method::GET, "/models?privacy=public", None).await;
    assert!(model_ids(&list["models"]).contains(&id), "{list}");
    assert!(
        model_ids(&list["models"]).contains(&tiny_id),
        "the server's models show public"
    );
    let (_, hits) = call(
        &t,
        &bob,
        Method::POST,
        "/search/models",
        Some(json!({"query": "foxes", "public": true})),
    )
    .await;
    assert_eq!(model_ids(&hits["hits"]), [id.as_str()], "{hits}");
    let (_, hits) = call(
        &t,
        &bob,
        Method::POST,
        "/search/models",
        Some(json!({"query": "foxes"})),
    )
    .await;
    assert_eq!(
        hits["totalHits"], 0,
        "others' public models only when asked: {hits}"
    );

    // Edit: name, short description, LoRAs; what Easel does not keep is a 400.
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}"),
        Some(
            json!({"name": "Foxes II", "shortDescription": "", "concepts": [],
            "type": "sd-1_5-composition", "thumbnail": null}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["model"]["name"], &v["model"]["concepts"]),
        (&json!("Foxes II"), &json!([]))
    );
    assert!(v["model"].get("shortDescription").is_none(), "cleared: {v}");
    for (body, field) in [
        (json!({"thumbnail": "asset_x"}), "thumbnail"),
        (json!({"type": "sd-xl"}), "type"),
        (json!({"parameters": {"maxTrainSteps": 10}}), "parameters"),
        (
            json!({"concepts": [{"modelId": "tiny", "scale": 1}]}),
            "concepts[0].modelId",
        ),
        (json!({"name": ""}), "name"),
    ] {
        let (s, v) = call(
            &t,
            &ann,
            Method::PUT,
            &format!("/models/{id}"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, v["infos"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }

    // Tags, strict by default.
    let tags = |body: Value| {
        let (t, ann, id) = (&t, &ann, &id);
        async move {
            call(
                t,
                ann,
                Method::PUT,
                &format!("/models/{id}/tags"),
                Some(body),
            )
            .await
        }
    };
    let (s, v) = tags(json!({"add": ["fox", "red"]})).await;
    assert_eq!(
        (s, v),
        (200, json!({"added": ["fox", "red"], "deleted": []}))
    );
    let (s, v) = tags(json!({"add": ["fox"]})).await;
    assert_eq!((s, v["infos"]["field"].as_str()), (400, Some("add")), "{v}");
    let (s, v) =
        tags(json!({"add": ["fox", "snow"], "delete": ["red", "blue"], "strict": false})).await;
    assert_eq!(
        (s, v),
        (200, json!({"added": ["snow"], "deleted": ["red"]}))
    );
    let (_, v) = call(&t, &ann, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!(v["model"]["tags"], json!(["fox", "snow"]));
    let (_, list) = call(&t, &ann, Method::GET, "/models?tags=fox,snow", None).await;
    assert_eq!(model_ids(&list["models"]), [id.as_str()]);

    // A generation on the model names it back; its output becomes an example.
    let job = run(
        &t,
        &ann,
        "txt2img",
        json!({"modelId": id, "prompt": "a fox in snow", "numSamples": 1}),
    )
    .await;
    assert_eq!(job["metadata"]["input"]["modelId"], json!(id), "{job}");
    let asset = job["metadata"]["assetIds"][0].as_str().unwrap().to_string();
    let (_, a) = call(&t, &ann, Method::GET, &format!("/assets/{asset}"), None).await;
    assert_eq!(a["asset"]["metadata"]["modelId"], json!(id), "{a}");
    let (_, listed) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/assets?modelId={id}"),
        None,
    )
    .await;
    assert_eq!(listed["assets"].as_array().unwrap().len(), 1, "{listed}");
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/examples"),
        Some(json!({"assetIds": [asset]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The prompt score compares a prompt with the examples' prompts.
    let (_, score) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/models/{id}/scores/prompt?prompt=a%20fox%20in%20snow"),
        None,
    )
    .await;
    assert_eq!(
        score["details"]["promptsSimilarity"],
        json!({"min": 1.0, "median": 1.0, "mean": 1.0}),
        "{score}"
    );
    let e = &v["examples"][0];
    assert_eq!(
        (&e["asset"]["id"], &e["modelId"], &e["inferenceId"]),
        (&json!(asset), &json!(id), &job["jobId"]),
        "{v}"
    );
    assert_eq!(e["inferenceParameters"]["prompt"], "a fox in snow");
    assert_eq!(e["job"]["jobId"], job["jobId"], "the job, for its owner");
    let (s, v) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/models/{id}/examples"),
        None,
    )
    .await;
    assert_eq!(
        (s, &v["examples"][0]["asset"]["id"]),
        (200, &json!(asset)),
        "{v}"
    );
    assert!(
        v["examples"][0].get("job").is_none(),
        "not another's job: {v}"
    );
    let (_, v) = call(&t, &bob, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!(v["model"]["exampleAssetIds"], json!([asset]));
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(8, 8));
    let (_, bobs) = call(
        &t,
        &bob,
        Method::POST,
        "/assets",
        Some(json!({"name": "b.png", "image": b64})),
    )
    .await;
    let bobs = bobs["asset"]["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/examples"),
        Some(json!({"assetIds": [asset, bobs]})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("assetIds[1]")),
        "{v}"
    );

    // Description: markdown with references to what the caller may see.
    let text = format!("# Foxes\n{{asset:{asset}}} on {{model:{tiny_id}}}, not {{asset:{bobs}}}");
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/description"),
        Some(json!({"description": text})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["description"]["value"], json!(text));
    assert_eq!(model_ids(&v["description"]["models"]), [tiny_id.as_str()]);
    assert_eq!(
        model_ids(&v["description"]["assets"]),
        [asset.as_str()],
        "bob's private asset is not shown"
    );
    let (s, v) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/models/{id}/description"),
        None,
    )
    .await;
    assert_eq!((s, &v["description"]["value"]), (200, &json!(text)));
    assert_eq!(
        model_ids(&v["description"]["assets"]),
        std::slice::from_ref(&bobs),
        "a tag grants nothing: the reader's own, not the owner's private asset"
    );
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/description"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("description")),
        "{v}"
    );

    // Copy: another's public model becomes the caller's (private); its examples are not
    // theirs to keep.
    let (s, v) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/models/{id}/copy"),
        Some(json!({"copyExamples": true})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("copyExamples")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/models/{id}/copy"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let copy = v["model"]["id"].as_str().unwrap().to_string();
    assert_ne!(copy, id);
    assert_eq!(
        (
            &v["model"]["ownerId"],
            &v["model"]["privacy"],
            &v["model"]["parentModelId"],
            &v["model"]["name"],
            &v["model"]["exampleAssetIds"]
        ),
        (
            &json!(bob.user_id),
            &json!("private"),
            &json!(tiny_id),
            &json!("Foxes II"),
            &json!([])
        ),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/copy"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, &v["model"]["exampleAssetIds"]),
        (200, &json!([asset])),
        "the owner's copy keeps them"
    );
    let ann_copy = v["model"]["id"].as_str().unwrap().to_string();

    // Images: the examples, removed by id (the asset stays).
    let (s, v) = call(
        &t,
        &ann,
        Method::DELETE,
        &format!("/models/{id}/images?ids={asset}"),
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({})));
    let (_, v) = call(&t, &ann, Method::GET, &format!("/models/{id}"), None).await;
    assert_eq!(v["model"]["exampleAssetIds"], json!([]));
    let (s, _) = call(&t, &ann, Method::GET, &format!("/assets/{asset}"), None).await;
    assert_eq!(s, 200);

    // Transfer to another user (by id; a name works too): theirs to change now.
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/transfer"),
        Some(json!({"destinationProjectId": "nobody"})),
    )
    .await;
    assert_eq!(
        (s, v["infos"]["field"].as_str()),
        (400, Some("destinationProjectId")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{tiny_id}/transfer"),
        Some(json!({"destinationProjectId": bob.user_id})),
    )
    .await;
    assert_eq!(s, 403, "the server's models belong to no one: {v}");
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/transfer"),
        Some(json!({"destinationProjectId": bob.user_id})),
    )
    .await;
    assert_eq!(
        (s, &v["model"]["ownerId"]),
        (200, &json!(bob.user_id)),
        "{v}"
    );
    let (s, _) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}"),
        Some(json!({"name": "Back"})),
    )
    .await;
    assert_eq!(s, 403, "the first owner no longer changes it");
    let (s, v) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("/models/{id}"),
        Some(json!({"name": "Bob's foxes"})),
    )
    .await;
    assert_eq!(
        (s, &v["model"]["name"]),
        (200, &json!("Bob's foxes")),
        "{v}"
    );

    // Delete: gone for everyone, and out of the collection.
    let (s, v) = call(&t, &bob, Method::DELETE, &format!("/models/{id}"), None).await;
    assert_eq!((s, v), (200, json!({})));
    for who in [&ann, &bob] {
        let (s, _) = call(&t, who, Method::GET, &format!("/models/{id}"), None).await;
        assert_eq!(s, 404);
    }
    let (s, _) = keyless(&t, &format!("/models/public/{id}")).await;
    assert_eq!(s, 404);
    let (_, c) = call(&t, &ann, Method::GET, &format!("/collections/{col}"), None).await;
    assert_eq!(c["collection"]["modelCount"], 0, "{c}");
    for m in [copy.as_str(), ann_copy.as_str()] {
        let owner = if m == copy { &bob } else { &ann };
        let (s, _) = call(&t, owner, Method::DELETE, &format!("/models/{m}"), None).await;
        assert_eq!(s, 200);
    }
    t.shutdown().await;
}

/// Presets: made from one of the caller's generations (its parameters, not its prompt or
/// a seed the server drew), the default one filling what a later generation on the model
/// leaves out (the request's own values win), toggled, listed, deleted; copied with the
/// model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_fill_later_generations() {
    let t = server(|_| {}).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        "/models",
        Some(json!({"name": "Snow", "baseModelId": "tiny"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let id = v["model"]["id"].as_str().unwrap().to_string();
    let presets = |who: &Pair| {
        let (t, id) = (&t, &id);
        let who = Pair {
            basic: who.basic.clone(),
            user_id: who.user_id.clone(),
        };
        async move { call(t, &who, Method::GET, &format!("/models/{id}/presets"), None).await }
    };
    let (s, v) = presets(&ann).await;
    assert_eq!((s, v), (200, json!({"presets": []})));

    let first = run(
        &t,
        &ann,
        "txt2img",
        json!({"modelId": id, "prompt": "snow", "numSamples": 1,
        "numInferenceSteps": 3, "guidance": 4.5, "negativePrompt": "blurry"}),
    )
    .await;
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/presets"),
        Some(json!({"inferenceId": first["jobId"], "isDefault": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let p = &v["preset"];
    let preset = p["id"].as_str().unwrap().to_string();
    let params = &p["parameters"];
    assert_eq!(
        (
            &params["numInferenceSteps"],
            &params["guidance"],
            &params["numSamples"],
            &params["negativePrompt"],
            &params["type"],
            &params["prompt"]
        ),
        (
            &json!(3),
            &json!(4.5),
            &json!(1),
            &json!("blurry"),
            &json!("txt2img"),
            &json!("")
        ),
        "{p}"
    );
    assert!(
        params.get("seed").is_none(),
        "a seed the server drew is not kept: {p}"
    );
    assert_eq!(
        (
            &p["modelId"],
            &p["authorId"],
            &p["ownerId"],
            &p["isDefault"]
        ),
        (
            &json!(id),
            &json!(ann.user_id),
            &json!(ann.user_id),
            &json!(true)
        )
    );
    insta::assert_json_snapshot!("scenario_preset", p, {
        ".id" => "[preset id]", ".modelId" => "[model id]", ".authorId" => "[user]",
        ".ownerId" => "[user]", ".createdAt" => "[time]", ".updatedAt" => "[time]"
    });

    // The default preset fills what a request leaves out; what it sends wins.
    let later = run(
        &t,
        &ann,
        "txt2img",
        json!({"modelId": id, "prompt": "more snow"}),
    )
    .await;
    let input = &later["metadata"]["input"];
    assert_eq!(
        (
            &input["numInferenceSteps"],
            &input["guidance"],
            &input["numSamples"],
            &input["negativePrompt"],
            &input["prompt"]
        ),
        (
            &json!(3),
            &json!(4.5),
            &json!(1),
            &json!("blurry"),
            &json!("more snow")
        ),
        "the preset's, over the model's defaults and the spec's 4 samples: {later}"
    );
    let own = run(
        &t,
        &ann,
        "txt2img",
        json!({"modelId": id, "prompt": "x", "numInferenceSteps": 2,
        "numSamples": 2, "seed": "9"}),
    )
    .await;
    assert_eq!(
        (
            &own["metadata"]["input"]["numInferenceSteps"],
            &own["metadata"]["input"]["numSamples"],
            &own["metadata"]["input"]["guidance"]
        ),
        (&json!(2), &json!(2), &json!(4.5)),
        "{own}"
    );
    // A preset of a request that chose its seed keeps it; the new default takes over.
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/presets"),
        Some(json!({"inferenceId": own["jobId"], "isDefault": true})),
    )
    .await;
    assert_eq!(
        (s, &v["preset"]["parameters"]["seed"]),
        (200, &json!("9")),
        "{v}"
    );
    let second = v["preset"]["id"].as_str().unwrap().to_string();
    let defaults = |v: &Value| -> Vec<(String, bool)> {
        v["presets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["isDefault"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let (_, v) = presets(&ann).await;
    assert_eq!(
        defaults(&v),
        [(preset.clone(), false), (second.clone(), true)]
    );
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/presets/{preset}"),
        Some(json!({"isDefault": true})),
    )
    .await;
    assert_eq!((s, &v["preset"]["isDefault"]), (200, &json!(true)), "{v}");
    let (_, v) = presets(&ann).await;
    assert_eq!(
        defaults(&v),
        [(preset.clone(), true), (second.clone(), false)]
    );
    // No default: the model's own defaults again (the tiny model's 2 steps).
    call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/presets/{preset}"),
        Some(json!({"isDefault": false})),
    )
    .await;
    let plain = run(
        &t,
        &ann,
        "txt2img",
        json!({"modelId": id, "prompt": "plain", "numSamples": 1}),
    )
    .await;
    assert_eq!(
        plain["metadata"]["input"]["numInferenceSteps"], 2,
        "{plain}"
    );
    assert!(
        plain["metadata"]["input"].get("negativePrompt").is_none(),
        "{plain}"
    );

    // What a preset cannot be made of.
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    let (_, up) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(json!({"name": "p.png", "image": b64})),
    )
    .await;
    let (s, pix) = call(
        &t,
        &ann,
        Method::POST,
        "/generate/pixelate",
        Some(json!({"image": up["asset"]["id"], "pixelGridSize": 16, "removeNoise": false})),
    )
    .await;
    assert_eq!(s, 200, "{pix}");
    let bobs = run(
        &t,
        &bob,
        "txt2img",
        json!({"modelId": "tiny", "prompt": "b", "numSamples": 1}),
    )
    .await;
    for (job, status) in [
        (json!("not-a-job"), 400),
        (pix["job"]["jobId"].clone(), 400),
        (bobs["jobId"].clone(), 404),
        (json!("job_01jb0000000000000000000000"), 404),
    ] {
        let (s, v) = call(
            &t,
            &ann,
            Method::POST,
            &format!("/models/{id}/presets"),
            Some(json!({"inferenceId": job})),
        )
        .await;
        assert_eq!(
            (s, v["infos"]["field"].as_str()),
            (status, Some("inferenceId")),
            "{job}: {v}"
        );
    }
    let (s, _) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/models/{id}/presets/prs_nope"),
        Some(json!({"isDefault": true})),
    )
    .await;
    assert_eq!(s, 404);
    // Others see nothing of a private model's presets; a copy takes them along.
    let (s, _) = presets(&bob).await;
    assert_eq!(s, 404);
    let (_, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/models/{id}/copy"),
        Some(json!({})),
    )
    .await;
    let copy = v["model"]["id"].as_str().unwrap().to_string();
    let (_, v) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/models/{copy}/presets"),
        None,
    )
    .await;
    assert_eq!(v["presets"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["presets"][0]["modelId"], json!(copy));

    let (s, v) = call(
        &t,
        &ann,
        Method::DELETE,
        &format!("/models/{id}/presets/{second}"),
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!({})));
    let (s, _) = call(
        &t,
        &ann,
        Method::DELETE,
        &format!("/models/{id}/presets/{second}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, v) = presets(&ann).await;
    assert_eq!(defaults(&v), [(preset.clone(), false)]);
    t.shutdown().await;
}

/// Uploads in parts through Scenario's three operations: announced with asset options, parts
/// PUT to the signed URLs, completed into an asset (`entityId`) in the collection; a file
/// that is not an image answered `failed` with its message; errors by Scenario's field
/// names; another user's upload 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_parts_complete_into_assets() {
    let t = server(|_| {}).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let (_, col) = call(
        &t,
        &ann,
        Method::POST,
        "/collections",
        Some(json!({"name": "inbox"})),
    )
    .await;
    let col = col["collection"]["id"].as_str().unwrap().to_string();
    let image = png(40, 24);
    let half = image.len() / 2;
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        "/uploads",
        Some(
            json!({"fileName": "photo.png", "fileSize": image.len(), "contentType": "image/png",
            "parts": 2, "kind": "image", "assetOptions": {"collectionIds": [col]}}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    insta::assert_json_snapshot!("scenario_upload", v, {
        ".upload.id" => "[upload id]", ".upload.createdAt" => "[time]", ".upload.updatedAt" => "[time]",
        ".upload.ownerId" => "[user]", ".upload.authorId" => "[user]", ".upload.fileSize" => "[bytes]",
        ".upload.parts[].url" => "[signed url]", ".upload.parts[].expires" => "[time]",
        ".upload.assetOptions.collectionIds[]" => "[collection id]"
    });
    let id = v["upload"]["id"].as_str().unwrap().to_string();
    for (i, chunk) in [&image[..half], &image[half..]].into_iter().enumerate() {
        let url = v["upload"]["parts"][i]["url"].as_str().unwrap();
        let r = t.http.put(url).body(chunk.to_vec()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let (s, _) = call(&t, &bob, Method::GET, &format!("/uploads/{id}"), None).await;
    assert_eq!(s, 404);
    let complete = Some(json!({"action": "complete"}));
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/uploads/{id}/action"),
        complete.clone(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/uploads/{id}/action"),
        complete.clone(),
    )
    .await;
    assert_eq!(
        (s, v["upload"]["status"].as_str()),
        (200, Some("complete")),
        "{v}"
    );
    assert_eq!(v["upload"]["parts"], json!([]));
    let asset = v["upload"]["entityId"].as_str().unwrap().to_string();
    assert!(asset.starts_with("asset_"), "{asset}");
    let (s, a) = call(&t, &ann, Method::GET, &format!("/assets/{asset}"), None).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["asset"]["collectionIds"], json!([col]), "{a}");
    let (s, a) = call(&t, &bob, Method::GET, &format!("/assets/{asset}"), None).await;
    assert_eq!(s, 404, "{a}");

    // Not an image: the upload is answered failed, with the reason.
    let (_, v) = call(
        &t,
        &ann,
        Method::POST,
        "/uploads",
        Some(json!({"fileName": "a.png", "fileSize": 5, "contentType": "image/png", "parts": 1, "kind": "asset"})),
    )
    .await;
    let bad = v["upload"]["id"].as_str().unwrap().to_string();
    let url = v["upload"]["parts"][0]["url"].as_str().unwrap();
    t.http.put(url).body("hello").send().await.unwrap();
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/uploads/{bad}/action"),
        complete.clone(),
    )
    .await;
    assert_eq!(
        (s, v["upload"]["status"].as_str()),
        (200, Some("failed")),
        "{v}"
    );
    assert!(v["upload"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not a supported image"));

    // What an announcement refuses, by Scenario's field names.
    let ok = json!({"fileName": "a.png", "fileSize": 5, "contentType": "image/png", "parts": 1, "kind": "image"});
    for (change, field) in [
        (json!({"kind": "video"}), "kind"),
        (json!({"kind": null}), "kind"),
        (json!({"fileName": null}), "fileName"),
        (json!({"fileSize": 1.5}), "fileSize"),
        (json!({"parts": 0}), "parts"),
        (json!({"parts": 6}), "parts"),
        (json!({"contentType": ""}), "contentType"),
        // A hub import makes a model, never an image.
        (json!({"huggingFaceModelName": "a/b"}), "kind"),
        (
            json!({"civitaiModelUrl": "https://civitai.com/models/1"}),
            "civitaiModelUrl",
        ),
        (
            json!({"assetOptions": {"collectionIds": ["collection_nope"]}}),
            "assetOptions.collectionIds[0]",
        ),
        (
            json!({"assetOptions": {"parentId": "asset_01jnope0000000000000000000"}}),
            "assetOptions.parentId",
        ),
    ] {
        let mut body = ok.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (s, e) = call(&t, &ann, Method::POST, "/uploads", Some(body.clone())).await;
        assert_eq!(
            (s, e["infos"]["field"].as_str()),
            (400, Some(field)),
            "{body} → {e}"
        );
    }
    let (s, e) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/uploads/{id}/action"),
        Some(json!({"action": "abort"})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("action")),
        "{e}"
    );
    t.shutdown().await;
}

/// Bulk downloads through Scenario: `POST /assets/download` answers a job id at once, `GET
/// /assets/download/{jobId}` its `success` and a URL whose ZIP holds the assets named by the
/// template; errors by Scenario's field names; another user's download 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_zip_assets() {
    use std::io::Read;
    let t = server(|_| {}).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let upload = |who: &Pair, name: &str| {
        let (t, who, name) = (&t, who.basic.clone(), name.to_string());
        async move {
            let image = base64::engine::general_purpose::STANDARD.encode(png(16, 8));
            let r = t
                .http
                .post(format!("{}{BASE}/assets", t.base))
                .header("authorization", who)
                .json(&json!({"name": name, "image": image}))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            v["asset"]["id"].as_str().unwrap().to_string()
        }
    };
    let a = upload(&ann, "first").await;
    let b = upload(&ann, "second").await;
    let theirs = upload(&bob, "theirs").await;
    let body = json!({"query": {"assetIds": [a, b], "inferenceIds": [], "modelIds": []},
        "options": {"fileNameTemplate": "pic-<id>", "flat": true, "archiveName": "my pics"}});
    let (s, v) = call(&t, &ann, Method::POST, "/assets/download", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let job = v["jobId"].as_str().unwrap().to_string();
    let (s, st) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/assets/download/{job}"),
        None,
    )
    .await;
    assert_eq!(
        (s, st["jobStatus"].as_str()),
        (200, Some("success")),
        "{st}"
    );
    insta::assert_json_snapshot!("scenario_download", st, {
        ".jobId" => "[download id]", ".downloadUrl" => "[signed url]"
    });
    let r = t
        .http
        .get(st["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"my pics.zip\"; filename*=UTF-8''my%20pics%2Ezip"
    );
    let bytes = r.bytes().await.unwrap().to_vec();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        assert_eq!(data, png(16, 8));
        names.push(f.name().to_string());
    }
    let easel = |s: &str| s.replacen("asset_", "ast_", 1);
    assert_eq!(
        names,
        [
            format!("pic-{}.png", easel(&a)),
            format!("pic-{}.png", easel(&b))
        ]
    );

    let (s, _) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/assets/download/{job}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    for (query, field) in [
        (
            json!({"assetIds": [theirs], "inferenceIds": [], "modelIds": []}),
            "query.assetIds[0]",
        ),
        (
            json!({"assetIds": [], "inferenceIds": [], "modelIds": []}),
            "query.assetIds",
        ),
        (
            json!({"assetIds": [], "inferenceIds": ["job_x"], "modelIds": []}),
            "query.inferenceIds[0]",
        ),
        (
            json!({"assetIds": [], "inferenceIds": [], "modelIds": ["model_x"]}),
            "query.modelIds[0]",
        ),
    ] {
        let body = json!({"query": query, "options": {"fileNameTemplate": ""}});
        let (s, e) = call(&t, &ann, Method::POST, "/assets/download", Some(body)).await;
        assert_eq!(
            (s, e["infos"]["field"].as_str()),
            (400, Some(field)),
            "{query} → {e}"
        );
    }
    t.shutdown().await;
}

/// The prompt score: the model's tokenizer's count, the share kept, Scenario's syntax error
/// for a weight outside 0–2; an unknown model 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_scores_read_the_tokenizer() {
    let t = server(|_| {}).await;
    let ann = pair(&t, "ann").await;
    let (s, v) = call(
        &t,
        &ann,
        Method::GET,
        "/models/tiny/scores/prompt?prompt=a%20red%20fox",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    insta::assert_json_snapshot!("scenario_prompt_score", v, {".modelId" => "[model id]"});
    let (_, v) = call(
        &t,
        &ann,
        Method::GET,
        "/models/tiny/scores/prompt?prompt=%28fox%3A2.5%29",
        None,
    )
    .await;
    assert_eq!(
        v["syntaxError"], "Prompt weight should be between 0 and 2",
        "{v}"
    );
    let (s, _) = call(
        &t,
        &ann,
        Method::GET,
        "/models/nope/scores/prompt?prompt=x",
        None,
    )
    .await;
    assert_eq!(s, 404);
    t.shutdown().await;
}

/// An admin's key as Scenario's pair.
async fn admin_pair(t: &TestServer, name: &str) -> Pair {
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": name, "role": "admin"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap()
    ));
    Pair {
        basic: format!("Basic {b64}"),
        user_id: v["user_id"].as_str().unwrap().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canvases_lock_save_and_keep_snapshots() {
    let t = server(|c| c.workers = 0).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let admin = admin_pair(&t, "root").await;
    let (_, col) = call(
        &t,
        &ann,
        Method::POST,
        "/collections",
        Some(json!({"name": "boards"})),
    )
    .await;
    let col = col["collection"]["id"].as_str().unwrap().to_string();
    let thumb = base64::engine::general_purpose::STANDARD.encode(png(4, 4));
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(
            json!({"name": "board", "canvas": "{\"layers\":[]}", "thumbnail": thumb,
            "collectionIds": [col]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let redact = |v: &Value| {
        let mut v = v.clone();
        for p in ["id", "url", "createdAt", "updatedAt", "ownerId", "authorId"] {
            v[p] = json!(format!("[{p}]"));
        }
        v["thumbnail"] = json!({"assetId": "[asset id]", "url": "[signed url]"});
        v["collectionIds"] = json!(["[collection id]"]);
        if v["metadata"].get("lockExpiresAt").is_some() {
            v["metadata"]["lockExpiresAt"] = json!("[time]");
        }
        v
    };
    insta::assert_json_snapshot!("scenario_canvas", redact(&v["asset"]));
    let id = v["asset"]["id"].as_str().unwrap().to_string();
    let doc = t
        .http
        .get(v["asset"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(doc, "{\"layers\":[]}");

    // The admin holds the lock: the owner's lock, save and delete are 409 naming them.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (s, l) = call(
        &t,
        &admin,
        Method::PUT,
        &format!("/assets/{id}/lock"),
        Some(json!({"lockExpiresAt": soon})),
    )
    .await;
    assert_eq!(s, 200, "{l}");
    assert!(l["lockId"].as_str().unwrap().starts_with("lck_"), "{l}");
    assert!(l["asset"]["metadata"]["lockExpiresAt"].is_string(), "{l}");
    let lock_id = l["lockId"].as_str().unwrap().to_string();
    let (s, e) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}/lock"),
        Some(json!({"lockExpiresAt": soon})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    let mut scrubbed = e.clone();
    for k in ["createdAt", "updatedAt", "id"] {
        scrubbed[k] = json!(format!("[{k}]"));
    }
    scrubbed["error"] = json!(
        e["error"]
            .as_str()
            .unwrap()
            .replace(&admin.user_id, "[user]")
            .split(" until ")
            .next()
            .unwrap()
            .to_string()
            + " until [time]"
    );
    insta::assert_json_snapshot!("scenario_error_locked", scrubbed);
    let (s, e) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"canvas": "{\"layers\":[1]}"})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    // A bulk delete with a locked canvas deletes nothing.
    let (_, kept) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(json!({"name": "k.png", "image": data_url(&png(4, 4))})),
    )
    .await;
    let kept = kept["asset"]["id"].as_str().unwrap().to_string();
    let (s, _) = call(
        &t,
        &ann,
        Method::DELETE,
        "/assets",
        Some(json!({"assetIds": [kept, id]})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(&t, &ann, Method::GET, &format!("/assets/{kept}"), None).await;
    assert_eq!(s, 200, "all or none");
    // With the lock's id the admin saves; a snapshot is taken unless disabled.
    let (s, v) = call(
        &t,
        &admin,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"canvas": "{\"layers\":[1]}", "lockId": lock_id, "name": "board 2"})),
    )
    .await;
    assert_eq!(
        (s, v["asset"]["metadata"]["name"].as_str()),
        (200, Some("board 2")),
        "{v}"
    );
    let (s, v) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}/unlock"),
        Some(json!({"forceUnlock": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["asset"]["metadata"].get("lockExpiresAt").is_none(), "{v}");
    let (s, _) = call(
        &t,
        &ann,
        Method::PUT,
        &format!("/assets/{id}"),
        Some(json!({"canvas": "{\"layers\":[2]}", "disableSnapshot": true})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        &t,
        &ann,
        Method::GET,
        &format!("/assets/{id}/snapshots"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{v}");
    assert_eq!(
        (snaps[0]["rawData"].as_str(), snaps[0]["authorId"].as_str()),
        (Some("{\"layers\":[1]}"), Some(admin.user_id.as_str()))
    );
    let mut v = v.clone();
    for s in v["snapshots"].as_array_mut().unwrap() {
        s["takenAt"] = json!("[ms]");
        s["authorId"] = json!("[user]");
    }
    insta::assert_json_snapshot!("scenario_canvas_snapshots", v);

    // Lists: `types=canvas` finds it, `uploaded` does not.
    let (s, up) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(json!({"name": "p.png", "image": data_url(&png(4, 4)), "collectionIds": [col]})),
    )
    .await;
    assert_eq!(
        (s, &up["asset"]["collectionIds"]),
        (200, &json!([col])),
        "{up}"
    );
    let img = up["asset"]["id"].as_str().unwrap().to_string();
    let (_, theirs) = call(
        &t,
        &bob,
        Method::POST,
        "/collections",
        Some(json!({"name": "mine"})),
    )
    .await;
    let (s, e) = call(
        &t,
        &ann,
        Method::POST,
        "/assets",
        Some(json!({"name": "q.png", "image": data_url(&png(4, 4)),
            "collectionIds": [theirs["collection"]["id"]]})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("collectionIds[0]")),
        "{e}"
    );
    let ids_of = |v: &Value| -> Vec<String> {
        v["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = call(&t, &ann, Method::GET, "/assets?types=canvas", None).await;
    assert_eq!(ids_of(&v), std::slice::from_ref(&id));
    let (_, v) = call(&t, &ann, Method::GET, "/assets?types=uploaded", None).await;
    assert!(
        !ids_of(&v).contains(&id) && ids_of(&v).contains(&img),
        "{v}"
    );
    // Canvas fields on an image, a format for a canvas, bad input: 400 naming the field.
    for (m, path, body, field) in [
        (
            Method::PUT,
            format!("/assets/{img}"),
            json!({"canvas": "{}"}),
            "canvas",
        ),
        (
            Method::POST,
            format!("/assets/{id}/download"),
            json!({"targetFormat": "png"}),
            "targetFormat",
        ),
        (
            Method::PUT,
            format!("/assets/{id}"),
            json!({"canvas": "nope"}),
            "canvas",
        ),
        (
            Method::PUT,
            format!("/assets/{id}/lock"),
            json!({"lockExpiresAt": "2000-01-01T00:00:00Z"}),
            "lockExpiresAt",
        ),
        (
            Method::POST,
            "/assets".into(),
            json!({"name": "x"}),
            "image",
        ),
    ] {
        let (s, e) = call(&t, &ann, m, &path, Some(body.clone())).await;
        assert_eq!(
            (s, e["infos"]["field"].as_str()),
            (400, Some(field)),
            "{body} → {e}"
        );
    }
    // A copy is a canvas with the current document.
    let (s, v) = call(&t, &ann, Method::POST, &format!("/assets/{id}/copy"), None).await;
    assert_eq!((s, v["asset"]["kind"].as_str()), (200, Some("json")), "{v}");
    // Another user: 404 on each canvas operation.
    for (m, path, body) in [
        (
            Method::PUT,
            format!("/assets/{id}/lock"),
            Some(json!({"lockExpiresAt": soon})),
        ),
        (
            Method::PUT,
            format!("/assets/{id}/unlock"),
            Some(json!({"forceUnlock": true})),
        ),
        (Method::GET, format!("/assets/{id}/snapshots"), None),
        (
            Method::PUT,
            format!("/assets/{id}"),
            Some(json!({"canvas": "{}"})),
        ),
    ] {
        let (s, e) = call(&t, &bob, m.clone(), &path, body).await;
        assert_eq!(s, 404, "{m} {path}: {e}");
    }
}

/// `kind: model`: a LoRA's `.safetensors` file sent in parts becomes a private model of the
/// uploader (`entityId` its `model_…` id), listed among their models, applied as a concept
/// by them and unknown to anyone else; by URL, or with asset options, it is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_uploads_become_the_uploaders_lora() {
    let t = server(|_| {}).await;
    let (ann, bob) = (pair(&t, "ann").await, pair(&t, "bob").await);
    let file = std::fs::read(t.dir.path().join("models/style-a.safetensors")).unwrap();
    let half = file.len() / 2;
    let announce = json!({"fileName": "ann-style.safetensors", "fileSize": file.len(),
        "contentType": "application/octet-stream", "parts": 2, "kind": "model"});
    for (extra, field) in [
        (
            json!({"assetOptions": {"parentId": "asset_x"}}),
            "assetOptions",
        ),
        (
            json!({"url": "https://example.com/x.safetensors", "huggingFaceModelName": "a/b"}),
            "url",
        ),
    ] {
        let mut body = announce.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, e) = call(&t, &ann, Method::POST, "/uploads", Some(body)).await;
        assert_eq!(s, 400, "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    let (s, v) = call(&t, &ann, Method::POST, "/uploads", Some(announce)).await;
    assert_eq!(
        (s, v["upload"]["kind"].as_str()),
        (200, Some("model")),
        "{v}"
    );
    let id = v["upload"]["id"].as_str().unwrap().to_string();
    for (i, chunk) in [&file[..half], &file[half..]].into_iter().enumerate() {
        let url = v["upload"]["parts"][i]["url"].as_str().unwrap();
        let r = t.http.put(url).body(chunk.to_vec()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/uploads/{id}/action"),
        Some(json!({"action": "complete"})),
    )
    .await;
    assert_eq!(
        (s, v["upload"]["status"].as_str()),
        (200, Some("complete")),
        "{v}"
    );
    let model = v["upload"]["entityId"].as_str().unwrap().to_string();
    assert!(model.starts_with("model_"), "{v}");

    let (s, m) = call(&t, &ann, Method::GET, &format!("/models/{model}"), None).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["model"]["name"], "ann-style", "{m}");
    assert_eq!(m["model"]["privacy"], "private", "{m}");
    assert_eq!(m["model"]["tags"], json!(["lora"]), "{m}");
    let (_, list) = call(&t, &ann, Method::GET, "/models?privacy=private", None).await;
    assert!(list.to_string().contains(&model), "{list}");
    let (s, _) = call(&t, &bob, Method::GET, &format!("/models/{model}"), None).await;
    assert_eq!(s, 404);

    let body = json!({"modelId": "tiny", "prompt": "a fox", "numInferenceSteps": 2,
        "width": 64, "height": 64, "concepts": [{"modelId": model, "scale": 1.0}]});
    let gen = |who| {
        call(
            &t,
            who,
            Method::POST,
            "/generate/txt2img",
            Some(body.clone()),
        )
    };
    let (s, e) = gen(&bob).await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("concepts[0].modelId")),
        "{e}"
    );
    let (s, created) = gen(&ann).await;
    assert_eq!(s, 200, "{created}");
    let job = finished(&t, &ann, created["job"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");

    // `PostDownloadModel`: a job read like any other, its URL the zipped model.
    let path = format!("/models/{model}/download");
    let (s, d) = call(&t, &ann, Method::POST, &path, Some(json!({}))).await;
    assert_eq!(s, 200, "{d}");
    let job_id = d["jobId"].as_str().unwrap();
    let (s, job) = call(&t, &ann, Method::GET, &format!("/jobs/{job_id}"), None).await;
    assert_eq!(s, 200, "{job}");
    insta::assert_json_snapshot!("scenario_model_download_job", job, {
        ".job.jobId" => "[download id]", ".job.createdAt" => "[time]", ".job.updatedAt" => "[time]",
        ".job.statusHistory[].date" => "[time]", ".job.ownerId" => "[user]", ".job.authorId" => "[user]",
        ".job.metadata.input.modelId" => "[model id]", ".job.metadata.output.url" => "[signed url]",
        ".job.metadata.output.expiresAt" => "[time]"
    });
    let r = t
        .http
        .get(job["job"]["metadata"]["output"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let zip = r.bytes().await.unwrap();
    let z = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    let names: Vec<&str> = z.file_names().collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"ann-style.safetensors") && names.contains(&"model.json"),
        "{names:?}"
    );
    let (s, _) = call(&t, &bob, Method::GET, &format!("/jobs/{job_id}"), None).await;
    assert_eq!(s, 404);
    for (who, path, body, status, field) in [
        (&bob, path.clone(), json!({}), 404, None),
        (
            &ann,
            path.clone(),
            json!({"modelEpoch": "e1"}),
            400,
            Some("modelEpoch"),
        ),
        (
            &ann,
            "/models/tiny/download".to_string(),
            json!({}),
            400,
            Some("modelId"),
        ),
    ] {
        let (s, e) = call(&t, who, Method::POST, &path, Some(body)).await;
        assert_eq!(
            (s, e["infos"]["field"].as_str()),
            (status, field),
            "{path}: {e}"
        );
    }
    t.shutdown().await;
}

/// `url` with kind `model` imports a LoRA under the fetch policy, in the background: the
/// upload answers `validating`, then `complete` naming the model (its `fileSize` learnt),
/// or `failed` saying why (not a LoRA, not found); fetching off refuses it at once; a
/// `huggingFaceModelName` on a server without hub access is 501 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_imports_by_url_run_in_the_background() {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let t = server(|c| c.fetch_images = easel_api::service::FetchImages::Any).await;
    let ann = pair(&t, "ann").await;
    let file = std::fs::read(t.dir.path().join("models/style-a.safetensors")).unwrap();
    let served = file.clone();
    let app = axum::Router::new()
        .route(
            "/loras/ink.safetensors",
            get(move || {
                let b = served.clone();
                async move { b.into_response() }
            }),
        )
        .route(
            "/loras/not-a-lora.safetensors",
            get(|| async { vec![7u8; 64] }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let import = |path: &str| {
        call(
            &t,
            &ann,
            Method::POST,
            "/uploads",
            Some(json!({"url": format!("{origin}{path}"), "kind": "model"})),
        )
    };
    let settled = |id: String| {
        let (t, ann) = (&t, &ann);
        async move {
            for _ in 0..200 {
                let (s, v) = call(t, ann, Method::GET, &format!("/uploads/{id}"), None).await;
                assert_eq!(s, 200, "{v}");
                if v["upload"]["status"] != "validating" {
                    return v;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the import did not settle");
        }
    };
    let (s, v) = import("/loras/ink.safetensors").await;
    assert_eq!(
        (
            s,
            v["upload"]["status"].as_str(),
            v["upload"]["source"].as_str(),
            v["upload"]["kind"].as_str()
        ),
        (200, Some("validating"), Some("url"), Some("model")),
        "{v}"
    );
    let v = settled(v["upload"]["id"].as_str().unwrap().to_string()).await;
    assert_eq!(v["upload"]["status"], "complete", "{v}");
    assert_eq!(v["upload"]["fileSize"], file.len(), "{v}");
    insta::assert_json_snapshot!("scenario_upload_imported", v, {
        ".upload.id" => "[upload id]", ".upload.createdAt" => "[time]", ".upload.updatedAt" => "[time]",
        ".upload.ownerId" => "[user]", ".upload.authorId" => "[user]", ".upload.fileSize" => "[bytes]",
        ".upload.url" => "[origin]/loras/ink.safetensors", ".upload.entityId" => "[model id]"
    });
    let model = v["upload"]["entityId"].as_str().unwrap().to_string();
    assert!(model.starts_with("model_"), "{v}");
    let (s, m) = call(&t, &ann, Method::GET, &format!("/models/{model}"), None).await;
    assert_eq!((s, m["model"]["name"].as_str()), (200, Some("ink")), "{m}");

    for (path, says) in [
        ("/loras/not-a-lora.safetensors", "safetensors"),
        ("/loras/missing.safetensors", "HTTP 404"),
    ] {
        let (s, v) = import(path).await;
        assert_eq!(s, 200, "{v}");
        let v = settled(v["upload"]["id"].as_str().unwrap().to_string()).await;
        assert_eq!(v["upload"]["status"], "failed", "{path}: {v}");
        let msg = v["upload"]["errorMessage"].as_str().unwrap();
        assert!(msg.contains(says), "{path}: {msg}");
        assert!(v["upload"].get("entityId").is_none(), "{v}");
    }
    let (s, e) = call(
        &t,
        &ann,
        Method::POST,
        "/uploads",
        Some(json!({"huggingFaceModelName": "acme/ink"})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (501, Some("huggingFaceModelName")),
        "{e}"
    );
    t.shutdown().await;

    let t = server(|c| c.fetch_images = easel_api::service::FetchImages::Off).await;
    let ann = pair(&t, "ann").await;
    let (s, e) = call(
        &t,
        &ann,
        Method::POST,
        "/uploads",
        Some(json!({"url": format!("{origin}/loras/ink.safetensors"), "kind": "model"})),
    )
    .await;
    assert_eq!((s, e["infos"]["field"].as_str()), (400, Some("url")), "{e}");
    t.shutdown().await;
}

/// `hide` on `PostAsset` and `assetOptions.hide` on an upload: the asset reads by id with
/// `isHidden: true` and is left out of `GetAssets`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_assets_are_left_out_of_lists() {
    let t = server(|_| {}).await;
    let ann = pair(&t, "ann").await;
    let image = base64::engine::general_purpose::STANDARD.encode(png(8, 8));
    let mut ids = Vec::new();
    for hide in [true, false] {
        let (s, v) = call(
            &t,
            &ann,
            Method::POST,
            "/assets",
            Some(json!({"image": image, "name": "a", "hide": hide})),
        )
        .await;
        assert_eq!(
            (s, v["asset"]["isHidden"].as_bool()),
            (200, Some(hide)),
            "{v}"
        );
        ids.push(v["asset"]["id"].as_str().unwrap().to_string());
    }
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        "/uploads",
        Some(json!({
        "fileName": "p.png", "fileSize": png(8, 8).len(), "contentType": "image/png",
        "parts": 1, "kind": "image", "assetOptions": {"hide": true}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = t
        .http
        .put(v["upload"]["parts"][0]["url"].as_str().unwrap())
        .body(png(8, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let id = v["upload"]["id"].as_str().unwrap();
    let (_, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/uploads/{id}/action"),
        Some(json!({"action": "complete"})),
    )
    .await;
    let uploaded = v["upload"]["entityId"].as_str().unwrap().to_string();
    let (s, v) = call(&t, &ann, Method::GET, &format!("/assets/{uploaded}"), None).await;
    assert_eq!(
        (s, v["asset"]["isHidden"].as_bool()),
        (200, Some(true)),
        "{v}"
    );
    let (_, list) = call(&t, &ann, Method::GET, "/assets", None).await;
    let listed: Vec<&str> = list["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[1].as_str()], "only the visible one: {list}");

    // `hideResults`: a boolean, or a 400 naming it.
    let (s, e) = call(
        &t,
        &ann,
        Method::POST,
        "/generate/txt2img",
        Some(json!({
        "modelId": "tiny", "prompt": "a fox", "hideResults": "yes"})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("hideResults")),
        "{e}"
    );
    // `hideResults`: the outputs are stored hidden, and still the job's.
    let (s, created) = call(
        &t,
        &ann,
        Method::POST,
        "/generate/txt2img",
        Some(json!({
        "modelId": "tiny", "prompt": "a fox", "numInferenceSteps": 2, "width": 64,
        "height": 64, "hideResults": true})),
    )
    .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        created["inference"]["easelNotApplied"],
        Value::Null,
        "applied: {created}"
    );
    let job = finished(&t, &ann, created["job"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    let out = job["metadata"]["assetIds"][0].as_str().unwrap().to_string();
    let (s, v) = call(&t, &ann, Method::GET, &format!("/assets/{out}"), None).await;
    assert_eq!(
        (s, v["asset"]["isHidden"].as_bool()),
        (200, Some(true)),
        "{v}"
    );
    let (_, list) = call(&t, &ann, Method::GET, "/assets", None).await;
    assert!(!list.to_string().contains(&out), "{list}");

    // The owner's hidden assets, as the native API lists them (`?hidden=true`).
    let hidden = || async {
        let r = t
            .http
            .get(format!("{}/v1/assets?hidden=true&limit=100", t.base))
            .header("authorization", &ann.basic)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .clone()
    };
    let native = |id: &str| id.replacen("asset_", "ast_", 1);
    // `imageHide`, `imageParentId`: an image sent as a `data:` URL is stored hidden,
    // derived from the parent named; a parent not the caller's is a 400 naming it.
    let img2img = |extra: Value| {
        let mut body = json!({"modelId": "tiny", "prompt": "a fox", "numInferenceSteps": 2,
            "numSamples": 1, "strength": 0.5,
            "image": format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png(64, 64)))});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        call(&t, &ann, Method::POST, "/generate/img2img", Some(body))
    };
    let (s, e) = img2img(json!({"imageParentId": "asset_01jnope0000000000000000000"})).await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("imageParentId")),
        "{e}"
    );
    let (s, created) = img2img(json!({"imageHide": true, "imageParentId": ids[1]})).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        created["inference"]["easelNotApplied"],
        Value::Null,
        "applied: {created}"
    );
    let inline: Vec<Value> = hidden()
        .await
        .into_iter()
        .filter(|a| a["parent_id"] == native(&ids[1]).as_str())
        .collect();
    assert_eq!(inline.len(), 1, "the inline image, hidden: {inline:?}");
    assert_eq!(inline[0]["width"], 64);

    // A conversion of a hidden asset is hidden too.
    let (s, v) = call(
        &t,
        &ann,
        Method::POST,
        &format!("/assets/{}/download", ids[0]),
        Some(json!({"targetFormat": "jpeg"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let converted: Vec<Value> = hidden()
        .await
        .into_iter()
        .filter(|a| a["parent_id"] == native(&ids[0]).as_str())
        .collect();
    assert_eq!(converted.len(), 1, "{converted:?}");
    assert_eq!(converted[0]["mime_type"], "image/jpeg", "{converted:?}");
    t.shutdown().await;
}
