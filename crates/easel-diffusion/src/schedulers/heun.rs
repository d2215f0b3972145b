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

use super::config::{BetaSchedule, SchedulerConfig, SchedulerError};
use super::schedule::{self as sch, f32r, BetaDefaults, Table, X0Limit};
use super::ve::{euler_step, VeBase};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "HeunDiscreteScheduler";

/// Heun's and KDPM2's beta defaults.
pub(crate) const K_DEFAULTS: BetaDefaults = BetaDefaults {
    start: 0.00085,
    end: 0.012,
    schedule: BetaSchedule::Linear,
};

/// The first half of a Heun step: its derivative, σ step and starting sample.
struct FirstHalf {
    derivative: Tensor,
    dt: f64,
    sample: Tensor,
}

pub(crate) struct Heun {
    base: VeBase,
    limit: X0Limit,
    table: Table,
    /// Set by the first half of the current step.
    first: Option<FirstHalf>,
}

impl Heun {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let base = VeBase::new(cfg, NAME, &K_DEFAULTS, false, true)?;
        Ok(Heun {
            table: base.table(NAME),
            base,
            limit: if cfg.clip_sample.unwrap_or(false) {
                X0Limit::Clip(cfg.clip_sample_range)
            } else {
                X0Limit::None
            },
            first: None,
        })
    }
}

impl Solver for Heun {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sig, _) = self.base.schedule(n, false, 0.0);
        self.table.sigmas = interleave(&sig);
        let mut t = vec![f32r(ts[0])];
        for &x in &ts[1..] {
            t.extend([f32r(x), f32r(x)]);
        }
        self.table.timesteps = t;
        Ok(())
    }

    fn order(&self) -> usize {
        2
    }

    fn reset(&mut self) {
        self.first = None;
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let s = &self.table.sigmas;
        match self.first.take() {
            None => {
                let (sigma, sigma_next) = (s[idx], s[idx + 1]);
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma)?;
                let x0 = self.limit.apply(x0)?;
                let derivative = sch::ve_derivative(sample, &x0, sigma)?;
                let prev = euler_step(sample, &derivative, sigma, sigma_next)?;
                self.first = Some(FirstHalf {
                    derivative,
                    dt: f32r(sigma_next - sigma),
                    sample: sample.clone(),
                });
                Ok(prev)
            }
            Some(first) => {
                let sigma_next = s[idx];
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma_next)?;
                let x0 = self.limit.apply(x0)?;
                let d2 = sch::ve_derivative(sample, &x0, sigma_next)?;
                let derivative = ((first.derivative + d2)? * 0.5)?;
                first.sample + derivative.affine(first.dt, 0.0)?
            }
        }
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
