//! Linear multistep (k-diffusion's `sample_lms`), diffusers' `LMSDiscreteScheduler`: order 4
//! Adams–Bashforth in sigma. The coefficient of each stored derivative is the integral of its
//! Lagrange basis polynomial over the next sigma interval; the polynomials have degree ≤ 3,
//! so Gauss–Legendre quadrature gives them exactly (diffusers uses scipy's `quad`).
//!
//! Like diffusers, the order at schedule entry i is `min(i + 1, 4)` even when fewer derivatives
//! are stored (img2img), and only the stored ones are used.
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` linspace. Takes
//! `use_karras_sigmas` and `use_exponential_sigmas`.

use std::collections::VecDeque;

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::schedule::{self as sch, f32r};
use crate::noise::NoiseSource;

const NAME: &str = "LMSDiscreteScheduler";
const ORDER: usize = 4;

pub(crate) struct Lms {
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    karras: bool,
    exponential: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    derivatives: VecDeque<Tensor>,
}

impl Lms {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, NAME)?;
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, false)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(Lms {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            derivatives: VecDeque::new(),
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
        self.sigmas = sig.into_iter().map(f32r).collect();
        self.timesteps = ts.into_iter().map(f32r).collect();
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
        1
    }

    pub(crate) fn reset(&mut self) {
        self.derivatives.clear();
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        sch::ve_scale(x, self.sigmas[idx])
    }

    /// ∫ over [σ_t, σ_{t+1}] of the Lagrange basis polynomial of node `current` among the
    /// `order` nodes σ_t, σ_{t-1}, …
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = &self.sigmas;
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - s[t - k]) / (s[t - current] - s[t - k]))
                .product::<f64>()
        };
        sch::integrate(basis, s[t], s[t + 1])
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
        self.derivatives.push_back(derivative);
        if self.derivatives.len() > ORDER {
            self.derivatives.pop_front();
        }
        let order = (idx + 1).min(ORDER);
        // sample + Σ coeff·derivative, summed in diffusers' order (newest derivative first)
        let mut terms: Vec<(f64, &Tensor)> = Vec::with_capacity(order);
        for (current, d) in (0..order).zip(self.derivatives.iter().rev()) {
            terms.push((self.coefficient(order, idx, current), d));
        }
        sample + sch::lin(&terms)?
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
