//! The `easel` binary itself: first start, admin key file, SIGTERM, admin commands.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn easel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_easel"));
    c.env_remove("EASEL_ADMIN_KEY").env("RUST_LOG", "warn");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str, key: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out)
}

#[test]
fn first_start_writes_the_admin_key_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = easel()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("Admin API key"));
    let printed = lines.next().unwrap().unwrap().trim().to_string();
    let key_file = dir.path().join("admin.key");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), printed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Wait for the listener, then use the key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(port, "/v1/me", &printed).0, 200);
    assert_eq!(http_get(port, "/v1/me", "wrong").0, 401);

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // A second start does not print a new key; the admin commands work on the data folder.
    let out = easel()
        .args(["keys", "create", "--name", "cli-user"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("API key: esk_"), "{shown}");
    // The same key as Scenario's pair: the key id and the secret part.
    let field = |name: &str| {
        shown
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{name}` in {shown}"))
    };
    let key = field("API key:");
    assert_eq!(
        key,
        format!("esk_{}_{}", field("api_key:"), field("api_secret:"))
    );
    let out = easel()
        .args(["keys", "list"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("cli-user") && listed.contains("admin"),
        "{listed}"
    );
    assert!(!listed.contains(&printed), "secrets are never listed");
    // A second key for the same user name goes to that user: one `cli-user` in `keys users`.
    let run = |args: &[&str]| {
        easel()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(run(&[
        "keys",
        "create",
        "--name",
        "laptop",
        "--user-name",
        "cli-user"
    ])
    .status
    .success());
    let users = String::from_utf8_lossy(&run(&["keys", "users"]).stdout).to_string();
    assert_eq!(users.matches("cli-user").count(), 1, "{users}");
    let out = run(&["jobs", "list"]);
    assert!(out.status.success());
    let out = run(&["jobs", "list", "--status", "bogus"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("queued, running, succeeded"),
        "{err}"
    );
    let out = easel()
        .args(["models", "add", "--name", "m1", "--task", "txt2img"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = easel()
        .args(["models", "list"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("m1"));
}

/// The startup summary says how the engine takes weights: mapped by default (the binary's
/// allocator), read with `EASEL_MAP_WEIGHTS=0`.
#[test]
fn the_startup_summary_says_how_weights_are_taken() {
    for (env, want) in [(None, "mapped"), (Some("0"), "read")] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = easel();
        cmd.env("RUST_LOG", "info")
            .args(["worker", "--log-format", "json", "--workers", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped());
        match env {
            Some(v) => cmd.env("EASEL_MAP_WEIGHTS", v),
            None => cmd.env_remove("EASEL_MAP_WEIGHTS"),
        };
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = lines
            .by_ref()
            .map_while(|l| l.ok())
            .find(|l| l.contains("Easel worker started"));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        // Read to the end (the shutdown's lines too), so the pipe stays open until it exits.
        lines.for_each(drop);
        let _ = child.wait();
        let line = started.expect("the worker logged its start");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["weights"], want, "{line}");
    }
}

#[test]
fn help_explains_the_flags() {
    let out = easel().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--store-url",
        "--public-url",
        "--workers",
        "--log-format",
        "EASEL_LISTEN",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn easel_toml_sets_values_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-toml");
    std::fs::write(
        dir.path().join("easel.toml"),
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let out = easel()
        .current_dir(dir.path())
        .args(["keys", "create", "--name", "t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        data.join("easel.db").exists(),
        "easel.toml chose the data folder"
    );
    let flagged = dir.path().join("from-flag");
    let out = easel()
        .current_dir(dir.path())
        .args(["keys", "list", "--data-dir"])
        .arg(&flagged)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        flagged.join("easel.db").exists(),
        "the flag wins over the file"
    );
    std::fs::write(dir.path().join("easel.toml"), "bogus = 1\n").unwrap();
    let out = easel()
        .current_dir(dir.path())
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "unknown settings are refused");
}

#[test]
fn bench_diffusion_runs_on_a_tiny_model() {
    for (family, size, step) in [
        ("sd15", "64", "UNet step with CFG (batch 2)"),
        ("sana", "64", "transformer step with CFG + PAG (batch 3)"),
    ] {
        let out = easel()
            .args([
                "bench",
                "diffusion",
                "--family",
                family,
                "--tiny",
                "--size",
                size,
                "--steps",
                "1",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for line in [
            step,
            "VAE decode",
            "model load",
            "RSS after load",
            "RSS after decode",
            "peak RSS",
            " threads",
        ] {
            assert!(text.contains(line), "{family}: {line} in {text}");
        }
    }
    // `--model`: an existing SD folder (a tiny one here) measured as it is.
    let dir = tempfile::tempdir().unwrap();
    let made = easel()
        .args(["models", "make-tiny"])
        .arg(dir.path().join("sd"))
        .args(["--family", "sd15"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = easel()
        .args([
            "bench",
            "diffusion",
            "--size",
            "64",
            "--steps",
            "1",
            "--model",
        ])
        .arg(dir.path().join("sd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Stable Diffusion 1.x folder"), "{text}");
    assert!(text.contains("RSS after loading the UNet"), "{text}");
    assert!(!text.contains("random weights written"), "{text}");
}

#[test]
fn make_tiny_writes_every_family_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = easel()
        .args(["models", "make-tiny"])
        .arg(dir.path().join("sana"))
        .args(["--family", "sana"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("sana/transformer/config.json").is_file());
    let out = easel()
        .args(["models", "make-tiny"])
        .arg(dir.path().join("sana2"))
        .args(["--family", "sana", "--single-file"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "single files are SD layouts");
    let out = easel()
        .args(["models", "make-tiny"])
        .arg(dir.path().join("x"))
        .args(["--family", "flux"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sana"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// `easel models pull`, against a fake hub
// ---------------------------------------------------------------------------------------------

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A tiny imitation of the Hugging Face hub's two endpoints that `pull` uses:
/// `GET /api/models/{repo}/revision/{rev}` (the listing) and
/// `GET /{repo}/resolve/{rev}/{file}` (with `Range`, `ETag`, `X-Repo-Commit`). It records every
/// request, and answers 500 for the files in `broken`.
struct FakeHub {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The paths asked with an `Authorization` header.
    authorized: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start(repo: &str, files: Vec<(&str, Vec<u8>)>, broken: &[&str]) -> FakeHub {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let authorized = Arc::new(Mutex::new(Vec::new()));
        let files: Arc<Vec<(String, Vec<u8>)>> =
            Arc::new(files.into_iter().map(|(n, b)| (n.to_string(), b)).collect());
        let broken: Arc<Vec<String>> = Arc::new(broken.iter().map(|s| s.to_string()).collect());
        let repo = repo.to_string();
        let log = requests.clone();
        let auth_log = authorized.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (files, broken, repo, log, auth_log) = (
                    files.clone(),
                    broken.clone(),
                    repo.clone(),
                    log.clone(),
                    auth_log.clone(),
                );
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if conn.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.split(' ').nth(1).unwrap_or("").to_string();
                    let path = target.split('?').next().unwrap().to_string();
                    let range = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("range")
                            .then(|| v.trim().trim_start_matches("bytes=").to_string())
                    });
                    log.lock().unwrap().push(path.clone());
                    if head
                        .lines()
                        .any(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    {
                        auth_log.lock().unwrap().push(path.clone());
                    }
                    let respond = |conn: &mut std::net::TcpStream,
                                   status: &str,
                                   headers: &[(&str, String)],
                                   body: &[u8]| {
                        let mut h = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            h.push_str(&format!("{k}: {v}\r\n"));
                        }
                        h.push_str("\r\n");
                        let _ = conn.write_all(h.as_bytes());
                        let _ = conn.write_all(body);
                    };
                    let listing = format!("/api/models/{repo}/revision/");
                    let resolve = format!("/{repo}/resolve/");
                    if path.starts_with(&listing) {
                        let siblings: Vec<serde_json::Value> = files
                            .iter()
                            .map(|(n, b)| serde_json::json!({"rfilename": n, "size": b.len()}))
                            .collect();
                        let body =
                            serde_json::json!({"id": repo, "sha": COMMIT, "siblings": siblings});
                        let body = serde_json::to_vec(&body).unwrap();
                        let ct = ("Content-Type", "application/json".to_string());
                        respond(&mut conn, "200 OK", &[ct], &body);
                        return;
                    }
                    let Some(rest) = path.strip_prefix(&resolve) else {
                        respond(&mut conn, "404 Not Found", &[], b"no such repo");
                        return;
                    };
                    let (_rev, file) = rest.split_once('/').unwrap_or((rest, ""));
                    let Some(i) = files.iter().position(|(n, _)| n == file) else {
                        respond(&mut conn, "404 Not Found", &[], b"no such file");
                        return;
                    };
                    if broken.iter().any(|b| b == file) {
                        respond(&mut conn, "500 Internal Server Error", &[], b"broken");
                        return;
                    }
                    let body = &files[i].1;
                    let common = vec![
                        ("ETag", format!("\"etag-{i}\"")),
                        ("X-Repo-Commit", COMMIT.to_string()),
                    ];
                    match range {
                        Some(r) => {
                            let (a, b) = r.split_once('-').unwrap();
                            let a: usize = a.parse().unwrap();
                            let b: usize = b.parse::<usize>().unwrap().min(body.len() - 1);
                            let mut h = common;
                            h.push(("Content-Range", format!("bytes {a}-{b}/{}", body.len())));
                            respond(&mut conn, "206 Partial Content", &h, &body[a..=b]);
                        }
                        None => respond(&mut conn, "200 OK", &common, body),
                    }
                });
            }
        });
        FakeHub {
            port,
            requests,
            authorized,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn authorized(&self) -> Vec<String> {
        self.authorized.lock().unwrap().clone()
    }
}

/// A small SD 1.5-shaped diffusers repository, with pickles, fp16 variants, a safety checker
/// and single-file checkpoints beside it (none of which a default pull takes).
fn sd15_repo() -> Vec<(&'static str, Vec<u8>)> {
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).unwrap();
    // Large enough for several ranged chunks (hf-hub asks 10 MB at a time).
    let unet: Vec<u8> = (0..23_000_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        (".gitattributes", b"*.safetensors filter=lfs".to_vec()),
        ("README.md", b"# tiny".to_vec()),
        (
            "model_index.json",
            json(serde_json::json!({
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.6.0",
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"]
            })),
        ),
        ("feature_extractor/preprocessor_config.json", b"{}".to_vec()),
        ("safety_checker/config.json", b"{}".to_vec()),
        ("safety_checker/model.safetensors", vec![7; 1000]),
        (
            "scheduler/scheduler_config.json",
            json(serde_json::json!({"_class_name": "PNDMScheduler"})),
        ),
        (
            "text_encoder/config.json",
            json(serde_json::json!({"hidden_size": 768})),
        ),
        ("text_encoder/model.safetensors", vec![1; 5000]),
        ("text_encoder/model.fp16.safetensors", vec![2; 2500]),
        ("text_encoder/pytorch_model.bin", vec![3; 5000]),
        ("tokenizer/merges.txt", b"#version: 0.2\n".to_vec()),
        ("tokenizer/vocab.json", b"{\"a\": 0}".to_vec()),
        ("tokenizer/tokenizer_config.json", b"{}".to_vec()),
        (
            "unet/config.json",
            json(serde_json::json!({"in_channels": 4})),
        ),
        ("unet/diffusion_pytorch_model.safetensors", unet),
        (
            "unet/diffusion_pytorch_model.fp16.safetensors",
            vec![4; 3000],
        ),
        ("unet/diffusion_pytorch_model.bin", vec![5; 3000]),
        ("vae/config.json", b"{}".to_vec()),
        ("vae/diffusion_pytorch_model.safetensors", vec![6; 4000]),
        (
            "vae/diffusion_pytorch_model.fp16.safetensors",
            vec![8; 2000],
        ),
        ("v1-5-pruned.ckpt", vec![9; 100]),
        ("v1-5-pruned-emaonly.safetensors", vec![10; 1234]),
    ]
}

fn pull(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    easel()
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env("HF_HOME", data.join("no-hf-home"))
        .args(["models", "pull"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Everything under `models/` (relative paths, sorted); hidden temporary folders included.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn pull_refuses_bad_input_before_any_network() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start("acme/sd", sd15_repo(), &[]);
    let ep = hub.endpoint();
    for (args, needle) in [
        (vec!["not a repo"], "invalid repository id"),
        (vec!["a/b/c"], "invalid repository id"),
        (vec!["../etc"], "invalid repository id"),
        (vec!["acme/sd", "--name", "../x"], "invalid --name"),
        (vec!["acme/sd", "--revision", "a b"], "invalid --revision"),
        (vec!["acme/sd", "--file", "model.ckpt"], "pickle"),
        (
            vec!["acme/sd", "--file", "../m.safetensors"],
            "invalid --file",
        ),
        (
            vec!["acme/sd", "--endpoint", "ftp://x"],
            "invalid --endpoint",
        ),
    ] {
        let mut args = args.clone();
        if !args.contains(&"--endpoint") {
            args.extend(["--endpoint", &ep]);
        }
        let out = pull(dir.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // An existing model is refused without --force, also before any network.
    std::fs::create_dir_all(dir.path().join("models/sd")).unwrap();
    let out = pull(dir.path(), &["acme/sd", "--endpoint", &ep]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    assert_eq!(tree(&dir.path().join("models")), ["sd"]);
}

#[test]
fn pull_from_an_unreachable_hub_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = pull(dir.path(), &["acme/sd", "--endpoint", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("could not reach the hub at http://127.0.0.1:9"),
        "{err}"
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn pull_downloads_a_diffusers_folder_and_scan_registers_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = sd15_repo();
    let hub = FakeHub::start("acme/tiny-sd", files.clone(), &[]);
    let out = pull(dir.path(), &["acme/tiny-sd", "--endpoint", &hub.endpoint()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("[11/11]"), "a line per file: {stdout}");
    assert!(stdout.contains("easel models scan"), "{stdout}");
    let models = dir.path().join("models");
    assert_eq!(
        tree(&models),
        [
            "tiny-sd",
            "tiny-sd/model_index.json",
            "tiny-sd/scheduler",
            "tiny-sd/scheduler/scheduler_config.json",
            "tiny-sd/text_encoder",
            "tiny-sd/text_encoder/config.json",
            "tiny-sd/text_encoder/model.safetensors",
            "tiny-sd/tokenizer",
            "tiny-sd/tokenizer/merges.txt",
            "tiny-sd/tokenizer/tokenizer_config.json",
            "tiny-sd/tokenizer/vocab.json",
            "tiny-sd/unet",
            "tiny-sd/unet/config.json",
            "tiny-sd/unet/diffusion_pytorch_model.safetensors",
            "tiny-sd/vae",
            "tiny-sd/vae/config.json",
            "tiny-sd/vae/diffusion_pytorch_model.safetensors",
        ]
    );
    for (name, bytes) in &files {
        let local = models.join("tiny-sd").join(name);
        if local.exists() && *name != "model_index.json" {
            assert_eq!(&std::fs::read(&local).unwrap(), bytes, "{name}");
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("tiny-sd/model_index.json")).unwrap())
            .unwrap();
    assert_eq!(index["safety_checker"], serde_json::json!([null, null]));
    assert_eq!(
        index["unet"],
        serde_json::json!(["diffusers", "UNet2DConditionModel"])
    );
    // Never asked for: pickles, unused components, single-file checkpoints, other variants.
    for r in hub.requests() {
        assert!(
            !r.ends_with(".bin")
                && !r.ends_with(".ckpt")
                && !r.contains("safety_checker")
                && !r.contains("fp16")
                && !r.contains("pruned"),
            "{r}"
        );
    }
    // The folder is what `models scan` registers.
    let out = easel()
        .args(["models", "scan", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = easel()
        .args(["models", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("tiny-sd ") && l.contains("sd15")),
        "{listed}"
    );

    // Again: refused without --force; with --force and --variant fp16 the folder is replaced.
    let out = pull(dir.path(), &["acme/tiny-sd", "--endpoint", &hub.endpoint()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = pull(
        dir.path(),
        &[
            "acme/tiny-sd",
            "--endpoint",
            &hub.endpoint(),
            "--force",
            "--variant",
            "fp16",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let unet = models.join("tiny-sd/unet");
    assert!(unet
        .join("diffusion_pytorch_model.fp16.safetensors")
        .exists());
    assert!(!unet.join("diffusion_pytorch_model.safetensors").exists());
    assert!(
        !tree(&models).iter().any(|p| p.starts_with('.')),
        "{:?}",
        tree(&models)
    );
}

#[test]
fn a_failed_pull_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(
        "acme/tiny-sd",
        sd15_repo(),
        &["vae/diffusion_pytorch_model.safetensors"],
    );
    let out = pull(dir.path(), &["acme/tiny-sd", "--endpoint", &hub.endpoint()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("vae/diffusion_pytorch_model.safetensors") && err.contains("500"),
        "{err}"
    );
    // Earlier files were downloaded, then thrown away with the temporary folder.
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.ends_with("unet/diffusion_pytorch_model.safetensors")));
    assert!(
        tree(&dir.path().join("models")).is_empty(),
        "{:?}",
        tree(&dir.path().join("models"))
    );

    // A repository whose weights are pickles only is refused before any download.
    let pickles: Vec<(&str, Vec<u8>)> = sd15_repo()
        .into_iter()
        .filter(|(n, _)| !(n.starts_with("text_encoder/") && n.ends_with(".safetensors")))
        .collect();
    let hub = FakeHub::start("acme/old-sd", pickles, &[]);
    let out = pull(dir.path(), &["acme/old-sd", "--endpoint", &hub.endpoint()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("component `text_encoder` has only pickle weights (pytorch_model.bin)"),
        "{err}"
    );
    assert!(
        !hub.requests()
            .iter()
            .any(|r| r.contains("/resolve/") && r.ends_with(".safetensors")),
        "{:?}",
        hub.requests()
    );
    assert!(tree(&dir.path().join("models")).is_empty());
}

#[test]
fn pull_a_single_file_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start("acme/tiny-sd", sd15_repo(), &[]);
    let out = pull(
        dir.path(),
        &[
            "acme/tiny-sd",
            "--endpoint",
            &hub.endpoint(),
            "--file",
            "v1-5-pruned-emaonly.safetensors",
            "--name",
            "emaonly",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let models = dir.path().join("models");
    assert_eq!(tree(&models), ["emaonly.safetensors"]);
    assert_eq!(
        std::fs::read(models.join("emaonly.safetensors")).unwrap(),
        vec![10u8; 1234]
    );
    let out = pull(
        dir.path(),
        &[
            "acme/tiny-sd",
            "--endpoint",
            &hub.endpoint(),
            "--file",
            "nope.safetensors",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no file `nope.safetensors`"),
        "{}",
        stderr(&out)
    );
}

/// A small Sana-shaped repository: the text encoder sharded (default and bf16), the
/// transformer and the VAE single files with bf16 variants.
fn sana_repo(weight_map_shard_2: &str) -> Vec<(&'static str, Vec<u8>)> {
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).unwrap();
    let index = |first: &str, second: &str| {
        json(serde_json::json!({
            "metadata": {"total_size": 300},
            "weight_map": {"embed_tokens.weight": first, "norm.weight": second}
        }))
    };
    vec![
        (".gitattributes", b"*.safetensors filter=lfs".to_vec()),
        (
            "model_index.json",
            json(serde_json::json!({
                "_class_name": "SanaPipeline",
                "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
                "text_encoder": ["transformers", "Gemma2Model"],
                "tokenizer": ["transformers", "GemmaTokenizerFast"],
                "transformer": ["diffusers", "SanaTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderDC"]
            })),
        ),
        ("scheduler/scheduler_config.json", b"{}".to_vec()),
        ("text_encoder/config.json", b"{}".to_vec()),
        (
            "text_encoder/model-00001-of-00002.safetensors",
            vec![1; 200],
        ),
        (
            "text_encoder/model-00002-of-00002.safetensors",
            vec![2; 100],
        ),
        (
            "text_encoder/model.bf16-00001-of-00002.safetensors",
            vec![3; 100],
        ),
        (
            "text_encoder/model.bf16-00002-of-00002.safetensors",
            vec![4; 50],
        ),
        (
            "text_encoder/model.safetensors.index.json",
            index(
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
            ),
        ),
        (
            "text_encoder/model.safetensors.index.bf16.json",
            index("model.bf16-00001-of-00002.safetensors", weight_map_shard_2),
        ),
        ("tokenizer/special_tokens_map.json", b"{}".to_vec()),
        ("tokenizer/tokenizer.json", b"{}".to_vec()),
        ("tokenizer/tokenizer.model", vec![5; 10]),
        ("tokenizer/tokenizer_config.json", b"{}".to_vec()),
        ("transformer/config.json", b"{}".to_vec()),
        (
            "transformer/diffusion_pytorch_model.safetensors",
            vec![6; 80],
        ),
        (
            "transformer/diffusion_pytorch_model.bf16.safetensors",
            vec![7; 40],
        ),
        ("vae/config.json", b"{}".to_vec()),
        ("vae/diffusion_pytorch_model.safetensors", vec![8; 60]),
        ("vae/diffusion_pytorch_model.bf16.safetensors", vec![9; 30]),
    ]
}

#[test]
fn pull_a_sharded_text_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(
        "acme/sana",
        sana_repo("model.bf16-00002-of-00002.safetensors"),
        &[],
    );
    let out = pull(
        dir.path(),
        &[
            "acme/sana",
            "--endpoint",
            &hub.endpoint(),
            "--variant",
            "bf16",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let models = dir.path().join("models");
    assert_eq!(
        tree(&models),
        [
            "sana",
            "sana/model_index.json",
            "sana/scheduler",
            "sana/scheduler/scheduler_config.json",
            "sana/text_encoder",
            "sana/text_encoder/config.json",
            "sana/text_encoder/model.bf16-00001-of-00002.safetensors",
            "sana/text_encoder/model.bf16-00002-of-00002.safetensors",
            "sana/text_encoder/model.safetensors.index.json",
            "sana/tokenizer",
            "sana/tokenizer/special_tokens_map.json",
            "sana/tokenizer/tokenizer.json",
            "sana/tokenizer/tokenizer.model",
            "sana/tokenizer/tokenizer_config.json",
            "sana/transformer",
            "sana/transformer/config.json",
            "sana/transformer/diffusion_pytorch_model.safetensors",
            "sana/vae",
            "sana/vae/config.json",
            "sana/vae/diffusion_pytorch_model.safetensors",
        ]
    );
    let te = models.join("sana/text_encoder");
    assert_eq!(
        std::fs::read(te.join("model.bf16-00002-of-00002.safetensors")).unwrap(),
        vec![4u8; 50]
    );
    // The bf16 index, saved under the default name; the Gemma loader finds the shards.
    let files = easel_diffusion::loader::weight_files(&te, "model").unwrap();
    assert_eq!(
        files,
        [
            te.join("model.bf16-00001-of-00002.safetensors"),
            te.join("model.bf16-00002-of-00002.safetensors"),
        ]
    );
    assert_eq!(
        std::fs::read(models.join("sana/transformer/diffusion_pytorch_model.safetensors")).unwrap(),
        vec![7u8; 40]
    );
    for r in hub.requests() {
        assert!(!r.contains("model-0000"), "default shards fetched: {r}");
    }

    // An index naming a shard the repository does not list: refused once the index is in,
    // before its shards are fetched; nothing is left behind.
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(
        "acme/sana",
        sana_repo("model.bf16-00002-of-00003.safetensors"),
        &[],
    );
    let out = pull(
        dir.path(),
        &[
            "acme/sana",
            "--endpoint",
            &hub.endpoint(),
            "--variant",
            "bf16",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("text_encoder/model.safetensors.index.bf16.json lists shards")
            && err.contains("model.bf16-00002-of-00003.safetensors"),
        "{err}"
    );
    assert!(
        !hub.requests().iter().any(|r| r.contains("-0000")),
        "{:?}",
        hub.requests()
    );
    assert!(tree(&dir.path().join("models")).is_empty());
}

/// `POST /v1/models-folder/pulls` on a running `easel serve`: the same pull as the CLI,
/// reported as it goes and registered when done; admins only; bad input is a 422 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_pull_from_the_hub_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start("acme/tiny-sd", sd15_repo(), &[]);
    let port = free_port();
    let admin = "esk_test_admin_key_for_the_pull_test_0123456789";
    let _server = Killed(
        easel()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("EASEL_ADMIN_KEY", admin)
            .env("HF_ENDPOINT", hub.endpoint())
            .env_remove("HF_TOKEN")
            .env("HF_HOME", dir.path().join("no-hf-home"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    use reqwest::Method;
    let (s, user) = call(
        Method::POST,
        "/v1/keys",
        admin,
        Some(serde_json::json!({"name": "u"})),
    )
    .await;
    assert_eq!(s, 201);
    let user_key = user["key"].as_str().unwrap().to_string();
    let body = serde_json::json!({"repo": "acme/tiny-sd"});
    let (s, _) = call(
        Method::POST,
        "/v1/models-folder/pulls",
        &user_key,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, e) = call(
        Method::POST,
        "/v1/models-folder/pulls",
        admin,
        Some(serde_json::json!({"repo": "not a repo"})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (422, Some("repo")),
        "{e}"
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());

    let (s, started) = call(Method::POST, "/v1/models-folder/pulls", admin, Some(body)).await;
    assert_eq!(
        (s, started["status"].as_str()),
        (202, Some("running")),
        "{started}"
    );
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (_, p) = call(
            Method::GET,
            &format!("/v1/models-folder/pulls/{id}"),
            admin,
            None,
        )
        .await;
        if p["status"] != "running" {
            break p;
        }
        assert!(Instant::now() < deadline, "the pull did not finish: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["model"], "tiny-sd");
    let log = done["lines"].to_string();
    assert!(log.contains("[11/11]"), "a line per file: {log}");
    assert!(done["total_bytes"].as_u64().unwrap() > 0, "{done}");
    // Registered at once.
    let (s, m) = call(Method::GET, "/v1/models/tiny-sd", admin, None).await;
    assert_eq!((s, m["family"].as_str()), (200, Some("sd15")), "{m}");
    let (_, list) = call(Method::GET, "/v1/models-folder/pulls", admin, None).await;
    assert_eq!(list[0]["id"], id.as_str());
    // Again without force: refused before any download.
    let (s, e) = call(
        Method::POST,
        "/v1/models-folder/pulls",
        admin,
        Some(serde_json::json!({"repo": "acme/tiny-sd"})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (409, Some("name")),
        "{e}"
    );
}

/// Users import a LoRA from the hub: `POST /v1/uploads/import {hub}` and Scenario's
/// `huggingFaceModelName` list the repository, take its one `.safetensors` file through
/// the hub code and make it the user's private model in the background (the upload
/// `validating`, then `complete` naming the model, its size learnt). Bad ids are refused
/// before any network; a missing repository or a file over the upload limit fails the
/// upload saying why (the latter before downloading it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_import_loras_from_the_hub() {
    let src = tempfile::tempdir().unwrap();
    let made = easel()
        .args(["models", "make-tiny"])
        .arg(src.path().join("tiny"))
        .args(["--family", "sd15", "--lora", "kohya"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let lora = std::fs::read(src.path().join("tiny-lora.safetensors")).unwrap();
    let hub = FakeHub::start(
        "acme/ink-lora",
        vec![
            (".gitattributes", b"*.safetensors filter=lfs".to_vec()),
            ("README.md", b"# ink".to_vec()),
            ("ink.safetensors", lora.clone()),
        ],
        &[],
    );
    let serve = |dir: &std::path::Path, port: u16, max_upload: &str| {
        Killed(
            easel()
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--workers",
                    "0",
                    "--max-upload",
                    max_upload,
                ])
                .arg("--data-dir")
                .arg(dir)
                .env("EASEL_ADMIN_KEY", ADMIN)
                .env("HF_ENDPOINT", hub.endpoint())
                // The operator's token: never sent for a user's import.
                .env("HF_TOKEN", "hf_operator_secret")
                .env("HF_HOME", dir.join("no-hf-home"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    const ADMIN: &str = "esk_test_admin_key_for_the_lora_import_0123456789";
    let http = reqwest::Client::new();
    let call = |base: String,
                method: reqwest::Method,
                path: &str,
                key: &str,
                body: Option<serde_json::Value>| {
        let mut r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let ready = |base: String| {
        let http = http.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while http.get(format!("{base}/readyz")).send().await.is_err() {
                assert!(Instant::now() < deadline, "server did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The upload once it is no longer `validating` (native and Scenario views alike).
    let settled = |base: String, path: String, key: String| {
        let call = &call;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (s, v) = call(base.clone(), reqwest::Method::GET, &path, &key, None).await;
                assert_eq!(s, 200, "{v}");
                let u = if v.get("upload").is_some() {
                    v["upload"].clone()
                } else {
                    v
                };
                if u["status"] != "validating" {
                    return u;
                }
                assert!(Instant::now() < deadline, "the import did not settle: {u}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    use reqwest::Method;
    // A native hub import of `repo`: accepted (202 `validating`), then as it settled.
    let import = |base: String, key: String, repo: &'static str| {
        let (call, settled) = (&call, &settled);
        async move {
            let (s, v) = call(
                base.clone(),
                Method::POST,
                "/v1/uploads/import",
                &key,
                Some(serde_json::json!({"kind": "lora", "hub": {"repo": repo}})),
            )
            .await;
            assert_eq!((s, v["status"].as_str()), (202, Some("validating")), "{v}");
            assert_eq!(v["source_url"], format!("hf://{repo}"), "{v}");
            let id = v["id"].as_str().unwrap();
            settled(base, format!("/v1/uploads/{id}"), key).await
        }
    };

    // A server with this upload limit, started and with a user: its process (killed when
    // dropped), address, the user's key and its data folder.
    let start = |max_upload: &'static str| {
        let (serve, ready, call) = (&serve, &ready, &call);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let server = serve(dir.path(), port, max_upload);
            let base = format!("http://127.0.0.1:{port}");
            ready(base.clone()).await;
            let (s, user) = call(
                base.clone(),
                Method::POST,
                "/v1/keys",
                ADMIN,
                Some(serde_json::json!({"name": "u"})),
            )
            .await;
            assert_eq!(s, 201, "{user}");
            let key = user["key"].as_str().unwrap().to_string();
            (server, base, key, dir)
        }
    };

    let (_server, base, key, _dir) = start("256MiB").await;
    for (body, status, field) in [
        (
            serde_json::json!({"kind": "lora", "hub": {"repo": "not a repo"}}),
            422,
            "hub.repo",
        ),
        (
            serde_json::json!({"kind": "lora", "hub": {"repo": "acme/ink-lora", "file": "ink.ckpt"}}),
            422,
            "hub.file",
        ),
        (
            serde_json::json!({"hub": {"repo": "acme/ink-lora"}}),
            422,
            "hub",
        ),
    ] {
        let (s, e) = call(
            base.clone(),
            Method::POST,
            "/v1/uploads/import",
            &key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, e["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {e}"
        );
    }
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());

    let done = import(base.clone(), key.clone(), "acme/ink-lora").await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["file_size"], lora.len(), "{done}");
    let model = done["model_id"].as_str().unwrap();
    let (s, m) = call(
        base.clone(),
        Method::GET,
        &format!("/v1/models/{model}"),
        &key,
        None,
    )
    .await;
    assert_eq!(
        (s, m["name"].as_str(), m["family"].as_str()),
        (200, Some("ink-lora"), Some("lora")),
        "{m}"
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.ends_with("/ink.safetensors")),
        "{:?}",
        hub.requests()
    );
    assert!(hub.authorized().is_empty(), "{:?}", hub.authorized());

    // Scenario: `huggingFaceModelName` alone.
    let (s, v) = call(
        base.clone(),
        Method::POST,
        "/scenario/v1/uploads",
        &key,
        Some(serde_json::json!({"huggingFaceModelName": "acme/ink-lora"})),
    )
    .await;
    assert_eq!(
        (
            s,
            v["upload"]["status"].as_str(),
            v["upload"]["source"].as_str(),
            v["upload"]["kind"].as_str()
        ),
        (200, Some("validating"), Some("huggingface"), Some("model")),
        "{v}"
    );
    let id = v["upload"]["id"].as_str().unwrap();
    let done = settled(
        base.clone(),
        format!("/scenario/v1/uploads/{id}"),
        key.clone(),
    )
    .await;
    assert_eq!(done["status"], "complete", "{done}");
    assert!(
        done["entityId"].as_str().unwrap().starts_with("model_"),
        "{done}"
    );
    let (s, e) = call(
        base.clone(),
        Method::POST,
        "/scenario/v1/uploads",
        &key,
        Some(serde_json::json!({"huggingFaceModelName": "../x"})),
    )
    .await;
    assert_eq!(
        (s, e["infos"]["field"].as_str()),
        (400, Some("huggingFaceModelName")),
        "{e}"
    );
    // A repository the hub does not have: the upload fails saying so.
    let failed = import(base.clone(), key.clone(), "acme/nothing").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("404"),
        "{failed}"
    );
    drop(_server);

    // Over the upload limit: refused from the listing, the file never downloaded.
    let (_server, base, key, _dir) = start("1000").await;
    let downloads = || {
        hub.requests()
            .iter()
            .filter(|r| r.ends_with("/ink.safetensors"))
            .count()
    };
    let before = downloads();
    let failed = import(base.clone(), key.clone(), "acme/ink-lora").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("upload limit (1000 bytes)"),
        "{failed}"
    );
    assert_eq!(downloads(), before);
}

/// Kills its process when dropped (a failed assertion leaves no server behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tiny autoencoder's repository (top-level `config.json` of class `AutoencoderTiny`, the
/// original release's files and pickles beside it) installs its config and safetensors weights
/// as `models/vae_approx/<name>/`, which the engine loads; nothing else is downloaded.
#[test]
fn pull_a_tiny_autoencoder() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    easel_diffusion::taesd::make_tiny(src.path(), 4, 1).unwrap();
    let config = std::fs::read(src.path().join("config.json")).unwrap();
    let weights = std::fs::read(src.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let hub = FakeHub::start(
        "acme/taesd",
        vec![
            ("README.md", b"# taesd".to_vec()),
            ("config.json", config.clone()),
            ("diffusion_pytorch_model.safetensors", weights.clone()),
            ("diffusion_pytorch_model.bin", vec![1; 10]),
            ("taesd_decoder.safetensors", vec![2; 10]),
            ("taesd_decoder.pth", vec![3; 10]),
        ],
        &[],
    );
    let out = pull(dir.path(), &["acme/taesd", "--endpoint", &hub.endpoint()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Stable Diffusion 1.x"), "{said}");
    let models = dir.path().join("models");
    assert_eq!(
        tree(&models),
        [
            "vae_approx",
            "vae_approx/taesd",
            "vae_approx/taesd/config.json",
            "vae_approx/taesd/diffusion_pytorch_model.safetensors"
        ]
    );
    assert_eq!(
        std::fs::read(models.join("vae_approx/taesd/diffusion_pytorch_model.safetensors")).unwrap(),
        weights
    );
    let found = easel_diffusion::taesd::find(&models, "taesd").unwrap();
    let model = dir.path().join("sd");
    easel_diffusion::tiny::make_tiny(&model, "sd15", 1).unwrap();
    let cpu = easel_diffusion::engine::Device::cpu();
    let p = easel_diffusion::engine::Pipeline::load_dir(&model, &[], &cpu).unwrap();
    p.attach_tiny_vae(&found, &cpu).unwrap();
    // Under a name no family looks for: installed, with a hint.
    let out = pull(
        dir.path(),
        &[
            "acme/taesd",
            "--endpoint",
            &hub.endpoint(),
            "--name",
            "mine",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--name taesd"));
    // Again without --force: refused.
    let out = pull(dir.path(), &["acme/taesd", "--endpoint", &hub.endpoint()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
}
