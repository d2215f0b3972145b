//! Invariants of ARCHITECTURE.md that the dependency graph shows: only `easel-diffusion`
//! depends on candle, and `easel-core` depends on nothing that does I/O, HTTP or candle.

use std::process::Command;

use serde_json::Value;

/// The workspace's packages and the names of their declared dependencies.
fn packages() -> Vec<(String, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn only_the_engine_depends_on_candle() {
    let all = packages();
    assert!(all.iter().any(|(n, _)| n == "easel-diffusion"), "{all:?}");
    for (name, deps) in &all {
        // candle, and the matrix multiply under the engine's own kernels.
        let candle: Vec<&String> = deps
            .iter()
            .filter(|d| d.starts_with("candle") || *d == "gemm")
            .collect();
        if name == "easel-diffusion" {
            assert!(
                candle.iter().any(|d| *d == "gemm") && candle.len() > 1,
                "the engine is built on candle and gemm: {candle:?}"
            );
        } else {
            assert!(candle.is_empty(), "{name} depends on {candle:?}");
        }
    }
}

#[test]
fn the_core_does_no_io() {
    let all = packages();
    let (_, deps) = all.iter().find(|(n, _)| n == "easel-core").unwrap();
    for banned in ["sqlx", "tokio", "axum", "reqwest", "object_store", "hyper"] {
        assert!(
            !deps.iter().any(|d| d == banned || d.starts_with("candle")),
            "easel-core depends on {banned}: {deps:?}"
        );
    }
}
