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
    TimestepSpacing, TimestepType,
};
use super::schedule::{self as sch, f32r};
use crate::noise::NoiseSource;

/// The training sigmas of a sigma scheduler (with diffusers' zero-SNR fix-up).
fn training(cfg: &SchedulerConfig) -> std::result::Result<Vec<f64>, SchedulerError> {
    let mut ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?;
    if cfg.rescale_betas_zero_snr {
        if let Some(last) = ac.last_mut() {
            *last = 2f64.powi(-24);
        }
    }
    Ok(ac)
}

pub(crate) struct Euler {
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    karras: bool,
    exponential: bool,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    final_sigmas: FinalSigmasType,
    continuous_v: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

const EULER: &str = "EulerDiscreteScheduler";

impl Euler {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, EULER)?;
        if cfg.interpolation_type == InterpolationType::LogLinear {
            return Err(SchedulerError::unsupported(
                EULER,
                "interpolation_type",
                "log_linear",
            ));
        }
        let ac = training(cfg)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(Euler {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            sigma_min: cfg.sigma_min,
            sigma_max: cfg.sigma_max,
            final_sigmas: cfg.final_sigmas_type,
            continuous_v: cfg.timestep_type == TimestepType::Continuous
                && cfg.prediction_type == PredictionType::VPrediction,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
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
            let lo = self.sigma_min.unwrap_or(sig[sig.len() - 1]);
            let hi = self.sigma_max.unwrap_or(sig[0]);
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
        let last = match self.final_sigmas {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => self.train_sigmas[0],
        };
        sig.push(last);
        self.sigmas = sig.into_iter().map(f32r).collect();
        self.timesteps = if self.continuous_v {
            self.sigmas[..self.sigmas.len() - 1]
                .iter()
                .map(|&s| f32r(0.25 * s.ln()))
                .collect()
        } else {
            ts.into_iter().map(f32r).collect()
        };
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
        1
    }

    pub(crate) fn reset(&mut self) {}

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
        let sigma = self.sigmas[idx];
        let x0 = sch::ve_x0(self.prediction, model_output, sample, sigma)?;
        let derivative = sch::ve_derivative(sample, &x0, sigma)?;
        let dt = f32r(self.sigmas[idx + 1] - sigma);
        sample + derivative.affine(dt, 0.0)?
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

const EULER_A: &str = "EulerAncestralDiscreteScheduler";

pub(crate) struct EulerAncestral {
    train_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
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
        let ac = training(cfg)?;
        Ok(EulerAncestral {
            train_sigmas: sch::train_sigmas(&ac),
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, mut sig) = sch::ve_base(
            self.spacing,
            self.num_train,
            n,
            self.steps_offset,
            &self.train_sigmas,
        );
        sig.push(0.0);
        self.sigmas = sig.into_iter().map(f32r).collect();
        self.timesteps = ts;
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
        1
    }

    pub(crate) fn reset(&mut self) {}

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        sch::ve_scale(x, self.sigmas[idx])
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[idx];
        let x0 = sch::ve_x0(self.prediction, model_output, sample, sigma)?;
        // float32 like diffusers' scalar tensors
        let (from, to) = (sigma as f32, self.sigmas[idx + 1] as f32);
        let sigma_up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let sigma_down = (to * to - sigma_up * sigma_up).max(0.0).sqrt();
        let (sigma_up, sigma_down) = (sigma_up as f64, sigma_down as f64);
        let derivative = sch::ve_derivative(sample, &x0, sigma)?;
        let prev = (sample + derivative.affine(f32r(sigma_down - sigma), 0.0)?)?;
        let z = noise.randn(model_output.dims(), model_output.device())?;
        prev + z.affine(sigma_up, 0.0)?
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
