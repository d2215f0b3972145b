//! What the sigma (variance-exploding, k-diffusion style) schedulers share: Euler, Euler
//! ancestral, Heun, LMS and KDPM2 work on `σ_t = sqrt((1 - ᾱ_t) / ᾱ_t)` at the spaced
//! timesteps (float32, like diffusers), or on Karras/exponential sigmas with their timesteps
//! recovered by `sigma_to_t`; the UNet input is divided by `sqrt(σ² + 1)` (`Levels::Ve`).

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::schedule::{
    self as sch, f32r, BetaDefaults, Levels, SigmaSchedule, Spacing, Table, TrainSigmas,
};

/// The configuration of a sigma scheduler and its training sigmas.
pub(crate) struct VeBase {
    pub train: TrainSigmas,
    pub spacing: Spacing,
    pub prediction: PredictionType,
    pub schedule: SigmaSchedule,
    /// `sigma_min`/`sigma_max` bounds of the converted sigmas (Euler only; else the range of
    /// the interpolated ones).
    pub bounds: (Option<f64>, Option<f64>),
}

impl VeBase {
    /// `zero_snr`: the class honours `rescale_betas_zero_snr`; `sigma_options`: it takes
    /// `use_karras_sigmas`/`use_exponential_sigmas` (and rejects the unsupported ones).
    pub(crate) fn new(
        cfg: &SchedulerConfig,
        name: &'static str,
        defaults: &BetaDefaults,
        zero_snr: bool,
        sigma_options: bool,
    ) -> std::result::Result<Self, SchedulerError> {
        let schedule = if sigma_options {
            sch::reject_unsupported_sigmas(cfg, name)?;
            SigmaSchedule::from_config(cfg, false)
        } else {
            SigmaSchedule::Interpolated
        };
        Ok(VeBase {
            train: TrainSigmas::new(cfg, defaults, zero_snr)?,
            spacing: Spacing::new(cfg, TimestepSpacing::Linspace),
            prediction: cfg.prediction_type,
            schedule,
            bounds: (None, None),
        })
    }

    /// An empty table for this scheduler's schedule.
    pub(crate) fn table(&self, name: &'static str) -> Table {
        Table::new(name, Levels::Ve(self.spacing.kind))
    }

    /// One entry per step: the timesteps (float32 values unless converted; `round_t` rounds
    /// converted Karras timesteps to integers), the float32 sigmas with `final_sigma`
    /// appended, and whether the sigmas were converted.
    pub(crate) fn schedule(
        &self,
        n: usize,
        round_t: bool,
        final_sigma: f64,
    ) -> (Vec<f64>, Vec<f64>, bool) {
        let ts: Vec<f64> = self
            .spacing
            .spaced(n, false)
            .into_iter()
            .map(f32r)
            .collect();
        let sig: Vec<f64> = ts.iter().map(|&t| self.train.at(t)).collect();
        let lo = self.bounds.0.unwrap_or(sig[sig.len() - 1]);
        let hi = self.bounds.1.unwrap_or(sig[0]);
        let (ts, mut sig, converted) = match self.schedule.convert(&self.train, lo, hi, n, round_t)
        {
            Some((ts, sig)) => (ts, sig, true),
            None => (ts, sig, false),
        };
        sig.push(final_sigma);
        (ts, sig.into_iter().map(f32r).collect(), converted)
    }

    /// x0 predicted at `sigma` and the ODE derivative `(sample - x0) / sigma` there.
    pub(crate) fn derivative(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        sigma: f64,
    ) -> Result<Tensor> {
        let x0 = sch::ve_x0(self.prediction, model_output, sample, sigma)?;
        sch::ve_derivative(sample, &x0, sigma)
    }
}

/// `x + d·(to − from)` with the step in float32 (an Euler step from σ `from` to σ `to`).
pub(crate) fn euler_step(x: &Tensor, derivative: &Tensor, from: f64, to: f64) -> Result<Tensor> {
    x + derivative.affine(f32r(to - from), 0.0)?
}

/// `(σ_up, σ_down²)` of an ancestral step from σ `from` to σ `to`, in float32 as diffusers.
pub(crate) fn ancestral_sigmas(from: f64, to: f64) -> (f32, f32) {
    let (s, next) = (from as f32, to as f32);
    let up = (next * next * (s * s - next * next) / (s * s)).sqrt();
    (up, next * next - up * up)
}
