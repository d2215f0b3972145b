//! The Replicate/Cog predictions dialect at `/replicate/v1` against a real server with a
//! tiny SD 1.5 model (64x64, 2 steps through the model's registry defaults): create (POST,
//! PUT with an id, by `owner/name`), `Prefer: wait`, get, list, cancel, models resolved
//! through aliases (`version`, `model_variant`), logs and metrics, webhooks carrying the
//! prediction, every error in FastAPI's shapes, snapshots of the wire shapes, and the
//! official `replicate` Python package when `EASEL_PYTHON` names a Python that has it.

mod common;

use std::time::Duration;

use common::*;
use easel_diffusion::tiny::make_tiny;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

const PRED: &str = "/replicate/v1/predictions";
const SANA_VERSION: &str = "c6b5d2b7459910fec94432e9e1203c3cdce92d6db20f714f1355747990b52fa6";

/// A server with the tiny model `tiny` (64x64, 2 steps by default), also known by the Sana
/// spec's version hash and one of its model variants.
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
            Some(json!({"defaults": {"width": 64, "height": 64, "steps": 2},
                "aliases": [SANA_VERSION, "600M-512px-multilang"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    t
}

async fn send(r: reqwest::RequestBuilder) -> (u16, Value, HeaderMap) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, headers)
}

/// A request with the spec's `x-api-market-key` header.
fn market(t: &TestServer, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    t.http
        .request(method, format!("{}{path}", t.base))
        .header("x-api-market-key", key)
}

async fn post(t: &TestServer, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = send(t.req(Method::POST, path, Some(key)).json(&body)).await;
    (s, v)
}

async fn get(t: &TestServer, path: &str, key: &str) -> (u16, Value) {
    let (s, v, _) = send(t.req(Method::GET, path, Some(key))).await;
    (s, v)
}

/// Poll a prediction until it ends.
async fn finished(t: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (s, v) = get(t, &format!("{PRED}/{id}"), key).await;
        assert_eq!(s, 200, "{v}");
        if ["succeeded", "failed", "canceled"].contains(&v["status"].as_str().unwrap()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("prediction {id} never finished");
}

async fn image_at(t: &TestServer, url: &str) -> image::DynamicImage {
    let resp = t.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    decode(&resp.bytes().await.unwrap())
}

/// Every run-dependent string of a value made stable for a snapshot: this server's URLs,
/// loopback ports, times, ULIDs and asset ids.
fn scrub(v: Value) -> Value {
    match v {
        Value::String(s) => {
            let is_ulid = s.len() == 26
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
            let is_time = s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T';
            if s.starts_with("http://127.0.0.1:") {
                json!("[url]")
            } else if s.starts_with("ast_") {
                json!("[asset]")
            } else if is_ulid
                || regex::Regex::new(r"^[a-z]{3}_[0-9a-z]{26}$")
                    .unwrap()
                    .is_match(&s)
            {
                json!("[id]")
            } else if is_time {
                json!("[time]")
            } else {
                // Inside text: ports, job ids and drawn seeds.
                let s = regex::Regex::new(r"127\.0\.0\.1:\d+")
                    .unwrap()
                    .replace_all(&s, "127.0.0.1:[port]");
                let s = regex::Regex::new(r"\b([a-z]{3})_[0-9a-z]{26}\b")
                    .unwrap()
                    .replace_all(&s, "${1}_[id]");
                let s = regex::Regex::new(r"seed \d+")
                    .unwrap()
                    .replace_all(&s, "seed [seed]");
                json!(s)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let v = if ["predict_time", "total_time"].contains(&k.as_str()) && v.is_number()
                    {
                        json!("[seconds]")
                    } else if k == "seed" && v.is_number() {
                        json!("[seed]")
                    } else {
                        scrub(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn redacted(mut v: Value) -> Value {
    for k in ["id", "created_at", "started_at", "completed_at"] {
        if !v[k].is_null() {
            v[k] = json!(format!("[{k}]"));
        }
    }
    for k in ["get", "cancel"] {
        v["urls"][k] = json!("[url]");
    }
    match &v["output"] {
        Value::String(_) => v["output"] = json!("[url]"),
        Value::Array(a) => v["output"] = json!(vec!["[url]"; a.len()]),
        _ => {}
    }
    for k in ["predict_time", "total_time"] {
        if !v["metrics"][k].is_null() {
            v["metrics"][k] = json!("[seconds]");
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_run_and_answer_in_replicates_shape() {
    let t = server(|_| {}).await;
    let (key, _) = t.user("rita").await;

    // Create with the spec's body (version = the Sana hash, an alias of `tiny`) and the
    // spec's auth header: 201 `starting`.
    let body = json!({"version": SANA_VERSION, "input": {"prompt": "a cyberpunk cat",
        "negative_prompt": "", "guidance_scale": 5, "pag_guidance_scale": 2, "seed": 7}});
    let (s, created, _) = send(market(&t, Method::POST, PRED, &key).json(&body)).await;
    assert_eq!(s, 201, "{created}");
    insta::assert_json_snapshot!("replicate_created", redacted(created.clone()));
    assert_eq!(created["status"], "starting", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26, "Replicate-style id: {id}");
    assert_eq!(created["version"], SANA_VERSION);
    assert_eq!(created["model"], "easel/tiny");
    assert_eq!(created["input"], body["input"], "the input as sent");
    assert_eq!(
        created["urls"]["get"],
        format!("{}{PRED}/{id}", t.base),
        "{created}"
    );

    let done = finished(&t, &key, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let url = done["output"].as_str().expect("one image: a single URI");
    let img = image_at(&t, url).await;
    assert_eq!((img.width(), img.height()), (64, 64));
    let logs = done["logs"].as_str().unwrap();
    assert!(logs.contains("seed 7"), "{logs}");
    assert!(
        logs.contains("pag_guidance_scale 2 was not applied"),
        "{logs}"
    );
    // One tqdm-style line per denoising step (PNDM, the tiny model's scheduler, evaluates
    // the UNet steps + 1 times).
    let bars: Vec<&str> = logs.lines().filter(|l| l.contains('|')).collect();
    assert!(bars.len() >= 2, "{logs}");
    let n = bars.len();
    assert!(bars[0].ends_with(&format!("| 1/{n}")), "{logs}");
    assert!(bars[n - 1].starts_with("100%|##########|"), "{logs}");
    assert!(done["metrics"]["predict_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(done["metrics"]["image_count"], 1);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
    insta::assert_json_snapshot!("replicate_prediction_succeeded", redacted(done.clone()));
    // The same job natively; pag_guidance_scale kept with the request.
    let (_, native) = get(&t, &format!("/v1/jobs/job_{id}"), &key).await;
    insta::assert_json_snapshot!(
        "replicate_core_request",
        json!({"task": native["task"], "model": native["model"], "input": native["input"]})
    );
    assert_eq!(native["task"], "txt2img");
    assert_eq!(native["model"], "tiny");
    assert_eq!(native["input"]["guidance"], 5.0);
    let job = easel_store::jobs::get(&t.server().state.store.db, &format!("job_{id}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.request.unwrap()["input"]["pag_guidance_scale"], 2);

    // Prefer: wait answers when it finishes; several outputs are a list; the model by the
    // path's owner/name; Bearer auth.
    let (s, v, _) = send(
        t.req(
            Method::POST,
            "/replicate/v1/models/easel/tiny/predictions",
            Some(&key),
        )
        .header("Prefer", "wait")
        .json(&json!({"input": {"prompt": "two foxes", "num_outputs": 2, "width": 96, "seed": 3}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["model"], "easel/tiny");
    insta::assert_json_snapshot!("replicate_several_outputs", scrub(v.clone()));
    let outs = v["output"].as_array().expect("several images: a list");
    assert_eq!(outs.len(), 2);
    for u in outs {
        let img = image_at(&t, u.as_str().unwrap()).await;
        assert_eq!((img.width(), img.height()), (96, 64));
    }
    // Same seed, same pixels.
    let (_, again, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("Prefer", "wait=60")
            .json(&json!({"input": {"model_variant": "600M-512px-multilang", "prompt": "two foxes", "width": 96, "seed": 3}})),
    )
    .await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let a = image_at(&t, outs[0].as_str().unwrap()).await;
    let b = image_at(&t, again["output"].as_str().unwrap()).await;
    assert_eq!(a.to_rgb8().into_raw(), b.to_rgb8().into_raw());

    // img2img from a data URL, inpaint with a mask.
    let data = |png: Vec<u8>| {
        use base64::Engine;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        )
    };
    let (s, v, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("Prefer", "wait")
            .json(&json!({"input": {"prompt": "a fox", "image": data(png(64, 64)), "prompt_strength": 0.5}})),
    )
    .await;
    assert_eq!((s, &v["status"]), (201, &json!("succeeded")), "{v}");
    let (_, native) = get(
        &t,
        &format!("/v1/jobs/job_{}", v["id"].as_str().unwrap()),
        &key,
    )
    .await;
    assert_eq!(native["task"], "img2img");
    insta::assert_json_snapshot!(
        "replicate_img2img_core_request",
        scrub(json!({"task": native["task"], "model": native["model"], "input": native["input"]}))
    );
    let img = t.upload(&key, png(64, 64)).await;
    let mask = t.upload(&key, png(64, 64)).await;
    let (s, v, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("Prefer", "wait")
            .json(&json!({"input": {"prompt": "a fox", "image": format!("{}/v1/assets/{img}", t.base), "mask": mask}})),
    )
    .await;
    assert_eq!((s, &v["status"]), (201, &json!("succeeded")), "{v}");
    let (_, native) = get(
        &t,
        &format!("/v1/jobs/job_{}", v["id"].as_str().unwrap()),
        &key,
    )
    .await;
    assert_eq!(native["task"], "inpaint");
    assert_eq!(native["input"]["image"], img);
    insta::assert_json_snapshot!(
        "replicate_inpaint_core_request",
        scrub(json!({"task": native["task"], "model": native["model"], "input": native["input"]}))
    );

    // The list: newest first, every prediction of the caller, no one else's.
    let (s, page) = get(&t, PRED, &key).await;
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{page}");
    assert_eq!(ids[4], id);
    insta::assert_json_snapshot!("replicate_list", scrub(page.clone()));
    assert!(page["next"].is_null() && page["previous"].is_null());
    let (other, _) = t.user("otto").await;
    let (_, page) = get(&t, PRED, &other).await;
    assert_eq!(page["results"], json!([]));
    let (s, _) = get(&t, &format!("{PRED}/{id}"), &other).await;
    assert_eq!(s, 404, "another user's prediction is not found");

    // A prediction that fails: `failed`, the error, and the error in the logs.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/models",
            ADMIN_KEY,
            Some(json!({"name": "broken", "provider": "easel", "tasks": ["txt2img"],
                "provider_config": {"base_url": format!("http://127.0.0.1:{closed}"), "retries": 0}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v, _) = send(
        t.req(Method::POST, "/replicate/v1/models/easel/broken/predictions", Some(&key))
            .header("Prefer", "wait")
            .json(&json!({"input": {"prompt": "a fox", "seed": 1, "width": 64, "height": 64, "num_inference_steps": 2}})),
    )
    .await;
    assert_eq!((s, &v["status"]), (201, &json!("failed")), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("easel provider"),
        "{v}"
    );
    assert!(v["logs"].as_str().unwrap().contains("\nerror: "), "{v}");
    assert!(v["output"].is_null());
    insta::assert_json_snapshot!("replicate_failed", scrub(v.clone()));

    // Models and versions, as the clients look them up.
    let (s, m) = get(&t, "/replicate/v1/models/easel/tiny", &key).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["owner"].as_str(), m["name"].as_str()),
        (Some("easel"), Some("tiny"))
    );
    insta::assert_json_snapshot!("replicate_model", scrub(m.clone()));
    let (s, v) = get(
        &t,
        &format!("/replicate/v1/models/easel/tiny/versions/{SANA_VERSION}"),
        &key,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], SANA_VERSION);
    assert_eq!(
        v["openapi_schema"]["components"]["schemas"]["Output"]["format"],
        "uri"
    );
    insta::assert_json_snapshot!("replicate_version", scrub(v.clone()));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_is_idempotent_and_cancel_stops_predictions() {
    // No workers: predictions stay queued until canceled.
    let t = server(|c| c.workers = 0).await;
    let (key, _) = t.user("pat").await;
    let body = json!({"input": {"prompt": "a fox"}});
    let (s, first, _) = send(
        t.req(Method::PUT, &format!("{PRED}/my-id-1"), Some(&key))
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["id"], "my-id-1");
    assert_eq!(first["urls"]["get"], format!("{}{PRED}/my-id-1", t.base));
    let (s, again, _) = send(
        t.req(Method::PUT, &format!("{PRED}/my-id-1"), Some(&key))
            .json(&body),
    )
    .await;
    assert_eq!(s, 200, "the same id answers the first prediction: {again}");
    assert_eq!(again["created_at"], first["created_at"]);
    let (_, page) = get(&t, PRED, &key).await;
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        1,
        "nothing new ran"
    );
    // Another user may choose the same id.
    let (other, _) = t.user("quinn").await;
    let (s, theirs, _) = send(
        t.req(Method::PUT, &format!("{PRED}/my-id-1"), Some(&other))
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{theirs}");

    let (s, v) = get(&t, &format!("{PRED}/my-id-1"), &key).await;
    assert_eq!((s, &v["status"]), (200, &json!("starting")), "{v}");
    let (s, v) = post(&t, &format!("{PRED}/my-id-1/cancel"), &key, json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "canceled", "{v}");
    assert!(v["output"].is_null());
    insta::assert_json_snapshot!("replicate_canceled", scrub(v.clone()));
    // Canceling again answers it unchanged; theirs is untouched.
    let (s, v) = post(&t, &format!("{PRED}/my-id-1/cancel"), &key, json!({})).await;
    assert_eq!((s, &v["status"]), (200, &json!("canceled")));
    let (_, v) = get(&t, &format!("{PRED}/my-id-1"), &other).await;
    assert_eq!(v["status"], "starting");

    // A generated id cancels too, and `Prefer: wait=1` on a prediction that cannot run
    // answers `starting` after a second.
    let (s, v, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("Prefer", "wait=1")
            .json(&body),
    )
    .await;
    assert_eq!((s, &v["status"]), (201, &json!("starting")), "{v}");
    let generated = v["id"].as_str().unwrap().to_string();
    // A PUT naming a generated id answers that prediction: it never shadows it.
    let (s, same, _) = send(
        t.req(Method::PUT, &format!("{PRED}/{generated}"), Some(&key))
            .json(&body),
    )
    .await;
    assert_eq!(s, 200, "{same}");
    assert_eq!(same["created_at"], v["created_at"], "{same}");
    let (_, v) = post(&t, &format!("{PRED}/{generated}/cancel"), &key, json!({})).await;
    assert_eq!(v["status"], "canceled");
    let (_, page) = get(&t, PRED, &key).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 2, "{page}");
    t.shutdown().await;
}

/// A webhook the server may not reach is a 422 on the request's own field.
#[tokio::test]
async fn internal_webhooks_are_refused_on_their_field() {
    let t = server(|c| c.queue.webhook_policy = easel_net::Policy::public()).await;
    let (key, _) = t.user("mallory").await;
    for (body, loc) in [
        (
            json!({"input": {"prompt": "x"}, "webhook": "http://127.0.0.1:7878/v1/keys"}),
            json!(["body", "webhook"]),
        ),
        (
            json!({"input": {"prompt": "x"}, "webhook_completed": "http://169.254.169.254/"}),
            json!(["body", "webhook_completed"]),
        ),
    ] {
        let (s, v) = post(&t, PRED, &key, body.clone()).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["detail"][0]["loc"], loc, "{body}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_fastapis_shapes() {
    let t = server(|c| c.workers = 0).await;
    let (key, _) = t.user("erin").await;

    let mut shapes = serde_json::Map::new();
    // Auth.
    let (s, v, h) = send(t.req(Method::GET, PRED, None)).await;
    assert_eq!(s, 401, "{v}");
    shapes.insert("401_missing_key".into(), v.clone());
    assert!(v["detail"].as_str().unwrap().contains("API key"), "{v}");
    assert!(h.contains_key("www-authenticate"));
    let (s, _, _) = send(market(&t, Method::GET, PRED, "wrong")).await;
    assert_eq!(s, 401);
    let (s, _, _) = send(
        t.http
            .get(format!("{}{PRED}", t.base))
            .header("authorization", format!("Token {key}")),
    )
    .await;
    assert_eq!(s, 200, "Token scheme");

    // Validation: 422 at the wire field.
    let cases = [
        (
            json!({"input": {"width": 100}}),
            json!(["body", "input", "width"]),
        ),
        (
            json!({"input": {"guidance_scale": 25}}),
            json!(["body", "input", "guidance_scale"]),
        ),
        (
            json!({"input": {"pag_guidance_scale": 0.5}}),
            json!(["body", "input", "pag_guidance_scale"]),
        ),
        (
            json!({"input": {"num_inference_steps": 0}}),
            json!(["body", "input", "num_inference_steps"]),
        ),
        (
            json!({"input": {"num_inference_steps": 500}}),
            json!(["body", "input", "num_inference_steps"]),
        ),
        (
            json!({"input": {"num_outputs": 50}}),
            json!(["body", "input", "num_outputs"]),
        ),
        (
            json!({"input": {"colour": "red"}}),
            json!(["body", "input", "colour"]),
        ),
        (
            json!({"input": {"seed": "seven"}}),
            json!(["body", "input", "seed"]),
        ),
        (
            json!({"input": {}, "version": "nope"}),
            json!(["body", "version"]),
        ),
        (
            json!({"input": {"model_variant": "1600M-1024px"}}),
            json!(["body", "input", "model_variant"]),
        ),
        (
            json!({"input": {"mask": "ast_00000000000000000000000000"}}),
            json!(["body", "input", "mask"]),
        ),
        (
            json!({"input": {"image": "http://127.0.0.1:9/x.png"}}),
            json!(["body", "input", "image"]),
        ),
        (
            json!({"input": {}, "webhook": "ftp://x"}),
            json!(["body", "webhook"]),
        ),
        (
            json!({"input": {}, "stream": true}),
            json!(["body", "stream"]),
        ),
        (json!({"input": {}, "wat": 1}), json!(["body", "wat"])),
    ];
    for (body, loc) in cases {
        let (s, v) = post(&t, PRED, &key, body.clone()).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["detail"][0]["loc"], loc, "{body}: {v}");
        assert!(v["detail"][0]["msg"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (_, v) = post(&t, PRED, &key, json!({"input": {"width": 100}})).await;
    insta::assert_json_snapshot!("replicate_validation_error", v);
    let (s, v, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["type"], "json_invalid");
    shapes.insert("422_json_invalid".into(), v.clone());
    let (s, v, _) = send(
        t.req(Method::POST, PRED, Some(&key))
            .header("Prefer", "wait=99")
            .json(&json!({"input": {}})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["header", "prefer"]), "{v}");
    shapes.insert("422_prefer".into(), v.clone());

    // Not found, wrong method.
    for path in [
        format!("{PRED}/nope"),
        format!("{PRED}/01j00000000000000000000000"),
        "/replicate/v1/models/easel/nope".to_string(),
        "/replicate/v1/nothing".to_string(),
    ] {
        let (s, v) = get(&t, &path, &key).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert!(v["detail"].is_string(), "{v}");
        shapes.insert(format!("404 {path}"), v);
    }
    let (s, v) = post(
        &t,
        "/replicate/v1/models/easel/nope/predictions",
        &key,
        json!({"input": {}}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    shapes.insert("404_model_predictions".into(), v.clone());
    let (s, v, _) = send(t.req(Method::DELETE, PRED, Some(&key))).await;
    assert_eq!(s, 405, "{v}");
    assert!(v["detail"].is_string());
    shapes.insert("405".into(), v.clone());
    let (s, v) = get(&t, &format!("{PRED}?cursor=bogus"), &key).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["query", "cursor"]));
    shapes.insert("422_cursor".into(), v.clone());
    insta::assert_json_snapshot!("replicate_errors", scrub(Value::Object(shapes)));
    // Nothing was queued by any of it.
    let (_, page) = get(&t, PRED, &key).await;
    assert_eq!(page["results"], json!([]));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_the_prediction() {
    use axum::routing::post as route_post;
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<(HeaderMap, String)>::new()));
    let r2 = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        route_post(move |headers: HeaderMap, body: String| {
            let r = r2.clone();
            async move {
                r.lock().await.push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = server(|_| {}).await;
    let (key, _) = t.user("wes").await;
    let (_, me) = get(&t, "/v1/me", &key).await;
    let secret = me["webhook_secret"].as_str().unwrap().to_string();
    let (s, v) = post(
        &t,
        PRED,
        &key,
        json!({"input": {"prompt": "a fox", "seed": 1}, "webhook": hook,
            "webhook_events_filter": ["start", "completed"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(finished(&t, &key, &id).await["status"], "succeeded");
    let mut bodies = Vec::new();
    for _ in 0..200 {
        let got = received.lock().await;
        if got.len() >= 2 {
            for (h, body) in got.iter() {
                let msg = h["webhook-id"].to_str().unwrap();
                let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
                assert_eq!(
                    h["webhook-signature"].to_str().unwrap(),
                    easel_queue::webhooks::sign(&secret, msg, ts, body.as_bytes())
                );
                bodies.push(serde_json::from_str::<Value>(body).unwrap());
            }
            break;
        }
        drop(got);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bodies.len(), 2, "start and completed");
    assert!(
        bodies.iter().all(|b| b["id"] == id.as_str()),
        "the prediction is the body"
    );
    assert_eq!(bodies[0]["status"], "processing");
    let last = &bodies[1];
    assert_eq!(last["status"], "succeeded", "{last}");
    insta::assert_json_snapshot!("replicate_webhook_completed", scrub(last.clone()));
    let img = image_at(&t, last["output"].as_str().unwrap()).await;
    assert_eq!(img.width(), 64);
    t.shutdown().await;
}

/// The official `replicate` Python package against this server (`EASEL_PYTHON`: a Python
/// with `replicate` installed; `.ci/run` sets it).
/// A server with a tiny Sana (`sana`, 64x64 and 2 steps by default), also known as the
/// spec's `600M-512px-multilang` variant.
async fn sana_server() -> TestServer {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    make_tiny(&dir.path().join("models/sana"), "sana", 0).unwrap();
    let t = TestServer::start_in(dir, |c| c.scan_models = true).await;
    let (s, v) = t
        .json(
            Method::PATCH,
            "/v1/models/sana",
            ADMIN_KEY,
            Some(json!({"defaults": {"width": 64, "height": 64},
                "aliases": ["600M-512px-multilang"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["family"], "sana", "{v}");
    t
}

/// The bytes of a finished job's first output, through the native API.
async fn native_pixels(t: &TestServer, key: &str, body: Value) -> Vec<u8> {
    let job = t.submit(key, body).await;
    let done = t.wait(key, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let asset = done["outputs"][0]["asset_id"].as_str().unwrap();
    let resp = t
        .req(
            Method::GET,
            &format!("/v1/assets/{asset}/content"),
            Some(key),
        )
        .send()
        .await
        .unwrap();
    decode(&resp.bytes().await.unwrap()).to_rgb8().into_raw()
}

/// Sana-spec requests run on a local Sana model: `model_variant` resolves through an alias,
/// the spec's defaults fill what the request leaves out (18 steps, guidance 5, PAG 2), the
/// local engine applies `pag_guidance_scale` and the logs say so; a seed gives the same
/// pixels, and PAG changes them (the same request natively, with and without
/// `pag_guidance`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sana_predictions_apply_pag_on_the_local_engine() {
    let t = sana_server().await;
    let (key, _) = t.user("nvidia").await;
    let input = json!({"prompt": "a cyberpunk cat with a neon sign", "seed": 5,
        "num_inference_steps": 2, "pag_guidance_scale": 2, "model_variant": "600M-512px-multilang"});
    let run = |input: Value| {
        let t = &t;
        let key = key.clone();
        async move {
            let (s, v, _) = send(
                market(t, Method::POST, PRED, &key)
                    .header("Prefer", "wait")
                    .json(&json!({"input": input})),
            )
            .await;
            assert_eq!(s, 201, "{v}");
            assert_eq!(v["status"], "succeeded", "{v}");
            v
        }
    };
    let a = run(input.clone()).await;
    let logs = a["logs"].as_str().unwrap();
    assert!(
        logs.contains("pag_guidance_scale 2 was applied by the local engine"),
        "{logs}"
    );
    let (_, job) = get(
        &t,
        &format!("/v1/jobs/job_{}", a["id"].as_str().unwrap()),
        &key,
    )
    .await;
    assert_eq!(job["model"], "sana", "{job}");
    assert_eq!(
        job["input"]["guidance"], 5.0,
        "the spec's default guidance: {job}"
    );
    assert_eq!(job["input"]["steps"], 2);
    let pixels_of = |v: &Value| {
        let url = v["output"].as_str().unwrap().to_string();
        let t = &t;
        async move { image_at(t, &url).await.to_rgb8().into_raw() }
    };
    let pa = pixels_of(&a).await;
    let b = run(input.clone()).await;
    assert_eq!(
        pa,
        pixels_of(&b).await,
        "the same seed gives the same pixels"
    );

    // Omitted: the spec's defaults on a Sana model (the job is canceled, not waited for).
    let body = json!({"input": {"prompt": "a fox", "seed": 1,
        "model_variant": "600M-512px-multilang"}});
    let (s, d, _) = send(market(&t, Method::POST, PRED, &key).json(&body)).await;
    assert_eq!(s, 201, "{d}");
    let id = d["id"].as_str().unwrap();
    let (_, job) = get(&t, &format!("/v1/jobs/job_{id}"), &key).await;
    assert_eq!(
        (
            &job["input"]["steps"],
            &job["input"]["guidance"],
            &job["input"]["pag_guidance"]
        ),
        (&json!(18), &json!(5.0), &json!(2.0)),
        "{job}"
    );
    let (s, _) = post(&t, &format!("{PRED}/{id}/cancel"), &key, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(finished(&t, &key, id).await["status"], "canceled");

    // The same generation natively: with PAG 2 the same pixels, without PAG others.
    let native = |pag: Option<f64>| {
        let mut input = json!({"prompt": "a cyberpunk cat with a neon sign", "seed": 5,
            "steps": 2, "guidance": 5.0});
        if let Some(p) = pag {
            input["pag_guidance"] = json!(p);
        }
        json!({"task": "txt2img", "model": "sana", "input": input})
    };
    assert_eq!(native_pixels(&t, &key, native(Some(2.0))).await, pa);
    assert_ne!(
        native_pixels(&t, &key, native(None)).await,
        pa,
        "PAG changes the pixels"
    );

    // The official client, when EASEL_PYTHON names a Python with it.
    match std::env::var_os("EASEL_PYTHON").filter(|p| !p.is_empty()) {
        None => eprintln!(
            "skipping the replicate client on Sana: set EASEL_PYTHON to a Python with the \
             `replicate` package"
        ),
        Some(python) => {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/python/replicate_sana_client.py");
            let out = tokio::process::Command::new(python)
                .arg(&script)
                .env("EASEL_BASE_URL", format!("{}/replicate", t.base))
                .env("EASEL_KEY", &key)
                .output()
                .await
                .expect("runs the Python client");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "the replicate client failed on Sana:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("ok: Sana with the official client"),
                "{stdout}"
            );
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let Some(python) = std::env::var_os("EASEL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipping official_python_client: set EASEL_PYTHON to a Python with the `replicate` \
             package (python -m venv .ci-venv && .ci-venv/bin/pip install replicate)"
        );
        return;
    };
    let t = server(|_| {}).await;
    let (key, _) = t.user("python").await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/replicate_client.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .env("EASEL_BASE_URL", format!("{}/replicate", t.base))
        .env("EASEL_KEY", &key)
        .output()
        .await
        .expect("runs the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the replicate client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: run"), "{stdout}");
    t.shutdown().await;
}
