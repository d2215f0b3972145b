//! DDIM (Song et al. 2020), diffusers' `DDIMScheduler`: deterministic with `eta` 0, DDPM-like
//! noise with `eta` > 0 (`eta` from the config key `"eta"`).
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` leading, `clip_sample` true,
//! `set_alpha_to_one` true.

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::schedule::{self as sch, Levels, Spacing, Table, X0Limit};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "DDIMScheduler";

pub(crate) struct Ddim {
    table: Table,
    final_ac: f64,
    spacing: Spacing,
    prediction: PredictionType,
    limit: X0Limit,
    eta: f64,
    n: usize,
}

impl Ddim {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?;
        let eta = cfg.eta.unwrap_or(0.0);
        if eta.is_nan() || eta < 0.0 {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "eta",
                eta,
                "must be ≥ 0",
            ));
        }
        Ok(Ddim {
            final_ac: sch::final_alpha(cfg, &ac, true),
            table: Table::new(NAME, Levels::Alphas(ac)),
            spacing: Spacing::new(cfg, TimestepSpacing::Leading),
            prediction: cfg.prediction_type,
            limit: X0Limit::from_config(cfg, true),
            eta,
            n: 0,
        })
    }
}

impl Solver for Ddim {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.n = n;
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
        let prev_t = t - (self.spacing.num_train / self.n) as f64;
        let a_t = self.table.alpha(t)?;
        let a_prev = self.table.alpha_prev(prev_t, self.final_ac)?;
        let (x0, eps) = sch::vp_x0_eps(self.prediction, model_output, sample, a_t)?;
        let x0 = self.limit.apply(x0)?;
        let variance = ((1.0 - a_prev) / (1.0 - a_t)) * (1.0 - a_t / a_prev);
        let std = self.eta * variance.sqrt();
        let dir = (1.0 - a_prev - std * std).max(0.0).sqrt();
        let prev = sch::lin(&[(a_prev.sqrt(), &x0), (dir, &eps)])?;
        if self.eta > 0.0 {
            let z = noise.randn(model_output.dims(), model_output.device())?;
            return prev + z.affine(std, 0.0)?;
        }
        Ok(prev)
    }
}
