//! Heun (Karras et al. 2022, algorithm 1 without churn), diffusers' `HeunDiscreteScheduler`.
//! Each Heun step takes two model calls, so like diffusers the schedule interleaves:
//! timesteps `t0, t1, t1, t2, t2, …`, sigmas `σ0, σ1, σ1, …, σ_{n-1}, σ_{n-1}, 0`; a loop has
//! `2·steps − 1` iterations (the last is a plain Euler step to σ = 0). Whether a call is the
//! first (Euler) or second (correction) half is the state, as in diffusers, so an img2img
//! start at any index behaves the same.
//!
//! Class defaults: betas linear 0.00085 → 0.012, `timestep_spacing` linspace, `clip_sample`
//! false. Takes `use_karras_sigmas` and `use_exponential_sigmas`.

use candle_core::{Result, Tensor};

use super::config::{
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing,
};
use super::schedule::{self as sch, f32r, BetaDefaults, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "HeunDiscreteScheduler";

/// Heun's and KDPM2's beta defaults.
pub(crate) const K_DEFAULTS: BetaDefaults = BetaDefaults {
    start: 0.00085,
    end: 0.012,
    schedule: BetaSchedule::Linear,
};

pub(crate) struct Heun {
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    karras: bool,
    exponential: bool,
    limit: X0Limit,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    // state of the current Heun step (set by its first half)
    prev_derivative: Option<Tensor>,
    dt: Option<f64>,
    first_sample: Option<Tensor>,
}

impl Heun {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, NAME)?;
        let ac = sch::alphas_cumprod(cfg, &K_DEFAULTS, false)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(Heun {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            limit: if cfg.clip_sample.unwrap_or(false) {
                X0Limit::Clip(cfg.clip_sample_range)
            } else {
                X0Limit::None
            },
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            prev_derivative: None,
            dt: None,
            first_sample: None,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (mut ts, mut sig) = sch::ve_base(
            self.spacing,
            self.num_train,
            n,
            self.steps_offset,
            &self.train_sigmas,
        );
        if self.karras || self.exponential {
            let (lo, hi) = (sig[sig.len() - 1], sig[0]);
            sig = if self.karras {
                sch::karras_sigmas(lo, hi, n)
            } else {
                sch::exponential_sigmas(lo, hi, n)
            };
            ts = sig
                .iter()
                .map(|&s| sch::sigma_to_t(s, &self.log_sigmas))
                .collect();
        }
        sig.push(0.0);
        let sig: Vec<f64> = sig.into_iter().map(f32r).collect();
        self.sigmas = interleave(&sig);
        let mut t = vec![f32r(ts[0])];
        for &x in &ts[1..] {
            t.extend([f32r(x), f32r(x)]);
        }
        self.timesteps = t;
        self.reset();
        Ok(())
    }

    pub(crate) fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    pub(crate) fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    pub(crate) fn init_noise_sigma(&self) -> f64 {
        sch::ve_init_noise_sigma(&self.sigmas, self.spacing)
    }

    pub(crate) fn order(&self) -> usize {
        2
    }

    pub(crate) fn reset(&mut self) {
        self.prev_derivative = None;
        self.dt = None;
        self.first_sample = None;
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        sch::ve_scale(x, self.sigmas[idx])
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let first = self.dt.is_none();
        let (sigma, sigma_next) = if first {
            (self.sigmas[idx], self.sigmas[idx + 1])
        } else {
            (self.sigmas[idx - 1], self.sigmas[idx])
        };
        let sigma_input = if first { sigma } else { sigma_next };
        let x0 = sch::ve_x0(self.prediction, model_output, sample, sigma_input)?;
        let x0 = self.limit.apply(x0)?;
        if first {
            let derivative = sch::ve_derivative(sample, &x0, sigma)?;
            let dt = f32r(sigma_next - sigma);
            let prev = (sample + derivative.affine(dt, 0.0)?)?;
            self.prev_derivative = Some(derivative);
            self.dt = Some(dt);
            self.first_sample = Some(sample.clone());
            Ok(prev)
        } else {
            let d2 = sch::ve_derivative(sample, &x0, sigma_next)?;
            let missing = || candle_core::Error::Msg(format!("{NAME}: missing first-order state"));
            let d1 = self.prev_derivative.take().ok_or_else(missing)?;
            let dt = self.dt.take().ok_or_else(missing)?;
            let x = self.first_sample.take().ok_or_else(missing)?;
            let derivative = ((d1 + d2)? * 0.5)?;
            x + derivative.affine(dt, 0.0)?
        }
    }

    pub(crate) fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        idx: usize,
    ) -> Result<Tensor> {
        original + noise.affine(self.sigmas[idx], 0.0)?
    }
}

/// `cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]])`.
fn interleave(s: &[f64]) -> Vec<f64> {
    let mut out = vec![s[0]];
    for &x in &s[1..s.len() - 1] {
        out.extend([x, x]);
    }
    out.push(s[s.len() - 1]);
    out
}
