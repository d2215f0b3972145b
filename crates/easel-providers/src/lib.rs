//! Providers: what actually runs a job. `Providers` is the queue's `Executor`: it routes each
//! job to the provider that can run it — the local image tools (`tools`) and the local
//! diffusion engine (`diffusion`); remote HTTP providers with fallback plug in here.

pub mod diffusion;
pub mod discover;
pub mod tools;

use std::sync::Arc;

use easel_core::limits::Limits;
use easel_core::Job;
use easel_queue::{Executor, RunContext, RunError, RunOutput};
use easel_store::Store;

/// Routes jobs to providers.
#[derive(Clone)]
pub struct Providers {
    store: Store,
    limits: Arc<Limits>,
    engine: Arc<diffusion::Engine>,
}

impl Providers {
    pub fn new(store: Store, limits: Limits, engine: Arc<diffusion::Engine>) -> Providers {
        Providers {
            store,
            limits: Arc::new(limits),
            engine,
        }
    }

    pub fn engine(&self) -> &Arc<diffusion::Engine> {
        &self.engine
    }
}

#[async_trait::async_trait]
impl Executor for Providers {
    fn tasks(&self) -> Vec<String> {
        tools::TASKS
            .iter()
            .chain(diffusion::TASKS)
            .map(|t| t.to_string())
            .collect()
    }

    async fn run(&self, job: &Job, ctx: &RunContext) -> Result<RunOutput, RunError> {
        if tools::TASKS.contains(&job.task.as_str()) {
            return tools::run(&self.store, &self.limits, job, ctx).await;
        }
        if diffusion::TASKS.contains(&job.task.as_str()) {
            return diffusion::run(&self.engine, &self.store, &self.limits, job, ctx).await;
        }
        Err(RunError::Failed(easel_core::JobError::new(
            easel_core::job::codes::NO_PROVIDER,
            format!("no provider on this server runs the task `{}`", job.task),
        )))
    }
}

/// The encoding of an output format and quality (default quality 90 for JPEG and WebP).
fn encoding(
    format: easel_core::task::OutputFormat,
    quality: Option<u8>,
) -> easel_imageops::Encoding {
    use easel_core::task::OutputFormat;
    let quality = quality.unwrap_or(90);
    match format {
        OutputFormat::Png => easel_imageops::Encoding::Png,
        OutputFormat::Jpeg => easel_imageops::Encoding::Jpeg { quality },
        OutputFormat::Webp => easel_imageops::Encoding::Webp { quality },
    }
}
