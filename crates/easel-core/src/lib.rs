//! Easel's domain: jobs and their states, task inputs and their validation, assets, models,
//! principals, usage and errors. Plain data and pure functions; no I/O, no HTTP, no candle.
//!
//! Every dialect of the HTTP API maps its wire format onto these types, so validation and
//! limits live here once.

pub mod asset;
pub mod auth;
pub mod canvas;
pub mod download;
pub mod error;
pub mod generate;
pub mod id;
pub mod job;
pub mod limits;
pub mod model;
pub mod preset;
pub mod safetensors;
pub mod scheduler;
pub mod style;
pub mod task;
pub mod time;
pub mod upload;
pub mod usage;

pub use error::{Error, ErrorKind, Result};
pub use job::{Job, JobError, JobStatus, Webhook, WebhookEvent};
