//! Euler (Karras et al. 2022, algorithm 2 without churn) and Euler ancestral (k-diffusion's
//! `sample_euler_ancestral`), diffusers' `EulerDiscreteScheduler` and
//! `EulerAncestralDiscreteScheduler`. Both work on sigmas `σ_t = sqrt((1 - ᾱ_t) / ᾱ_t)`; the
//! UNet input is divided by `sqrt(σ² + 1)`. Euler ancestral draws one noise tensor every step.
//!
//! Class defaults (both): betas linear 0.0001 → 0.02, `timestep_spacing` linspace. Euler takes
//! `use_karras_sigmas`, `use_exponential_sigmas`, `sigma_min`/`sigma_max`, `final_sigmas_type`,
//! `timestep_type` continuous (v-prediction) and `rescale_betas_zero_snr`; `interpolation_type`
//! log_linear is rejected. Euler ancestral rejects `prediction_type` sample (as diffusers).

use candle_core::{Result, Tensor};

use super::config::{
    FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig, SchedulerError,
    TimestepType,
};
use super::schedule::{self as sch, f32r, Table};
use super::ve::{ancestral_sigmas, euler_step, VeBase};
use super::Solver;
use crate::noise::NoiseSource;

const EULER: &str = "EulerDiscreteScheduler";

pub(crate) struct Euler {
    base: VeBase,
    final_sigmas: FinalSigmasType,
    continuous_v: bool,
    table: Table,
}

impl Euler {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let mut base = VeBase::new(cfg, EULER, &sch::LINEAR_DEFAULTS, true, true)?;
        if cfg.interpolation_type == InterpolationType::LogLinear {
            return Err(SchedulerError::unsupported(
                EULER,
                "interpolation_type",
                "log_linear",
            ));
        }
        base.bounds = (cfg.sigma_min, cfg.sigma_max);
        Ok(Euler {
            table: base.table(EULER),
            base,
            final_sigmas: cfg.final_sigmas_type,
            continuous_v: cfg.timestep_type == TimestepType::Continuous
                && cfg.prediction_type == PredictionType::VPrediction,
        })
    }
}

impl Solver for Euler {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let last = sch::final_sigma(self.final_sigmas, self.base.train.min());
        let (ts, sigmas, _) = self.base.schedule(n, false, last);
        self.table.timesteps = if self.continuous_v {
            sigmas[..sigmas.len() - 1]
                .iter()
                .map(|&s| f32r(0.25 * s.ln()))
                .collect()
        } else {
            ts.into_iter().map(f32r).collect()
        };
        self.table.sigmas = sigmas;
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let (sigma, next) = (self.table.sigmas[idx], self.table.sigmas[idx + 1]);
        let derivative = self.base.derivative(model_output, sample, sigma)?;
        euler_step(sample, &derivative, sigma, next)
    }
}

const EULER_A: &str = "EulerAncestralDiscreteScheduler";

pub(crate) struct EulerAncestral {
    base: VeBase,
    table: Table,
}

impl EulerAncestral {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        if cfg.prediction_type == PredictionType::Sample {
            return Err(SchedulerError::unsupported(
                EULER_A,
                "prediction_type",
                "sample",
            ));
        }
        let base = VeBase::new(cfg, EULER_A, &sch::LINEAR_DEFAULTS, true, false)?;
        Ok(EulerAncestral {
            table: base.table(EULER_A),
            base,
        })
    }
}

impl Solver for EulerAncestral {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        (self.table.timesteps, self.table.sigmas, _) = self.base.schedule(n, false, 0.0);
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let (sigma, next) = (self.table.sigmas[idx], self.table.sigmas[idx + 1]);
        let derivative = self.base.derivative(model_output, sample, sigma)?;
        let (sigma_up, down2) = ancestral_sigmas(sigma, next);
        let sigma_down = down2.max(0.0).sqrt() as f64;
        let prev = euler_step(sample, &derivative, sigma, sigma_down)?;
        let z = noise.randn(model_output.dims(), model_output.device())?;
        prev + z.affine(sigma_up as f64, 0.0)?
    }
}
