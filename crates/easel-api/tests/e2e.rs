//! End-to-end: the real server in-process on an ephemeral port, spoken to over HTTP.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_job_streams_progress_and_produces_the_image() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("alice").await;
    let img = t.upload(&key, png(40, 30)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "upscale", "input": {"image": img, "factor": 2}}),
        )
        .await;
    assert_eq!(job["status"], "queued");
    let id = job["id"].as_str().unwrap();

    // SSE: the stream carries status and progress events with ids, then the job, then ends.
    let resp = t
        .req(Method::GET, &format!("/v1/jobs/{id}/events"), Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("event: status"), "{text}");
    assert!(text.contains("\"status\":\"running\""), "{text}");
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    assert!(text.contains("event: job"), "{text}");

    // Resuming after the first event id skips it.
    let resp = t
        .req(Method::GET, &format!("/v1/jobs/{id}/events"), Some(&key))
        .header(
            "last-event-id",
            text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap(),
        )
        .send()
        .await
        .unwrap();
    let resumed = resp.text().await.unwrap();
    assert!(!resumed.contains("\"status\":\"queued\""), "{resumed}");
    assert!(resumed.contains("\"status\":\"succeeded\""));

    let done = t.wait(&key, id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "running", "succeeded"]);
    assert!(done["usage"]["units"].as_f64().unwrap() > 0.0);

    // The output by asset id (with the key) and by its signed URL (without).
    let asset_id = done["outputs"][0]["asset_id"].as_str().unwrap();
    let (s, meta) = t
        .json(Method::GET, &format!("/v1/assets/{asset_id}"), &key, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(80), Some(60))
    );
    assert_eq!(meta["job_id"], id);
    assert_eq!(meta["parent_id"], img.as_str());
    let resp = t
        .http
        .get(done["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.unwrap();
    let out = decode(&bytes);
    assert_eq!((out.width(), out.height()), (80, 60));
    // Its parameters travel in a PNG text chunk.
    let text_chunks = easel_imageops::read_png_text(&bytes);
    assert!(
        text_chunks
            .iter()
            .any(|(k, v)| k == "easel" && v.contains("upscale")),
        "{text_chunks:?}"
    );

    // ETag, Range, and signed URL checks.
    let content = format!("/v1/assets/{asset_id}/content");
    let r = t
        .req(Method::GET, &content, Some(&key))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = t
        .req(Method::GET, &content, Some(&key))
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 0-7/{}", bytes.len())
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..8]);
    let r = t
        .req(Method::GET, &content, Some(&key))
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = t.req(Method::GET, &content, None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let tampered = done["outputs"][0]["url"]
        .as_str()
        .unwrap()
        .replace("sig=", "sig=0");
    assert_eq!(t.http.get(tampered).send().await.unwrap().status(), 401);

    // Usage recorded for the owner.
    let (_, usage) = t.json(Method::GET, "/v1/usage", &key, None).await;
    assert_eq!(usage["data"][0]["task"], "upscale");
    assert_eq!(usage["data"][0]["jobs"], 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_task_runs_and_data_urls_are_accepted() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("bob").await;
    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png(64, 32))
    );
    let cases = [
        (
            json!({"task": "resize", "input": {"image": data_url, "width": 32, "height": 32, "fit": "cover"}}),
            (32, 32),
            "image/png",
        ),
        (
            json!({"task": "resize", "input": {"image": data_url, "width": 16}}),
            (16, 8),
            "image/png",
        ),
        (
            json!({"task": "pixelate", "input": {"image": data_url, "grid_size": 8, "palette": ["#000000", "#ffffff"]}}),
            (64, 32),
            "image/png",
        ),
        (
            json!({"task": "convert", "input": {"image": data_url, "format": "jpeg", "quality": 80}}),
            (64, 32),
            "image/jpeg",
        ),
        (
            json!({"task": "convert", "input": {"image": data_url, "format": "webp"}}),
            (64, 32),
            "image/webp",
        ),
        (
            json!({"task": "upscale", "input": {"image": data_url, "width": 128}}),
            (128, 64),
            "image/png",
        ),
    ];
    for (body, (w, h), mime) in cases {
        let job = t.submit(&key, body.clone()).await;
        assert!(
            job["input"]["image"].as_str().unwrap().starts_with("ast_"),
            "data URL stored as an asset"
        );
        let done = t.wait(&key, job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{body} → {done}");
        let url = done["outputs"][0]["url"].as_str().unwrap();
        let r = t.http.get(url).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], mime, "{body}");
        let img = decode(&r.bytes().await.unwrap());
        assert_eq!((img.width(), img.height()), (w, h), "{body}");
        if body["task"] == "pixelate" {
            let rgb = img.to_rgb8();
            assert!(rgb
                .pixels()
                .all(|p| p.0 == [0, 0, 0] || p.0 == [255, 255, 255]));
        }
    }

    // `inline_images`: an image sent inline is stored hidden, derived from the parent
    // named (one of the caller's assets; another's is 422 naming it).
    let parent = t.upload(&key, png(8, 8)).await;
    let (other, _) = t.user("bob-other").await;
    let others = t.upload(&other, png(8, 8)).await;
    let body = |parent: &str| {
        json!({"task": "convert", "input": {"image": data_url, "format": "png"},
            "inline_images": {"hidden": true, "parent_id": parent}})
    };
    let (s, e) = t
        .json(Method::POST, "/v1/jobs", &key, Some(body(&others)))
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("inline_images.parent_id")),
        "{e}"
    );
    let job = t.submit(&key, body(&parent)).await;
    let inline = job["input"]["image"].as_str().unwrap();
    let (_, a) = t
        .json(Method::GET, &format!("/v1/assets/{inline}"), &key, None)
        .await;
    assert_eq!(
        (a["hidden"].as_bool(), a["parent_id"].as_str()),
        (Some(true), Some(parent.as_str())),
        "{a}"
    );
    let (_, list) = t
        .json(Method::GET, "/v1/assets?limit=100", &key, None)
        .await;
    assert!(!list.to_string().contains(inline), "hidden: {list}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (key, _) = t.user("carol").await;
    let img = t.upload(&key, png(8, 8)).await;
    let body = json!({"task": "convert", "input": {"image": img, "format": "png"}});

    // Queued: canceled at once.
    let queued = t.submit(&key, body.clone()).await;
    let id = queued["id"].as_str().unwrap();
    let (s, v) = t
        .json(Method::POST, &format!("/v1/jobs/{id}/cancel"), &key, None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")), "{v}");
    // Canceling a finished job again is fine; a second user cannot see it.
    let (s, _) = t
        .json(Method::POST, &format!("/v1/jobs/{id}/cancel"), &key, None)
        .await;
    assert_eq!(s, 200);

    // Running: the worker sees the cancel at its next step; nothing is stored.
    let w = gated_worker(t.server());
    let started = w.started.clone();
    let running = t.submit(&key, body.clone()).await;
    let rid = running["id"].as_str().unwrap();
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .unwrap();
    wait_status(&t, &key, rid, "running").await;
    let (s, v) = t
        .json(Method::POST, &format!("/v1/jobs/{rid}/cancel"), &key, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let done = t.wait(&key, rid).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(done["outputs"], json!([]));
    let (_, assets) = t
        .json(Method::GET, "/v1/assets?limit=100", &key, None)
        .await;
    assert!(
        assets["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] == "upload"),
        "{assets}"
    );

    // A succeeded job cannot be canceled: 409.
    w.open.store(true, Ordering::SeqCst);
    let ok = t.submit(&key, body).await;
    let okid = ok["id"].as_str().unwrap();
    assert_eq!(t.wait(&key, okid).await["status"], "succeeded");
    let (s, v) = t
        .json(Method::POST, &format!("/v1/jobs/{okid}/cancel"), &key, None)
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["type"], "conflict");
    let _ = w.stop.send(true);
    let _ = w.handle.await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_job() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (a, _) = t.user("a").await;
    let (b, _) = t.user("b").await;
    let img_a = t.upload(&a, png(8, 8)).await;
    let img_b = t.upload(&b, png(8, 8)).await;
    let send = |key: &str, img: &str, idem: &str| {
        t.req(Method::POST, "/v1/jobs", Some(key))
            .header("idempotency-key", idem)
            .json(&json!({"task": "convert", "input": {"image": img, "format": "png"}}))
            .send()
    };
    let (s1, j1) = get(send(&a, &img_a, "k1").await.unwrap()).await;
    let (s2, j2) = get(send(&a, &img_a, "k1").await.unwrap()).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(j1["id"], j2["id"]);
    let (s3, j3) = get(send(&b, &img_b, "k1").await.unwrap()).await;
    assert_eq!(s3, 201);
    assert_ne!(j3["id"], j1["id"], "keys are per owner");
    let (s4, j4) = get(send(&a, &img_a, "k2").await.unwrap()).await;
    assert_eq!(s4, 201);
    assert_ne!(j4["id"], j1["id"]);
    let (_, list) = t.json(Method::GET, "/v1/jobs", &a, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_401_403_404() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (a, _) = t.user("a").await;
    let (b, _) = t.user("b").await;
    let img = t.upload(&a, png(8, 8)).await;
    let job = t
        .submit(
            &a,
            json!({"task": "convert", "input": {"image": img, "format": "png"}}),
        )
        .await;
    let jid = job["id"].as_str().unwrap();

    // 401: no key, malformed key, unknown key, revoked key.
    for key in [
        None,
        Some("nope"),
        Some("esk_key_01jd0000000000000000000000_secret"),
    ] {
        let r = t.req(Method::GET, "/v1/jobs", key).send().await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "unauthorized");
    }
    // 404: another owner's job, asset, content, events, cancel — never the contents.
    for (m, path) in [
        (Method::GET, format!("/v1/jobs/{jid}")),
        (Method::POST, format!("/v1/jobs/{jid}/cancel")),
        (Method::GET, format!("/v1/jobs/{jid}/events")),
        (Method::GET, format!("/v1/assets/{img}")),
        (Method::GET, format!("/v1/assets/{img}/content")),
        (Method::DELETE, format!("/v1/assets/{img}")),
    ] {
        let (s, v) = t.json(m.clone(), &path, &b, None).await;
        assert_eq!(s, 404, "{m} {path}: {v}");
        assert!(
            !v.to_string().contains(&img)
                || path.contains(&img) && !v.to_string().contains("sha256")
        );
    }
    // Using another owner's asset as input: 422 naming the field.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &b,
            Some(json!({"task": "convert", "input": {"image": img, "format": "png"}})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(v["error"]["field"], "input.image");
    let (_, list) = t.json(Method::GET, "/v1/jobs", &b, None).await;
    assert_eq!(list["data"], json!([]));
    // 403: a user on admin endpoints.
    for (m, path) in [
        (Method::GET, "/v1/keys"),
        (Method::POST, "/v1/keys"),
        (Method::POST, "/v1/models-folder/scan"),
        (Method::DELETE, "/v1/keys/key_x"),
    ] {
        let (s, v) = t.json(m.clone(), path, &a, Some(json!({}))).await;
        assert_eq!(s, 403, "{m} {path}: {v}");
        assert_eq!(v["error"]["type"], "forbidden");
    }
    let (s, _) = t.json(Method::GET, "/v1/usage?owner=all", &a, None).await;
    assert_eq!(s, 403);
    // The admin sees the keys; revoking b's key makes it 401.
    let (s, keys) = t.json(Method::GET, "/v1/keys", ADMIN_KEY, None).await;
    assert_eq!(s, 200);
    assert!(!keys.to_string().contains(&b), "keys are never listed");
    let bid = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["user_name"] == "b")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/keys/{bid}"), ADMIN_KEY, None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        t.req(Method::GET, "/v1/jobs", Some(&b))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_413_422_429() {
    let t = TestServer::start(|c| {
        c.workers = 0;
        c.limits.max_body_bytes = 4096;
        c.limits.max_queued_per_owner = 3;
        c.rate_limit.per_second = 0.5;
        c.rate_limit.burst = 30.0;
    })
    .await;
    let (key, _) = t.user("dave").await;
    // 413: body over the limit (JSON and raw upload).
    let big = json!({"task": "convert", "input": {"image": format!("data:image/png;base64,{}", "A".repeat(8000)), "format": "png"}});
    let (s, v) = t.json(Method::POST, "/v1/jobs", &key, Some(big)).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["type"], "payload_too_large");
    let r = t
        .req(Method::POST, "/v1/assets", Some(&key))
        .header("content-type", "image/png")
        .body(vec![0u8; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // 422 naming the field.
    let img = t.upload(&key, png(8, 8)).await;
    for (body, field) in [
        (
            json!({"task": "upscale", "input": {"image": img, "factor": 9}}),
            "input.factor",
        ),
        (
            json!({"task": "upscale", "input": {"image": img}}),
            "input.factor",
        ),
        (
            json!({"task": "pixelate", "input": {"image": img, "grid_size": 8, "palette": ["#zzz"]}}),
            "input.palette[0]",
        ),
        (json!({"task": "nope", "input": {}}), "task"),
        (
            json!({"task": "convert", "input": {"image": img, "format": "tiff"}}),
            "input.format",
        ),
        (
            json!({"task": "convert", "input": {"image": img, "format": "png"}, "priority": 1000}),
            "priority",
        ),
        (
            json!({"task": "convert", "input": {"image": img, "format": "png"}, "webhook": {"url": "ftp://x"}}),
            "webhook.url",
        ),
        (
            json!({"task": "convert", "input": {"image": img, "format": "png"},
                "webhook": {"url": "https://example.com/hook", "format": "nope"}}),
            "webhook.format",
        ),
        (
            json!({"task": "convert", "input": {"image": img, "format": "png"}, "extra": 1}),
            "extra",
        ),
        (
            json!({"task": "convert", "model": "missing", "input": {"image": img, "format": "png"}}),
            "model",
        ),
    ] {
        let (s, v) = t
            .json(Method::POST, "/v1/jobs", &key, Some(body.clone()))
            .await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request");
    }
    let (s, v) = t.json(Method::GET, "/v1/jobs/x?wait=61", &key, None).await;
    assert!(s == 404 || s == 422, "{v}");
    // Not an image: 422 on upload.
    let r = t
        .req(Method::POST, "/v1/assets", Some(&key))
        .header("content-type", "image/png")
        .body("not a png")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Malformed JSON: 400.
    let r = t
        .req(Method::POST, "/v1/jobs", Some(&key))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // 429: the queued-job cap...
    let body = json!({"task": "convert", "input": {"image": img, "format": "png"}});
    for _ in 0..3 {
        t.submit(&key, body.clone()).await;
    }
    let r = t
        .req(Method::POST, "/v1/jobs", Some(&key))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // ... and the per-key rate limit, with Retry-After.
    let mut limited = None;
    for _ in 0..60 {
        let r = t
            .req(Method::GET, "/v1/jobs", Some(&key))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the bucket runs dry");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limited");
    // Another key is not affected.
    let (other, _) = t.user("erin").await;
    assert_eq!(
        t.req(Method::GET, "/v1/jobs", Some(&other))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    t.shutdown().await;
}

/// Count the output assets of each job through the API.
async fn outputs_per_job(t: &TestServer, key: &str) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    let (_, assets) = t.json(Method::GET, "/v1/assets?limit=100", key, None).await;
    for a in assets["data"].as_array().unwrap() {
        if let Some(j) = a["job_id"].as_str() {
            *m.entry(j.to_string()).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_queued_and_running_jobs() {
    // First life: no in-process workers; an outside worker holds one job running.
    let t1 = TestServer::start(|c| {
        c.workers = 0;
        c.queue.shutdown_grace = Duration::from_millis(200);
    })
    .await;
    let dir = t1.dir.clone();
    let (key, _) = t1.user("frank").await;
    let img = t1.upload(&key, png(16, 16)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let j = t1
            .submit(
                &key,
                json!({"task": "upscale", "input": {"image": img, "factor": 2}}),
            )
            .await;
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    let mut gw = gated_worker(t1.server());
    // Make the outside worker stop with the same short grace.
    tokio::time::timeout(Duration::from_secs(20), gw.started.notified())
        .await
        .unwrap();
    let running = wait_status(&t1, &key, &ids[0], "running").await;
    assert_eq!(running["attempts"], 1);
    // SIGTERM-like stop: the running job is released after the grace period.
    let _ = gw.stop.send(true);
    tokio::time::timeout(Duration::from_secs(60), &mut gw.handle)
        .await
        .unwrap()
        .unwrap();
    t1.shutdown().await;

    // Second life on the same data folder: every job ends, once.
    let t2 = TestServer::start_in(dir, |_| {}).await;
    for id in &ids {
        let done = t2.wait(&key, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            done["attempts"], 1,
            "a released job does not use up an attempt: {done}"
        );
        let statuses: Vec<&str> = done["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses.iter().filter(|s| **s == "succeeded").count(), 1);
    }
    let per_job = outputs_per_job(&t2, &key).await;
    for id in &ids {
        assert_eq!(per_job.get(id), Some(&1), "exactly one output for {id}");
    }
    t2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_through_lease_expiry() {
    // A server that dies without releasing its leases (as kill -9 would).
    let t1 = TestServer::start(|c| {
        c.workers = 0;
        c.queue.lease = Duration::from_millis(600);
    })
    .await;
    let dir = t1.dir.clone();
    let (key, _) = t1.user("gina").await;
    let img = t1.upload(&key, png(16, 16)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let j = t1
            .submit(
                &key,
                json!({"task": "convert", "input": {"image": img, "format": "webp"}}),
            )
            .await;
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    let gw = gated_worker(t1.server());
    tokio::time::timeout(Duration::from_secs(20), gw.started.notified())
        .await
        .unwrap();
    wait_status(&t1, &key, &ids[0], "running").await;
    gw.handle.abort();
    let _ = gw.handle.await;
    let srv = t1.srv.unwrap();
    srv.abort().await;

    // Restart: the reaper finds the expired lease and the job runs again.
    let t2 = TestServer::start_in(dir, |c| c.queue.lease = Duration::from_millis(600)).await;
    for id in &ids {
        let done = t2.wait(&key, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let first = t2.wait(&key, &ids[0]).await;
    assert_eq!(first["attempts"], 2, "{first}");
    let statuses: Vec<&str> = first["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "running", "queued", "running", "succeeded"]
    );
    let per_job = outputs_per_job(&t2, &key).await;
    for id in &ids {
        assert_eq!(per_job.get(id), Some(&1));
    }
    t2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_fails_after_max_attempts() {
    let t = TestServer::start(|c| {
        c.workers = 0;
        c.limits.max_attempts = 2;
    })
    .await;
    let (key, _) = t.user("hank").await;
    let img = t.upload(&key, png(8, 8)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "convert", "input": {"image": img, "format": "png"}}),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    let db = &t.server().state.store.db;
    // Two workers claim it and die (tiny leases, no heartbeats).
    for w in ["dead-1", "dead-2"] {
        let claimed = loop {
            if let Some(j) = easel_store::jobs::claim(db, w, 50, None).await.unwrap() {
                break j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(claimed.id, id);
    }
    let done = t.wait(&key, id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "lease_expired");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 attempts"),
        "{done}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owners_backlog_does_not_starve_another() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (a, _) = t.user("busy").await;
    let (b, _) = t.user("light").await;
    let img_a = t.upload(&a, png(8, 8)).await;
    let img_b = t.upload(&b, png(8, 8)).await;
    for _ in 0..150 {
        t.submit(
            &a,
            json!({"task": "convert", "input": {"image": img_a, "format": "png"}}),
        )
        .await;
    }
    let jb = t
        .submit(
            &b,
            json!({"task": "convert", "input": {"image": img_b, "format": "png"}}),
        )
        .await;
    let (stop, handle) = worker(t.server());
    let done_b = t.wait(&b, jb["id"].as_str().unwrap()).await;
    assert_eq!(done_b["status"], "succeeded");
    let b_started = done_b["started_at"].as_str().unwrap().to_string();
    let _ = stop.send(true);
    let _ = handle.await;
    // Count A's jobs that started before B's.
    let (_, list) = t
        .json(Method::GET, "/v1/jobs?limit=100&status=succeeded", &a, None)
        .await;
    let earlier = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["started_at"].as_str().unwrap() < b_started.as_str())
        .count();
    assert!(
        earlier <= 2,
        "{earlier} of the busy owner's jobs ran before the other owner's first"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_recorded() {
    use axum::routing::post;
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<(
        axum::http::HeaderMap,
        String,
    )>::new()));
    let r2 = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let r = r2.clone();
            async move {
                let mut g = r.lock().await;
                g.push((headers, body));
                // The first delivery fails with a 500 and must be retried.
                if g.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("ivy").await;
    let (_, me) = t.json(Method::GET, "/v1/me", &key, None).await;
    let secret = me["webhook_secret"].as_str().unwrap().to_string();
    let img = t.upload(&key, png(8, 8)).await;
    let job = t
        .submit(&key, json!({"task": "convert", "input": {"image": img, "format": "png"},
            "webhook": {"url": format!("http://{hook_addr}/hook"), "events": ["start", "completed"]}}))
        .await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(t.wait(&key, id).await["status"], "succeeded");
    let mut deliveries = Value::Null;
    for _ in 0..200 {
        let (_, d) = t
            .json(Method::GET, &format!("/v1/jobs/{id}/webhooks"), &key, None)
            .await;
        if d.as_array().unwrap().len() == 2
            && d.as_array()
                .unwrap()
                .iter()
                .all(|x| x["status"] == "delivered")
        {
            deliveries = d;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<&str> = deliveries
        .as_array()
        .expect("both delivered")
        .iter()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["start", "completed"]);
    let attempts: usize = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(attempts, 3, "one 500 then two successes: {deliveries}");
    let got = received.lock().await;
    for (h, body) in got.iter() {
        let id = h["webhook-id"].to_str().unwrap();
        let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let sig = h["webhook-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            easel_queue::webhooks::sign(&secret, id, ts, body.as_bytes())
        );
    }
    let completed: Value = got
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
        .find(|v| v["type"] == "job.completed")
        .expect("a completed delivery");
    assert_eq!(completed["type"], "job.completed");
    assert_eq!(completed["data"]["status"], "succeeded");
    assert!(
        completed["data"]["outputs"][0]["url"]
            .as_str()
            .unwrap()
            .contains("sig="),
        "{completed}"
    );
    drop(got);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_metrics_health_models() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (key, _) = t.user("jo").await;
    let r = t
        .req(Method::GET, "/openapi.json", None)
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/assets",
        "/v1/assets/{id}/content",
        "/v1/models",
        "/v1/keys",
        "/v1/usage",
        // Every dialect's paths are in the one document.
        "/openai/v1/images/generations",
        "/openai/v1/embeddings",
        "/replicate/v1/predictions",
        "/replicate/v1/predictions/{id}/cancel",
        "/leonardo/v1/generations",
        "/sartiq/api/v1/generation-models/",
        "/sartiq/api/v1/generation-models/{id}",
        "/scenario/v1/generate/txt2img",
        "/scenario/v1/jobs/{jobId}",
        "/scenario/v1/assets",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
    for tag in ["openai", "replicate", "leonardo", "sartiq", "scenario"] {
        assert!(
            doc["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == tag),
            "tag {tag}"
        );
    }
    let r = t.req(Method::GET, "/docs/", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("swagger"));
    assert_eq!(
        t.req(Method::GET, "/healthz", None)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        t.req(Method::GET, "/readyz", None)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = t
        .req(Method::GET, "/v1/jobs", Some(&key))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-request-id"));
    let metrics = t
        .req(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in ["easel_http_request_duration_seconds", "easel_queue_depth"] {
        assert!(metrics.contains(m), "{m} in {metrics}");
    }
    // Models: users read the server's and make only compositions of their own (no aliases,
    // no weights of their own); admins write the server's; names and aliases resolve.
    let spec = json!({"name": "sd15", "aliases": ["runwayml/stable-diffusion-v1-5"], "family": "sd15", "tasks": ["txt2img"],
        "defaults": {"steps": 25, "width": 512, "height": 512}, "limits": {"max_steps": 50}});
    let (s, e) = t
        .json(Method::POST, "/v1/models", &key, Some(spec.clone()))
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("aliases")),
        "{e}"
    );
    let (s, m) = t
        .json(Method::POST, "/v1/models", ADMIN_KEY, Some(spec.clone()))
        .await;
    assert_eq!(s, 201, "{m}");
    let (s, _) = t
        .json(Method::POST, "/v1/models", ADMIN_KEY, Some(spec))
        .await;
    assert_eq!(s, 409);
    let (s, got) = t
        .json(
            Method::GET,
            "/v1/models/runwayml%2Fstable-diffusion-v1-5",
            &key,
            None,
        )
        .await;
    assert_eq!((s, got["id"].clone()), (200, m["id"].clone()));
    let (s, upd) = t
        .json(
            Method::PATCH,
            "/v1/models/sd15",
            ADMIN_KEY,
            Some(json!({"recommended": true})),
        )
        .await;
    assert_eq!((s, upd["recommended"].as_bool()), (200, Some(true)));
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/sd15",
            ADMIN_KEY,
            Some(json!({"provider": "fal ai"})),
        )
        .await;
    // Provider names are free (a registry's provider types), but not blank or spaced.
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("provider")));
    let (_, list) = t.json(Method::GET, "/v1/models", &key, None).await;
    assert_eq!(list["count"], 1);
    let (s, _) = t
        .json(Method::DELETE, "/v1/models/sd15", ADMIN_KEY, None)
        .await;
    assert_eq!(s, 204);
    let (s, v) = t.json(Method::GET, "/v1/nothing", &key, None).await;
    assert_eq!((s, v["error"]["type"].as_str()), (404, Some("not_found")));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_found_on_disk_are_registered() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let folder = dir.path().join("models/tiny-sd");
    std::fs::create_dir_all(folder.join("unet")).unwrap();
    std::fs::write(
        folder.join("model_index.json"),
        r#"{"_class_name": "StableDiffusionPipeline"}"#,
    )
    .unwrap();
    // Single files: addressable by the file name too; files that clean up to the same name
    // do not take turns at it (the one named so on disk keeps it).
    let ckpt = dir.path().join("models/sd_v1.5-pruned.safetensors");
    easel_diffusion::tiny::make_tiny(&dir.path().join("tmp"), "sd15", 0).unwrap();
    easel_diffusion::sd::single_file::write_single_file(&dir.path().join("tmp"), &ckpt).unwrap();
    std::fs::copy(&ckpt, dir.path().join("models/sd_v1.5 pruned.safetensors")).unwrap();
    std::fs::copy(&ckpt, dir.path().join("models/sd_v1.5+pruned.safetensors")).unwrap();
    let t = TestServer::start_in(dir.clone(), |c| c.scan_models = true).await;
    let (s, m) = t
        .json(Method::GET, "/v1/models/tiny-sd", ADMIN_KEY, None)
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["family"], "sd15");
    assert_eq!(m["discovered"], true);
    assert!(m["tasks"].as_array().unwrap().contains(&json!("txt2img")));
    let (s, m) = t
        .json(
            Method::GET,
            "/v1/models/sd_v1.5-pruned.safetensors",
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["name"], "sd_v1.5-pruned");
    let first = m["source"].clone();
    assert!(
        first
            .as_str()
            .unwrap()
            .ends_with("/sd_v1.5-pruned.safetensors"),
        "{m}"
    );
    t.shutdown().await;
    // A rescan (a restart) leaves it as it was.
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (_, m) = t
        .json(Method::GET, "/v1/models/sd_v1.5-pruned", ADMIN_KEY, None)
        .await;
    assert_eq!(m["source"], first, "{m}");
    let (_, list) = t.json(Method::GET, "/v1/models", ADMIN_KEY, None).await;
    assert_eq!(list["count"], 2, "{list}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_delete_and_listing() {
    let t = TestServer::start(|c| c.workers = 0).await;
    let (key, uid) = t.user("kim").await;
    // Multipart with a `file` part.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png(12, 10))
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let r = t
        .req(Method::POST, "/v1/assets", Some(&key))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (s, a) = get(r).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(
        (
            a["width"].as_u64(),
            a["height"].as_u64(),
            a["mime_type"].as_str()
        ),
        (Some(12), Some(10), Some("image/png"))
    );
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = t
        .req(Method::POST, "/v1/assets", Some(&key))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (s, v) = get(r).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("file")));
    let r = t
        .req(Method::POST, "/v1/assets", Some(&key))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Jobs: filters and cursor pagination, newest first.
    let id = a["id"].as_str().unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        let task = if i % 2 == 0 { "convert" } else { "upscale" };
        let input = if task == "convert" {
            json!({"image": id, "format": "png"})
        } else {
            json!({"image": id, "factor": 2})
        };
        created.push(
            t.submit(&key, json!({"task": task, "input": input})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (_, p1) = t.json(Method::GET, "/v1/jobs?limit=2", &key, None).await;
    let ids1: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids1, [created[4].as_str(), created[3].as_str()]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = t
        .json(
            Method::GET,
            &format!("/v1/jobs?limit=2&cursor={cursor}"),
            &key,
            None,
        )
        .await;
    assert_eq!(p2["data"][0]["id"], created[2].as_str());
    let (_, p3) = t
        .json(
            Method::GET,
            &format!(
                "/v1/jobs?limit=2&cursor={}",
                p2["next_cursor"].as_str().unwrap()
            ),
            &key,
            None,
        )
        .await;
    assert_eq!(p3["data"].as_array().unwrap().len(), 1);
    assert!(p3["next_cursor"].is_null());
    let (_, up) = t
        .json(Method::GET, "/v1/jobs?task=upscale", &key, None)
        .await;
    assert_eq!(up["data"].as_array().unwrap().len(), 2);
    let (_, q) = t
        .json(Method::GET, "/v1/jobs?status=queued", &key, None)
        .await;
    assert_eq!(q["data"].as_array().unwrap().len(), 5);
    let (s, v) = t
        .json(Method::GET, "/v1/jobs?status=done", &key, None)
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = t.json(Method::GET, "/v1/jobs?limit=0", &key, None).await;
    assert_eq!(s, 422);

    // Delete: the asset and its bytes are gone.
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{id}"), &key, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .json(Method::GET, &format!("/v1/assets/{id}"), &key, None)
        .await;
    assert_eq!(s, 404);
    let r = t
        .req(Method::GET, &format!("/v1/assets/{id}/content"), Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let blobs = &t.server().state.store.blobs;
    assert!(
        !blobs
            .exists(&easel_core::asset::blob_key(&uid, id))
            .await
            .unwrap(),
        "blob deleted"
    );
    t.shutdown().await;
}

/// The main flow on PostgreSQL (when `EASEL_TEST_DATABASE_URL` is set): a job end to end, a
/// cancel, and recovery of a crashed server's job through lease expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_end_to_end() {
    let Ok(admin_url) = std::env::var("EASEL_TEST_DATABASE_URL") else {
        eprintln!("skipping PostgreSQL: EASEL_TEST_DATABASE_URL is not set");
        return;
    };
    let pg = easel_store::testing::postgres(&admin_url).await;
    let url = pg.db_url.clone();
    let t1 = TestServer::start(|c| {
        c.database_url = Some(url.clone());
        c.workers = 0;
        c.queue.lease = Duration::from_millis(600);
    })
    .await;
    let dir = t1.dir.clone();
    let (key, _) = t1.user("pat").await;
    let img = t1.upload(&key, png(20, 10)).await;
    let queued = t1
        .submit(
            &key,
            json!({"task": "convert", "input": {"image": img, "format": "png"}}),
        )
        .await;
    let (s, v) = t1
        .json(
            Method::POST,
            &format!("/v1/jobs/{}/cancel", queued["id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")));
    let job = t1
        .submit(
            &key,
            json!({"task": "upscale", "input": {"image": img, "factor": 3}}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let gw = gated_worker(t1.server());
    tokio::time::timeout(Duration::from_secs(20), gw.started.notified())
        .await
        .unwrap();
    wait_status(&t1, &key, &id, "running").await;
    gw.handle.abort();
    let _ = gw.handle.await;
    t1.srv.unwrap().abort().await;

    let t2 = TestServer::start_in(dir, |c| {
        c.database_url = Some(url.clone());
        c.queue.lease = Duration::from_millis(600);
    })
    .await;
    let done = t2.wait(&key, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    let bytes = t2
        .http
        .get(done["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let out = decode(&bytes);
    assert_eq!((out.width(), out.height()), (60, 30));
    t2.shutdown().await;
    drop(pg);
}

/// A webhook URL the server may not reach (loopback, private, link-local, metadata, and
/// their IPv6 and embedded forms) is a 422 on `webhook.url` at submit, before anything is
/// queued; the operator's `--webhook-allow` admits an internal receiver.
#[tokio::test]
async fn webhook_receivers_inside_the_network_are_refused_at_submit() {
    let t = TestServer::start(|c| c.queue.webhook_policy = easel_net::Policy::public()).await;
    let (key, _) = t.user("mallory").await;
    let img = t.upload(&key, png(8, 8)).await;
    let job = |url: &str| {
        json!({"task": "convert", "input": {"image": img, "format": "png"},
            "webhook": {"url": url}})
    };
    for url in [
        format!("{}/v1/keys", t.base),
        "http://[::1]/".into(),
        "http://localhost:22/".into(),
        "http://10.0.0.1/".into(),
        "http://192.168.1.1/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[fe80::1]/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://[64:ff9b::a9fe:a9fe]/".into(),
        "http://198.18.0.1/".into(),
    ] {
        let (s, v) = t
            .json(Method::POST, "/v1/jobs", &key, Some(job(&url)))
            .await;
        assert_eq!(s, 422, "{url}: {v}");
        assert_eq!(v["error"]["field"], "webhook.url", "{url}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("non-public"), "{url}: {msg}");
    }
    let (_, list) = t.json(Method::GET, "/v1/jobs", &key, None).await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(0),
        "nothing was queued: {list}"
    );
    t.shutdown().await;

    let t = TestServer::start(|c| {
        c.queue.webhook_policy =
            easel_net::Policy::allowing(easel_net::Allow::parse_list("10.0.0.0/8").unwrap())
    })
    .await;
    let (key, _) = t.user("operator").await;
    let img = t.upload(&key, png(8, 8)).await;
    let body = json!({"task": "convert", "input": {"image": img, "format": "png"},
        "webhook": {"url": "http://10.1.2.3/hook"}});
    let (s, v) = t.json(Method::POST, "/v1/jobs", &key, Some(body)).await;
    assert_eq!(s, 201, "an allowed internal receiver: {v}");
    t.shutdown().await;
}

/// NUL characters (and bytes that are not UTF-8) in ids, names, cursors and query values are
/// refused before they reach the database, in each dialect's error shape, with or without a
/// key, on SQLite and PostgreSQL alike; no answer carries a database's error text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_refused_in_every_dialect() {
    let pg = optional_postgres().await;
    let mut urls = vec![None];
    urls.extend(pg.as_ref().map(|p| Some(p.db_url.clone())));
    for db_url in urls {
        let backend = if db_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        let t = TestServer::start(|c| c.database_url = db_url.clone()).await;
        let (key, _) = t.user("nul").await;
        // (method, path, body, the error shape's top-level key)
        let probes: Vec<(Method, &str, Option<Value>, &str)> = vec![
            (Method::GET, "/v1/jobs/job_%00", None, "error"),
            (Method::GET, "/v1/jobs?cursor=%00x", None, "error"),
            (Method::POST, "/v1/jobs/j%00/cancel", None, "error"),
            (
                Method::GET,
                "/v1/assets/ast%00/content?sig=%00",
                None,
                "error",
            ),
            (Method::GET, "/v1/models/a%00b", None, "error"),
            (Method::DELETE, "/v1/keys/key_%00", None, "error"),
            (Method::GET, "/v1/jobs/%FF%FE", None, "error"),
            (
                Method::POST,
                "/v1/keys",
                Some(json!({"name": "a\u{0}b"})),
                "error",
            ),
            (
                Method::POST,
                "/v1/jobs",
                Some(json!({"task": "convert", "model": "m\u{0}", "input": {}})),
                "error",
            ),
            (Method::GET, "/openai/v1/models/x%00", None, "error"),
            (Method::GET, "/openai/v1/jobs/x%00", None, "error"),
            (
                Method::GET,
                "/leonardo/v1/generations/x%00",
                None,
                "extensions",
            ),
            (
                Method::GET,
                "/leonardo/v1/generations/user/x%00?offset=0",
                None,
                "extensions",
            ),
            (
                Method::GET,
                "/replicate/v1/predictions/x%00",
                None,
                "detail",
            ),
            (
                Method::GET,
                "/replicate/v1/predictions?cursor=%00",
                None,
                "detail",
            ),
            (
                Method::PUT,
                "/replicate/v1/predictions/x%00",
                Some(json!({"input": {}})),
                "detail",
            ),
            (
                Method::POST,
                "/replicate/v1/predictions",
                Some(json!({"version": "v\u{0}", "input": {}})),
                "detail",
            ),
            (
                Method::GET,
                "/sartiq/api/v1/generation-models/x%00",
                None,
                "detail",
            ),
        ];
        for (method, path, body, shape) in probes {
            let own = if path.starts_with("/v1/keys") {
                ADMIN_KEY
            } else {
                key.as_str()
            };
            for k in [Some(own), None] {
                let mut r = t.req(method.clone(), path, k);
                if let Some(b) = &body {
                    r = r.json(b);
                }
                let (s, v) = get(r.send().await.unwrap()).await;
                let what = format!("{backend} {method} {path} key={}", k.is_some());
                let text = v.to_string().to_lowercase();
                assert!(
                    !text.contains("database") && !text.contains("byte sequence"),
                    "{what}: {v}"
                );
                if k.is_some() {
                    // 400 is OpenAI's status for invalid input.
                    assert!(s == 422 || s == 400, "{what}: {s} {v}");
                    assert!(v.get(shape).is_some(), "{what}: the dialect's shape: {v}");
                } else {
                    assert!([400, 401, 422].contains(&s), "{what}: {s} {v}");
                }
            }
        }
        t.shutdown().await;
    }
    drop(pg);
}

/// A deleted output is absent from its job in every dialect (the store drops it from the
/// job's outputs, which every dialect's view reads): the native job and OpenAI's job status
/// (which answered 500 before) answer 200 without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_outputs_are_absent_in_every_dialect() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("del").await;
    let img = t.upload(&key, png(8, 8)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "convert", "input": {"image": img, "format": "png"}}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = t.wait(&key, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let out = done["outputs"][0]["asset_id"].as_str().unwrap().to_string();
    let (s, v) = t
        .json(Method::DELETE, &format!("/v1/assets/{out}"), &key, None)
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");

    let (s, v) = t
        .json(Method::GET, &format!("/v1/jobs/{id}"), &key, None)
        .await;
    assert_eq!((s, v["outputs"].clone()), (200, json!([])), "{v}");
    let (s, v) = t
        .json(Method::GET, &format!("/openai/v1/jobs/{id}"), &key, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outputData"]["data"], json!([]), "{v}");
    t.shutdown().await;
}

/// Local model paths are confined to the models folder (and `--model-roots`): the API
/// refuses others at registration, the engine refuses rows written around it without saying
/// whether the path exists; and only admins see `source`, `support_dir` and `base_url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_paths_are_confined_and_shown_to_admins_only() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    easel_diffusion::tiny::make_tiny(&models.join("tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir.clone(), |c| c.scan_models = true).await;
    let (key, _) = t.user("user").await;

    // Paths are for admins.
    let (_, list) = t.json(Method::GET, "/v1/models", &key, None).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["source"].is_null()),
        "{list}"
    );
    let (_, m) = t.json(Method::GET, "/v1/models/tiny", &key, None).await;
    assert!(m["source"].is_null(), "{m}");
    let (s, m) = t
        .json(Method::GET, "/v1/models/tiny", ADMIN_KEY, None)
        .await;
    assert!(
        m["source"]
            .as_str()
            .unwrap_or_else(|| panic!("{s} {m}"))
            .ends_with("/models/tiny"),
        "{m}"
    );

    // Registration: outside the roots is a 422 on the field.
    let root = std::fs::canonicalize(&models)
        .unwrap()
        .display()
        .to_string();
    for (body, field) in [
        (
            json!({"name": "etc", "source": "/etc", "tasks": ["txt2img"]}),
            "source",
        ),
        (
            json!({"name": "up", "source": "tiny/../../..", "tasks": ["txt2img"]}),
            "source",
        ),
        (
            json!({"name": "beside", "source": format!("{root}-other/x"), "tasks": ["txt2img"]}),
            "source",
        ),
        (
            json!({"name": "sup", "source": "tiny", "provider_config": {"support_dir": "/etc"}}),
            "provider_config.support_dir",
        ),
    ] {
        let (s, v) = t
            .json(Method::POST, "/v1/models", ADMIN_KEY, Some(body.clone()))
            .await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {v}"
        );
    }
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/tiny",
            ADMIN_KEY,
            Some(json!({"source": "/etc/passwd"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("source")),
        "{v}"
    );
    // The Sartiq registry's public reads show no locations either.
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/tiny",
            ADMIN_KEY,
            Some(json!({"provider_config": {"support_dir": format!("{root}/tiny")}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = t.req(Method::GET, "/sartiq/api/v1/generation-models/tiny", None);
    let (s, v) = get(r.send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["provider_config"], json!({}), "{v}");

    // A path relative to the models folder runs.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "rel", "source": "tiny", "family": "sd15", "tasks": ["txt2img"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let gen = |model: &str| {
        json!({"task": "txt2img", "model": model,
            "input": {"prompt": "x", "width": 64, "height": 64, "steps": 1}})
    };
    let job = t.submit(&key, gen("rel")).await;
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // A row written around the API (an older version, by hand) is refused when it runs,
    // and the submitter learns nothing of the path.
    let spec: easel_core::model::ModelSpec = serde_json::from_value(json!({
        "name": "outside", "source": "/etc/hostname", "family": "sd15", "tasks": ["txt2img"]
    }))
    .unwrap();
    easel_store::models::create(&t.server().state.store.db, &spec, false)
        .await
        .unwrap();
    let job = t.submit(&key, gen("outside")).await;
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    let text = done["error"].to_string();
    assert!(!text.contains("/etc"), "{text}");
    assert!(text.contains("outside the folders"), "{text}");

    // Weights that cannot be loaded: the job says so without naming where they are.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "gone", "source": "not-there", "family": "sd15", "tasks": ["txt2img"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let job = t.submit(&key, gen("gone")).await;
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    let text = done["error"].to_string();
    assert!(
        !text.contains(&root) && !text.contains("not-there"),
        "{text}"
    );
    assert!(text.contains("could not be loaded"), "{text}");
    t.shutdown().await;
}

/// Revocation takes effect at once: in the process that revoked, in another API process on
/// the same PostgreSQL (its key cache is emptied by `NOTIFY`; the cache here would otherwise
/// trust the key for an hour), and for signed URLs handed out before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_keys_everywhere_and_the_links_handed_out() {
    let pg = optional_postgres().await;
    let db_url = pg.as_ref().map(|p| p.db_url.clone());
    let long_cache = |c: &mut easel_api::server::Config| {
        c.database_url = db_url.clone();
        c.auth_cache_ttl = Duration::from_secs(3600);
    };
    let t = TestServer::start(long_cache).await;
    let (key, user_id) = t.user("rita").await;
    let img = t.upload(&key, png(8, 8)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "convert", "input": {"image": img, "format": "png"}}),
        )
        .await;
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    let link = done["outputs"][0]["url"].as_str().unwrap().to_string();
    assert!(link.contains("iat="), "{link}");
    assert_eq!(t.http.get(&link).send().await.unwrap().status(), 200);

    // A second API process on the same database, which has the key cached.
    let other = match &pg {
        Some(_) => Some(TestServer::start(long_cache).await),
        None => None,
    };
    if let Some(o) = &other {
        let (s, v) = o.json(Method::GET, "/v1/me", &key, None).await;
        assert_eq!(s, 200, "{v}");
    }

    let key_id = {
        let (_, me) = t.json(Method::GET, "/v1/me", &key, None).await;
        me["key_id"].as_str().unwrap().to_string()
    };
    let (s, v) = t
        .json(
            Method::DELETE,
            &format!("/v1/keys/{key_id}"),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = t.json(Method::GET, "/v1/me", &key, None).await;
    assert_eq!(s, 401, "the revoking process refuses the key at once");
    assert_eq!(
        t.http.get(&link).send().await.unwrap().status(),
        401,
        "a link issued before the revocation is revoked with it"
    );
    if let Some(o) = &other {
        let mut refused = false;
        for _ in 0..200 {
            let (s, _) = o.json(Method::GET, "/v1/me", &key, None).await;
            if s == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            refused,
            "the other process dropped its cached key on the notice"
        );
    }

    // The owner's new key gets fresh links that work.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "second", "user_id": user_id})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let key2 = v["key"].as_str().unwrap().to_string();
    let (_, again) = t
        .json(
            Method::GET,
            &format!("/v1/jobs/{}", job["id"].as_str().unwrap()),
            &key2,
            None,
        )
        .await;
    let fresh = again["outputs"][0]["url"].as_str().unwrap();
    assert_eq!(t.http.get(fresh).send().await.unwrap().status(), 200);
    if let Some(o) = other {
        o.shutdown().await;
    }
    t.shutdown().await;
    drop(pg);
}

/// What a worker killed between writing an output blob and committing its row leaves (an
/// intent and a blob) is deleted when a server starts: no blob stays without its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_collects_blobs_a_crash_left_without_rows() {
    let t = TestServer::start(|_| {}).await;
    let (key, user_id) = t.user("crash").await;
    let kept = t.upload(&key, png(8, 8)).await;
    let store = t.server().state.store.clone();
    let orphan = easel_core::id::new(easel_core::id::ASSET);
    let orphan_key = easel_core::asset::blob_key(&user_id, &orphan);
    easel_store::intents::put(&store, &orphan, &orphan_key, bytes::Bytes::from(png(4, 4)))
        .await
        .unwrap();
    let dir = t.dir.clone();
    t.srv.unwrap().abort().await;

    let t = TestServer::start_in(dir, |c| c.orphan_grace = Duration::ZERO).await;
    let store = t.server().state.store.clone();
    let mut gone = false;
    for _ in 0..200 {
        if !store.blobs.exists(&orphan_key).await.unwrap() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the orphaned blob is collected at start");
    let r = t.req(
        Method::GET,
        &format!("/v1/assets/{kept}/content"),
        Some(&key),
    );
    assert_eq!(
        r.send().await.unwrap().status(),
        200,
        "committed assets stay"
    );
    t.shutdown().await;
}

/// A fresh PostgreSQL database when `EASEL_TEST_DATABASE_URL` is set (a line says so when not).
async fn optional_postgres() -> Option<easel_store::testing::TestStore> {
    match std::env::var("EASEL_TEST_DATABASE_URL") {
        Ok(url) => Some(easel_store::testing::postgres(&url).await),
        Err(_) => {
            eprintln!("skipping PostgreSQL: EASEL_TEST_DATABASE_URL is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_list_the_configured_limits_and_families() {
    let t = TestServer::start(|c| c.limits.max_steps = 40).await;
    let (key, _) = t.user("olive").await;
    let (s, o) = t.json(Method::GET, "/v1/options", &key, None).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["limits"]["max_steps"], 40);
    assert_eq!(o["limits"]["min_side"], 64);
    assert_eq!(o["limits"]["max_gen_pixels"], 2048 * 2048);
    let sd15 = o["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "sd15")
        .unwrap();
    assert_eq!(
        (sd15["natural_size"].as_u64(), sd15["pag"].as_bool()),
        (Some(512), Some(false))
    );
    assert_eq!(sd15["tiny_vae"], false);
    // A TAESD in the models folder's vae_approx/ shows for the families that use it.
    easel_diffusion::taesd::make_tiny(&t.dir.path().join("models/vae_approx/taesd"), 4, 1).unwrap();
    let (_, o2) = t.json(Method::GET, "/v1/options", &key, None).await;
    let tiny: Vec<(&str, bool)> = o2["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["tiny_vae"].as_bool().unwrap()))
        .collect();
    assert!(
        tiny.contains(&("sd15", true)) && tiny.contains(&("sd2", true)),
        "{tiny:?}"
    );
    assert!(
        tiny.contains(&("sdxl", false)) && tiny.contains(&("sana", false)),
        "{tiny:?}"
    );
    assert!(o["schedulers"]
        .as_array()
        .unwrap()
        .contains(&json!("euler_a")));
    assert!(o["tasks"].as_array().unwrap().contains(&json!("pixelate")));
    // What it says is what submit enforces.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "input": {"prompt": "x", "steps": 41}})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let (s, _) = t.json(Method::GET, "/v1/options", "nope", None).await;
    assert_eq!(s, 401);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_explicit_and_admins_list_anyones_jobs_and_usage() {
    let t = TestServer::start(|_| {}).await;
    let (alice, alice_id) = t.user("alice").await;
    // The same name again is a conflict that says how to add a key to alice.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "alice"})),
        )
        .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["field"], "name");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("user_id"),
        "{e}"
    );
    let (s, second) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "laptop", "user_id": alice_id})),
        )
        .await;
    assert_eq!(s, 201, "{second}");
    assert_eq!(second["user_id"], alice_id);
    let (s, bob) = t
        .json(
            Method::POST,
            "/v1/users",
            ADMIN_KEY,
            Some(json!({"name": "bob"})),
        )
        .await;
    assert_eq!((s, bob["role"].as_str()), (201, Some("user")), "{bob}");
    let (s, _) = t
        .json(
            Method::POST,
            "/v1/users",
            ADMIN_KEY,
            Some(json!({"name": "bob"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = t
        .json(
            Method::POST,
            "/v1/users",
            &alice,
            Some(json!({"name": "eve"})),
        )
        .await;
    assert_eq!(s, 403);
    let (_, users) = t.json(Method::GET, "/v1/users", ADMIN_KEY, None).await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"bob"),
        "{users}"
    );

    // Jobs: a user sees their own and may not ask for others'; admins choose.
    let png = png(32, 32);
    let img = t.upload(&alice, png).await;
    let job = t
        .submit(
            &alice,
            json!({"task": "convert", "input": {"image": img, "format": "webp"}}),
        )
        .await;
    assert_eq!(job["owner_id"], alice_id);
    t.wait(&alice, job["id"].as_str().unwrap()).await;
    let (s, _) = t
        .json(Method::GET, "/v1/jobs?owner=all", &alice, None)
        .await;
    assert_eq!(s, 403);
    let (s, own) = t
        .json(
            Method::GET,
            &format!("/v1/jobs?owner={alice_id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!((s, own["data"].as_array().unwrap().len()), (200, 1));
    let (_, mine) = t.json(Method::GET, "/v1/jobs", ADMIN_KEY, None).await;
    assert!(mine["data"].as_array().unwrap().is_empty(), "{mine}");
    let (_, all) = t
        .json(Method::GET, "/v1/jobs?owner=all", ADMIN_KEY, None)
        .await;
    assert_eq!(all["data"][0]["id"], job["id"]);
    let (_, hers) = t
        .json(
            Method::GET,
            &format!("/v1/jobs?owner={alice_id}"),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(hers["data"].as_array().unwrap().len(), 1);
    let (s, u) = t
        .json(Method::GET, "/v1/usage?owner=all", ADMIN_KEY, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["data"][0]["task"], "convert", "{u}");
    assert!(
        u["models"].as_array().unwrap().is_empty(),
        "tools have no model: {u}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asset_list_filters_by_task_job_parent_and_day() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("gina").await;
    let img = t.upload(&key, png(40, 40)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "upscale", "input": {"image": img, "factor": 2}}),
        )
        .await;
    let job = t.wait(&key, job["id"].as_str().unwrap()).await;
    let out = job["outputs"][0]["asset_id"].as_str().unwrap().to_string();
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |q: String| {
        let t = &t;
        let key = key.clone();
        async move {
            t.json(Method::GET, &format!("/v1/assets?{q}"), &key, None)
                .await
        }
    };
    let (_, v) = list("task=uploaded".into()).await;
    assert_eq!(ids(&v), vec![img.clone()]);
    let (_, v) = list("task=upscale".into()).await;
    assert_eq!(ids(&v), vec![out.clone()]);
    let (_, v) = list(format!("parent={img}")).await;
    assert_eq!(ids(&v), vec![out.clone()]);
    // The upscale is of the upload's lineage, and says so.
    let (_, v) = list(format!("root={img}")).await;
    assert_eq!(ids(&v), vec![out.clone()]);
    assert_eq!(v["data"][0]["root_id"], json!(img), "{v}");
    let (_, v) = list(format!("job={}", job["id"].as_str().unwrap())).await;
    assert_eq!(ids(&v), vec![out.clone()]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    let yesterday = (chrono::Utc::now() - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    let (_, v) = list(format!("since={today}&until={today}")).await;
    assert_eq!(ids(&v), vec![out.clone(), img.clone()]);
    let (_, v) = list(format!("since={tomorrow}")).await;
    assert!(ids(&v).is_empty());
    let (_, v) = list(format!("until={yesterday}")).await;
    assert!(ids(&v).is_empty());
    let (s, e) = list("task=dance".into()).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("task")),
        "{e}"
    );
    let (s, e) = list("since=soon".into()).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("since")),
        "{e}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_copied_in_while_running_are_found_and_unrunnable_ones_refused() {
    let t = TestServer::start(|c| c.scan_models = true).await;
    let (key, _) = t.user("hal").await;
    // Copied into the folder after the start: the first request naming it finds it.
    easel_diffusion::tiny::make_tiny(&t.dir.path().join("models/late"), "sd15", 3).unwrap();
    let job = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": "late", "input": {"prompt": "x", "width": 64, "height": 64, "steps": 1}}),
        )
        .await;
    assert_eq!(job["model"], "late");
    // A misspelling is still a 422 that says where models come from.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "model": "lat", "input": {"prompt": "x"}})),
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("models/"),
        "{e}"
    );
    // A remote model whose key variable is unset cannot run: refused at submit, and never
    // the default (which stays the local model even though `aaa` sorts first).
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "aaa-cloud", "family": "sdxl", "tasks": ["txt2img"], "provider": "openai",
                "provider_config": {"base_url": "https://api.example.com/v1", "api_key_env": "EASEL_TEST_SURELY_UNSET_KEY"}})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "txt2img", "model": "aaa-cloud", "input": {"prompt": "x"}})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EASEL_TEST_SURELY_UNSET_KEY"),
        "{e}"
    );
    let job = t
        .submit(&key, json!({"task": "txt2img", "input": {"prompt": "x", "width": 64, "height": 64, "steps": 1}}))
        .await;
    assert_eq!(job["model"], "late");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_make_tiny_models_and_scan_over_the_api() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("ivy").await;
    let body = json!({"name": "tiny-api", "family": "sd15", "seed": 4});
    let (s, _) = t
        .json(
            Method::POST,
            "/v1/models-folder/tiny",
            &key,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 403);
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/models-folder/tiny",
            ADMIN_KEY,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        (m["name"].as_str(), m["family"].as_str()),
        (Some("tiny-api"), Some("sd15"))
    );
    assert!(t
        .dir
        .path()
        .join("models/tiny-api/model_index.json")
        .exists());
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/models-folder/tiny",
            ADMIN_KEY,
            Some(body),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (409, Some("name")),
        "{e}"
    );
    for (name, family, field) in [("../x", "sd15", "name"), ("ok", "dalle", "family")] {
        let (s, e) = t
            .json(
                Method::POST,
                "/v1/models-folder/tiny",
                ADMIN_KEY,
                Some(json!({"name": name, "family": family})),
            )
            .await;
        assert_eq!((s, e["error"]["field"].as_str()), (422, Some(field)), "{e}");
    }
    // Removed from the registry, found again by a scan.
    let (s, _) = t
        .json(Method::DELETE, "/v1/models/tiny-api", ADMIN_KEY, None)
        .await;
    assert_eq!(s, 204);
    let (s, r) = t
        .json(Method::POST, "/v1/models-folder/scan", ADMIN_KEY, None)
        .await;
    assert_eq!((s, r["found"].as_u64()), (200, Some(1)), "{r}");
    let (s, _) = t.json(Method::GET, "/v1/models/tiny-api", &key, None).await;
    assert_eq!(s, 200);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_with_its_policy() {
    let t = TestServer::start(|_| {}).await;
    let page = t.req(Method::GET, "/", None).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let h = page.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("/ui/app.js") && html.contains("/ui/app.css"));
    for (path, ctype) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = t.req(Method::GET, path, None).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ctype),
            "{path}"
        );
    }
    let r = t
        .req(Method::GET, "/ui/nothing.js", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_carry_tags_that_filter_and_count() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("tam").await;
    let (other, _) = t.user("tom").await;
    let a = t.upload(&key, png(8, 8)).await;
    let b = t.upload(&key, png(9, 9)).await;
    let put = |asset: &str, who: &str, body: Value| {
        let (t, path, who) = (&t, format!("/v1/assets/{asset}/tags"), who.to_string());
        async move { t.json(Method::PUT, &path, &who, Some(body)).await }
    };
    let (s, v) = put(&a, &key, json!({"add": ["fox", " snow "]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tags"], json!(["fox", "snow"]), "trimmed and sorted: {v}");
    put(&b, &key, json!({"add": ["fox"]})).await;
    // Strict: adding what is there is a 409 on `add`; lenient skips it.
    let (s, e) = put(&a, &key, json!({"add": ["fox"], "strict": true})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (409, Some("add")), "{e}");
    let (s, v) = put(&a, &key, json!({"add": ["fox"], "delete": ["snow"]})).await;
    assert_eq!(
        (s, v["added"].clone(), v["deleted"].clone()),
        (200, json!([]), json!(["snow"]))
    );
    for (body, field) in [
        (json!({"add": ["a,b"]}), "add"),
        (json!({"add": [""]}), "add"),
        (json!({"delete": ["x".repeat(65)]}), "delete"),
    ] {
        let (s, e) = put(&a, &key, body.clone()).await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {e}"
        );
    }
    let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    let (s, e) = put(&b, &key, json!({"add": many})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("add")), "{e}");
    // Someone else's asset does not exist for them.
    let (s, _) = put(&a, &other, json!({"add": ["mine"]})).await;
    assert_eq!(s, 404);
    // Counts, the filter, the asset view.
    let (_, tags) = t.json(Method::GET, "/v1/tags", &key, None).await;
    assert_eq!(tags["data"][0]["name"], "fox");
    assert_eq!(tags["data"][0]["count"], 2, "{tags}");
    let (_, theirs) = t.json(Method::GET, "/v1/tags", &other, None).await;
    assert_eq!(theirs["data"], json!([]));
    let (_, list) = t
        .json(Method::GET, "/v1/assets?tag=fox,other", &key, None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    let (_, one) = t
        .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
        .await;
    assert_eq!(one["tags"], json!(["fox"]));
    let (s, e) = t
        .json(Method::GET, "/v1/assets?tag=a%0Ab", &key, None)
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("tag")), "{e}");
    // A deleted asset's tags go with it.
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{a}"), &key, None)
        .await;
    assert_eq!(s, 204);
    let (_, tags) = t.json(Method::GET, "/v1/tags", &key, None).await;
    assert_eq!(tags["data"][0]["count"], 1, "{tags}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_records_are_edited_and_public_ones_read_without_a_key() {
    let t = TestServer::start(|_| {}).await;
    let (key, _) = t.user("pia").await;
    let (other, _) = t.user("pol").await;
    let a = t.upload(&key, png(8, 8)).await;
    let (_, v) = t
        .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
        .await;
    assert_eq!(
        (v["privacy"].as_str(), v["name"].is_null()),
        (Some("private"), true),
        "{v}"
    );
    let edit = |who: &str, body: Value| {
        let (t, path, who) = (&t, format!("/v1/assets/{a}"), who.to_string());
        async move { t.json(Method::PATCH, &path, &who, Some(body)).await }
    };
    let (s, v) = edit(&key, json!({"name": "fox", "description": "a red fox"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["description"].as_str()),
        (Some("fox"), Some("a red fox"))
    );
    assert!(v["updated_at"].as_str() >= v["created_at"].as_str(), "{v}");
    // Hidden: out of the owner's list, in `?hidden=true`, readable by id; shown again.
    let listed = |query: &'static str| {
        let (t, key, a) = (&t, key.clone(), a.clone());
        async move {
            let (_, l) = t
                .json(Method::GET, &format!("/v1/assets{query}"), &key, None)
                .await;
            l["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == a.as_str())
        }
    };
    assert!(listed("").await);
    let (s, v) = edit(&key, json!({"hidden": true})).await;
    assert_eq!((s, v["hidden"].as_bool()), (200, Some(true)), "{v}");
    assert!(!listed("").await, "a hidden asset is left out");
    assert!(listed("?hidden=true").await);
    let (s, v) = t
        .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
        .await;
    assert_eq!((s, v["hidden"].as_bool()), (200, Some(true)), "{v}");
    // Public and hidden: not readable without a key until shown again.
    let (s, _) = edit(&key, json!({"privacy": "public"})).await;
    assert_eq!(s, 200);
    let public = format!("/v1/public/assets/{a}");
    let (s, _) = get(t.req(Method::GET, &public, None).send().await.unwrap()).await;
    assert_eq!(s, 404, "a hidden asset is no public read");
    let (_, v) = edit(&key, json!({"hidden": false, "privacy": "private"})).await;
    assert_eq!(v["hidden"], false);
    assert!(listed("").await);
    // A job's outputs stored hidden (`hide_outputs`), and still the job's.
    let job = t
        .submit(
            &key,
            json!({"task": "upscale", "input": {"image": a, "factor": 2}, "hide_outputs": true}),
        )
        .await;
    assert_eq!(job["hide_outputs"], true, "{job}");
    let done = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let out = done["outputs"][0]["asset_id"].as_str().unwrap().to_string();
    let (s, v) = t
        .json(Method::GET, &format!("/v1/assets/{out}"), &key, None)
        .await;
    assert_eq!((s, v["hidden"].as_bool()), (200, Some(true)), "{v}");
    let (_, l) = t.json(Method::GET, "/v1/assets", &key, None).await;
    assert!(!l.to_string().contains(&out), "{l}");
    // Absent fields stay; "" clears.
    let (_, v) = edit(&key, json!({"description": ""})).await;
    assert_eq!(
        (v["name"].as_str(), v["description"].is_null()),
        (Some("fox"), true),
        "{v}"
    );
    for (body, field) in [
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"privacy": "secret"}), "privacy"),
        (json!({"owner": "me"}), "owner"),
    ] {
        let (s, e) = edit(&key, body.clone()).await;
        assert_eq!(s, 422, "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field) || e["error"]["field"] == field,
            "{body}: {e}"
        );
    }
    let (s, _) = edit(&other, json!({"name": "mine"})).await;
    assert_eq!(s, 404, "another user's asset");

    // Private: 404 without a key. Unlisted: readable by id, not listed. Public: both.
    let anon = |path: String| {
        let t = &t;
        async move {
            let r = t.req(Method::GET, &path, None).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (s, _) = anon(format!("/v1/public/assets/{a}")).await;
    assert_eq!(s, 404);
    edit(&key, json!({"privacy": "unlisted"})).await;
    let (s, v) = anon(format!("/v1/public/assets/{a}")).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("fox")), "{v}");
    let (_, list) = anon("/v1/public/assets".into()).await;
    assert_eq!(list["data"], json!([]), "unlisted is not listed");
    edit(&key, json!({"privacy": "public"})).await;
    let (_, list) = anon("/v1/public/assets".into()).await;
    assert_eq!(list["data"][0]["id"], a.as_str());
    // Its signed URL serves the image to anyone.
    let url = list["data"][0]["url"].as_str().unwrap();
    let r = t.http.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Other users still cannot edit or delete it.
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{a}"), &other, None)
        .await;
    assert_eq!(s, 404);
    // Private again: the URLs handed out while it was public stop working; the owner's new
    // ones work.
    let (_, v) = edit(&key, json!({"privacy": "private"})).await;
    assert_eq!(v["privacy"], "private");
    let r = t.http.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = anon(format!("/v1/public/assets/{a}")).await;
    assert_eq!(s, 404);
    let fresh = v["url"].as_str().unwrap();
    assert_eq!(
        t.http.get(fresh).send().await.unwrap().status().as_u16(),
        200
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_hold_a_users_assets_and_models() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    easel_diffusion::tiny::make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, _) = t.user("cia").await;
    let (other, _) = t.user("cid").await;
    let a = t.upload(&key, png(8, 8)).await;
    let theirs = t.upload(&other, png(8, 8)).await;
    let (s, c) = t
        .json(
            Method::POST,
            "/v1/collections",
            &key,
            Some(json!({"name": " trips "})),
        )
        .await;
    assert_eq!((s, c["name"].as_str()), (201, Some("trips")), "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let items = |who: &str, body: Value| {
        let (t, path, who) = (&t, format!("/v1/collections/{id}/items"), who.to_string());
        async move { t.json(Method::PUT, &path, &who, Some(body)).await }
    };
    let (s, c) = items(&key, json!({"add_assets": [a], "add_models": ["tiny"]})).await;
    assert_eq!(
        (s, c["asset_count"].as_u64(), c["model_count"].as_u64()),
        (200, Some(1), Some(1)),
        "{c}"
    );
    // Someone else's asset cannot be added; nor can more than 49 at once.
    let (s, e) = items(&key, json!({"add_assets": [theirs]})).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (404, Some("add_assets[0]")),
        "{e}"
    );
    let many: Vec<String> = (0..50).map(|i| format!("ast_{i}")).collect();
    let (s, e) = items(&key, json!({"add_assets": many})).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("add_assets")),
        "{e}"
    );
    let (s, e) = items(&key, json!({"add_models": ["nope"]})).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("add_models[0]")),
        "{e}"
    );
    // Others do not see it.
    let (s, _) = t
        .json(Method::GET, &format!("/v1/collections/{id}"), &other, None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = items(&other, json!({"remove_assets": [a]})).await;
    assert_eq!(s, 404);
    let (s, e) = t
        .json(
            Method::GET,
            &format!("/v1/assets?collection={id}"),
            &other,
            None,
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (404, Some("collection")),
        "{e}"
    );
    // Its members, listed with the asset list's filters.
    let (_, list) = t
        .json(
            Method::GET,
            &format!("/v1/assets?collection={id}"),
            &key,
            None,
        )
        .await;
    assert_eq!(list["data"][0]["id"], a.as_str());
    let (_, list) = t
        .json(
            Method::GET,
            &format!("/v1/assets?collection={id}&task=txt2img"),
            &key,
            None,
        )
        .await;
    assert_eq!(list["data"], json!([]));
    let (s, c) = t
        .json(
            Method::PATCH,
            &format!("/v1/collections/{id}"),
            &key,
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!(
        (s, c["error"]["field"].as_str()),
        (422, Some("name")),
        "{c}"
    );
    let (_, all) = t.json(Method::GET, "/v1/collections", &key, None).await;
    assert_eq!(all["data"][0]["id"], id.as_str());
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/collections/{id}"), &key, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .json(Method::GET, &format!("/v1/assets/{a}"), &key, None)
        .await;
    assert_eq!(s, 200, "its assets stay");
    t.shutdown().await;
}

/// Users' models: the tenancy matrix of every model route (another user's private model is
/// 404 everywhere; one they can see but do not own is 403 to write), copy and transfer,
/// scopes of the list, keyless reads of public and unlisted models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_models_belong_to_their_owners_and_public_ones_are_read_without_a_key() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    easel_diffusion::tiny::make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let admin = ADMIN_KEY.to_string();
    let (key, _) = t.user("mo").await;
    let (other, other_id) = t.user("ned").await;
    let mine = t.upload(&key, png(8, 8)).await;
    let theirs = t.upload(&other, png(8, 8)).await;
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/models",
            &key,
            Some(
                json!({"name": "Mo's look", "base_model": "tiny", "examples": [mine],
                "description": "## Mo\nsoft light", "tags": ["mine"]}),
            ),
        )
        .await;
    assert_eq!((s, m["privacy"].as_str()), (201, Some("private")), "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let path = format!("/v1/models/{id}");
    // What a user may not create: a model of their own that is not a composition, a
    // provider of its own, someone else's asset as an example, a LoRA as the base.
    for (body, field) in [
        (json!({"name": "x"}), "base_model"),
        (
            json!({"name": "x", "base_model": "tiny", "provider": "openai"}),
            "provider",
        ),
        (
            json!({"name": "x", "base_model": "tiny", "examples": [theirs]}),
            "examples[0]",
        ),
        (json!({"name": "x", "base_model": "nope"}), "base_model"),
        (
            json!({"name": "x", "base_model": id, "loras": [{"model": "tiny"}]}),
            "loras[0].model",
        ),
        (
            json!({"name": "x", "base_model": "tiny", "aliases": ["a"]}),
            "aliases",
        ),
        (
            json!({"name": "x", "base_model": "tiny", "defaults": {"steps": 100000}}),
            "defaults.steps",
        ),
        (
            json!({"name": "x", "base_model": "tiny", "defaults": {"guidance": 99}}),
            "defaults.guidance",
        ),
    ] {
        let (s, e) = t
            .json(Method::POST, "/v1/models", &key, Some(body.clone()))
            .await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {e}"
        );
    }
    // A composition of a composition runs the first one's base.
    let (s, c2) = t
        .json(
            Method::POST,
            "/v1/models",
            &key,
            Some(json!({"name": "layered", "base_model": id, "defaults": {"steps": 3}})),
        )
        .await;
    assert_eq!(s, 201, "{c2}");
    assert_eq!(c2["base_model"], m["base_model"], "{c2}");

    // Another user: 404 on every route of a private model; the lists leave it out.
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "y"}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/copy"), Some(json!({}))),
        (
            Method::POST,
            format!("{path}/transfer"),
            Some(json!({"to": "ned"})),
        ),
        (Method::GET, format!("{path}/presets"), None),
        (
            Method::POST,
            format!("{path}/presets"),
            Some(json!({"name": "p"})),
        ),
        (Method::GET, format!("/v1/public/models/{id}"), None),
    ] {
        let (s, e) = t.json(method.clone(), &p, &other, body).await;
        assert_eq!(s, 404, "{method} {p}: {e}");
    }
    let listed = |key: String, q: &'static str| {
        let t = &t;
        async move {
            let (s, l) = t
                .json(Method::GET, &format!("/v1/models{q}"), &key, None)
                .await;
            assert_eq!(s, 200, "{l}");
            l["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(listed(key.clone(), "").await.contains(&id));
    assert!(!listed(other.clone(), "").await.contains(&id));
    assert_eq!(listed(key.clone(), "?scope=mine").await.len(), 2);
    assert!(listed(admin.clone(), "?scope=all").await.contains(&id));
    let (s, _) = t
        .json(Method::GET, "/v1/models?scope=all", &other, None)
        .await;
    assert_eq!(s, 403);
    // Keyless: nothing private.
    let anon = |p: String| {
        let t = &t;
        async move { get(t.req(Method::GET, &p, None).send().await.unwrap()).await }
    };
    assert_eq!(anon(format!("/v1/public/models/{id}")).await.0, 404);
    assert_eq!(anon(path.clone()).await.0, 401);

    // Unlisted: by id to others and without a key; still not theirs to write (403).
    let (s, u) = t
        .json(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"privacy": "unlisted"})),
        )
        .await;
    assert_eq!((s, u["privacy"].as_str()), (200, Some("unlisted")), "{u}");
    assert_eq!(u["description"], "## Mo\nsoft light");
    let (s, seen) = t.json(Method::GET, &path, &other, None).await;
    assert_eq!((s, seen["source"].is_null()), (200, true), "{seen}");
    for (method, p, body) in [
        (Method::PATCH, path.clone(), Some(json!({"name": "y"}))),
        (Method::DELETE, path.clone(), None),
        (
            Method::POST,
            format!("{path}/transfer"),
            Some(json!({"to": "ned"})),
        ),
        (
            Method::POST,
            format!("{path}/presets"),
            Some(json!({"name": "p"})),
        ),
    ] {
        let (s, e) = t.json(method.clone(), &p, &other, body).await;
        assert_eq!(s, 403, "{method} {p}: {e}");
    }
    let (s, pub_one) = anon(format!("/v1/public/models/{id}")).await;
    assert_eq!(
        (s, pub_one["name"].as_str()),
        (200, Some("Mo's look")),
        "{pub_one}"
    );
    let (_, l) = anon("/v1/public/models".into()).await;
    assert_eq!(l["count"], 0, "unlisted is not listed: {l}");
    let (s, u) = t
        .json(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"privacy": "public"})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    let (_, l) = anon("/v1/public/models".into()).await;
    assert_eq!(l["data"][0]["id"], id.as_str(), "{l}");
    assert!(listed(other.clone(), "?scope=public").await.contains(&id));

    // Copy: the other user's own model, over the same base, without the examples (they are
    // not theirs); the server's model copies into a composition over it.
    let (s, c) = t
        .json(
            Method::POST,
            &format!("{path}/copy"),
            &other,
            Some(json!({"name": "Ned's"})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(
        (c["owner_id"].as_str(), &c["base_model"], &c["examples"]),
        (Some(other_id.as_str()), &m["base_model"], &json!([])),
        "{c}"
    );
    let (s, e) = t
        .json(
            Method::POST,
            &format!("{path}/copy"),
            &other,
            Some(json!({"copy_examples": true})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("examples[0]")),
        "{e}"
    );
    let (s, c) = t
        .json(
            Method::POST,
            "/v1/models/tiny/copy",
            &other,
            Some(json!({})),
        )
        .await;
    assert_eq!((s, c["name"].as_str()), (201, Some("tiny")), "{c}");
    // A model that compositions run is not deleted under them.
    let (s, e) = t
        .json(Method::DELETE, "/v1/models/tiny", &admin, None)
        .await;
    assert_eq!(
        (s, e["error"]["type"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    // The server's models: admins only, and nobody's to transfer.
    let (s, _) = t
        .json(
            Method::PATCH,
            "/v1/models/tiny",
            &key,
            Some(json!({"beta": true})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/models/tiny/transfer",
            &admin,
            Some(json!({"to": "mo"})),
        )
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("to")), "{e}");

    // Transfer: the model is Ned's; Mo no longer writes it.
    let (s, e) = t
        .json(
            Method::POST,
            &format!("{path}/transfer"),
            &key,
            Some(json!({"to": "nobody"})),
        )
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("to")), "{e}");
    let (s, moved) = t
        .json(
            Method::POST,
            &format!("{path}/transfer"),
            &key,
            Some(json!({"to": "ned"})),
        )
        .await;
    assert_eq!(
        (s, moved["owner_id"].as_str()),
        (200, Some(other_id.as_str())),
        "{moved}"
    );
    assert_eq!(
        moved["examples"],
        json!([]),
        "Mo's assets stay Mo's: {moved}"
    );
    let (s, _) = t
        .json(Method::PATCH, &path, &key, Some(json!({"name": "back"})))
        .await;
    assert_eq!(s, 403);
    let (s, _) = t
        .json(
            Method::PATCH,
            &path,
            &other,
            Some(json!({"privacy": "private"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = t.json(Method::GET, &path, &key, None).await;
    assert_eq!(s, 404, "private again, and no longer Mo's");
    let (s, _) = t.json(Method::DELETE, &path, &other, None).await;
    assert_eq!(s, 204);
    let (s, _) = t.json(Method::GET, &path, &other, None).await;
    assert_eq!(s, 404);
    t.shutdown().await;
}

/// Uploads in parts: announced, parts sent to their signed URLs in any order (no key; a
/// part sent again replaces the first), completed into the caller's asset in its collection;
/// every route 404 to another user; missing parts, bad files and closed uploads answered
/// with the field; a restart in the middle loses no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_parts_make_an_asset() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let t = TestServer::start_in(dir.clone(), |c| c.limits.max_upload_bytes = 1 << 20).await;
    let (key, _) = t.user("upa").await;
    let (other, _) = t.user("upb").await;
    let (_, col) = t
        .json(
            Method::POST,
            "/v1/collections",
            &key,
            Some(json!({"name": "inbox"})),
        )
        .await;
    let col = col["id"].as_str().unwrap().to_string();
    let image = png(64, 48);
    let half = image.len() / 2;
    let announce = |body: Value| {
        let (t, key) = (&t, key.clone());
        async move { t.json(Method::POST, "/v1/uploads", &key, Some(body)).await }
    };
    let (s, u) = announce(json!({
        "file_name": "photo.png", "file_size": image.len(), "content_type": "image/png",
        "parts": 2, "collection_ids": [col], "name": "holiday"
    }))
    .await;
    assert_eq!((s, u["status"].as_str()), (201, Some("pending")), "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    let urls: Vec<String> = u["part_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].starts_with(&format!("{}/v1/uploads/{id}/parts/1?", t.base)));
    let http = reqwest::Client::new();
    let put = |url: String, body: Vec<u8>| {
        let http = http.clone();
        async move { get(http.put(url).body(body).send().await.unwrap()).await }
    };
    let (s, p) = put(urls[1].clone(), image[half..].to_vec()).await;
    assert_eq!((s, p["number"].as_u64()), (200, Some(2)), "{p}");
    let (s, _) = put(urls[0].clone(), b"wrong bytes".to_vec()).await;
    assert_eq!(s, 200);
    // A signature of part 1 does not open part 2; a tampered one nothing.
    let (s, _) = put(urls[0].replace("/parts/1?", "/parts/2?"), vec![1]).await;
    assert_eq!(s, 401);
    let (s, _) = put(urls[0].replace("sig=", "sig=0"), vec![1]).await;
    assert_eq!(s, 401);
    // Unsigned: the owner's key, and 404 to anyone else.
    let path = format!("/v1/uploads/{id}/parts/1");
    let (s, _) = get(t
        .req(Method::PUT, &path, Some(&other))
        .body(vec![1])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(s, 404);
    for (method, p) in [
        (Method::GET, format!("/v1/uploads/{id}")),
        (Method::POST, format!("/v1/uploads/{id}/complete")),
        (Method::DELETE, format!("/v1/uploads/{id}")),
    ] {
        let (s, _) = t.json(method.clone(), &p, &other, None).await;
        assert_eq!(s, 404, "{method} {p}");
    }
    let (_, list) = t.json(Method::GET, "/v1/uploads", &other, None).await;
    assert_eq!(list["data"], json!([]));

    // A restart between parts: the parts received and the URLs handed out stay good.
    t.shutdown().await;
    let t = TestServer::start_in(dir, |c| c.limits.max_upload_bytes = 1 << 20).await;
    let moved = |url: &str| {
        let rest = &url[url.find("/v1/").unwrap()..];
        format!("{}{rest}", t.base)
    };
    let (s, _) = get(t
        .http
        .put(moved(&urls[0]))
        .body(image[..half].to_vec())
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(s, 200, "part 1 sent again replaces the first");
    let (s, u) = t
        .json(Method::GET, &format!("/v1/uploads/{id}"), &key, None)
        .await;
    assert_eq!(
        (s, u["received"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{u}"
    );
    let (s, u) = t
        .json(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            &key,
            None,
        )
        .await;
    assert_eq!((s, u["status"].as_str()), (200, Some("complete")), "{u}");
    assert_eq!(u["part_urls"], json!([]));
    let asset = u["asset_id"].as_str().unwrap().to_string();
    let (s, a) = t
        .json(Method::GET, &format!("/v1/assets/{asset}"), &key, None)
        .await;
    assert_eq!(
        (s, a["name"].as_str(), a["width"].as_u64()),
        (200, Some("holiday"), Some(64)),
        "{a}"
    );
    let (s, _) = t
        .json(Method::GET, &format!("/v1/assets/{asset}"), &other, None)
        .await;
    assert_eq!(s, 404, "the uploader's alone");
    assert_eq!(a["bytes"].as_u64(), Some(image.len() as u64));
    let body = t
        .req(
            Method::GET,
            &format!("/v1/assets/{asset}/content"),
            Some(&key),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), image.as_slice());
    let (_, c) = t
        .json(Method::GET, &format!("/v1/collections/{col}"), &key, None)
        .await;
    assert_eq!(c["asset_count"].as_u64(), Some(1), "{c}");
    // Completing again answers the same; a part now is a conflict.
    let (s, again) = t
        .json(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            &key,
            None,
        )
        .await;
    assert_eq!((s, again["asset_id"].as_str()), (200, Some(asset.as_str())));
    let (s, e) = get(t
        .http
        .put(moved(&urls[1]))
        .body(vec![1])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(s, 409, "{e}");

    // Missing parts: 422 naming `parts`, and the upload stays open.
    let announce = |body: Value| {
        let (t, key) = (&t, key.clone());
        async move { t.json(Method::POST, "/v1/uploads", &key, Some(body)).await }
    };
    let (_, u) = announce(
        json!({"file_name": "b.png", "file_size": 10, "content_type": "image/png", "parts": 2}),
    )
    .await;
    let open = u["id"].as_str().unwrap().to_string();
    let (s, e) = t
        .json(
            Method::POST,
            &format!("/v1/uploads/{open}/complete"),
            &key,
            None,
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("parts")),
        "{e}"
    );
    // A file that is not an image: 422 naming `file`, and the upload failed.
    let (_, u) = announce(
        json!({"file_name": "c.png", "file_size": 4, "content_type": "image/png", "parts": 1}),
    )
    .await;
    let bad = u["id"].as_str().unwrap().to_string();
    let url = u["part_urls"][0]["url"].as_str().unwrap().to_string();
    let (s, _) = put(url, b"text".to_vec()).await;
    assert_eq!(s, 200);
    let (s, e) = t
        .json(
            Method::POST,
            &format!("/v1/uploads/{bad}/complete"),
            &key,
            None,
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("file")),
        "{e}"
    );
    let (_, u) = t
        .json(Method::GET, &format!("/v1/uploads/{bad}"), &key, None)
        .await;
    assert_eq!(u["status"], "failed", "{u}");
    assert!(
        u["error"]
            .as_str()
            .unwrap()
            .contains("not a supported image"),
        "{u}"
    );
    // Announcements beyond the limits, each naming its field.
    for (body, status, field) in [
        (
            json!({"file_name": "d", "file_size": 2 << 20, "content_type": "image/png", "parts": 1}),
            413,
            "file_size",
        ),
        (
            json!({"file_name": "d", "file_size": 5, "content_type": "image/png", "parts": 6}),
            422,
            "parts",
        ),
        (
            json!({"file_name": "", "file_size": 5, "content_type": "image/png", "parts": 1}),
            422,
            "file_name",
        ),
        (
            json!({"file_name": "d", "file_size": 5, "content_type": "image/png", "parts": 1, "collection_ids": ["col_nope"]}),
            422,
            "collection_ids[0]",
        ),
    ] {
        let (s, e) = announce(body.clone()).await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (status, Some(field)),
            "{body} → {e}"
        );
    }
    // Abandoned: deleted with its parts.
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/uploads/{open}"), &key, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .json(Method::GET, &format!("/v1/uploads/{open}"), &key, None)
        .await;
    assert_eq!(s, 404);
    let (_, list) = t.json(Method::GET, "/v1/uploads", &key, None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "{list}");
    t.shutdown().await;
}

/// Bulk downloads: assets, a job's outputs, in one ZIP streamed from a signed URL (no key),
/// named by the options; another user's download and archive 404; bad names 422 with the
/// field; an asset deleted since is left out; a restart loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_stream_a_zip_of_assets() {
    use std::io::Read;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let t = TestServer::start_in(dir.clone(), |_| {}).await;
    let (key, _) = t.user("dla").await;
    let (other, _) = t.user("dlb").await;
    let a = t.upload(&key, png(8, 8)).await;
    let b = t.upload(&key, png(6, 4)).await;
    let theirs = t.upload(&other, png(8, 8)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "upscale", "input": {"image": a, "factor": 2}}),
        )
        .await;
    let job = t.wait(&key, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let out = job["outputs"][0]["asset_id"].as_str().unwrap().to_string();
    let (s, d) = t
        .json(
            Method::POST,
            "/v1/downloads",
            &key,
            Some(json!({"asset_ids": [a, b, a], "job_ids": [job_id]})),
        )
        .await;
    assert_eq!((s, d["asset_count"].as_u64()), (201, Some(3)), "{d}");
    let id = d["id"].as_str().unwrap().to_string();
    let url = d["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (status, ctype, r.bytes().await.unwrap().to_vec())
        }
    };
    let content = |asset: &str| {
        let (t, key, asset) = (&t, key.clone(), asset.to_string());
        async move {
            t.req(
                Method::GET,
                &format!("/v1/assets/{asset}/content"),
                Some(&key),
            )
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
        }
    };
    let unzip = |bytes: Vec<u8>| {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP");
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                (f.name().to_string(), data)
            })
            .collect::<Vec<_>>()
    };
    let (s, ctype, bytes) = fetch(url.clone()).await;
    assert_eq!((s, ctype.as_deref()), (200, Some("application/zip")));
    let files = unzip(bytes);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("uploads/{a}.png"),
            format!("uploads/{b}.png"),
            format!("{job_id}/{out}.png")
        ]
    );
    assert_eq!(files[0].1, content(&a).await);
    assert_eq!(files[2].1, content(&out).await);

    // Others: 404 on the download, its archive with their key; a bad signature 401.
    let (s, _) = t
        .json(Method::GET, &format!("/v1/downloads/{id}"), &other, None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .json(
            Method::GET,
            &format!("/v1/downloads/{id}/archive"),
            &other,
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = fetch(url.replace("sig=", "sig=0")).await;
    assert_eq!(s, 401);
    // What a download refuses, by field.
    for (body, field) in [
        (json!({"asset_ids": [theirs]}), "asset_ids[0]"),
        (json!({}), "asset_ids"),
        (json!({"job_ids": ["job_nope"]}), "job_ids[0]"),
        (json!({"models": ["nope"]}), "models[0]"),
        (
            json!({"asset_ids": [a], "name_template": "x".repeat(201)}),
            "name_template",
        ),
    ] {
        let (s, e) = t
            .json(Method::POST, "/v1/downloads", &key, Some(body.clone()))
            .await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{body} → {e}"
        );
    }

    // A template, flat; an asset deleted since is left out; after a restart the URL works.
    let (_, d) = t
        .json(
            Method::POST,
            "/v1/downloads",
            &key,
            Some(json!({"asset_ids": [a, b], "name_template": "img <num>", "flat": true})),
        )
        .await;
    let flat_url = d["url"].as_str().unwrap().to_string();
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{b}"), &key, None)
        .await;
    assert_eq!(s, 204);
    t.shutdown().await;
    let t = TestServer::start_in(dir, |_| {}).await;
    let moved = format!("{}{}", t.base, &flat_url[flat_url.find("/v1/").unwrap()..]);
    let (s, _, bytes) = fetch(moved).await;
    assert_eq!(s, 200);
    let names: Vec<String> = unzip(bytes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["img 0.png"]);
    let (s, d) = t
        .json(Method::GET, &format!("/v1/downloads/{id}"), &key, None)
        .await;
    assert_eq!((s, d["asset_count"].as_u64()), (200, Some(3)), "{d}");

    // Revoking the owner's key ends the archive URLs and part URLs issued before.
    let (s, up) = t
        .json(
            Method::POST,
            "/v1/uploads",
            &key,
            Some(json!({"file_name": "r.png", "file_size": 3, "content_type": "image/png", "parts": 1})),
        )
        .await;
    assert_eq!(s, 201, "{up}");
    let part_url = up["part_urls"][0]["url"].as_str().unwrap().to_string();
    let archive_url = format!("{}{}", t.base, &url[url.find("/v1/").unwrap()..]);
    let (_, me) = t.json(Method::GET, "/v1/me", &key, None).await;
    let key_id = me["key_id"].as_str().unwrap();
    let (s, _) = t
        .json(
            Method::DELETE,
            &format!("/v1/keys/{key_id}"),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _, _) = fetch(archive_url).await;
    assert_eq!(s, 401, "the archive URL is revoked with the key");
    let s = http
        .put(part_url)
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 401, "the part URL is revoked with the key");
    t.shutdown().await;
}

/// The prompt check: a model's tokenizer counts a prompt's tokens and windows (SD: chunks of
/// 75, none dropped) and reads its emphasis; another user's private model is 404; a prompt
/// over the length limit 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_checked_against_the_models_tokenizer() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    easel_diffusion::tiny::make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (key, _) = t.user("pca").await;
    let (other, _) = t.user("pcb").await;
    let check = |who: &str, model: &str, prompt: &str| {
        let (t, who) = (&t, who.to_string());
        let path = format!("/v1/models/{model}/prompt-check?prompt={}", percent(prompt));
        async move { t.json(Method::GET, &path, &who, None).await }
    };
    let (s, c) = check(&key, "tiny", "a (red:1.5) fox").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (
            c["window"].as_u64(),
            c["chunks"].as_u64(),
            c["truncated"].as_u64()
        ),
        (Some(75), Some(1), Some(0)),
        "{c}"
    );
    assert!(c["tokens"].as_u64().unwrap() >= 3, "{c}");
    assert_eq!(
        (c["max_weight"].as_f64(), c["min_weight"].as_f64()),
        (Some(1.5), Some(1.0)),
        "{c}"
    );
    let long = "a red fox in the snow, ".repeat(20);
    let (_, c) = check(&key, "tiny", &long).await;
    assert!(
        c["chunks"].as_u64().unwrap() >= 2 && c["truncated"] == 0,
        "{c}"
    );
    // A composition is checked with its base's tokenizer; others' private models are 404.
    let (s, mine) = t
        .json(
            Method::POST,
            "/v1/models",
            &key,
            Some(json!({"name": "Mine", "base_model": "tiny"})),
        )
        .await;
    assert_eq!(s, 201, "{mine}");
    let mine = mine["id"].as_str().unwrap().to_string();
    let (s, c) = check(&key, &mine, "a fox").await;
    assert_eq!((s, c["chunks"].as_u64()), (200, Some(1)), "{c}");
    let (s, _) = check(&other, &mine, "a fox").await;
    assert_eq!(s, 404);
    let (s, _) = check(&key, "nope", "a fox").await;
    assert_eq!(s, 404);
    let (s, e) = check(&key, "tiny", &"x".repeat(4001)).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("prompt")),
        "{e}"
    );
    t.shutdown().await;
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canvases_save_under_their_lock_and_keep_snapshots() {
    use std::io::Read;
    let t = TestServer::start(|_| {}).await;
    let (key, uid) = t.user("cva").await;
    let (other, _) = t.user("cvb").await;
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let (s, c) = t
        .json(
            Method::POST,
            "/v1/canvases",
            &key,
            Some(
                json!({"document": {"layers": [1]}, "name": "board", "thumbnail": b64(png(4, 4))}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    insta::assert_json_snapshot!("native_canvas", c, {
        ".asset.id" => "[asset id]", ".asset.url" => "[signed url]", ".thumbnail_id" => "[asset id]",
        ".asset.created_at" => "[time]", ".asset.updated_at" => "[time]"
    });
    let id = c["asset"]["id"].as_str().unwrap().to_string();
    let thumb = c["thumbnail_id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            c["asset"]["kind"].as_str(),
            c["asset"]["mime_type"].as_str(),
            c["version"].as_u64(),
            &c["document"]
        ),
        (
            Some("canvas"),
            Some("application/json"),
            Some(1),
            &json!({"layers": [1]})
        )
    );
    // The thumbnail is an image derived from the canvas, hidden from the owner's lists.
    let (_, th) = t
        .json(Method::GET, &format!("/v1/assets/{thumb}"), &key, None)
        .await;
    assert_eq!(th["parent_id"].as_str(), Some(id.as_str()), "{th}");
    assert_eq!(th["hidden"], true, "{th}");
    let (_, list) = t
        .json(Method::GET, "/v1/assets?limit=100", &key, None)
        .await;
    assert!(!list.to_string().contains(&thumb), "{list}");

    // The content is the current document, revalidated on each read.
    let content = || async {
        let r = t
            .req(Method::GET, &format!("/v1/assets/{id}/content"), Some(&key))
            .send()
            .await
            .unwrap();
        let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_string();
        let (ctype, cache, etag) = (h("content-type"), h("cache-control"), h("etag"));
        (ctype, cache, etag, r.text().await.unwrap())
    };
    let (ctype, cache, etag1, body) = content().await;
    assert_eq!(
        (ctype.as_str(), cache.as_str(), body.as_str()),
        ("application/json", "private, no-cache", r#"{"layers":[1]}"#)
    );

    // Others: 404 on every canvas route and on the content.
    for (m, path, body) in [
        (Method::GET, format!("/v1/canvases/{id}"), None),
        (
            Method::PUT,
            format!("/v1/canvases/{id}"),
            Some(json!({"document": []})),
        ),
        (
            Method::POST,
            format!("/v1/canvases/{id}/lock"),
            Some(json!({"expires_at": "2099-01-01T00:00:00Z"})),
        ),
        (
            Method::POST,
            format!("/v1/canvases/{id}/unlock"),
            Some(json!({"force": true})),
        ),
        (Method::GET, format!("/v1/canvases/{id}/snapshots"), None),
        (Method::GET, format!("/v1/assets/{id}/content"), None),
        (Method::DELETE, format!("/v1/assets/{id}"), None),
    ] {
        let (s, e) = t.json(m.clone(), &path, &other, body).await;
        assert_eq!(s, 404, "{m} {path}: {e}");
    }
    // An image is not a canvas.
    let img = t.upload(&key, png(4, 4)).await;
    let (s, _) = t
        .json(Method::GET, &format!("/v1/canvases/{img}"), &key, None)
        .await;
    assert_eq!(s, 404);

    // The admin locks it: the owner's save, lock and delete are refused naming the admin.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let (s, l) = t
        .json(
            Method::POST,
            &format!("/v1/canvases/{id}/lock"),
            ADMIN_KEY,
            Some(json!({"expires_at": soon})),
        )
        .await;
    assert_eq!(s, 200, "{l}");
    let token = l["lock"]["id"].as_str().unwrap().to_string();
    let (_, seen) = t
        .json(Method::GET, &format!("/v1/canvases/{id}"), &key, None)
        .await;
    assert_eq!(seen["lock"]["id"], Value::Null, "the token is the holder's");
    assert_eq!(seen["lock"]["holder_name"], "admin", "{seen}");
    for (m, path, body) in [
        (
            Method::PUT,
            format!("/v1/canvases/{id}"),
            json!({"document": {"layers": [2]}}),
        ),
        (
            Method::POST,
            format!("/v1/canvases/{id}/lock"),
            json!({"expires_at": soon}),
        ),
        (Method::POST, format!("/v1/canvases/{id}/unlock"), json!({})),
        (
            Method::PATCH,
            format!("/v1/assets/{id}"),
            json!({"name": "renamed"}),
        ),
    ] {
        let (s, e) = t.json(m.clone(), &path, &key, Some(body)).await;
        assert_eq!(s, 409, "{m} {path}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains("admin"),
            "{e}"
        );
    }
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{id}"), &key, None)
        .await;
    assert_eq!(s, 409);
    // With the token the save passes; the snapshot records who saved it.
    let (s, c) = t
        .json(
            Method::PUT,
            &format!("/v1/canvases/{id}"),
            ADMIN_KEY,
            Some(json!({"document": {"layers": [2]}, "lock_id": token, "privacy": "unlisted"})),
        )
        .await;
    assert_eq!((s, c["version"].as_u64()), (200, Some(2)), "{c}");
    assert_eq!(
        c["asset"]["privacy"], "unlisted",
        "the holder edits the record too"
    );
    let (_, _, etag2, body) = content().await;
    assert_ne!(etag1, etag2);
    assert_eq!(body, r#"{"layers":[2]}"#);
    // The owner ends the lock with force, then saves without a snapshot, and with a new
    // thumbnail (the old one goes).
    let (s, _) = t
        .json(
            Method::POST,
            &format!("/v1/canvases/{id}/unlock"),
            &key,
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, c) = t
        .json(
            Method::PUT,
            &format!("/v1/canvases/{id}"),
            &key,
            Some(json!({"document": {"layers": [3]}, "snapshot": false, "thumbnail": b64(png(2, 2))})),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_ne!(c["thumbnail_id"].as_str(), Some(thumb.as_str()));
    let (s, _) = t
        .json(Method::GET, &format!("/v1/assets/{thumb}"), &key, None)
        .await;
    assert_eq!(s, 404, "the replaced thumbnail is deleted");
    let (_, snaps) = t
        .json(
            Method::GET,
            &format!("/v1/canvases/{id}/snapshots?limit=1"),
            &key,
            None,
        )
        .await;
    assert_eq!(
        snaps["data"][0]["document"],
        json!({"layers": [2]}),
        "{snaps}"
    );
    assert_ne!(snaps["data"][0]["author_id"].as_str(), Some(uid.as_str()));
    let cursor = snaps["next_cursor"].as_str().unwrap();
    let (_, older) = t
        .json(
            Method::GET,
            &format!("/v1/canvases/{id}/snapshots?cursor={cursor}"),
            &key,
            None,
        )
        .await;
    assert_eq!(older["data"][0]["author_id"].as_str(), Some(uid.as_str()));
    assert_eq!(older["next_cursor"], Value::Null);

    // What a canvas refuses, by field.
    for (path, m, body, status, field) in [
        (
            "/v1/canvases".to_string(),
            Method::POST,
            json!({"document": 3}),
            422,
            "document",
        ),
        (
            "/v1/canvases".to_string(),
            Method::POST,
            json!({"document": {}, "parent_id": "ast_nope"}),
            422,
            "parent_id",
        ),
        (
            format!("/v1/canvases/{id}/lock"),
            Method::POST,
            json!({"expires_at": "2000-01-01T00:00:00Z"}),
            422,
            "expires_at",
        ),
        (
            format!("/v1/canvases/{id}"),
            Method::PUT,
            json!({"lock_expires_at": soon}),
            422,
            "lock_expires_at",
        ),
        (
            format!("/v1/canvases/{id}"),
            Method::PUT,
            json!({"thumbnail": "!!"}),
            422,
            "thumbnail",
        ),
    ] {
        let (s, e) = t.json(m, &path, &key, Some(body.clone())).await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (status, Some(field)),
            "{body} → {e}"
        );
    }
    let big = json!({"document": ["x".repeat(2 * 1024 * 1024)]});
    let (s, _) = t.json(Method::POST, "/v1/canvases", &key, Some(big)).await;
    assert_eq!(s, 413);

    // A canvas in an archive is its document, as JSON.
    let (_, d) = t
        .json(
            Method::POST,
            "/v1/downloads",
            &key,
            Some(json!({"asset_ids": [id]})),
        )
        .await;
    let bytes = reqwest::get(d["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut f = z.by_index(0).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(
        (f.name().to_string(), text.as_str()),
        ("uploads/board.json".to_string(), r#"{"layers":[3]}"#)
    );
    drop(f);

    // Deleted, it takes its thumbnail with it; a canvas is not an image input.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "upscale", "input": {"image": id, "factor": 2}})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("input.image")),
        "{e}"
    );
    let thumb = c["thumbnail_id"].as_str().unwrap();
    let (s, _) = t
        .json(Method::DELETE, &format!("/v1/assets/{id}"), &key, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .json(Method::GET, &format!("/v1/assets/{thumb}"), &key, None)
        .await;
    assert_eq!(s, 404);
    t.shutdown().await;
}
