//! Providers: what actually runs a job. `Providers` is the queue's `Executor`: it routes each
//! job to the provider that can run it — the local image tools (`tools`), and for generation
//! tasks the provider the job's model names: the local diffusion engine (`diffusion`,
//! provider `local`) or a remote server (`remote`: `openai`, `replicate`, `easel`). When
//! that provider fails and the model names a `fallback_provider`, the fallback runs the job;
//! the job records which provider served it (`local`, `easel`, `easel (fallback)`, …).

pub mod diffusion;
pub mod discover;
pub mod remote;
pub mod tools;

/// The engine's family table (ids, defaults, detection), for the crates above.
pub use easel_diffusion::family;
/// Where the engine finds a family's tiny autoencoder (TAESD) in a models folder.
pub use easel_diffusion::taesd::find as find_tiny_vae;

use std::sync::Arc;

use easel_core::limits::Limits;
use easel_core::Job;
use easel_queue::{Executor, RunContext, RunError, RunOutput};
use easel_store::Store;

/// Whether a model can run on this server now: for its provider, or else its fallback, what
/// the record says (`model::provider_problem`) and what this process's environment holds (a
/// remote provider's `api_key_env` variable must be set: the API process checks at submit,
/// so scale-out workers need the same variables). The error is a 422 on `model` naming the
/// model and the reasons, as submit reports it.
pub fn check_runnable(m: &easel_core::model::Model) -> easel_core::Result<()> {
    use easel_core::model::{provider_problem, PROVIDERS};
    let problem = |kind: &str, config: &serde_json::Value| -> Option<String> {
        provider_problem(kind, config, m).or_else(|| {
            (kind != "local" && PROVIDERS.contains(&kind))
                .then(|| remote::Remote::from_config(kind, config, "provider_config").err())
                .flatten()
                .map(|e| e.message)
        })
    };
    let Some(first) = problem(&m.provider, &m.provider_config) else {
        return Ok(());
    };
    let Some(fallback) = &m.fallback_provider else {
        return Err(easel_core::Error::invalid(
            "model",
            format!("the model `{}` cannot run here: {first}", m.name),
        ));
    };
    let config = m
        .fallback_provider_config
        .clone()
        .unwrap_or(serde_json::Value::Null);
    match problem(fallback, &config) {
        None => Ok(()),
        Some(second) => Err(easel_core::Error::invalid(
            "model",
            format!(
                "the model `{}` cannot run here: {first}; and its fallback: {second}",
                m.name
            ),
        )),
    }
}

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
            return self.generate(job, ctx).await;
        }
        Err(RunError::Failed(easel_core::JobError::new(
            easel_core::job::codes::NO_PROVIDER,
            format!("no provider on this server runs the task `{}`", job.task),
        )))
    }
}

impl Providers {
    /// A generation job on its model's provider, then on its fallback provider if that fails.
    async fn generate(&self, job: &Job, ctx: &RunContext) -> Result<RunOutput, RunError> {
        let model = match job.model.as_deref() {
            Some(name) => easel_store::models::resolve_run(&self.store.db, name).await?,
            None => None,
        };
        let Some(model) = model else {
            // No registry entry to route by: the local engine reports what is missing.
            return self
                .on(job, ctx, "local", &serde_json::json!({}), "provider_config")
                .await;
        };
        let first = self
            .on(
                job,
                ctx,
                &model.provider,
                &model.provider_config,
                "provider_config",
            )
            .await;
        let (Err(primary), Some(fallback)) = (&first, &model.fallback_provider) else {
            return first;
        };
        if *primary == RunError::Canceled {
            return first;
        }
        tracing::warn!(job = %job.id, provider = %model.provider, fallback = %fallback, error = ?primary, "the provider failed; trying the fallback");
        ctx.log(format!(
            "provider {} failed ({primary}); running on the fallback {fallback}",
            model.provider
        ));
        let config = model
            .fallback_provider_config
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        match self
            .on(job, ctx, fallback, &config, "fallback_provider_config")
            .await
        {
            Ok(mut out) => {
                out.provider = format!("{} (fallback)", out.provider);
                Ok(out)
            }
            Err(RunError::Failed(e)) => {
                let first = match primary {
                    RunError::Failed(p) => p.message.clone(),
                    RunError::Canceled => "canceled".into(),
                };
                Err(RunError::Failed(easel_core::JobError::new(
                    e.code,
                    format!(
                        "{} (the fallback provider {fallback}); the provider {} failed first: {first}",
                        e.message, model.provider
                    ),
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// A generation job on one provider.
    async fn on(
        &self,
        job: &Job,
        ctx: &RunContext,
        kind: &str,
        config: &serde_json::Value,
        field: &str,
    ) -> Result<RunOutput, RunError> {
        match kind {
            "local" => diffusion::run(&self.engine, &self.store, &self.limits, job, ctx).await,
            k if remote::KINDS.contains(&k) => {
                let r = remote::Remote::from_config(k, config, field)?;
                remote::run(&r, &self.store, &self.limits, job, ctx).await
            }
            other => Err(RunError::Failed(easel_core::JobError::new(
                easel_core::job::codes::NO_PROVIDER,
                format!(
                    "this server has no provider `{other}` (it runs: {})",
                    easel_core::model::PROVIDERS.join(", ")
                ),
            ))),
        }
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

#[cfg(test)]
mod tests {
    use super::check_runnable;

    fn model(spec: serde_json::Value) -> easel_core::model::Model {
        let mut v = serde_json::json!({
            "id": "mdl_x", "name": "m", "aliases": [], "family": "sd15", "tasks": ["txt2img"],
            "source": null, "provider": "local", "provider_config": {},
            "provider_capabilities": null, "fallback_provider": null,
            "fallback_provider_config": null, "fallback_provider_capabilities": null,
            "defaults": {}, "limits": {}, "icon": null, "tool_types": [], "recommended": false,
            "beta": false, "tags": [], "discovered": false,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        });
        for (k, x) in spec.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_model_runs_when_its_provider_or_its_fallback_can() {
        let unset =
            serde_json::json!({"base_url": "http://up", "api_key_env": "EASEL_TEST_NEVER_SET_VAR"});
        let open = serde_json::json!({"base_url": "http://up"});
        let why = |spec| check_runnable(&model(spec)).map_err(|e| e.message);
        // A remote provider whose key variable is unset cannot run.
        let e =
            why(serde_json::json!({"provider": "openai", "provider_config": unset})).unwrap_err();
        assert!(e.contains("EASEL_TEST_NEVER_SET_VAR"), "{e}");
        // Neither can run: a local model without weights whose fallback lacks its key, and the
        // other way round.
        let e = why(
            serde_json::json!({"fallback_provider": "openai", "fallback_provider_config": unset}),
        )
        .unwrap_err();
        assert!(
            e.contains("`source`") && e.contains("EASEL_TEST_NEVER_SET_VAR"),
            "{e}"
        );
        let e = why(serde_json::json!({"provider": "openai", "provider_config": unset, "fallback_provider": "local"}))
            .unwrap_err();
        assert!(e.contains("and its fallback"), "{e}");
        // One of them can.
        assert!(why(serde_json::json!({"provider": "openai", "provider_config": unset, "fallback_provider": "easel", "fallback_provider_config": open})).is_ok());
        assert!(why(serde_json::json!({"source": "/m", "fallback_provider": "openai", "fallback_provider_config": unset})).is_ok());
        assert!(why(serde_json::json!({"provider": "replicate", "provider_config": open})).is_ok());
    }
}
