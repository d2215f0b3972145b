//! Jobs: lifecycle, idempotency, caps, cancel, leases, ordering, concurrent claims.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use easel_core::asset::blob_key;
use easel_core::job::{codes, JobError, NewJob, Progress};
use easel_core::{ErrorKind, JobStatus};
use easel_store::jobs::{self, Finished, JobFilter, LeaseState};
use easel_store::{assets, usage};

use crate::output_asset;
use crate::testing::{backends, count, exec, new_job, user};

const LONG_LEASE: i64 = 60_000;

fn statuses(h: &[easel_core::job::StatusChange]) -> Vec<JobStatus> {
    h.iter().map(|c| c.status).collect()
}

#[tokio::test]
async fn lifecycle_insert_claim_progress_succeed() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = user(db, "alice").await;

        let ins = jobs::insert(db, &new_job(&owner.id, "upscale"), 100)
            .await
            .unwrap();
        assert!(ins.created, "{n}");
        let job = ins.job;
        assert_eq!(job.status, JobStatus::Queued, "{n}");
        assert_eq!((job.attempts, job.max_attempts), (0, 3), "{n}");
        assert_eq!(job.progress, 0.0, "{n}");
        assert!(
            job.started_at.is_none() && job.completed_at.is_none(),
            "{n}"
        );
        assert_eq!(job.input["n"], 1, "{n}: input round trip");

        let claimed = jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        assert_eq!(claimed.id, job.id, "{n}");
        assert_eq!(claimed.status, JobStatus::Running, "{n}");
        assert_eq!(claimed.attempts, 1, "{n}");
        let started = claimed.started_at.expect("started_at set by claim");
        assert!(started >= job.created_at, "{n}");
        assert!(
            jobs::claim(db, "w2", LONG_LEASE, None)
                .await
                .unwrap()
                .is_none(),
            "{n}: one job only"
        );

        let p = Progress {
            fraction: 0.5,
            step: Some(1),
            total_steps: Some(2),
        };
        let st = jobs::set_progress(db, &job.id, "w1", LONG_LEASE, &p, false)
            .await
            .unwrap();
        assert_eq!(
            st,
            LeaseState::Held {
                cancel_requested: false
            },
            "{n}"
        );
        let mid = jobs::get(db, &job.id).await.unwrap().unwrap();
        assert_eq!(
            (mid.progress, mid.step, mid.total_steps),
            (0.5, Some(1), Some(2)),
            "{n}"
        );
        assert_eq!(
            jobs::heartbeat(db, &job.id, "w1", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Held {
                cancel_requested: false
            },
            "{n}"
        );

        // Blobs first, then rows with the terminal state.
        let a1 = output_asset(&owner.id, &job.id, 0, b"\x89PNG one");
        let a2 = output_asset(&owner.id, &job.id, 1, b"\x89PNG two");
        for (a, data) in [(&a1, &b"\x89PNG one"[..]), (&a2, &b"\x89PNG two"[..])] {
            b.blobs()
                .put(
                    &blob_key(&a.owner_id, &a.id),
                    bytes::Bytes::copy_from_slice(data),
                )
                .await
                .unwrap();
        }
        let fin = jobs::succeed(db, &job.id, "w1", &[a1.clone(), a2.clone()], 0.25, "local")
            .await
            .unwrap();
        let Finished::Done(done) = fin else {
            panic!("{n}: expected Done, got {fin:?}")
        };
        assert_eq!(done.status, JobStatus::Succeeded, "{n}");
        assert_eq!(done.outputs, vec![a1.id.clone(), a2.id.clone()], "{n}");
        assert_eq!(done.usage_units, 0.25, "{n}");
        assert_eq!(done.provider.as_deref(), Some("local"), "{n}");
        assert_eq!(done.progress, 1.0, "{n}");
        assert_eq!(done.started_at, Some(started), "{n}: started_at kept");
        let completed = done.completed_at.expect("completed_at");
        assert!(completed >= started, "{n}");
        assert!(done.error.is_none() && !done.cancel_requested, "{n}");
        assert_eq!(
            jobs::get(db, &job.id).await.unwrap().as_ref(),
            Some(&done),
            "{n}: get = returned row"
        );

        // Status history and the event log.
        let h = jobs::history(db, &job.id).await.unwrap();
        assert_eq!(
            statuses(&h),
            vec![JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
            "{n}"
        );
        assert!(
            h.windows(2).all(|w| w[0].at <= w[1].at),
            "{n}: history in time order"
        );
        let ev = jobs::events_after(db, &job.id, 0).await.unwrap();
        let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["status", "status", "progress", "status"], "{n}");
        assert!(
            ev.windows(2).all(|w| w[0].id < w[1].id),
            "{n}: ids increase: {ev:?}"
        );
        assert!(ev.iter().all(|e| e.job_id == job.id), "{n}");
        assert_eq!(ev[1].data["status"], "running", "{n}");
        assert_eq!(ev[1].data["attempt"], 1, "{n}");
        assert_eq!(ev[2].data["fraction"], 0.5, "{n}");
        assert_eq!(ev[2].data["step"], 1, "{n}");
        assert_eq!(ev[3].data["status"], "succeeded", "{n}");
        let rest = jobs::events_after(db, &job.id, ev[1].id).await.unwrap();
        assert_eq!(rest, ev[2..].to_vec(), "{n}: resume after an id");
        assert!(
            jobs::events_after(db, &job.id, ev[3].id)
                .await
                .unwrap()
                .is_empty(),
            "{n}"
        );
        assert!(
            jobs::events_after(db, "job_other", 0)
                .await
                .unwrap()
                .is_empty(),
            "{n}"
        );

        // Asset rows.
        assert_eq!(
            assets::get(db, &a1.id).await.unwrap(),
            Some(a1.clone()),
            "{n}"
        );
        assert_eq!(
            assets::get(db, &a2.id).await.unwrap(),
            Some(a2.clone()),
            "{n}"
        );
        let all = |before: Option<&str>, limit| assets::AssetFilter {
            owner_id: owner.id.clone(),
            before: before.map(str::to_string),
            limit,
            ..Default::default()
        };
        let listed = assets::list(db, &all(None, 10)).await.unwrap();
        assert_eq!(listed.len(), 2, "{n}");
        assert!(listed[0].id > listed[1].id, "{n}: newest first");
        let older = assets::list(db, &all(Some(&listed[0].id), 10))
            .await
            .unwrap();
        assert_eq!(older, vec![listed[1].clone()], "{n}: the cursor");
        assert_eq!(
            assets::list(db, &all(None, 1)).await.unwrap().len(),
            1,
            "{n}: limit"
        );
        let nobody = assets::AssetFilter {
            owner_id: "usr_nobody".into(),
            limit: 10,
            ..Default::default()
        };
        assert!(assets::list(db, &nobody).await.unwrap().is_empty(), "{n}");
        // Filters: by job, by task (with `uploaded` for assets of no job), by parent.
        let by = |f: assets::AssetFilter| async move { assets::list(db, &f).await.unwrap() };
        let of_job = by(assets::AssetFilter {
            job_id: Some(job.id.clone()),
            ..all(None, 10)
        })
        .await;
        assert_eq!(of_job.len(), 2, "{n}");
        let none = by(assets::AssetFilter {
            job_id: Some("job_other".into()),
            ..all(None, 10)
        })
        .await;
        assert!(none.is_empty(), "{n}");
        let upscales = by(assets::AssetFilter {
            tasks: vec!["upscale".into()],
            ..all(None, 10)
        })
        .await;
        assert_eq!(upscales.len(), 2, "{n}: the job's task");
        let uploads = by(assets::AssetFilter {
            tasks: vec!["uploaded".into(), "txt2img".into()],
            ..all(None, 10)
        })
        .await;
        assert!(uploads.is_empty(), "{n}: no uploads, no txt2img");
        let children = by(assets::AssetFilter {
            parent_id: Some(a1.id.clone()),
            ..all(None, 10)
        })
        .await;
        assert!(children.is_empty(), "{n}");
        let found = jobs::get_many(db, &[job.id.as_str(), "job_missing"])
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            [job.id.as_str()],
            "{n}: unknown ids left out"
        );
        assert!(jobs::get_many(db, &[]).await.unwrap().is_empty(), "{n}");
        let many = assets::get_many(db, &[&a1.id, "ast_missing", &a2.id])
            .await
            .unwrap();
        assert_eq!(many.len(), 2, "{n}: unknown ids left out");
        assert_eq!(b.blob_count(), 2, "{n}");
        assert!(
            b.blobs()
                .exists(&blob_key(&owner.id, &a1.id))
                .await
                .unwrap(),
            "{n}"
        );

        // Usage.
        let rows = usage::list(db, Some(&owner.id), None).await.unwrap();
        assert_eq!(rows.len(), 1, "{n}: {rows:?}");
        let r = &rows[0];
        assert_eq!(r.day, completed.format("%Y-%m-%d").to_string(), "{n}");
        assert_eq!(
            (r.task.as_str(), r.jobs, r.outputs),
            ("upscale", 1, 2),
            "{n}"
        );
        assert_eq!(r.units, 0.25, "{n}");

        // The job is over: a second finish by the same worker changes nothing.
        let again = jobs::succeed(db, &job.id, "w1", &[], 9.0, "local")
            .await
            .unwrap();
        assert_eq!(again, Finished::LeaseLost, "{n}");
        assert_eq!(
            jobs::heartbeat(db, &job.id, "w1", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Lost,
            "{n}"
        );
        assert_eq!(jobs::get(db, &job.id).await.unwrap(), Some(done), "{n}");
        assert_eq!(usage::list(db, None, None).await.unwrap().len(), 1, "{n}");

        // Deleting an output drops it from the job's outputs, in the same transaction.
        assert!(assets::delete(db, &a1.id).await.unwrap(), "{n}");
        let after = jobs::get(db, &job.id).await.unwrap().unwrap();
        assert_eq!(after.outputs, vec![a2.id.clone()], "{n}");
        assert!(
            !assets::delete(db, &a1.id).await.unwrap(),
            "{n}: already gone"
        );
    }
}

#[tokio::test]
async fn idempotency_keys() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;
        let keyed = |owner: &str| {
            let mut j = new_job(owner, "upscale");
            j.idempotency_key = Some("key-1".into());
            j
        };

        let first = jobs::insert(db, &keyed(&alice.id), 100).await.unwrap();
        assert!(first.created, "{n}");
        let again = jobs::insert(db, &keyed(&alice.id), 100).await.unwrap();
        assert!(!again.created, "{n}: same owner and key");
        assert_eq!(again.job.id, first.job.id, "{n}");

        let other = jobs::insert(db, &keyed(&bob.id), 100).await.unwrap();
        assert!(other.created, "{n}: keys are per owner");
        assert_ne!(other.job.id, first.job.id, "{n}");

        // A job without a key is always new.
        let plain = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap();
        assert!(plain.created, "{n}");

        // The key expires after 24 hours.
        let aged = exec(
            db,
            &format!(
                "UPDATE idempotency_keys SET created_at = created_at - {} WHERE job_id = '{}'",
                jobs::IDEMPOTENCY_TTL_MS + 3_600_000,
                first.job.id
            ),
        )
        .await;
        assert_eq!(aged, 1, "{n}");
        let fresh = jobs::insert(db, &keyed(&alice.id), 100).await.unwrap();
        assert!(fresh.created, "{n}: an expired key makes a new job");
        assert_ne!(fresh.job.id, first.job.id, "{n}");
        let fresh_again = jobs::insert(db, &keyed(&alice.id), 100).await.unwrap();
        assert!(
            !fresh_again.created,
            "{n}: the key now points at the new job"
        );
        assert_eq!(fresh_again.job.id, fresh.job.id, "{n}");

        let sql = format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE owner_id = '{}'",
            alice.id
        );
        assert_eq!(count(db, &sql).await, 3, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_with_one_key_make_one_job() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let mut nj = new_job(&alice.id, "upscale");
        nj.idempotency_key = Some("race".into());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (db, nj) = (db.clone(), nj.clone());
                tokio::spawn(async move { jobs::insert(&db, &nj, 100).await })
            })
            .collect();
        let mut created = 0;
        let mut ids = HashSet::new();
        for t in tasks {
            let ins = t.await.unwrap().unwrap_or_else(|e| panic!("{n}: {e}"));
            created += ins.created as usize;
            ids.insert(ins.job.id);
        }
        assert_eq!((created, ids.len()), (1, 1), "{n}: one job, created once");
        let sql = format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE owner_id = '{}'",
            alice.id
        );
        assert_eq!(count(db, &sql).await, 1, "{n}: no stray job rows");
        let sql = "SELECT COUNT(*) AS n FROM job_events";
        assert_eq!(count(db, sql).await, 1, "{n}: no stray events");
    }
}

#[tokio::test]
async fn queued_cap_per_owner() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;
        let j1 = jobs::insert(db, &new_job(&alice.id, "upscale"), 2)
            .await
            .unwrap()
            .job;
        jobs::insert(db, &new_job(&alice.id, "upscale"), 2)
            .await
            .unwrap();
        let e = match jobs::insert(db, &new_job(&alice.id, "upscale"), 2).await {
            Err(e) => e,
            Ok(i) => panic!("{n}: third job accepted: {:?}", i.job.id),
        };
        assert_eq!(e.kind, ErrorKind::RateLimited, "{n}: {e}");
        assert!(
            e.retry_after.is_some_and(|s| s > 0),
            "{n}: retry_after {:?}",
            e.retry_after
        );

        // Someone else is not affected, and a rejected insert stores nothing.
        jobs::insert(db, &new_job(&bob.id, "upscale"), 2)
            .await
            .unwrap();
        let sql = format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE owner_id = '{}'",
            alice.id
        );
        assert_eq!(count(db, &sql).await, 2, "{n}");

        // Only queued jobs count: once one leaves the queue there is room again.
        jobs::request_cancel(db, &j1.id, Some(&alice.id))
            .await
            .unwrap();
        jobs::insert(db, &new_job(&alice.id, "upscale"), 2)
            .await
            .unwrap();
        let claimed = jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        let owner = claimed.owner_id;
        jobs::insert(db, &new_job(&owner, "upscale"), 2)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn cancel_queued_running_and_finished_jobs() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;

        // Queued: canceled at once, never claimed.
        let q = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        let e = jobs::request_cancel(db, &q.id, Some(&bob.id))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}: another owner's job");
        let e = jobs::request_cancel(db, "job_01jaaaaaaaaaaaaaaaaaaaaaaa", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}: no such job");
        let c = jobs::request_cancel(db, &q.id, Some(&alice.id))
            .await
            .unwrap();
        assert_eq!(c.status, JobStatus::Canceled, "{n}");
        assert!(c.completed_at.is_some(), "{n}");
        assert!(
            jobs::claim(db, "w1", LONG_LEASE, None)
                .await
                .unwrap()
                .is_none(),
            "{n}"
        );
        assert_eq!(
            statuses(&jobs::history(db, &q.id).await.unwrap()),
            vec![JobStatus::Queued, JobStatus::Canceled],
            "{n}"
        );
        // Canceling again is harmless.
        let again = jobs::request_cancel(db, &q.id, Some(&alice.id))
            .await
            .unwrap();
        assert_eq!(again.status, JobStatus::Canceled, "{n}");

        // Running: flagged; the worker learns it and finishes the job as canceled.
        let r = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        let e = jobs::request_cancel(db, &r.id, Some(&bob.id))
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "{n}: another owner's running job"
        );
        let flagged = jobs::request_cancel(db, &r.id, Some(&alice.id))
            .await
            .unwrap();
        assert_eq!(flagged.status, JobStatus::Running, "{n}");
        assert!(flagged.cancel_requested, "{n}");
        assert_eq!(
            jobs::heartbeat(db, &r.id, "w1", LONG_LEASE).await.unwrap(),
            LeaseState::Held {
                cancel_requested: true
            },
            "{n}"
        );
        let p = Progress {
            fraction: 0.3,
            step: None,
            total_steps: None,
        };
        assert_eq!(
            jobs::set_progress(db, &r.id, "w1", LONG_LEASE, &p, false)
                .await
                .unwrap(),
            LeaseState::Held {
                cancel_requested: true
            },
            "{n}"
        );
        let kinds: Vec<String> = jobs::events_after(db, &r.id, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(
            kinds.iter().any(|k| k == "cancel_requested"),
            "{n}: {kinds:?}"
        );
        let fin = jobs::finish_canceled(db, &r.id, "w1").await.unwrap();
        let Finished::Canceled(j) = fin else {
            panic!("{n}: {fin:?}")
        };
        assert_eq!(j.status, JobStatus::Canceled, "{n}");
        assert_eq!(
            statuses(&jobs::history(db, &r.id).await.unwrap()),
            vec![JobStatus::Queued, JobStatus::Running, JobStatus::Canceled],
            "{n}"
        );

        // A cancel that arrives before `succeed` wins: no asset rows, no usage.
        let s = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        jobs::request_cancel(db, &s.id, None).await.unwrap();
        let a = output_asset(&alice.id, &s.id, 0, b"late");
        let fin = jobs::succeed(db, &s.id, "w1", std::slice::from_ref(&a), 1.0, "local")
            .await
            .unwrap();
        let Finished::Canceled(j) = fin else {
            panic!("{n}: succeed after cancel gave {fin:?}")
        };
        assert_eq!(j.status, JobStatus::Canceled, "{n}");
        assert!(j.outputs.is_empty(), "{n}");
        assert_eq!(
            assets::get(db, &a.id).await.unwrap(),
            None,
            "{n}: no asset row"
        );
        let sql = format!("SELECT COUNT(*) AS n FROM assets WHERE job_id = '{}'", s.id);
        assert_eq!(count(db, &sql).await, 0, "{n}");
        assert!(
            usage::list(db, None, None).await.unwrap().is_empty(),
            "{n}: no usage"
        );

        // Same for `fail`: the pending cancel wins.
        let f = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        jobs::request_cancel(db, &f.id, None).await.unwrap();
        let fin = jobs::fail(db, &f.id, "w1", &JobError::new(codes::TASK_FAILED, "boom"))
            .await
            .unwrap();
        assert!(
            matches!(&fin, Finished::Canceled(j) if j.status == JobStatus::Canceled && j.error.is_none()),
            "{n}: {fin:?}"
        );

        // A finished job cannot be canceled.
        let d = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        let a = output_asset(&alice.id, &d.id, 0, b"done");
        let fin = jobs::succeed(db, &d.id, "w1", &[a], 1.0, "local")
            .await
            .unwrap();
        assert!(matches!(fin, Finished::Done(_)), "{n}: {fin:?}");
        let e = jobs::request_cancel(db, &d.id, Some(&alice.id))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}: {e}");
        let e = jobs::request_cancel(db, &d.id, Some(&bob.id))
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "{n}: another owner's finished job"
        );
        let still = jobs::get(db, &d.id).await.unwrap().unwrap();
        assert_eq!(still.status, JobStatus::Succeeded, "{n}");
        assert!(!still.cancel_requested, "{n}");
    }
}

#[tokio::test]
async fn expired_leases_requeue_then_fail() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let tasks = |t: &str| vec![t.to_string()];

        // Worker 1's lease expires; the job is requeued with its attempt counted.
        let job = jobs::insert(db, &new_job(&alice.id, "lease"), 100)
            .await
            .unwrap()
            .job;
        let c1 = jobs::claim(db, "w1", 2, Some(&tasks("lease")))
            .await
            .unwrap()
            .expect(n);
        assert_eq!(c1.attempts, 1, "{n}");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let reaped = jobs::reap_expired(db).await.unwrap();
        assert_eq!(reaped.len(), 1, "{n}: {reaped:?}");
        assert_eq!(reaped[0].id, job.id, "{n}");
        assert_eq!(reaped[0].status, JobStatus::Queued, "{n}");
        assert_eq!(reaped[0].attempts, 1, "{n}: attempts kept");
        assert!(
            jobs::reap_expired(db).await.unwrap().is_empty(),
            "{n}: reaped once"
        );

        // Worker 2 takes it over; worker 1 can no longer touch it.
        let c2 = jobs::claim(db, "w2", LONG_LEASE, Some(&tasks("lease")))
            .await
            .unwrap()
            .expect(n);
        assert_eq!((c2.id.as_str(), c2.attempts), (job.id.as_str(), 2), "{n}");
        let before = jobs::get(db, &job.id).await.unwrap().unwrap();
        let a = output_asset(&alice.id, &job.id, 0, b"stale");
        let fin = jobs::succeed(db, &job.id, "w1", std::slice::from_ref(&a), 1.0, "local")
            .await
            .unwrap();
        assert_eq!(fin, Finished::LeaseLost, "{n}");
        assert_eq!(
            jobs::heartbeat(db, &job.id, "w1", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Lost,
            "{n}"
        );
        let p = Progress {
            fraction: 0.9,
            step: None,
            total_steps: None,
        };
        assert_eq!(
            jobs::set_progress(db, &job.id, "w1", LONG_LEASE, &p, true)
                .await
                .unwrap(),
            LeaseState::Lost,
            "{n}"
        );
        let err = JobError::new(codes::TASK_FAILED, "stale");
        assert_eq!(
            jobs::fail(db, &job.id, "w1", &err).await.unwrap(),
            Finished::LeaseLost,
            "{n}"
        );
        assert_eq!(
            jobs::finish_canceled(db, &job.id, "w1").await.unwrap(),
            Finished::LeaseLost,
            "{n}"
        );
        assert_eq!(jobs::release(db, &job.id, "w1").await.unwrap(), None, "{n}");
        assert_eq!(
            jobs::get(db, &job.id).await.unwrap(),
            Some(before),
            "{n}: nothing changed"
        );
        assert_eq!(assets::get(db, &a.id).await.unwrap(), None, "{n}");
        let progress_events = jobs::events_after(db, &job.id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "progress")
            .count();
        assert_eq!(progress_events, 0, "{n}");
        assert_eq!(
            jobs::heartbeat(db, &job.id, "w2", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Held {
                cancel_requested: false
            },
            "{n}"
        );
        assert!(
            jobs::reap_expired(db).await.unwrap().is_empty(),
            "{n}: w2's lease is live"
        );
        let fin = jobs::succeed(db, &job.id, "w2", &[a], 1.0, "local")
            .await
            .unwrap();
        assert!(
            matches!(&fin, Finished::Done(j) if j.attempts == 2),
            "{n}: {fin:?}"
        );

        // After max_attempts expiries the job fails with `lease_expired`.
        let mut nj = new_job(&alice.id, "doomed");
        nj.max_attempts = 2;
        let doomed = jobs::insert(db, &nj, 100).await.unwrap().job;
        for attempt in 1..=2u32 {
            let c = jobs::claim(db, &format!("w{attempt}"), 2, Some(&tasks("doomed")))
                .await
                .unwrap()
                .expect(n);
            assert_eq!(c.attempts, attempt, "{n}");
            tokio::time::sleep(Duration::from_millis(30)).await;
            let reaped = jobs::reap_expired(db).await.unwrap();
            assert_eq!(reaped.len(), 1, "{n}");
        }
        let failed = jobs::get(db, &doomed.id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed, "{n}");
        let e = failed.error.expect("error");
        assert_eq!(e.code, codes::LEASE_EXPIRED, "{n}");
        assert!(e.message.contains("2 attempts"), "{n}: {}", e.message);
        assert!(failed.completed_at.is_some(), "{n}");
        assert_eq!(
            statuses(&jobs::history(db, &doomed.id).await.unwrap()),
            [
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Failed
            ],
            "{n}"
        );
        assert!(
            jobs::claim(db, "w3", LONG_LEASE, Some(&tasks("doomed")))
                .await
                .unwrap()
                .is_none(),
            "{n}"
        );

        // An expired job with a pending cancel ends canceled.
        let cj = jobs::insert(db, &new_job(&alice.id, "cancelme"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", 2, Some(&tasks("cancelme")))
            .await
            .unwrap()
            .expect(n);
        jobs::request_cancel(db, &cj.id, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let reaped = jobs::reap_expired(db).await.unwrap();
        assert_eq!(reaped.len(), 1, "{n}");
        assert_eq!(reaped[0].status, JobStatus::Canceled, "{n}");
    }
}

#[tokio::test]
async fn release_requeues_without_counting_the_attempt() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let job = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        let p = Progress {
            fraction: 0.5,
            step: Some(5),
            total_steps: Some(10),
        };
        jobs::set_progress(db, &job.id, "w1", LONG_LEASE, &p, false)
            .await
            .unwrap();
        assert_eq!(
            jobs::release(db, &job.id, "w2").await.unwrap(),
            None,
            "{n}: not w2's job"
        );
        let rel = jobs::release(db, &job.id, "w1").await.unwrap().expect(n);
        assert_eq!(rel.status, JobStatus::Queued, "{n}");
        assert_eq!(rel.attempts, 0, "{n}: the attempt is not counted");
        assert_eq!((rel.progress, rel.step), (0.0, None), "{n}");
        let last = jobs::events_after(db, &job.id, 0)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(last.data["status"], "queued", "{n}");
        assert!(last.data["reason"].is_string(), "{n}: {last:?}");
        assert_eq!(
            jobs::heartbeat(db, &job.id, "w1", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Lost,
            "{n}"
        );

        let again = jobs::claim(db, "w2", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        assert_eq!(
            (again.id.as_str(), again.attempts),
            (job.id.as_str(), 1),
            "{n}"
        );

        // Releasing a job with a pending cancel cancels it.
        jobs::request_cancel(db, &job.id, None).await.unwrap();
        let rel = jobs::release(db, &job.id, "w2").await.unwrap().expect(n);
        assert_eq!(rel.status, JobStatus::Canceled, "{n}");
    }
}

#[tokio::test]
async fn higher_priority_is_claimed_first() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let mut ids = Vec::new();
        for p in [0, 10, -5, 1000] {
            let mut j = new_job(&alice.id, "upscale");
            j.priority = p;
            ids.push(jobs::insert(db, &j, 100).await.unwrap().job);
        }
        assert_eq!(ids[3].priority, 100, "{n}: priority is clamped");
        let mut order = Vec::new();
        while let Some(j) = jobs::claim(db, "w1", LONG_LEASE, None).await.unwrap() {
            order.push(j.priority);
        }
        assert_eq!(order, vec![100, 10, 0, -5], "{n}");
    }
}

#[tokio::test]
async fn a_newcomer_is_not_stuck_behind_a_long_backlog() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let a = user(db, "a").await;
        let bb = user(db, "b").await;
        for _ in 0..1000 {
            jobs::insert(db, &new_job(&a.id, "upscale"), 10_000)
                .await
                .unwrap();
        }
        let bj = jobs::insert(db, &new_job(&bb.id, "upscale"), 10_000)
            .await
            .unwrap()
            .job;
        let first: Vec<_> = [
            jobs::claim(db, "w1", LONG_LEASE, None)
                .await
                .unwrap()
                .expect(n),
            jobs::claim(db, "w1", LONG_LEASE, None)
                .await
                .unwrap()
                .expect(n),
        ]
        .into_iter()
        .map(|j| j.id)
        .collect();
        assert!(
            first.contains(&bj.id),
            "{n}: B's job not among the first two claims"
        );
    }
}

#[tokio::test]
async fn past_work_does_not_push_an_owner_behind_a_later_backlog() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let a = user(db, "a").await;
        let bb = user(db, "b").await;
        // A's earlier work, all served: the queue is empty again.
        for _ in 0..20 {
            jobs::insert(db, &new_job(&a.id, "upscale"), 10_000)
                .await
                .unwrap();
        }
        while jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .is_some()
        {}
        // B arrives with a backlog, then A submits one job.
        for _ in 0..20 {
            jobs::insert(db, &new_job(&bb.id, "upscale"), 10_000)
                .await
                .unwrap();
        }
        let aj = jobs::insert(db, &new_job(&a.id, "upscale"), 10_000)
            .await
            .unwrap()
            .job;
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(
                jobs::claim(db, "w1", LONG_LEASE, None)
                    .await
                    .unwrap()
                    .expect(n)
                    .id,
            );
        }
        assert!(
            first.contains(&aj.id),
            "{n}: A's new job waits behind B's whole backlog"
        );
    }
}

#[tokio::test]
async fn two_owners_interleave() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let a = user(db, "a").await;
        let bb = user(db, "b").await;
        for owner in [&a.id, &bb.id] {
            for _ in 0..50 {
                jobs::insert(db, &new_job(owner, "upscale"), 10_000)
                    .await
                    .unwrap();
            }
        }
        let mut per_owner: HashMap<String, usize> = HashMap::new();
        for _ in 0..20 {
            let j = jobs::claim(db, "w1", LONG_LEASE, None)
                .await
                .unwrap()
                .expect(n);
            *per_owner.entry(j.owner_id).or_default() += 1;
        }
        let (ca, cb) = (
            per_owner.get(&a.id).copied(),
            per_owner.get(&bb.id).copied(),
        );
        assert!(
            ca.unwrap_or(0) >= 9 && cb.unwrap_or(0) >= 9,
            "{n}: first 20 claims: a={ca:?} b={cb:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_take_each_job_once() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owners = [user(db, "a").await, user(db, "b").await];
        for i in 0..200 {
            jobs::insert(db, &new_job(&owners[i % 2].id, "upscale"), 10_000)
                .await
                .unwrap();
        }
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(j) = jobs::claim(&db, &format!("w{w}"), LONG_LEASE, None)
                        .await
                        .unwrap()
                    {
                        assert_eq!(j.attempts, 1, "{n}: claimed twice: {}", j.id);
                        got.push(j.id);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("claimer panicked"));
        }
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 200, "{n}: claims");
        assert_eq!(unique.len(), 200, "{n}: distinct jobs claimed");
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'").await,
            0,
            "{n}"
        );
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM jobs WHERE attempts <> 1").await,
            0,
            "{n}"
        );
        let counts = jobs::counts_by_status(db).await.unwrap();
        assert_eq!(counts, vec![(JobStatus::Running, 200)], "{n}");
    }
}

#[tokio::test]
async fn claim_honours_the_task_filter() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let up = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        let rs = jobs::insert(db, &new_job(&alice.id, "resize"), 100)
            .await
            .unwrap()
            .job;
        let px = jobs::insert(db, &new_job(&alice.id, "pixelate"), 100)
            .await
            .unwrap()
            .job;
        let only = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();

        assert!(
            jobs::claim(db, "w1", LONG_LEASE, Some(&[]))
                .await
                .unwrap()
                .is_none(),
            "{n}: no tasks"
        );
        assert!(
            jobs::claim(db, "w1", LONG_LEASE, Some(&only(&["txt2img"])))
                .await
                .unwrap()
                .is_none(),
            "{n}"
        );
        let c = jobs::claim(db, "w1", LONG_LEASE, Some(&only(&["resize"])))
            .await
            .unwrap()
            .expect(n);
        assert_eq!(c.id, rs.id, "{n}");
        assert!(
            jobs::claim(db, "w1", LONG_LEASE, Some(&only(&["resize"])))
                .await
                .unwrap()
                .is_none(),
            "{n}"
        );
        let c = jobs::claim(db, "w1", LONG_LEASE, Some(&only(&["pixelate", "txt2img"])))
            .await
            .unwrap()
            .expect(n);
        assert_eq!(c.id, px.id, "{n}");
        let c = jobs::claim(db, "w1", LONG_LEASE, None)
            .await
            .unwrap()
            .expect(n);
        assert_eq!(c.id, up.id, "{n}: no filter takes any task");
    }
}

#[tokio::test]
async fn list_filters_and_pages() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;
        let mut mine = Vec::new();
        for t in ["upscale", "resize", "upscale"] {
            mine.push(
                jobs::insert(db, &new_job(&alice.id, t), 100)
                    .await
                    .unwrap()
                    .job
                    .id,
            );
            // Ids order by creation time only across milliseconds (random within one).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        jobs::insert(db, &new_job(&bob.id, "upscale"), 100)
            .await
            .unwrap();
        jobs::request_cancel(db, &mine[0], None).await.unwrap();

        let f = |owner: Option<&str>| JobFilter {
            owner_id: owner.map(str::to_string),
            limit: 100,
            ..Default::default()
        };
        let all = jobs::list(db, &f(None)).await.unwrap();
        assert_eq!(all.len(), 4, "{n}");
        assert!(
            all.windows(2).all(|w| w[0].id > w[1].id),
            "{n}: newest first"
        );
        let ids: Vec<String> = jobs::list(db, &f(Some(&alice.id)))
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        let mut want = mine.clone();
        want.reverse();
        assert_eq!(ids, want, "{n}");
        let ups = jobs::list(
            db,
            &JobFilter {
                tasks: vec!["upscale".into()],
                status: Some(JobStatus::Queued),
                ..f(Some(&alice.id))
            },
        )
        .await
        .unwrap();
        assert_eq!(
            ups.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            [mine[2].as_str()],
            "{n}"
        );
        let page = jobs::list(
            db,
            &JobFilter {
                before: Some(mine[2].clone()),
                limit: 1,
                ..f(Some(&alice.id))
            },
        )
        .await
        .unwrap();
        assert_eq!(
            page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            [mine[1].as_str()],
            "{n}"
        );
    }
}

#[tokio::test]
async fn external_ids_name_jobs_once_per_owner_and_filter_lists() {
    use easel_core::job::ExternalId;
    // A dialect's namespace (the store does not know them).
    const NS: &str = "replicate.prediction";
    use easel_store::external_ids;
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;
        let mut nj = new_job(&alice.id, "upscale");
        nj.external_id = Some(ExternalId {
            namespace: NS,
            id: "my-id".into(),
        });
        nj.request = Some(serde_json::json!({"input": {"pag_guidance_scale": 2}}));
        let first = jobs::insert(db, &nj, 100).await.unwrap();
        assert!(first.created, "{n}");
        assert_eq!(first.job.request, nj.request, "{n}: the request is kept");
        // The same id again: the first job, nothing new.
        let again = jobs::insert(db, &nj, 100).await.unwrap();
        assert!(!again.created, "{n}");
        assert_eq!(again.job.id, first.job.id, "{n}");
        // Another owner may use the same id.
        nj.owner_id = bob.id.clone();
        let bobs = jobs::insert(db, &nj, 100).await.unwrap();
        assert!(bobs.created, "{n}");
        assert_ne!(bobs.job.id, first.job.id, "{n}");
        assert_eq!(
            external_ids::find(db, NS, &alice.id, "my-id")
                .await
                .unwrap()
                .as_deref(),
            Some(first.job.id.as_str()),
            "{n}"
        );
        assert_eq!(
            external_ids::find(db, "leonardo.generation", &alice.id, "my-id")
                .await
                .unwrap(),
            None,
            "{n}: namespaces are separate"
        );
        // Assigned once; later calls get the same id.
        let plain = jobs::insert(db, &new_job(&alice.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        let a =
            external_ids::get_or_assign(db, "leonardo.generation", &alice.id, &plain.id, || {
                "u-1".into()
            })
            .await
            .unwrap();
        let b2 =
            external_ids::get_or_assign(db, "leonardo.generation", &alice.id, &plain.id, || {
                "u-2".into()
            })
            .await
            .unwrap();
        assert_eq!((a.as_str(), b2.as_str()), ("u-1", "u-1"), "{n}");
        let map = external_ids::of(db, NS, &[first.job.id.clone(), plain.id.clone()])
            .await
            .unwrap();
        assert_eq!(map.len(), 1, "{n}");
        assert_eq!(map[&first.job.id], "my-id", "{n}");

        // Lists: by namespace, with offsets.
        let f = |ns: Option<&'static str>, offset: u32| JobFilter {
            owner_id: Some(alice.id.clone()),
            namespace: ns,
            offset,
            limit: 10,
            ..Default::default()
        };
        let ids = |js: Vec<easel_core::Job>| js.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(
            ids(jobs::list(db, &f(Some("leonardo.generation"), 0))
                .await
                .unwrap()),
            std::slice::from_ref(&plain.id),
            "{n}"
        );
        assert_eq!(
            ids(jobs::list(db, &f(None, 0)).await.unwrap()).len(),
            2,
            "{n}"
        );
        assert_eq!(
            ids(jobs::list(db, &f(None, 1)).await.unwrap()),
            std::slice::from_ref(&first.job.id),
            "{n}: offset skips the newest"
        );
    }
}

#[tokio::test]
async fn delete_removes_a_job_with_its_outputs_ids_events_keys_and_deliveries() {
    use easel_core::job::ExternalId;
    use easel_core::{Webhook, WebhookEvent};
    use easel_store::external_ids;
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let mut nj = new_job(&alice.id, "del-a");
        nj.idempotency_key = Some("k-1".into());
        nj.external_id = Some(ExternalId {
            namespace: "leonardo.generation",
            id: "gen-1".into(),
        });
        nj.webhook = Some(Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec![WebhookEvent::Start, WebhookEvent::Completed],
            format: Default::default(),
        });
        let job = jobs::insert(db, &nj, 100).await.unwrap().job;
        let other = jobs::insert(db, &new_job(&alice.id, "del-b"), 100)
            .await
            .unwrap()
            .job;
        jobs::claim(db, "w1", LONG_LEASE, Some(&["del-a".to_string()]))
            .await
            .unwrap()
            .expect(n);
        let a = output_asset(&alice.id, &job.id, 0, b"\x89PNG one");
        jobs::succeed(db, &job.id, "w1", std::slice::from_ref(&a), 0.5, "local")
            .await
            .unwrap();
        external_ids::get_or_assign(db, "leonardo.image", &alice.id, &a.id, || "img-1".into())
            .await
            .unwrap();
        let sql = |table: &str, col: &str, id: &str| {
            format!("SELECT COUNT(*) AS n FROM {table} WHERE {col} = '{id}'")
        };
        assert!(
            count(db, &sql("job_events", "job_id", &job.id)).await > 0,
            "{n}"
        );
        assert!(
            count(db, &sql("webhook_deliveries", "job_id", &job.id)).await > 0,
            "{n}"
        );
        for d in easel_store::webhooks::claim_due(db, LONG_LEASE, 10)
            .await
            .unwrap()
        {
            let o = easel_store::webhooks::AttemptOutcome {
                ok: false,
                status_code: Some(500),
                error: None,
                duration_ms: 1,
                next_attempt_at: None,
            };
            easel_store::webhooks::record_attempt(db, &d, &o)
                .await
                .unwrap();
        }
        assert!(
            count(db, "SELECT COUNT(*) AS n FROM webhook_attempts").await > 0,
            "{n}"
        );

        let gone = jobs::delete(db, &job.id).await.unwrap().expect(n);
        assert_eq!(gone.job.id, job.id, "{n}");
        assert_eq!(gone.job.status, JobStatus::Succeeded, "{n}");
        assert_eq!(gone.assets, vec![a.id.clone()], "{n}");
        assert!(jobs::get(db, &job.id).await.unwrap().is_none(), "{n}");
        assert!(assets::get(db, &a.id).await.unwrap().is_none(), "{n}");
        for (table, col, id) in [
            ("job_events", "job_id", &job.id),
            ("idempotency_keys", "job_id", &job.id),
            ("webhook_deliveries", "job_id", &job.id),
            ("external_ids", "internal_id", &job.id),
            ("external_ids", "internal_id", &a.id),
        ] {
            assert_eq!(count(db, &sql(table, col, id)).await, 0, "{n}: {table}");
        }
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM webhook_attempts").await,
            0,
            "{n}"
        );
        // Usage stays; the idempotency key is free again; the other job is untouched.
        assert!(
            count(db, &sql("usage", "owner_id", &alice.id)).await > 0,
            "{n}"
        );
        let again = jobs::insert(db, &nj, 100).await.unwrap();
        assert!(again.created, "{n}: key and external id were released");
        assert!(jobs::get(db, &other.id).await.unwrap().is_some(), "{n}");
        assert!(jobs::delete(db, &job.id).await.unwrap().is_none(), "{n}");

        // A running job: its worker loses the lease.
        let running = jobs::claim(db, "w2", LONG_LEASE, Some(&["del-b".to_string()]))
            .await
            .unwrap()
            .expect(n);
        assert_eq!(running.id, other.id, "{n}");
        let gone = jobs::delete(db, &other.id).await.unwrap().expect(n);
        assert_eq!(gone.job.status, JobStatus::Running, "{n}");
        assert!(gone.assets.is_empty(), "{n}");
        assert_eq!(
            jobs::heartbeat(db, &other.id, "w2", LONG_LEASE)
                .await
                .unwrap(),
            LeaseState::Lost,
            "{n}"
        );
        let late = output_asset(&alice.id, &other.id, 0, b"\x89PNG late");
        assert_eq!(
            jobs::succeed(
                db,
                &other.id,
                "w2",
                std::slice::from_ref(&late),
                0.5,
                "local"
            )
            .await
            .unwrap(),
            Finished::LeaseLost,
            "{n}"
        );
        assert!(assets::get(db, &late.id).await.unwrap().is_none(), "{n}");
    }
}

/// A job's `hide_outputs` is written and read back on every backend.
#[tokio::test]
async fn hidden_outputs_are_a_jobs_own() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = user(db, "hal").await;
        let plain = jobs::insert(db, &new_job(&owner.id, "upscale"), 100)
            .await
            .unwrap()
            .job;
        let hiding = NewJob {
            hide_outputs: true,
            ..new_job(&owner.id, "upscale")
        };
        let hidden = jobs::insert(db, &hiding, 100).await.unwrap().job;
        assert!(!plain.hide_outputs && hidden.hide_outputs, "{n}");
        let read = jobs::get(db, &hidden.id).await.unwrap().unwrap();
        assert!(read.hide_outputs, "{n}: read back");
    }
}
