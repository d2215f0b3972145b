//! Latent consistency models (Luo et al. 2023), diffusers' `LCMScheduler`: each step maps the
//! sample to the consistency function's x0 estimate (boundary-condition scalings c_skip,
//! c_out at `timestep · timestep_scaling`) and re-noises it to the next timestep with a fresh
//! noise tensor (not after the last step).
//!
//! Timesteps: a subset of the `original_inference_steps` (default 50) schedule
//! `k − 1, 2k − 1, …, 999` (k = N / original steps), picked at `floor(linspace(0, len, steps))`
//! of it reversed. diffusers' img2img variant that passes `strength` into `set_timesteps` is not
//! reproduced; the generic `begin_index_for_strength` applies.
//!
//! Class defaults: betas scaled_linear 0.00085 → 0.012, `set_alpha_to_one` true,
//! `clip_sample` false, `timestep_scaling` 10, `original_inference_steps` 50.

use candle_core::{Result, Tensor};

use super::config::{BetaSchedule, PredictionType, SchedulerConfig, SchedulerError};
use super::schedule::{self as sch, BetaDefaults, Levels, Table, X0Limit};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "LCMScheduler";

/// LCM's and TCD's beta defaults.
pub(crate) const LCM_DEFAULTS: BetaDefaults = BetaDefaults {
    start: 0.00085,
    end: 0.012,
    schedule: BetaSchedule::ScaledLinear,
};

/// The LCM/TCD timestep subset for `n` steps.
pub(crate) fn lcm_timesteps(
    num_train: usize,
    original_steps: usize,
    n: usize,
    name: &'static str,
) -> std::result::Result<Vec<f64>, SchedulerError> {
    if original_steps == 0 || original_steps > num_train {
        return Err(SchedulerError::unsupported_because(
            name,
            "original_inference_steps",
            original_steps,
            "must be between 1 and num_train_timesteps",
        ));
    }
    let k = num_train / original_steps;
    let origin: Vec<usize> = (1..=original_steps).rev().map(|i| i * k - 1).collect();
    if n > original_steps || origin.len() / n < 1 {
        return Err(SchedulerError::schedule(
            name,
            format!(
                "num_inference_steps {n} is larger than original_inference_steps {original_steps}"
            ),
        ));
    }
    Ok(sch::np_linspace(0.0, origin.len() as f64, n, false)
        .into_iter()
        .map(|i| origin[i.floor() as usize] as f64)
        .collect())
}

pub(crate) struct Lcm {
    table: Table,
    final_ac: f64,
    num_train: usize,
    original_steps: usize,
    timestep_scaling: f64,
    prediction: PredictionType,
    limit: X0Limit,
}

impl Lcm {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let ac = sch::alphas_cumprod(cfg, &LCM_DEFAULTS, true)?;
        Ok(Lcm {
            final_ac: sch::final_alpha(cfg, &ac, true),
            table: Table::new(NAME, Levels::Alphas(ac)),
            num_train: cfg.num_train_timesteps,
            original_steps: cfg.original_inference_steps,
            timestep_scaling: cfg.timestep_scaling,
            prediction: cfg.prediction_type,
            limit: X0Limit::from_config(cfg, false),
        })
    }
}

impl Solver for Lcm {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.table.timesteps = lcm_timesteps(self.num_train, self.original_steps, n, NAME)?;
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let ts = &self.table.timesteps;
        let t = ts[idx];
        let prev_t = ts.get(idx + 1).copied().unwrap_or(t);
        let a_t = self.table.alpha(t)?;
        let a_prev = self.table.alpha_prev(prev_t, self.final_ac)?;
        let sigma_data = 0.5f64;
        let st = t * self.timestep_scaling;
        let c_skip = sigma_data * sigma_data / (st * st + sigma_data * sigma_data);
        let c_out = st / (st * st + sigma_data * sigma_data).sqrt();
        let (x0, _) = sch::vp_x0_eps(self.prediction, model_output, sample, a_t)?;
        let x0 = self.limit.apply(x0)?;
        let denoised = sch::lin(&[(c_out, &x0), (c_skip, sample)])?;
        if idx + 1 != ts.len() {
            let z = noise.randn(model_output.dims(), model_output.device())?;
            sch::lin(&[(a_prev.sqrt(), &denoised), ((1.0 - a_prev).sqrt(), &z)])
        } else {
            Ok(denoised)
        }
    }
}
