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
use super::schedule::{self as sch, Levels, Spacing, Table, X0Limit};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "DDPMScheduler";

pub(crate) struct Ddpm {
    table: Table,
    spacing: Spacing,
    prediction: PredictionType,
    limit: X0Limit,
    variance: VarianceType,
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
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?;
        Ok(Ddpm {
            table: Table::new(NAME, Levels::Alphas(ac)),
            spacing: Spacing::new(cfg, TimestepSpacing::Leading),
            prediction: cfg.prediction_type,
            limit: X0Limit::from_config(cfg, true),
            variance,
        })
    }
}

impl Solver for Ddpm {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.table.timesteps = self.spacing.spaced(n, true);
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let t = self.table.timesteps[idx];
        // diffusers' previous_timestep: the next entry of the schedule, -1 after the last.
        let prev_t = self.table.timesteps.get(idx + 1).copied().unwrap_or(-1.0);
        let a_t = self.table.alpha(t)?;
        let a_prev = self.table.alpha_prev(prev_t, 1.0)?;
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
}
