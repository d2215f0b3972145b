//! The Leonardo dialect at `/leonardo/v1` against a real server with a tiny SD 1.5 model
//! (64x64 and 2 steps by its registry defaults) and a tiny LoRA: generations created,
//! polled, downloaded and re-run to the same pixels; img2img from uploads and from generated
//! images; canvas inpainting; LoRAs through `elements`/`userElements`; preset styles; vendor
//! switches listed as ignored; lists by user; delete; every error's shape and status; and
//! snapshots of the wire shapes.

mod common;

use std::time::Duration;

use common::*;
use easel_diffusion::sd::tiny::{make_tiny_lora, LoraLayout};
use easel_diffusion::tiny::make_tiny;
use reqwest::Method;
use serde_json::{json, Value};

const GEN: &str = "/leonardo/v1/generations";

/// A server with the tiny model `tiny` (64x64, 2 steps by default) and the LoRA `style-a`.
async fn server() -> TestServer {
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

async fn post(t: &TestServer, key: &str, body: Value) -> (u16, Value) {
    t.json(Method::POST, GEN, key, Some(body)).await
}

/// Create a generation; its id.
async fn create(t: &TestServer, key: &str, body: Value) -> String {
    let (s, v) = post(t, key, body).await;
    assert_eq!(s, 200, "{v}");
    v["sdGenerationJob"]["generationId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn read(t: &TestServer, key: &str, id: &str) -> Value {
    let (s, v) = t.json(Method::GET, &format!("{GEN}/{id}"), key, None).await;
    assert_eq!(s, 200, "{v}");
    v["generations_by_pk"].clone()
}

/// Poll until the generation is no longer PENDING.
async fn finished(t: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let g = read(t, key, id).await;
        if g["status"] != "PENDING" {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("generation {id} stayed PENDING");
}

async fn complete(t: &TestServer, key: &str, body: Value) -> Value {
    let id = create(t, key, body).await;
    let g = finished(t, key, &id).await;
    assert_eq!(g["status"], "COMPLETE", "{g}");
    g
}

async fn fetch(t: &TestServer, url: &str) -> Vec<u8> {
    let resp = t.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp.bytes().await.unwrap().to_vec()
}

/// The decoded images of a generation: (width, height, RGB bytes).
async fn pixels(t: &TestServer, g: &Value) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    for img in g["generated_images"].as_array().unwrap() {
        let png = fetch(t, img["url"].as_str().unwrap()).await;
        let d = decode(&png);
        out.push((d.width(), d.height(), d.to_rgb8().into_raw()));
    }
    out
}

/// The native view of the job behind a generation, and the stored wire request.
async fn job_of(t: &TestServer, key: &str, g: &Value) -> (Value, Value) {
    let id = g["easel_job_id"].as_str().unwrap();
    let (s, v) = t
        .json(Method::GET, &format!("/v1/jobs/{id}"), key, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let job = easel_store::jobs::get(&t.server().state.store.db, id)
        .await
        .unwrap()
        .unwrap();
    (v, job.request.unwrap_or(Value::Null))
}

async fn me(t: &TestServer, key: &str) -> String {
    let (s, v) = t.json(Method::GET, "/leonardo/v1/me", key, None).await;
    assert_eq!(s, 200, "{v}");
    v["user_details"][0]["user"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_run_are_read_back_and_rerun_to_the_same_pixels() {
    let t = server().await;
    let (key, _) = t.user("alice").await;

    let body = json!({"prompt": "a red fox", "negative_prompt": "blur", "num_images": 2,
        "width": 64, "height": 96, "seed": 7, "num_inference_steps": 10,
        "guidance_scale": 6.5, "scheduler": "EULER_ANCESTRAL_DISCRETE", "modelId": "tiny"});
    let (s, created) = post(&t, &key, body.clone()).await;
    assert_eq!(s, 200, "{created}");
    insta::assert_json_snapshot!("create_answer", created, {
        ".sdGenerationJob.generationId" => "[uuid]"
    });
    let id = created["sdGenerationJob"]["generationId"].as_str().unwrap();
    let g = finished(&t, &key, id).await;
    assert_eq!(g["status"], "COMPLETE", "{g}");
    assert_eq!(g["id"], id);
    let images = pixels(&t, &g).await;
    assert_eq!(images.len(), 2, "num_images");
    for (w, h, _) in &images {
        assert_eq!((*w, *h), (64, 96));
    }
    assert_ne!(images[0].2, images[1].2, "image i uses seed + i");
    let model_id = g["modelId"].as_str().unwrap();
    assert!(
        easel_api::leonardo::is_uuid_v4(model_id),
        "modelId is a UUIDv4: {model_id}"
    );
    insta::assert_json_snapshot!("generation", g, {
        ".id" => "[uuid]", ".createdAt" => "[time]", ".easel_job_id" => "[job id]", ".modelId" => "[uuid]",
        ".generated_images[].id" => "[uuid]", ".generated_images[].url" => "[url]"
    });
    let (job, request) = job_of(&t, &key, &g).await;
    // What the request became: the core task and its input, and the request as kept.
    insta::assert_json_snapshot!(
        "core_request",
        json!({"task": job["task"], "model": job["model"], "input": job["input"], "kept": request})
    );
    assert_eq!(job["task"], "txt2img");
    assert_eq!(job["input"]["steps"], 10);
    assert_eq!(job["input"]["scheduler"], "EULER_ANCESTRAL_DISCRETE");

    // The same request runs to the same pixels.
    let again = complete(&t, &key, body).await;
    assert_ne!(again["id"], g["id"]);
    assert_eq!(pixels(&t, &again).await, images, "same seed, same pixels");

    // Defaults: 4 images (the spec's), the model's size and steps, a recorded seed, the
    // spec's default scheduler, DYNAMIC (the prompt as given), the default model.
    let d = complete(&t, &key, json!({"prompt": "a red fox"})).await;
    assert_eq!(d["generated_images"].as_array().unwrap().len(), 4, "{d}");
    assert_eq!(
        (d["imageWidth"].as_u64(), d["imageHeight"].as_u64()),
        (Some(64), Some(64))
    );
    assert_eq!(d["inferenceSteps"], 2);
    assert!(d["seed"].is_u64(), "{d}");
    assert_eq!(d["scheduler"], "EULER_DISCRETE");
    assert_eq!(d["presetStyle"], "DYNAMIC");
    assert_eq!(d["easel_prompt"], "a red fox");
    assert_eq!(d["sdVersion"], "v1_5");
    assert_eq!(d["easel_model"], "tiny");
    let model_uuid = d["modelId"].as_str().unwrap().to_string();
    assert_eq!(model_uuid.len(), 36, "{d}");
    for (w, h, _) in pixels(&t, &d).await {
        assert_eq!((w, h), (64, 64));
    }
    // The recorded seed re-runs the first image.
    let seed = d["seed"].as_u64().unwrap();
    let one = complete(
        &t,
        &key,
        json!({"prompt": "a red fox", "seed": seed, "num_images": 1}),
    )
    .await;
    assert_eq!(pixels(&t, &one).await[0], pixels(&t, &d).await[0]);

    // sd_version picks an installed model of its family; the model's UUID names it too.
    let v = complete(
        &t,
        &key,
        json!({"prompt": "x", "sd_version": "v1_5", "num_images": 1}),
    )
    .await;
    assert_eq!(
        (v["easel_model"].as_str(), v["sdVersion"].as_str()),
        (Some("tiny"), Some("v1_5"))
    );
    let u = complete(
        &t,
        &key,
        json!({"prompt": "x", "modelId": model_uuid, "num_images": 1}),
    )
    .await;
    assert_eq!(u["easel_model"], "tiny");
    assert_eq!(u["modelId"], model_uuid.as_str());

    // A preset style wraps the prompt: the Generation and the job's core input show it.
    let c = complete(
        &t,
        &key,
        json!({"prompt": "a red fox", "presetStyle": "CINEMATIC", "num_images": 1}),
    )
    .await;
    let cinematic =
        "cinematic film still of a red fox, dramatic lighting, anamorphic, color graded";
    assert_eq!(c["prompt"], "a red fox");
    assert_eq!(c["presetStyle"], "CINEMATIC");
    assert_eq!(c["easel_prompt"], cinematic);
    assert!(
        c["easel_negative_prompt"]
            .as_str()
            .unwrap()
            .contains("cartoon"),
        "{c}"
    );
    let (job, _) = job_of(&t, &key, &c).await;
    assert_eq!(job["input"]["prompt"], cinematic);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_switches_are_accepted_and_listed_as_ignored() {
    let t = server().await;
    let (key, _) = t.user("vic").await;
    let body = json!({"prompt": "a castle", "num_images": 1, "alchemy": true, "photoReal": true,
        "photoRealVersion": "v2", "photoRealStrength": 0.45, "promptMagic": true,
        "promptMagicStrength": 0.5, "promptMagicVersion": "v3", "contrast": 3.5,
        "contrastRatio": 0.4, "expandedDomain": true, "fantasyAvatar": false,
        "highContrast": true, "highResolution": true, "ultra": false, "upscaleRatio": 2,
        "enhancePrompt": true, "enhancePromptInstruction": "more dragons", "public": true,
        "transparency": "disabled", "tiling": false, "unzoom": false, "controlnets": [],
        "imagePrompts": [], "controlNet": false, "canvasRequest": false, "elements": [],
        "userElements": null, "sd_version": null});
    let g = complete(&t, &key, body).await;
    let ignored = json!([
        "alchemy",
        "contrast",
        "contrastRatio",
        "enhancePrompt",
        "enhancePromptInstruction",
        "expandedDomain",
        "fantasyAvatar",
        "highContrast",
        "highResolution",
        "photoReal",
        "photoRealStrength",
        "photoRealVersion",
        "promptMagic",
        "promptMagicStrength",
        "promptMagicVersion",
        "public",
        "ultra",
        "upscaleRatio"
    ]);
    assert_eq!(g["easel_ignored"], ignored);
    // None of them ran: the prompt is as given, the flags read false.
    assert_eq!(g["easel_prompt"], "a castle");
    for f in ["public", "photoReal", "promptMagic", "ultra"] {
        assert_eq!(g[f], false, "{f}");
    }
    let (_, request) = job_of(&t, &key, &g).await;
    assert_eq!(request["ignored"], ignored);
    assert_eq!(request["alchemy"], true, "the body is kept as received");
    assert_eq!(request["enhancePromptInstruction"], "more dragons");

    // An Idempotency-Key replays the first generation.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = t
            .req(Method::POST, GEN, Some(&key))
            .header("idempotency-key", "leo-1")
            .json(&json!({"prompt": "once", "num_images": 1}))
            .send()
            .await
            .unwrap();
        let (s, v) = get(resp).await;
        assert_eq!(s, 200, "{v}");
        ids.push(v["sdGenerationJob"]["generationId"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_images_and_canvas_requests_run_img2img_and_inpaint() {
    let t = server().await;
    let (key, _) = t.user("ida").await;
    let upload = t.upload(&key, png(64, 64)).await;

    // An uploaded asset as the init image; init_strength is what to keep.
    let g = complete(
        &t,
        &key,
        json!({"prompt": "a fox", "init_image_id": upload, "init_strength": 0.3,
            "num_images": 1, "seed": 3}),
    )
    .await;
    assert_eq!(g["initStrength"], 0.3);
    assert_eq!(pixels(&t, &g).await[0].0, 64);
    let (job, _) = job_of(&t, &key, &g).await;
    assert_eq!(job["task"], "img2img");
    assert_eq!(job["input"]["image"], upload.as_str());
    assert!(
        (job["input"]["strength"].as_f64().unwrap() - 0.7).abs() < 1e-6,
        "{job}"
    );

    // A generated image's UUID as the init image (either field takes it).
    let image_id = g["generated_images"][0]["id"].as_str().unwrap().to_string();
    let g2 = complete(
        &t,
        &key,
        json!({"prompt": "a fox", "init_generation_image_id": image_id, "num_images": 1}),
    )
    .await;
    let (job2, _) = job_of(&t, &key, &g2).await;
    assert_eq!(job2["task"], "img2img");
    assert_eq!(job2["input"]["image"], job["outputs"][0]["asset_id"]);
    assert_eq!(
        g2["initStrength"], 0.25,
        "the core's default strength 0.75, as Leonardo's"
    );

    // Canvas INPAINT: the init image and an Easel mask (white = repaint).
    let mask = {
        let img =
            image::GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 255 } else { 0 }]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        t.upload(&key, out.into_inner()).await
    };
    let inp = complete(
        &t,
        &key,
        json!({"prompt": "a fox", "canvasRequest": true, "canvasRequestType": "INPAINT",
            "canvasInitId": image_id, "canvasMaskId": mask, "num_images": 1}),
    )
    .await;
    let (job3, _) = job_of(&t, &key, &inp).await;
    assert_eq!(job3["task"], "inpaint");
    assert_eq!(job3["input"]["mask"], mask.as_str());
    assert_eq!(pixels(&t, &inp).await[0].0, 64);

    // Canvas IMG2IMG.
    let i2i = complete(
        &t,
        &key,
        json!({"prompt": "a fox", "canvasRequestType": "IMG2IMG", "canvasInitId": upload,
            "num_images": 1}),
    )
    .await;
    assert_eq!(job_of(&t, &key, &i2i).await.0["task"], "img2img");

    // Someone else's image ids are not found.
    let (bob, _) = t.user("bob").await;
    for (field, v) in [("init_image_id", &upload), ("init_image_id", &image_id)] {
        let (s, e) = post(&t, &bob, json!({"prompt": "x", field: v})).await;
        assert_eq!(s, 400, "{e}");
        assert_eq!(e["path"], json!([field]), "{e}");
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_apply_loras() {
    let t = server().await;
    let (key, _) = t.user("lou").await;
    let base = json!({"prompt": "a fox", "num_images": 1, "seed": 5});
    let plain = complete(&t, &key, base.clone()).await;
    let mut with = base.clone();
    with["elements"] = json!([{"akUUID": "style-a", "weight": 0.8}]);
    let g = complete(&t, &key, with).await;
    let ak = g["generation_elements"][0]["lora"]["akUUID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        easel_api::leonardo::is_uuid_v4(&ak),
        "the LoRA's Leonardo id: {ak}"
    );
    assert_eq!(
        g["generation_elements"],
        json!([{"lora": {"akUUID": ak, "name": "style-a"}, "weightApplied": 0.8}])
    );
    // The LoRA by that id gives the same pixels.
    let mut by_id = base.clone();
    by_id["elements"] = json!([{"akUUID": ak, "weight": 0.8}]);
    let again = complete(&t, &key, by_id).await;
    assert_eq!(pixels(&t, &again).await, pixels(&t, &g).await);
    let (job, _) = job_of(&t, &key, &g).await;
    let l = &job["input"]["loras"];
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l[0]["model"], "style-a");
    assert!((l[0]["scale"].as_f64().unwrap() - 0.8).abs() < 1e-6, "{l}");
    assert_ne!(
        pixels(&t, &plain).await[0].2,
        pixels(&t, &g).await[0].2,
        "the LoRA changes the image"
    );

    // A user element by number: a registry alias.
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/style-a",
            ADMIN_KEY,
            Some(json!({"aliases": ["42"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut user = base.clone();
    user["userElements"] = json!([{"userLoraId": 42, "weight": 0.8}]);
    let u = complete(&t, &key, user).await;
    assert_eq!(
        u["generation_elements"],
        json!([{"lora": {"akUUID": ak, "name": "style-a"}, "weightApplied": 0.8}]),
        "the same LoRA, the same Leonardo id"
    );
    assert_eq!(
        pixels(&t, &u).await,
        pixels(&t, &g).await,
        "the same LoRA and scale"
    );

    // Only LoRAs.
    for (body, path) in [
        (
            json!({"prompt": "x", "elements": [{"akUUID": "tiny"}]}),
            json!(["elements", "0", "akUUID"]),
        ),
        (
            json!({"prompt": "x", "elements": [{"akUUID": "nope"}]}),
            json!(["elements", "0", "akUUID"]),
        ),
        (
            json!({"prompt": "x", "elements": [{"weight": 1}]}),
            json!(["elements", "0", "akUUID"]),
        ),
        (
            json!({"prompt": "x", "userElements": [{"userLoraId": 7}]}),
            json!(["userElements", "0", "userLoraId"]),
        ),
        (
            json!({"prompt": "x", "elements": [{"akUUID": "style-a", "weight": 9}]}),
            json!(["elements", "0", "weight"]),
        ),
        (
            json!({"prompt": "x", "modelId": "style-a"}),
            json!(["modelId"]),
        ),
    ] {
        let (s, e) = post(&t, &key, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert_eq!(e["path"], path, "{body}: {e}");
        assert_eq!(e["extensions"]["code"], "validation-failed", "{e}");
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_are_listed_by_user_and_deleted() {
    let t = server().await;
    let (alice, _) = t.user("alice").await;
    let (bob, _) = t.user("bob").await;
    let alice_id = me(&t, &alice).await;
    let bob_id = me(&t, &bob).await;
    assert_ne!(alice_id, bob_id);
    assert_eq!(me(&t, &alice).await, alice_id, "stable");
    let (_, v) = t.json(Method::GET, "/leonardo/v1/me", &alice, None).await;
    assert_eq!(v["user_details"][0]["user"]["username"], "alice");

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            create(
                &t,
                &alice,
                json!({"prompt": format!("fox {i}"), "num_images": 1, "seed": i}),
            )
            .await,
        );
    }
    // A native job is not a Leonardo generation.
    t.submit(
        &alice,
        json!({"task": "txt2img", "input": {"prompt": "native"}}),
    )
    .await;
    for id in &ids {
        finished(&t, &alice, id).await;
    }
    let list = |key: String, q: String| {
        let t = &t;
        async move {
            let (s, v) = t
                .json(Method::GET, &format!("{GEN}/user/{q}"), &key, None)
                .await;
            (s, v)
        }
    };
    let (s, all) = list(alice.clone(), alice_id.clone()).await;
    assert_eq!(s, 200, "{all}");
    let got: Vec<&str> = all["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [&ids[2], &ids[1], &ids[0]],
        "newest first, Leonardo's only"
    );
    let (_, page) = list(alice.clone(), format!("{alice_id}?offset=1&limit=1")).await;
    assert_eq!(page["generations"].as_array().unwrap().len(), 1);
    assert_eq!(page["generations"][0]["id"], ids[1].as_str());
    insta::assert_json_snapshot!("list", page, {
        ".generations[].id" => "[uuid]", ".generations[].createdAt" => "[time]",
        ".generations[].easel_job_id" => "[job id]", ".generations[].modelId" => "[model uuid]",
        ".generations[].generated_images[].id" => "[uuid]",
        ".generations[].generated_images[].url" => "[url]"
    });
    let (_, none) = list(alice.clone(), format!("{alice_id}?limit=0")).await;
    assert_eq!(none, json!({"generations": []}));
    let (_, big) = list(alice.clone(), format!("{alice_id}?limit=500")).await;
    assert_eq!(
        big["generations"].as_array().unwrap().len(),
        3,
        "capped, not refused"
    );

    // Bob sees none of them.
    let (s, v) = list(bob.clone(), bob_id.clone()).await;
    assert_eq!((s, v), (200, json!({"generations": []})));
    let (s, e) = list(bob.clone(), alice_id.clone()).await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["extensions"]["code"], "access-denied");
    assert_eq!(e["path"], json!(["userId"]));
    assert_eq!(read(&t, &bob, &ids[0]).await, Value::Null);
    let (s, v) = t
        .json(Method::DELETE, &format!("{GEN}/{}", ids[0]), &bob, None)
        .await;
    assert_eq!((s, v), (200, json!({"delete_generations_by_pk": null})));
    assert_ne!(read(&t, &alice, &ids[0]).await, Value::Null, "still there");

    // Delete: the generation, its job and its images go.
    let g = read(&t, &alice, &ids[0]).await;
    let url = g["generated_images"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let job_id = g["easel_job_id"].as_str().unwrap().to_string();
    let (s, v) = t
        .json(Method::DELETE, &format!("{GEN}/{}", ids[0]), &alice, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"delete_generations_by_pk": {"id": ids[0]}}));
    assert_eq!(read(&t, &alice, &ids[0]).await, Value::Null);
    assert_eq!(
        t.http.get(&url).send().await.unwrap().status().as_u16(),
        404
    );
    let (s, _) = t
        .json(Method::GET, &format!("/v1/jobs/{job_id}"), &alice, None)
        .await;
    assert_eq!(s, 404);
    let (_, after) = list(alice.clone(), alice_id.clone()).await;
    assert_eq!(after["generations"].as_array().unwrap().len(), 2);
    let (s, v) = t
        .json(Method::DELETE, &format!("{GEN}/{}", ids[0]), &alice, None)
        .await;
    assert_eq!((s, v), (200, json!({"delete_generations_by_pk": null})));

    // A generation still queued or running is stopped and deleted.
    let busy = create(
        &t,
        &alice,
        json!({"prompt": "slow", "num_images": 8, "num_inference_steps": 60}),
    )
    .await;
    let (s, v) = t
        .json(Method::DELETE, &format!("{GEN}/{busy}"), &alice, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["delete_generations_by_pk"]["id"], busy.as_str());
    assert_eq!(read(&t, &alice, &busy).await, Value::Null);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_spec_shape_and_status() {
    let t = server().await;
    let (key, _) = t.user("eve").await;

    // Invalid fields: 400, the wire path, a stable code.
    // (1000 is a multiple of 8, so it is a valid width; 1004 is not.)
    let cases = [
        (
            json!({"prompt": "x", "width": 1004}),
            "width",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "width": 1540}),
            "width",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "height": 20}),
            "height",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "width": 32}),
            "width",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "num_images": 5, "width": 1024, "height": 512}),
            "num_images",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "num_images": 9}),
            "num_images",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "init_image_id": "ast_00000000000000000000000000", "init_strength": 0.95}),
            "init_strength",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "init_strength": 0.5}),
            "init_strength",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "num_inference_steps": 5}),
            "num_inference_steps",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "guidance_scale": 25}),
            "guidance_scale",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "seed": 9_999_999_999u64}),
            "seed",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "scheduler": "euler_a"}),
            "scheduler",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "presetStyle": "PASTEL"}),
            "presetStyle",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "sd_version": "v9"}),
            "sd_version",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "sd_version": "FLUX"}),
            "sd_version",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "sd_version": "SDXL_1_0"}),
            "sd_version",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "modelId": "nope"}),
            "modelId",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "width": "64"}),
            "width",
            "validation-failed",
        ),
        (json!({"prompt": null}), "prompt", "validation-failed"),
        (
            json!({"negative_prompt": "x"}),
            "prompt",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "colour": "red"}),
            "colour",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "contrast": 2}),
            "contrast",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "photoRealVersion": "v9"}),
            "photoRealVersion",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "alchemy": "yes"}),
            "alchemy",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "init_image_id": "img-1"}),
            "init_image_id",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "canvasRequest": true}),
            "canvasRequestType",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "canvasRequestType": "INPAINT", "canvasInitId": "ast_00000000000000000000000000"}),
            "canvasMaskId",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "canvasMaskId": "ast_00000000000000000000000000"}),
            "canvasMaskId",
            "validation-failed",
        ),
        (
            json!({"prompt": "x", "canvasRequestType": "OUTPAINT", "canvasInitId": "ast_00000000000000000000000000"}),
            "canvasRequestType",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "canvasRequestType": "SKETCH2IMG"}),
            "canvasRequestType",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "controlnets": [{"initImageId": "a", "initImageType": "UPLOADED", "preprocessorId": 67}]}),
            "controlnets",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "imagePrompts": ["a"]}),
            "imagePrompts",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "unzoom": true}),
            "unzoom",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "transparency": "foreground_only"}),
            "transparency",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "tiling": true}),
            "tiling",
            "not-supported",
        ),
        (
            json!({"prompt": "x", "controlNet": true}),
            "controlNet",
            "not-supported",
        ),
    ];
    for (body, field, code) in cases {
        let (s, e) = post(&t, &key, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert_eq!(e["path"], json!([field]), "{body}: {e}");
        assert_eq!(e["extensions"]["code"], code, "{body}: {e}");
        assert_eq!(e["locations"], json!([]), "{e}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}: ")), "{msg}");
    }
    let (_, e) = post(&t, &key, json!({"prompt": "x", "width": 1004})).await;
    insta::assert_json_snapshot!("error_invalid_field", e);
    let (_, e) = post(
        &t,
        &key,
        json!({"prompt": "x", "num_images": 5, "width": 1024}),
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("1024x64"), "{e}");
    let (_, e) = post(
        &t,
        &key,
        json!({"prompt": "x", "canvasRequestType": "OUTPAINT"}),
    )
    .await;
    insta::assert_json_snapshot!("error_not_supported", e);
    let (_, e) = post(&t, &key, json!({"prompt": "x", "width": 32})).await;
    assert!(
        e["message"].as_str().unwrap().contains("64"),
        "the core's minimum: {e}"
    );
    let (_, e) = post(&t, &key, json!({"prompt": "x", "colour": "red"})).await;
    assert_eq!(
        e["message"],
        "colour: unknown field `colour`: not a field of this request (see \
         /leonardo/v1/generations in /openapi.json)"
    );

    // Bad ids in paths.
    for path in [
        format!("{GEN}/not-a-uuid"),
        format!("{GEN}/a1b2c3d4-e5f6-7890-abcd-ef1234567890"),
        format!("{GEN}/user/usr_1"),
    ] {
        for m in [Method::GET, Method::DELETE] {
            if path.contains("/user/") && m == Method::DELETE {
                continue;
            }
            let (s, e) = t.json(m.clone(), &path, &key, None).await;
            assert_eq!(s, 400, "{m} {path}: {e}");
            assert_eq!(e["extensions"]["code"], "validation-failed");
            let field = if path.contains("/user/") {
                "userId"
            } else {
                "id"
            };
            assert_eq!(e["path"], json!([field]), "{e}");
        }
    }
    let (s, e) = t
        .json(Method::GET, &format!("{GEN}/not-a-uuid"), &key, None)
        .await;
    assert_eq!(s, 400);
    insta::assert_json_snapshot!("error_bad_uuid", e);
    // A well-formed id nobody has: null.
    assert_eq!(
        read(&t, &key, "a1b2c3d4-e5f6-4890-abcd-ef1234567890").await,
        Value::Null
    );

    // Malformed JSON, with where.
    let resp = t
        .req(Method::POST, GEN, Some(&key))
        .header("content-type", "application/json")
        .body("{\"prompt\": ")
        .send()
        .await
        .unwrap();
    let (s, e) = get(resp).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["extensions"]["code"], "parse-failed");
    assert_eq!(e["path"], json!([]));
    assert_eq!(e["locations"][0]["line"], 1, "{e}");

    // Auth: no key, a wrong key.
    let (s, e) = get(t
        .req(Method::POST, GEN, None)
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(e["extensions"]["code"], "unauthorized");
    insta::assert_json_snapshot!("error_missing_key", e);
    let resp = t
        .req(Method::GET, "/leonardo/v1/me", Some("easel_wrong_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    let (s, e) = get(resp).await;
    assert_eq!(
        (s, e["extensions"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // Routes: unknown (404) and a known path with another method (405), in shape.
    let (s, e) = t.json(Method::GET, "/leonardo/v1/models", &key, None).await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["extensions"]["code"], "not-found");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("/leonardo/v1/models"),
        "{e}"
    );
    let (s, e) = t.json(Method::PUT, GEN, &key, Some(json!({}))).await;
    assert_eq!(s, 405, "{e}");
    assert_eq!(e["extensions"]["code"], "method-not-allowed");
    insta::assert_json_snapshot!("error_method", e);
    // `/generations/user` is `/generations/{id}` with a bad id.
    let (s, e) = t
        .json(Method::GET, "/leonardo/v1/generations/user", &key, None)
        .await;
    assert_eq!((s, e["path"].clone()), (400, json!(["id"])), "{e}");

    // The OpenAPI document has the dialect.
    let (s, doc) = t.json(Method::GET, "/openapi.json", &key, None).await;
    assert_eq!(s, 200);
    for p in [
        "/leonardo/v1/generations",
        "/leonardo/v1/generations/{id}",
        "/leonardo/v1/generations/user/{userId}",
        "/leonardo/v1/me",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    assert!(doc["components"]["schemas"]["LeonardoApiError"].is_object());
    t.shutdown().await;
}
