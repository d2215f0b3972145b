//! The web UI in a real browser: Debian's chromium, driven over WebDriver (chromedriver),
//! against a real server with a tiny model. Sign in, generate with live progress and
//! previews, the gallery and its viewer, "use these settings" and re-run, inpaint with a
//! mask painted with the pointer, cancel a running job, the admin pages refused to a user,
//! an HTML prompt shown as text, and the admin's views.
//!
//! The browser tests skip, saying so, when no chromedriver/chromium is installed; CI
//! installs them and sets `EASEL_REQUIRE_BROWSER=1`, which turns the skip into a failure.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use easel_diffusion::tiny::make_tiny;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script> a fox";

struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find(env: &str, candidates: &[&str]) -> Option<String> {
    std::env::var(env)
        .ok()
        .into_iter()
        .chain(candidates.iter().map(|s| s.to_string()))
        .find(|p| std::path::Path::new(p).exists())
}

/// A headless chromium session, or `None` (with the reason printed) when none is installed.
async fn browser() -> Option<Browser> {
    let driver = find("EASEL_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let chromium = find(
        "EASEL_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        let msg = "no chromium/chromedriver (Debian packages `chromium` and `chromium-driver`)";
        if std::env::var_os("EASEL_REQUIRE_BROWSER").is_some() {
            panic!("EASEL_REQUIRE_BROWSER is set but there is {msg}");
        }
        eprintln!("SKIPPED: the browser tests need a browser: {msg}");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"],
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Some(Browser {
                    client,
                    driver: child,
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver at {url} did not start a session");
}

async fn css(c: &Client, sel: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(sel))
        .await
        .unwrap_or_else(|e| panic!("no `{sel}` on the page: {e}"))
}

/// With `EASEL_UI_SCREENSHOTS=DIR`, save what the browser shows as `DIR/<name>.png` (for
/// looking at the pages while working on them).
async fn shot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("EASEL_UI_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn xpath(c: &Client, sel: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(sel))
        .await
        .unwrap_or_else(|e| panic!("no `{sel}` on the page: {e}"))
}

async fn text_of(c: &Client, sel: &str) -> String {
    css(c, sel).await.text().await.unwrap()
}

/// Wait until `script` (an expression) is truthy in the page.
async fn until(c: &Client, what: &str, script: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = c
            .execute(&format!("return !!({script});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set(c: &Client, sel: &str, value: &str) {
    let e = css(c, sel).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn sign_in(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/#/generate")).await.unwrap();
    set(c, "input[name=key]", key).await;
    css(c, "form.signin button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    // Signed in once the page names the user: the navigation is drawn in the same step, with
    // the pages this user's role may open (after a sign-out the previous, hidden links are
    // still in the page, so waiting for a link alone would read them).
    until(
        c,
        "the signed-in user",
        "document.querySelector('#who').textContent !== ''",
    )
    .await;
}

async fn sign_out(c: &Client) {
    css(c, "#signout").await.click().await.unwrap();
    css(c, "input[name=key]").await;
}

/// A pull that reports a few lines and byte counts over about a second, then writes a tiny
/// model named after the repository: the hub's part of `easel models pull` is tested against
/// a local hub by the CLI's tests; this one gives the UI a pull to follow.
fn slow_tiny_pull() -> easel_api::native::pulls::Puller {
    use easel_api::native::pulls::{PullEvent, Puller};
    let pull: easel_api::native::pulls::PullFn = std::sync::Arc::new(|req, models_dir, sink| {
        let name = req.repo.rsplit('/').next().unwrap_or("pulled").to_string();
        Ok(Box::pin(async move {
            sink(PullEvent::Line(format!("Pulling {}", req.repo)));
            for i in 0..10u64 {
                sink(PullEvent::Bytes {
                    file: "[1/1] unet".into(),
                    done: i * 100,
                    total: 1000,
                });
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let dir = models_dir.join(&name);
            tokio::task::spawn_blocking(move || make_tiny(&dir, "sd15", 1))
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
            Ok(easel_api::native::pulls::Pulled::Model(name))
        }))
    });
    Puller { pull, lora: None }
}

/// Open the gallery's first image, switch its "hidden" in the record, save, close.
async fn toggle_hidden(c: &Client) {
    c.execute("document.querySelector('#flash').textContent = ''", vec![])
        .await
        .unwrap();
    css(c, ".gallery button.thumb").await.click().await.unwrap();
    css(c, "dialog input[name=asset_hidden]")
        .await
        .click()
        .await
        .unwrap();
    xpath(c, "//dialog//form[@class='record']//button[text()='Save']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the record saved",
        "document.querySelector('#flash').textContent === 'Saved.'",
    )
    .await;
    xpath(c, "//dialog//button[text()='Close']")
        .await
        .click()
        .await
        .unwrap();
}

fn job_id_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser() {
    let Some(b) = browser().await else { return };
    let c = &b.client;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    make_tiny(&dir.path().join("models/tiny"), "sd15", 7).unwrap();
    let t = TestServer::start_in(dir, |cfg| {
        cfg.scan_models = true;
        cfg.pull = Some(slow_tiny_pull());
    })
    .await;
    let base = t.base.clone();
    let (key, user_id) = t.user("alice").await;

    // The page itself: offline assets, a CSP, no JSON 404.
    let page = t.req(Method::GET, "/", None).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !page.text().await.unwrap().contains("http"),
        "no external resources"
    );

    // A wrong key is refused; the right one signs in; a user has no Keys page.
    c.goto(&base).await.unwrap();
    set(c, "input[name=key]", "esk_wrong").await;
    css(c, "form.signin button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the refusal",
        "document.querySelector('form.signin .error').textContent.includes('not valid')",
    )
    .await;
    sign_in(c, &base, &key).await;
    let nav = text_of(c, "#nav").await;
    assert!(nav.contains("Gallery") && !nav.contains("Keys"), "{nav}");
    shot(c, "generate").await;
    assert!(text_of(c, "#who").await.contains("alice"));
    // The key is in sessionStorage, never in the URL.
    assert!(!c.current_url().await.unwrap().as_str().contains(&key));
    c.goto(&format!("{base}/#/keys")).await.unwrap();
    assert_eq!(
        text_of(c, "main [role=alert]").await,
        "This page is for admins."
    );

    // Generate: defaults applied from the model's family, progress, previews, the result.
    c.goto(&format!("{base}/#/generate")).await.unwrap();
    until(
        c,
        "the form",
        "document.querySelector('select[name=model]')",
    )
    .await;
    assert_eq!(
        css(c, "input[name=width]")
            .await
            .prop("value")
            .await
            .unwrap(),
        Some("512".into())
    );
    set(c, "textarea[name=prompt]", XSS).await;
    set(c, "input[name=width]", "64").await;
    set(c, "input[name=height]", "64").await;
    set(c, "input[name=steps]", "6").await;
    css(c, "form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    until(c, "the job page", "location.hash.startsWith('#/job/')").await;
    let first = job_id_of(c.current_url().await.unwrap().as_str());
    css(c, "img.result").await;
    until(
        c,
        "the final status",
        "document.querySelector('.status').textContent === 'succeeded'",
    )
    .await;
    assert_eq!(text_of(c, ".step").await, "step 6/6");
    shot(c, "job").await;
    let previews = c
        .execute(
            "return Number(document.querySelector('.preview').dataset.count || 0)",
            vec![],
        )
        .await
        .unwrap();
    assert!(previews.as_u64().unwrap() >= 1, "previews seen: {previews}");
    // The HTML prompt is shown as text and ran nothing.
    assert!(text_of(c, "pre.params")
        .await
        .contains("<script>window.__xss=2</script>"));
    assert_eq!(
        c.execute("return window.__xss === undefined", vec![])
            .await
            .unwrap(),
        json!(true)
    );

    // The gallery and the viewer: the A1111 parameters, then "use these settings".
    let (_, trip) = t
        .json(
            Method::POST,
            "/v1/collections",
            &key,
            Some(json!({"name": "trip"})),
        )
        .await;
    let trip_id = trip["id"].as_str().unwrap().to_string();
    c.goto(&format!("{base}/#/gallery")).await.unwrap();
    css(c, ".gallery button.thumb").await.click().await.unwrap();
    let params = text_of(c, "dialog pre.params").await;
    shot(c, "viewer").await;
    // Tag it in the viewer; the API and the gallery's tag filter see it.
    let tag_field = css(c, "dialog input[name=new_tag]").await;
    tag_field.send_keys("foxes").await.unwrap();
    tag_field.send_keys("\u{E007}").await.unwrap();
    css(c, "dialog [data-tag=foxes]").await;
    let (_, tagged) = t
        .json(Method::GET, "/v1/assets?tag=foxes", &key, None)
        .await;
    assert_eq!(tagged["data"][0]["tags"], json!(["foxes"]), "{tagged}");
    // Name it and make it public: it is listed for everyone, without a key.
    set(c, "dialog input[name=asset_name]", "the fox").await;
    css(c, "dialog select[name=asset_privacy]")
        .await
        .select_by_value("public")
        .await
        .unwrap();
    xpath(c, "//dialog//form[@class='record']//button[text()='Save']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the record saved",
        "document.querySelector('#flash').textContent === 'Saved.'",
    )
    .await;
    let public: Value = t
        .req(Method::GET, "/v1/public/assets", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["data"][0]["name"], "the fox", "{public}");
    // Into a collection from the viewer; the gallery filters by it.
    css(c, "dialog select[name=add_collection]")
        .await
        .select_by_value(&trip_id)
        .await
        .unwrap();
    xpath(c, "//dialog//button[text()='Add to collection']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "added",
        "document.querySelector('#flash').textContent === 'Added to trip.'",
    )
    .await;
    let (_, col) = t
        .json(
            Method::GET,
            &format!("/v1/collections/{trip_id}"),
            &key,
            None,
        )
        .await;
    assert_eq!(col["asset_count"], 1, "{col}");
    assert!(
        params.contains(XSS) && params.contains("Steps: 6"),
        "{params}"
    );
    let use_it = xpath(c, "//dialog//button[text()='Use these settings']").await;
    use_it.click().await.unwrap();
    until(
        c,
        "the generate page",
        "location.hash === '#/generate' && document.querySelector('textarea[name=prompt]')",
    )
    .await;
    assert_eq!(
        css(c, "textarea[name=prompt]")
            .await
            .prop("value")
            .await
            .unwrap(),
        Some(XSS.into())
    );
    assert_eq!(
        css(c, "select[name=seed_mode]")
            .await
            .prop("value")
            .await
            .unwrap(),
        Some("fixed".into())
    );
    assert_eq!(
        c.execute("return window.__xss === undefined", vec![])
            .await
            .unwrap(),
        json!(true)
    );

    // Re-run from the job page: a new job with the same input.
    c.goto(&format!("{base}/#/job/{first}")).await.unwrap();
    xpath(c, "//button[text()='Re-run']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the re-run's page",
        &format!("location.hash.startsWith('#/job/') && !location.hash.endsWith('{first}')"),
    )
    .await;
    let rerun = job_id_of(c.current_url().await.unwrap().as_str());
    let done = t.wait(&key, &rerun).await;
    let (_, orig) = t
        .json(Method::GET, &format!("/v1/jobs/{first}"), &key, None)
        .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["input"], orig["input"]);

    // The gallery's search box finds the image by its tag (the re-run's output has none).
    c.goto(&format!("{base}/#/gallery")).await.unwrap();
    until(
        c,
        "both outputs",
        "document.querySelectorAll('.gallery button.thumb').length >= 2",
    )
    .await;
    let search = css(c, "input[name=q]").await;
    search.send_keys("foxe").await.unwrap();
    search.send_keys("\u{E007}").await.unwrap();
    until(
        c,
        "the search's one image",
        "document.querySelectorAll('.gallery button.thumb').length === 1",
    )
    .await;

    // Inpaint: open the image (found through the collection filter: the re-run's newer
    // output is not in it), choose Inpaint, paint a stroke, submit.
    c.goto(&format!("{base}/#/gallery")).await.unwrap();
    css(c, ".gallery button.thumb").await;
    css(c, "select[name=collection]")
        .await
        .select_by_value(&trip_id)
        .await
        .unwrap();
    until(
        c,
        "the collection's one image",
        "document.querySelectorAll('.gallery button.thumb').length === 1",
    )
    .await;
    css(c, ".gallery button.thumb").await.click().await.unwrap();
    xpath(c, "//dialog//button[text()='Inpaint']")
        .await
        .click()
        .await
        .unwrap();
    let canvas = css(c, ".canvas-wrap canvas").await;
    until(
        c,
        "the canvas sized to the image",
        "document.querySelector('.canvas-wrap canvas').width === 64",
    )
    .await;
    set(c, "textarea[name=prompt]", "a boat").await;
    set(c, "input[name=steps]", "3").await;
    let stroke = MouseActions::new("pen".into())
        .then(PointerAction::MoveToElement {
            element: canvas.clone(),
            duration: None,
            x: -150.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: 300.0,
            y: 60.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(stroke).await.unwrap();
    shot(c, "inpaint").await;
    css(c, "form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    until(c, "the inpaint job", "location.hash.startsWith('#/job/')").await;
    let inpaint = job_id_of(c.current_url().await.unwrap().as_str());
    let done = t.wait(&key, &inpaint).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["task"], "inpaint");
    // The painted mask reached the server: white where painted, black elsewhere.
    let mask_id = done["input"]["mask"].as_str().unwrap();
    let bytes = t
        .req(
            Method::GET,
            &format!("/v1/assets/{mask_id}/content"),
            Some(&key),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mask = decode(&bytes).to_luma8();
    let white = mask.pixels().filter(|p| p.0[0] > 200).count();
    let black = mask.pixels().filter(|p| p.0[0] < 50).count();
    assert!(white > 50 && black > 500, "white {white}, black {black}");

    // Cancel a running job from its page.
    let long = t
        .submit(
            &key,
            json!({"task": "txt2img", "model": "tiny", "input": {"prompt": "slow", "width": 256, "height": 256, "steps": 150}}),
        )
        .await;
    let long_id = long["id"].as_str().unwrap();
    c.goto(&format!("{base}/#/job/{long_id}")).await.unwrap();
    until(
        c,
        "the long job running",
        "/step [1-9]/.test(document.querySelector('.step').textContent)",
    )
    .await;
    xpath(c, "//button[text()='Cancel']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the cancel",
        "document.querySelector('.status').textContent === 'canceled'",
    )
    .await;
    assert_eq!(t.wait(&key, long_id).await["status"], "canceled");

    // The queue lists them; the usage chart draws a bar.
    c.goto(&format!("{base}/#/queue")).await.unwrap();
    until(
        c,
        "the queue",
        &format!("document.querySelector('tr[data-job=\"{long_id}\"]')"),
    )
    .await;
    c.goto(&format!("{base}/#/usage")).await.unwrap();
    until(
        c,
        "the usage chart",
        "document.querySelector('.chart svg rect')",
    )
    .await;
    shot(c, "usage").await;
    c.goto(&format!("{base}/#/gallery")).await.unwrap();
    css(c, ".gallery button.thumb").await;
    shot(c, "gallery").await;
    // Hide an image from the viewer: it leaves the gallery, and "hidden images only" shows
    // it (and only it); unhiding brings it back.
    let shown = c
        .execute(
            "return document.querySelectorAll('.gallery button.thumb').length",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    let hidden_id = c
        .execute(
            "return document.querySelector('.gallery button.thumb').dataset.asset",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    toggle_hidden(c).await;
    let (_, a) = t
        .json(Method::GET, &format!("/v1/assets/{hidden_id}"), &key, None)
        .await;
    assert_eq!(a["hidden"], true, "{a}");
    c.goto(&format!("{base}/#/queue")).await.unwrap();
    c.goto(&format!("{base}/#/gallery")).await.unwrap();
    until(
        c,
        "one image fewer",
        &format!(
            "document.querySelectorAll('.gallery button.thumb').length === {}",
            shown - 1
        ),
    )
    .await;
    css(c, "input[name=hidden]").await.click().await.unwrap();
    until(
        c,
        "only the hidden image",
        &format!(
            "document.querySelectorAll('.gallery button.thumb').length === 1 && \
             document.querySelector('.gallery button.thumb').dataset.asset === '{hidden_id}'"
        ),
    )
    .await;
    toggle_hidden(c).await;
    let (_, a) = t
        .json(Method::GET, &format!("/v1/assets/{hidden_id}"), &key, None)
        .await;
    assert_eq!(a["hidden"], false, "{a}");
    c.goto(&format!("{base}/#/queue")).await.unwrap();
    css(c, "tr[data-job]").await;
    shot(c, "queue").await;

    // The admin: the Keys page creates a key shown once; the queue shows everyone's jobs.
    sign_out(c).await;
    sign_in(c, &base, ADMIN_KEY).await;
    assert!(text_of(c, "#nav").await.contains("Keys"));
    c.goto(&format!("{base}/#/keys")).await.unwrap();
    set(c, "input[name=key_name]", "carol").await;
    css(c, "form.row button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let secret = text_of(c, "[data-secret]").await;
    shot(c, "keys").await;
    // Pull from the hub (here a stand-in for the network, which the CLI tests serve for
    // real): a progress bar while it runs, then the model is in the table.
    c.goto(&format!("{base}/#/models")).await.unwrap();
    set(c, "input[name=pull_repo]", "acme/tiny-ui").await;
    xpath(c, "//button[text()='Pull']")
        .await
        .click()
        .await
        .unwrap();
    until(
        c,
        "the pull's progress bar",
        "document.querySelector('[data-pull][data-status=running] progress')",
    )
    .await;
    shot(c, "models").await;
    until(
        c,
        "the pulled model in the table",
        "document.querySelector('tr[data-model=\"tiny-ui\"]')",
    )
    .await;
    // Edit a model's fields as JSON: an alias clients can name it by.
    xpath(c, "//tr[@data-model='tiny-ui']//button[text()='Edit']")
        .await
        .click()
        .await
        .unwrap();
    set(
        c,
        "dialog textarea[name=model_patch]",
        r#"{"aliases": ["dall-e-3"], "defaults": {"steps": 3}}"#,
    )
    .await;
    xpath(c, "//dialog//button[text()='Save']")
        .await
        .click()
        .await
        .unwrap();
    until(c, "the alias in the table", "document.querySelector('tr[data-model=\"tiny-ui\"]') && document.querySelector('tr[data-model=\"tiny-ui\"]').textContent.includes('dall-e-3')").await;
    let (s, m) = t
        .json(Method::GET, "/v1/models/dall-e-3", ADMIN_KEY, None)
        .await;
    assert_eq!(
        (s, m["name"].as_str(), m["defaults"]["steps"].as_u64()),
        (200, Some("tiny-ui"), Some(3)),
        "{m}"
    );
    c.goto(&format!("{base}/#/keys")).await.unwrap();
    css(c, "#keys-table tr").await;
    let (s, me) = t.json(Method::GET, "/v1/me", &secret, None).await;
    assert_eq!(
        (s, me["user"]["name"].as_str()),
        (200, Some("carol")),
        "{me}"
    );
    c.goto(&format!("{base}/#/queue")).await.unwrap();
    css(c, "input[name=everyone]").await.click().await.unwrap();
    until(c, "alice's job in the admin's queue", &format!("document.querySelector('tr[data-job=\"{first}\"]') && document.querySelector('tr[data-job=\"{first}\"] td[title=\"{user_id}\"]').textContent === 'alice'")).await;

    b.client.clone().close().await.unwrap();
    t.shutdown().await;
}
