//! Snapshots of the native API's wire shapes (ids, times and signatures redacted).

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_wire_shapes() {
    let t = TestServer::start(|c| {
        c.workers = 0;
        // The webhook's host never resolves (`.test`): an operator-allowed name is not looked up.
        c.queue.webhook_policy =
            easel_net::Policy::allowing(easel_net::Allow::parse_list("example.test").unwrap());
    })
    .await;
    let (key, _) = t.user("snap").await;
    let img = t.upload(&key, png(8, 8)).await;
    let job = t
        .submit(
            &key,
            json!({"task": "pixelate", "input": {"image": img, "grid_size": 4, "palette_size": 2},
            "priority": 5, "webhook": {"url": "https://example.test/hook"}}),
        )
        .await;
    insta::assert_json_snapshot!("job_created", job, {
        ".id" => "[job id]", ".owner_id" => "[user id]", ".input.image" => "[asset id]", ".created_at" => "[time]",
        ".history[].at" => "[time]", ".urls.get" => "[url]", ".urls.cancel" => "[url]", ".urls.events" => "[url]",
    });
    let (s, err) = t
        .json(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"task": "upscale", "input": {"image": img, "factor": 0.5}})),
        )
        .await;
    assert_eq!(s, 422);
    insta::assert_json_snapshot!("error_invalid_field", err);
    let (_, list) = t.json(Method::GET, "/v1/jobs?limit=1", &key, None).await;
    insta::assert_json_snapshot!("job_list", list, {
        ".data[].id" => "[job id]", ".data[].owner_id" => "[user id]", ".data[].input.image" => "[asset id]", ".data[].created_at" => "[time]",
        ".data[].urls.get" => "[url]", ".data[].urls.cancel" => "[url]", ".data[].urls.events" => "[url]",
    });
    let (_, created) = t
        .json(
            Method::POST,
            "/v1/keys",
            ADMIN_KEY,
            Some(json!({"name": "ci", "role": "admin"})),
        )
        .await;
    assert_eq!(
        created["api_key"], created["id"],
        "the pair's first part is the key id"
    );
    assert_eq!(
        created["key"],
        format!(
            "esk_{}_{}",
            created["id"].as_str().unwrap(),
            created["api_secret"].as_str().unwrap()
        )
    );
    insta::assert_json_snapshot!("key_created", created, {
        ".key" => "[key]", ".id" => "[key id]", ".api_key" => "[key id]", ".api_secret" => "[secret]", ".user_id" => "[user id]", ".prefix" => "[prefix]", ".created_at" => "[time]",
    });
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_job_wire_shape() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    easel_diffusion::tiny::make_tiny(&dir.path().join("models/tiny"), "sd15", 0).unwrap();
    let t = TestServer::start_in(dir, |c| {
        c.workers = 0;
        c.scan_models = true;
    })
    .await;
    let (key, _) = t.user("snap").await;
    let job = t
        .submit(
            &key,
            json!({"task": "txt2img", "input": {"prompt": "a (red:1.2) fox", "negative_prompt": "blurry",
                "seed": 1234, "scheduler": "dpmpp_2m_karras", "loras": [], "preview_every": 5}}),
        )
        .await;
    insta::assert_json_snapshot!("txt2img_job_created", job, {
        ".id" => "[job id]", ".owner_id" => "[user id]", ".created_at" => "[time]",
        ".history[].at" => "[time]", ".urls.get" => "[url]", ".urls.cancel" => "[url]", ".urls.events" => "[url]",
    });
    t.shutdown().await;
}
