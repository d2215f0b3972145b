//! Trajectory consistency distillation (Zheng et al. 2024), diffusers' `TCDScheduler`: like
//! LCM, but each step goes to an intermediate timestep s = floor((1 − γ) · t_prev) along the
//! predicted trajectory and re-noises from s to t_prev with fresh noise (γ > 0, not after the
//! last step). γ is `eta` (config key `"eta"`, default 0.3); γ = 0 is deterministic.
//!
//! diffusers' TCD does not apply `clip_sample`/`thresholding` in its step; neither does this.
//! Timesteps and class defaults as LCM (betas scaled_linear 0.00085 → 0.012,
//! `set_alpha_to_one` true, `original_inference_steps` 50).

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError};
use super::lcm::{lcm_timesteps, LCM_DEFAULTS};
use super::schedule::{self as sch, Levels, Table};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "TCDScheduler";

pub(crate) struct Tcd {
    table: Table,
    num_train: usize,
    original_steps: usize,
    prediction: PredictionType,
    gamma: f64,
}

impl Tcd {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let gamma = cfg.eta.unwrap_or(0.3);
        if !(0.0..=1.0).contains(&gamma) {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "eta",
                gamma,
                "gamma must be in [0, 1]",
            ));
        }
        let ac = sch::alphas_cumprod(cfg, &LCM_DEFAULTS, true)?;
        Ok(Tcd {
            table: Table::new(NAME, Levels::Alphas(ac)),
            num_train: cfg.num_train_timesteps,
            original_steps: cfg.original_inference_steps,
            prediction: cfg.prediction_type,
            gamma,
        })
    }
}

impl Solver for Tcd {
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
        let prev_t = ts.get(idx + 1).copied().unwrap_or(0.0);
        // torch: floor(float32(1 - eta) * float32(prev_t)) in float32
        let s = ((1.0 - self.gamma) as f32 * prev_t as f32).floor() as f64;
        let a_t = self.table.alpha(t)?;
        let a_prev = self.table.alpha(prev_t)?;
        let a_s = self.table.alpha(s)?;
        let (x0, eps) = sch::vp_x0_eps(self.prediction, model_output, sample, a_t)?;
        let noised = sch::lin(&[(a_s.sqrt(), &x0), ((1.0 - a_s).sqrt(), &eps)])?;
        if self.gamma > 0.0 && idx + 1 != ts.len() {
            let z = noise.randn(model_output.dims(), model_output.device())?;
            let r = a_prev / a_s;
            sch::lin(&[(r.sqrt(), &noised), ((1.0 - r).max(0.0).sqrt(), &z)])
        } else {
            Ok(noised)
        }
    }
}
