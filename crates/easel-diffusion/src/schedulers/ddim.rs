//! DDIM (Song et al. 2020), diffusers' `DDIMScheduler`: deterministic with `eta` 0, DDPM-like
//! noise with `eta` > 0 (`eta` from the config key `"eta"`).
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` leading, `clip_sample` true,
//! `set_alpha_to_one` true.

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::schedule::{self as sch, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "DDIMScheduler";

pub(crate) struct Ddim {
    ac: Vec<f64>,
    final_ac: f64,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    limit: X0Limit,
    eta: f64,
    n: usize,
    timesteps: Vec<f64>,
}

impl Ddim {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?;
        let final_ac = if cfg.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            ac[0]
        };
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
            final_ac,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Leading),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            limit: X0Limit::from_config(cfg, true),
            eta,
            n: 0,
            timesteps: Vec::new(),
            ac,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.n = n;
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
        let prev_t = t - (self.num_train / self.n) as f64;
        let a_t = sch::ac_at(&self.ac, t, NAME)?;
        let a_prev = if prev_t >= 0.0 {
            sch::ac_at(&self.ac, prev_t, NAME)?
        } else {
            self.final_ac
        };
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
