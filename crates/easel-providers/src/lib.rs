//! Providers: what actually runs a job. `Providers` is the queue's `Executor`: it routes each
//! job to the provider that can run it — today the local image tools (`tools`); the local
//! diffusion engine and remote HTTP providers with fallback plug in here.

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
}

impl Providers {
    pub fn new(store: Store, limits: Limits) -> Providers {
        Providers {
            store,
            limits: Arc::new(limits),
        }
    }
}

#[async_trait::async_trait]
impl Executor for Providers {
    fn tasks(&self) -> Vec<String> {
        tools::TASKS.iter().map(|t| t.to_string()).collect()
    }

    async fn run(&self, job: &Job, ctx: &RunContext) -> Result<RunOutput, RunError> {
        if tools::TASKS.contains(&job.task.as_str()) {
            return tools::run(&self.store, &self.limits, job, ctx).await;
        }
        Err(RunError::Failed(easel_core::JobError::new(
            easel_core::job::codes::NO_PROVIDER,
            format!("no provider on this server runs the task `{}`", job.task),
        )))
    }
}
