//! DDPM (Ho et al. 2020), diffusers' `DDPMScheduler`: ancestral sampling from the posterior
//! q(x_{t-1} | x_t, x0); draws one noise tensor per step except at t = 0.
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` leading, `clip_sample` true,
//! `variance_type` fixed_small. The learned variance types (a model that outputs twice the
//! channels) and `fixed_large_log` (which diffusers turns into NaN) are rejected.

use candle_core::{Result, Tensor};

use super::config::{
    PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing, VarianceType,
};
use super::schedule::{self as sch, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "DDPMScheduler";

pub(crate) struct Ddpm {
    ac: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    limit: X0Limit,
    variance: VarianceType,
    timesteps: Vec<f64>,
}

impl Ddpm {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let variance = cfg.variance_type.unwrap_or(VarianceType::FixedSmall);
        match variance {
            VarianceType::Learned | VarianceType::LearnedRange | VarianceType::FixedLargeLog => {
                return Err(SchedulerError::unsupported(
                    NAME,
                    "variance_type",
                    format!("{variance:?}"),
                ))
            }
            _ => {}
        }
        Ok(Ddpm {
            ac: sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Leading),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            limit: X0Limit::from_config(cfg, true),
            variance,
            timesteps: Vec::new(),
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.timesteps =
            sch::spaced_timesteps(self.spacing, self.num_train, n, self.steps_offset, true);
        Ok(())
    }

    pub(crate) fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    pub(crate) fn sigmas(&self) -> Option<&[f64]> {
        None
    }

    pub(crate) fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    pub(crate) fn order(&self) -> usize {
        1
    }

    pub(crate) fn reset(&mut self) {}

    pub(crate) fn scale_model_input(&self, x: &Tensor, _idx: usize) -> Result<Tensor> {
        Ok(x.clone())
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let t = self.timesteps[idx];
        // diffusers' previous_timestep: the next entry of the schedule, -1 after the last.
        let prev_t = self.timesteps.get(idx + 1).copied().unwrap_or(-1.0);
        let a_t = sch::ac_at(&self.ac, t, NAME)?;
        let a_prev = if prev_t >= 0.0 {
            sch::ac_at(&self.ac, prev_t, NAME)?
        } else {
            1.0
        };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let cur_alpha = a_t / a_prev;
        let cur_beta = 1.0 - cur_alpha;
        let (x0, _) = sch::vp_x0_eps(self.prediction, model_output, sample, a_t)?;
        let x0 = self.limit.apply(x0)?;
        let x0_coeff = a_prev.sqrt() * cur_beta / b_t;
        let x_coeff = cur_alpha.sqrt() * b_prev / b_t;
        let mean = sch::lin(&[(x0_coeff, &x0), (x_coeff, sample)])?;
        if t <= 0.0 {
            return Ok(mean);
        }
        let z = noise.randn(model_output.dims(), model_output.device())?;
        let var = (b_prev / b_t * cur_beta).max(1e-20);
        let std = match self.variance {
            VarianceType::FixedLarge => cur_beta.sqrt(),
            // fixed_small, and fixed_small_log (exp(0.5 · ln var), the same number)
            _ => var.sqrt(),
        };
        mean + z.affine(std, 0.0)?
    }

    pub(crate) fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        idx: usize,
    ) -> Result<Tensor> {
        let a = sch::ac_at(&self.ac, self.timesteps[idx], NAME)?;
        sch::vp_add_noise(original, noise, a)
    }
}
