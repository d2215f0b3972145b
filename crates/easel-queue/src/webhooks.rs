//! Webhook delivery per the Standard Webhooks scheme: headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
//! `id.timestamp.body` under the owner's `whsec_` secret). Deliveries retry with exponential
//! backoff on network errors, 429 and 5xx; other answers end them. Every attempt is recorded.
//!
//! Receivers are reached under the queue's `webhook_policy` (`easel-net`): the URL's host is
//! resolved at each delivery, every address must be public or allowed, and the connection
//! goes to the addresses checked. Redirects are not followed. A refused receiver ends the
//! delivery after one attempt whose error names no answer, so the log cannot map a network
//! (a name that does not resolve is tried again, with backoff).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use easel_store::webhooks::{self, AttemptOutcome, Delivery};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::Queue;

/// Adds to a payload before sending (e.g. signed output URLs, fresh at send time).
pub type Enricher = Arc<dyn Fn(&mut serde_json::Value) + Send + Sync>;

/// `v1,<base64 signature>` for `id.timestamp.body` under a `whsec_…` secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Delay before attempt `n + 1` after `n` failed attempts.
pub fn backoff(base: Duration, max: Duration, failed_attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failed_attempts.saturating_sub(1).min(20));
    exp.min(max)
}

impl Queue {
    /// Send due deliveries until `stop` turns true.
    pub async fn run_webhooks(&self, enrich: Option<Enricher>, mut stop: watch::Receiver<bool>) {
        loop {
            let woken = self.new_webhooks.notified();
            match webhooks::claim_due(&self.store.db, 60_000, 32).await {
                Ok(due) if !due.is_empty() => {
                    let sends = due.iter().map(|d| self.deliver(d, enrich.as_ref()));
                    futures::future::join_all(sends).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "claiming webhook deliveries failed"),
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }

    async fn deliver(&self, d: &Delivery, enrich: Option<&Enricher>) {
        let client = match self.receiver(&d.url).await {
            Ok(c) => c,
            Err((why, retry)) => {
                tracing::warn!(delivery = %d.id, job = %d.job_id, error = %why, "webhook receiver refused");
                self.record(d, false, retry, None, Some(format!("refused: {why}")), 0)
                    .await;
                return;
            }
        };
        let secret = match easel_store::users::webhook_secret(&self.store.db, &d.owner_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(delivery = %d.id, error = %e, "no webhook secret; the attempt fails");
                self.record(d, false, true, None, Some(format!("cannot sign: {e}")), 0)
                    .await;
                return;
            }
        };
        let mut payload = d.payload.clone();
        if let Some(f) = enrich {
            f(&mut payload);
        }
        let body = payload.to_string();
        let ts = chrono::Utc::now().timestamp();
        let started = Instant::now();
        let res = client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                sign(&secret, &d.id, ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (ok, retry, status_code, error) = match res {
            Ok(r) => {
                let s = r.status();
                let retry = s.as_u16() == 429 || s.is_server_error();
                let err = (!s.is_success()).then(|| format!("HTTP {}", s.as_u16()));
                (s.is_success(), retry, Some(s.as_u16()), err)
            }
            Err(e) => (false, true, None, Some(e.to_string())),
        };
        self.record(d, ok, retry, status_code, error, duration_ms)
            .await;
    }

    /// A client pinned to the receiver's checked addresses, or why it may not be reached
    /// and whether to try again (a name that did not resolve now may later).
    async fn receiver(&self, url: &str) -> Result<reqwest::Client, (String, bool)> {
        let url = reqwest::Url::parse(url).map_err(|e| (format!("not a URL: {e}"), false))?;
        let target = self
            .config
            .webhook_policy
            .resolve(&url)
            .await
            .map_err(|e| {
                let retry = matches!(e, easel_net::Refused::Unresolvable { .. });
                (e.to_string(), retry)
            })?;
        target
            .client()
            .timeout(self.config.webhook_timeout)
            .user_agent(concat!("easel-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| (e.to_string(), true))
    }

    /// Record one attempt and schedule the next (backoff) or end the delivery.
    async fn record(
        &self,
        d: &Delivery,
        ok: bool,
        retry: bool,
        status_code: Option<u16>,
        error: Option<String>,
        duration_ms: u64,
    ) {
        let failed_attempts = d.attempts + 1;
        let next_attempt_at = (!ok && retry && failed_attempts < self.config.webhook_max_attempts)
            .then(|| {
                let delay = backoff(
                    self.config.webhook_retry_base,
                    self.config.webhook_retry_max,
                    failed_attempts,
                );
                easel_core::time::now() + chrono::Duration::milliseconds(delay.as_millis() as i64)
            });
        tracing::info!(delivery = %d.id, job = %d.job_id, event = %d.event, ok, status = ?status_code, attempt = failed_attempts, "webhook attempt");
        let outcome = AttemptOutcome {
            ok,
            status_code,
            error,
            duration_ms,
            next_attempt_at,
        };
        if let Err(e) = webhooks::record_attempt(&self.store.db, d, &outcome).await {
            tracing::error!(error = %e, "recording a webhook attempt failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(2);
        let m = Duration::from_secs(60);
        assert_eq!(backoff(b, m, 1), Duration::from_secs(2));
        assert_eq!(backoff(b, m, 2), Duration::from_secs(4));
        assert_eq!(backoff(b, m, 3), Duration::from_secs(8));
        assert_eq!(backoff(b, m, 10), m);
    }
}
