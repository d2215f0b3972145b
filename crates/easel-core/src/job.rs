//! Jobs: the one unit of work for every task. A job moves
//! `queued → running → succeeded | failed | canceled`; a running job whose worker is lost goes
//! back to `queued` until it has used its attempts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// How a dialect names the job states: each dialect keeps its row (`STATUS` in its module of
/// `easel-api`), so every status mapping is data (the table of INVENTORY §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusNames {
    pub queued: &'static str,
    pub running: &'static str,
    pub succeeded: &'static str,
    pub failed: &'static str,
    pub canceled: &'static str,
}

impl StatusNames {
    pub fn name(&self, status: JobStatus) -> &'static str {
        match status {
            JobStatus::Queued => self.queued,
            JobStatus::Running => self.running,
            JobStatus::Succeeded => self.succeeded,
            JobStatus::Failed => self.failed,
            JobStatus::Canceled => self.canceled,
        }
    }
}

/// Why a job failed: a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

impl JobError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Error codes the queue itself produces.
pub mod codes {
    /// The job's worker stopped heartbeating too many times.
    pub const LEASE_EXPIRED: &str = "lease_expired";
    /// The task rejected its input at run time (bad image, limit).
    pub const INVALID_INPUT: &str = "invalid_input";
    /// The task failed for another reason.
    pub const TASK_FAILED: &str = "task_failed";
    /// No provider can run this task.
    pub const NO_PROVIDER: &str = "no_provider";
}

/// The events a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The job started running.
    Start,
    /// Progress changed (throttled).
    Progress,
    /// The job reached a terminal state (always delivered or recorded as failed).
    Completed,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Start => "start",
            WebhookEvent::Progress => "progress",
            WebhookEvent::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// `http` or `https` URL that receives signed POSTs.
    pub url: String,
    /// Events to deliver; all of them when omitted.
    #[serde(default = "all_events")]
    pub events: Vec<WebhookEvent>,
    /// The payload's shape: absent for Easel's event envelope `{type, timestamp, data:
    /// job}`, else the name of a dialect whose own object is the whole body (`replicate`:
    /// the prediction). The names and their bodies are the dialects' (`easel-api`'s
    /// `dialect::WEBHOOK_FORMATS`); this crate only carries the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn all_events() -> Vec<WebhookEvent> {
    vec![
        WebhookEvent::Start,
        WebhookEvent::Progress,
        WebhookEvent::Completed,
    ]
}

impl Webhook {
    pub fn validate(&self) -> crate::error::Result<()> {
        let ok = (self.url.starts_with("http://") || self.url.starts_with("https://"))
            && self.url.len() <= 2048
            && self.url.len() > "http://".len();
        if !ok {
            return Err(crate::Error::invalid(
                "webhook.url",
                "must be an http(s) URL of at most 2048 characters",
            ));
        }
        Ok(())
    }

    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }
}

/// One entry of a job's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    pub status: JobStatus,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// 0..1
    pub fraction: f32,
    /// Current step, where the task has steps.
    pub step: Option<u32>,
    /// Number of steps, where the task has steps.
    pub total_steps: Option<u32>,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub owner_id: String,
    pub task: String,
    pub model: Option<String>,
    pub status: JobStatus,
    pub priority: i32,
    /// The normalized input (input images replaced by asset ids).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    pub progress: f32,
    pub step: Option<u32>,
    pub total_steps: Option<u32>,
    pub error: Option<JobError>,
    /// Ids of the output assets, in output order.
    pub outputs: Vec<String>,
    pub usage_units: f64,
    pub webhook: Option<Webhook>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    /// The provider that ran the job (set when it succeeds).
    pub provider: Option<String>,
    /// The request as its dialect received it (wire names), where a dialect kept it: what it
    /// echoes back, and the fields Easel accepted without applying them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub request: Option<serde_json::Value>,
    /// Its outputs are stored hidden from the owner's lists (shown when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hide_outputs: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
}

impl Job {
    /// Why the job has no outputs, as the error of an answer that waited for it; `None` when
    /// it succeeded or has not ended. Input the task rejected at run time is `Invalid`; a
    /// canceled job is a `Conflict`; any other failure is `Internal`, with the job's message.
    pub fn failure(&self) -> Option<crate::Error> {
        use crate::{Error, ErrorKind};
        match self.status {
            JobStatus::Queued | JobStatus::Running | JobStatus::Succeeded => None,
            JobStatus::Canceled => Some(Error::new(
                ErrorKind::Conflict,
                format!("the job {} was canceled", self.id),
            )),
            JobStatus::Failed => {
                let (code, message) = match &self.error {
                    Some(e) => (e.code.as_str(), e.message.as_str()),
                    None => (codes::TASK_FAILED, "no reason recorded"),
                };
                let kind = if code == codes::INVALID_INPUT {
                    ErrorKind::Invalid
                } else {
                    ErrorKind::Internal
                };
                Some(Error::new(
                    kind,
                    format!("the job {} failed: {message}", self.id),
                ))
            }
        }
    }
}

/// What a caller asks the queue to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub owner_id: String,
    pub task: String,
    pub model: Option<String>,
    pub input: serde_json::Value,
    pub priority: i32,
    pub webhook: Option<Webhook>,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// The request as its dialect received it (kept as `Job::request`).
    pub request: Option<serde_json::Value>,
    /// An id a dialect gives the job; a second submit with the same id (and owner) answers
    /// with the first job instead of creating one (Replicate's idempotent `PUT`).
    pub external_id: Option<ExternalId>,
    /// What the job occupies while it runs (`Resource::of`): workers claim by it.
    pub resource: Resource,
    /// Its outputs are stored hidden from the owner's lists.
    pub hide_outputs: bool,
}

/// What a running job occupies. Each worker claims jobs of some resources only, so a job
/// that waits for a busy resource is never claimed (and never blocks a worker) while jobs
/// of another could run: two generations queued for the one device do not hold back a
/// 10 ms image tool. Fairness (priority, then the owners' turns) holds within each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resource {
    /// The local diffusion engine's device (one generation at a time).
    Device,
    /// A CPU core: the image tools.
    #[default]
    Cpu,
    /// Another server: generations of remote providers (waiting on the network).
    Network,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Device, Resource::Cpu, Resource::Network];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Device => "device",
            Resource::Cpu => "cpu",
            Resource::Network => "network",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The resource of a `task` run by a model of `provider`: generations of the local
    /// provider need the device, those of other providers the network; tools a CPU.
    pub fn of(task: &str, provider: Option<&str>) -> Resource {
        if !crate::generate::TASKS.contains(&task) {
            return Resource::Cpu;
        }
        match provider {
            None | Some("local") => Resource::Device,
            Some(_) => Resource::Network,
        }
    }
}

/// An id a dialect gives to one of Easel's objects, unique per namespace and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId {
    /// The dialect's namespace (`leonardo.generation`, …: each dialect names its own).
    pub namespace: &'static str,
    pub id: String,
}

/// Priorities are clamped to this range; higher runs first.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -100..=100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!(JobStatus::Canceled.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert_eq!(JobStatus::parse("done"), None);
    }

    #[test]
    fn status_names_cover_every_state() {
        let row = StatusNames {
            queued: "q",
            running: "r",
            succeeded: "s",
            failed: "f",
            canceled: "c",
        };
        assert_eq!(
            JobStatus::ALL.map(|s| row.name(s)),
            ["q", "r", "s", "f", "c"]
        );
    }

    #[test]
    fn webhook_defaults_to_all_events_and_checks_url() {
        let w: Webhook =
            serde_json::from_value(serde_json::json!({"url": "https://x.test/h"})).unwrap();
        assert_eq!(w.events.len(), 3);
        assert!(w.validate().is_ok());
        let bad = Webhook {
            url: "ftp://x".into(),
            events: vec![],
            format: Default::default(),
        };
        assert_eq!(
            bad.validate().unwrap_err().field.as_deref(),
            Some("webhook.url")
        );
    }
}

#[cfg(test)]
mod resource_tests {
    use super::Resource;

    #[test]
    fn generations_need_the_device_or_the_network_and_tools_a_cpu() {
        assert_eq!(Resource::of("txt2img", Some("local")), Resource::Device);
        assert_eq!(Resource::of("inpaint", None), Resource::Device);
        assert_eq!(
            Resource::of("img2img", Some("replicate")),
            Resource::Network
        );
        assert_eq!(Resource::of("convert", None), Resource::Cpu);
        assert_eq!(Resource::of("upscale", Some("local")), Resource::Cpu);
        for r in Resource::ALL {
            assert_eq!(Resource::parse(r.as_str()), Some(r));
        }
    }
}
