//! Scale-out under faults, with the real binary: one API process (`--workers 0`) and two
//! `easel worker` processes on PostgreSQL, blobs on S3. Generations are submitted under load
//! while a worker process is killed with SIGKILL mid-job, again and again (a new one started
//! each time). Every accepted job must end exactly once, every asset's blob must be on S3
//! and no blob without its row, and the killed workers' jobs are finished by the others once
//! their lease expires. The counts and recovery times are printed (`--nocapture`).
//!
//! Needs `EASEL_TEST_DATABASE_URL` and `EASEL_TEST_S3_ENDPOINT` (CI sets both); skipped
//! with a line saying so otherwise.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use easel_store::{Blobs, Db};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "esk_scale_out_admin_key_0123456789";
/// Seconds a lease lasts without a heartbeat.
const LEASE_SECONDS: u64 = 2;
const KILLS: usize = 4;
const JOBS: usize = 24;

/// Child processes, killed when the test ends however it ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Setup {
    db_url: String,
    store_url: String,
    endpoint: String,
    data: std::path::PathBuf,
}

impl Setup {
    fn easel(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_easel"));
        c.args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .args([
                "--database-url",
                &self.db_url,
                "--store-url",
                &self.store_url,
            ])
            .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
            .args(["--orphan-grace", "1"])
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_S3_ENDPOINT", &self.endpoint)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in s3_credentials() {
            c.env(k, v);
        }
        c
    }

    fn worker(&self) -> Child {
        self.easel(&["worker", "--workers", "1"])
            .spawn()
            .expect("easel worker starts")
    }
}

fn s3_credentials() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn count(db: &Db, sql: &str) -> i64 {
    let row = sqlx::query(sql).fetch_one(&db.pool).await.unwrap();
    sqlx::Row::try_get::<i64, _>(&row, "n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_no_job_and_leave_no_orphan() {
    let (Ok(pg), Ok(endpoint)) = (
        std::env::var("EASEL_TEST_DATABASE_URL"),
        std::env::var("EASEL_TEST_S3_ENDPOINT"),
    ) else {
        eprintln!(
            "skipping the scale-out test: it needs EASEL_TEST_DATABASE_URL and \
             EASEL_TEST_S3_ENDPOINT (CI sets both)"
        );
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let pgdb = easel_store::testing::postgres(&pg).await;
    let bucket = "easel-test";
    reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("the S3 endpoint answers");
    let prefix = format!("scale-out-{}", easel_store::testing::random_suffix());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    easel_diffusion::tiny::make_tiny(&data.join("models/tiny"), "sd15", 0).unwrap();
    let setup = Setup {
        db_url: pgdb.db_url.clone(),
        store_url: format!("s3://{bucket}/{prefix}"),
        endpoint: endpoint.clone(),
        data,
    };

    let port = free_port();
    let api = setup
        .easel(&[
            "serve",
            "--workers",
            "0",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .spawn()
        .expect("easel serve starts");
    let mut procs = Procs(vec![api]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let workers = [setup.worker(), setup.worker()];
    procs.0.extend(workers);

    let v: Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "load"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = v["key"].as_str().expect("a key").to_string();

    // The load: generations long enough to be killed in the middle of.
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let body = json!({"task": "txt2img", "model": "tiny",
            "input": {"prompt": format!("job {i}"), "width": 64, "height": 64, "steps": 30}});
        let r = http
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }

    let db = Db::connect(&setup.db_url).await.unwrap();
    let running_on = |db: Db| async move {
        count(
            &db,
            "SELECT COUNT(*) AS n FROM jobs WHERE status = 'running'",
        )
        .await
    };
    // Kill a worker process while it runs a job, start another, and again.
    let mut kills: Vec<(Instant, chrono::DateTime<chrono::Utc>)> = Vec::new();
    for k in 0..KILLS {
        let deadline = Instant::now() + Duration::from_secs(60);
        while running_on(db.clone()).await < 2 {
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = 1 + (k % 2); // procs[1] and procs[2] are the workers
        let pid = procs.0[victim].id() as i32;
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = procs.0[victim].wait();
        kills.push((Instant::now(), chrono::Utc::now()));
        procs.0[victim] = setup.worker();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // Every job ends.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let open = count(
            &db,
            "SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running')",
        )
        .await;
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} jobs never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = kills[0].0.elapsed();

    // Exactly once: one terminal event per job; a succeeded job's outputs are its asset rows.
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut retried = Vec::new();
    for id in &ids {
        let job = easel_store::jobs::get(&db, id).await.unwrap().unwrap();
        *statuses.entry(job.status.as_str().to_string()).or_default() += 1;
        let ends = count(
            &db,
            &format!(
                "SELECT COUNT(*) AS n FROM job_events WHERE job_id = '{id}' AND kind = 'status' \
                 AND (data LIKE '%\"succeeded\"%' OR data LIKE '%\"failed\"%' \
                 OR data LIKE '%\"canceled\"%')"
            ),
        )
        .await;
        assert_eq!(ends, 1, "{id} ended once");
        match job.status.as_str() {
            "succeeded" => {
                let rows = count(
                    &db,
                    &format!("SELECT COUNT(*) AS n FROM assets WHERE job_id = '{id}'"),
                )
                .await;
                assert_eq!(rows as usize, job.outputs.len(), "{id}");
                assert_eq!(job.outputs.len(), 1, "{id}");
            }
            "failed" => {
                // Only a job whose every attempt was cut short by a dying worker may fail,
                // and its error says so.
                let e = job.error.as_ref().unwrap();
                assert_eq!(e.code, "lease_expired", "{id}: {e:?}");
                assert!(e.message.contains("worker"), "{id}: {e:?}");
            }
            other => panic!("{id} ended {other}"),
        }
        if job.attempts > 1 {
            retried.push(job);
        }
    }
    assert!(!retried.is_empty(), "some job was cut short by a kill");

    // Every asset's blob is on S3, and (once the collector ran) nothing else is.
    for (k, v) in s3_credentials() {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    std::env::set_var("EASEL_S3_ENDPOINT", &endpoint);
    let blobs = Blobs::open(&setup.store_url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &db,
        "SELECT COUNT(*) AS n FROM blob_intents WHERE claimed < 2",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "blob intents were never collected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let assets: Vec<String> = sqlx::query("SELECT owner_id, id FROM assets")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            use sqlx::Row;
            easel_core::asset::blob_key(
                &r.try_get::<String, _>("owner_id").unwrap(),
                &r.try_get::<String, _>("id").unwrap(),
            )
        })
        .collect();
    for key in &assets {
        assert!(blobs.exists(key).await.unwrap(), "{key} is on S3");
    }
    let stored = blobs.list_keys("assets/").await.unwrap();
    assert_eq!(
        stored.len(),
        assets.len(),
        "no blob without its row: {stored:?}"
    );

    // Recovery: from each kill to the end of the jobs it cut short.
    let recovered: Vec<f64> = retried
        .iter()
        .filter_map(|j| {
            let done = j.completed_at?;
            let kill = kills.iter().rev().find(|(_, at)| *at <= done)?.1;
            Some((done - kill).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    eprintln!(
        "scale-out: {} jobs, {KILLS} SIGKILLs, statuses {statuses:?}, {} jobs retried \
         (attempts {:?}), {} assets = {} blobs on S3, 0 orphans; recovery after a kill \
         (lease {LEASE_SECONDS} s): {:?} s; all done {:.1} s after the first kill",
        ids.len(),
        retried.len(),
        retried.iter().map(|j| j.attempts).collect::<Vec<_>>(),
        assets.len(),
        stored.len(),
        recovered,
        wall.as_secs_f64(),
    );
    drop(procs);
    drop(pgdb);
}
