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
    assert!(String::from_utf8_lossy(&out.stdout).contains("API key: esk_"));
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
    let out = easel()
        .args(["jobs", "list"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
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
    let out = easel()
        .args([
            "bench",
            "diffusion",
            "--tiny",
            "--size",
            "64",
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
        "UNet step with guidance",
        "VAE decode",
        "model load",
        "peak RSS",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}
