//! Durable webhook deliveries: enqueued with the job change, claimed when due, attempts kept.

use std::time::Duration;

use easel_core::job::{codes, JobError, Progress};
use easel_core::{Webhook, WebhookEvent};
use easel_store::jobs::{self, Finished};
use easel_store::webhooks::{self, Attempt, AttemptOutcome, Delivery};

use crate::output_asset;
use crate::testing::{backends, exec, new_job, user};

const LEASE: i64 = 60_000;

/// `for_job` lists by id, and ids made within one millisecond are not ordered: sort by event.
fn by_event(mut ds: Vec<(Delivery, Vec<Attempt>)>) -> Vec<(Delivery, Vec<Attempt>)> {
    ds.sort_by(|a, b| a.0.event.cmp(&b.0.event));
    ds
}

#[tokio::test]
async fn deliveries_follow_the_job_and_record_attempts() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;
        let mut nj = new_job(&alice.id, "hooked");
        nj.webhook = Some(Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec![WebhookEvent::Start, WebhookEvent::Completed],
            format: Default::default(),
        });
        let job = jobs::insert(db, &nj, 100).await.unwrap().job;
        assert!(
            webhooks::for_job(db, &job.id).await.unwrap().is_empty(),
            "{n}: nothing on insert"
        );

        jobs::claim(db, "w1", LEASE, None).await.unwrap().expect(n);
        let ds = webhooks::for_job(db, &job.id).await.unwrap();
        assert_eq!(ds.len(), 1, "{n}");
        let (start, attempts) = &ds[0];
        assert!(attempts.is_empty(), "{n}");
        assert_eq!(
            (start.event.as_str(), start.status.as_str(), start.attempts),
            ("start", "pending", 0),
            "{n}"
        );
        assert_eq!(
            (start.url.as_str(), start.owner_id.as_str()),
            ("http://127.0.0.1:9/hook", alice.id.as_str()),
            "{n}"
        );
        assert_eq!(start.payload["type"], "job.start", "{n}");
        assert_eq!(start.payload["data"]["id"], job.id.as_str(), "{n}");
        assert_eq!(start.payload["data"]["status"], "running", "{n}");

        // Progress is not wanted by this webhook.
        let p = Progress {
            fraction: 0.5,
            step: None,
            total_steps: None,
        };
        jobs::set_progress(db, &job.id, "w1", LEASE, &p, true)
            .await
            .unwrap();
        assert_eq!(
            webhooks::for_job(db, &job.id).await.unwrap().len(),
            1,
            "{n}"
        );

        let a = output_asset(&alice.id, &job.id, 0, b"img");
        let fin = jobs::succeed(db, &job.id, "w1", std::slice::from_ref(&a), 1.0, "local")
            .await
            .unwrap();
        assert!(matches!(fin, Finished::Done(_)), "{n}");
        let ds = by_event(webhooks::for_job(db, &job.id).await.unwrap());
        let events: Vec<&str> = ds.iter().map(|(d, _)| d.event.as_str()).collect();
        assert_eq!(events, ["completed", "start"], "{n}");
        let completed = ds[0].0.clone();
        assert_eq!(completed.payload["type"], "job.completed", "{n}");
        assert_eq!(completed.payload["data"]["status"], "succeeded", "{n}");
        assert_eq!(
            completed.payload["data"]["outputs"][0],
            a.id.as_str(),
            "{n}"
        );

        // Claiming leases them: a second claim gets nothing.
        let mut due = webhooks::claim_due(db, LEASE, 10).await.unwrap();
        due.sort_by(|a, b| b.event.cmp(&a.event));
        assert_eq!(
            due.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(),
            ["start", "completed"],
            "{n}"
        );
        assert!(
            webhooks::claim_due(db, LEASE, 10).await.unwrap().is_empty(),
            "{n}: leased"
        );

        // start: 500, retry in an hour; completed: delivered.
        let later = easel_core::time::now() + chrono::Duration::hours(1);
        webhooks::record_attempt(
            db,
            &due[0],
            &AttemptOutcome {
                ok: false,
                status_code: Some(500),
                error: Some("HTTP 500".into()),
                duration_ms: 12,
                next_attempt_at: Some(later),
            },
        )
        .await
        .unwrap();
        webhooks::record_attempt(
            db,
            &due[1],
            &AttemptOutcome {
                ok: true,
                status_code: Some(200),
                error: None,
                duration_ms: 3,
                next_attempt_at: None,
            },
        )
        .await
        .unwrap();
        assert!(
            webhooks::claim_due(db, LEASE, 10).await.unwrap().is_empty(),
            "{n}: retry not due yet"
        );

        // Make the retry due.
        exec(
            db,
            &format!(
                "UPDATE webhook_deliveries SET next_attempt_at = 0 WHERE id = '{}'",
                due[0].id
            ),
        )
        .await;
        let retry = webhooks::claim_due(db, LEASE, 10).await.unwrap();
        assert_eq!(retry.len(), 1, "{n}");
        assert_eq!(
            (retry[0].id.as_str(), retry[0].attempts),
            (due[0].id.as_str(), 1),
            "{n}"
        );
        assert_eq!(retry[0].last_status_code, Some(500), "{n}");
        webhooks::record_attempt(
            db,
            &retry[0],
            &AttemptOutcome {
                ok: false,
                status_code: None,
                error: Some("connection refused".into()),
                duration_ms: 1,
                next_attempt_at: None,
            },
        )
        .await
        .unwrap();

        let ds = by_event(webhooks::for_job(db, &job.id).await.unwrap());
        let (s, sa) = &ds[1];
        assert_eq!((s.status.as_str(), s.attempts), ("failed", 2), "{n}");
        assert_eq!(
            (s.last_status_code, s.last_error.as_deref()),
            (None, Some("connection refused")),
            "{n}"
        );
        let codes_seen: Vec<(u32, Option<u16>)> =
            sa.iter().map(|a| (a.attempt, a.status_code)).collect();
        assert_eq!(codes_seen, [(1, Some(500)), (2, None)], "{n}");
        assert_eq!(sa[0].duration_ms, 12, "{n}");
        assert_eq!(sa[1].error.as_deref(), Some("connection refused"), "{n}");
        let (c, ca) = &ds[0];
        assert_eq!(
            (c.status.as_str(), c.attempts, c.last_status_code),
            ("delivered", 1, Some(200)),
            "{n}"
        );
        assert_eq!(ca.len(), 1, "{n}");
        assert!(
            webhooks::claim_due(db, LEASE, 10).await.unwrap().is_empty(),
            "{n}: all settled"
        );
    }
}

#[tokio::test]
async fn events_are_filtered_and_leases_expire() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = user(db, "alice").await;

        // All events: start (first attempt only), progress when asked, completed on failure too.
        let mut nj = new_job(&alice.id, "all");
        nj.webhook = Some(
            serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/all"})).unwrap(),
        );
        let all = jobs::insert(db, &nj, 100).await.unwrap().job;
        let tasks = vec!["all".to_string()];
        jobs::claim(db, "w1", 2, Some(&tasks))
            .await
            .unwrap()
            .expect(n);
        tokio::time::sleep(Duration::from_millis(30)).await;
        jobs::reap_expired(db).await.unwrap();
        jobs::claim(db, "w2", LEASE, Some(&tasks))
            .await
            .unwrap()
            .expect(n);
        let p = Progress {
            fraction: 0.2,
            step: None,
            total_steps: None,
        };
        jobs::set_progress(db, &all.id, "w2", LEASE, &p, false)
            .await
            .unwrap();
        jobs::set_progress(db, &all.id, "w2", LEASE, &p, true)
            .await
            .unwrap();
        jobs::fail(
            db,
            &all.id,
            "w2",
            &JobError::new(codes::TASK_FAILED, "boom"),
        )
        .await
        .unwrap();
        let ds = by_event(webhooks::for_job(db, &all.id).await.unwrap());
        let events: Vec<&str> = ds.iter().map(|(d, _)| d.event.as_str()).collect();
        assert_eq!(
            events,
            ["completed", "progress", "start"],
            "{n}: one start for two attempts"
        );
        assert_eq!(
            ds[0].0.payload["data"]["error"]["code"],
            codes::TASK_FAILED,
            "{n}"
        );

        // Completed only.
        let mut nj = new_job(&alice.id, "done-only");
        nj.webhook = Some(Webhook {
            url: "http://127.0.0.1:9/done".into(),
            events: vec![WebhookEvent::Completed],
            format: Default::default(),
        });
        let only = jobs::insert(db, &nj, 100).await.unwrap().job;
        jobs::claim(db, "w1", LEASE, Some(&["done-only".to_string()]))
            .await
            .unwrap()
            .expect(n);
        assert!(
            webhooks::for_job(db, &only.id).await.unwrap().is_empty(),
            "{n}: no start"
        );
        jobs::request_cancel(db, &only.id, None).await.unwrap();
        jobs::finish_canceled(db, &only.id, "w1").await.unwrap();
        let ds = webhooks::for_job(db, &only.id).await.unwrap();
        assert_eq!(ds.len(), 1, "{n}");
        assert_eq!(ds[0].0.payload["data"]["status"], "canceled", "{n}");

        // A queued job canceled directly also reports completion.
        let mut nj = new_job(&alice.id, "never-run");
        nj.webhook = Some(Webhook {
            url: "http://127.0.0.1:9/done".into(),
            events: vec![WebhookEvent::Completed],
            format: Default::default(),
        });
        let never = jobs::insert(db, &nj, 100).await.unwrap().job;
        jobs::request_cancel(db, &never.id, Some(&alice.id))
            .await
            .unwrap();
        assert_eq!(
            webhooks::for_job(db, &never.id).await.unwrap().len(),
            1,
            "{n}"
        );

        // A claim's lease expires and the deliveries are due again; `limit` is honoured.
        let first = webhooks::claim_due(db, 2, 2).await.unwrap();
        assert_eq!(first.len(), 2, "{n}");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let again = webhooks::claim_due(db, LEASE, 100).await.unwrap();
        assert_eq!(again.len(), 5, "{n}: every pending delivery");
        for d in &first {
            assert!(
                again.iter().any(|x| x.id == d.id),
                "{n}: expired claim {} not due again",
                d.id
            );
        }
    }
}
