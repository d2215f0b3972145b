//! DPM-Solver-2 in sigma form (k-diffusion's `sample_dpm_2` and `sample_dpm_2_ancestral`),
//! diffusers' `KDPM2DiscreteScheduler` and `KDPM2AncestralDiscreteScheduler`.
//!
//! Each step evaluates the model at σ_i, takes an Euler step to the geometric midpoint
//! `sqrt(σ_i · σ_next)` (ancestral: between σ_i and σ_down), evaluates there, and steps from σ_i
//! with that midpoint derivative. As in diffusers the arrays interleave (`sigmas`,
//! `sigmas_interpol`, ancestral `sigmas_up`/`sigmas_down`) and the timesteps alternate
//! `t0, t_mid, t1, t_mid, t2, …` (`2·steps − 1` loop iterations); which half a call is comes
//! from the state. The ancestral variant draws one noise tensor per completed step (after the
//! midpoint evaluation).
//!
//! Class defaults (both): betas linear 0.00085 → 0.012, `timestep_spacing` linspace. Take
//! `use_karras_sigmas` (timesteps rounded) and `use_exponential_sigmas`; `prediction_type`
//! sample is rejected (as diffusers).

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::heun::K_DEFAULTS;
use super::schedule::{self as sch, f32r};
use crate::noise::NoiseSource;

/// What both variants share: the training sigmas and the base (one per step) schedule.
struct Base {
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    karras: bool,
    exponential: bool,
}

impl Base {
    fn new(cfg: &SchedulerConfig, name: &'static str) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, name)?;
        if cfg.prediction_type == PredictionType::Sample {
            return Err(SchedulerError::unsupported(
                name,
                "prediction_type",
                "sample",
            ));
        }
        let ac = sch::alphas_cumprod(cfg, &K_DEFAULTS, false)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(Base {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
        })
    }

    /// (timesteps, sigmas with the final 0, whether the timesteps are float32 like diffusers').
    fn schedule(&self, n: usize) -> (Vec<f64>, Vec<f64>, bool) {
        let (mut ts, mut sig) = sch::ve_base(
            self.spacing,
            self.num_train,
            n,
            self.steps_offset,
            &self.train_sigmas,
        );
        let mut float32 = true;
        if self.karras {
            let (lo, hi) = (sig[sig.len() - 1], sig[0]);
            sig = sch::karras_sigmas(lo, hi, n);
            ts = sig
                .iter()
                .map(|&s| sch::np_round(sch::sigma_to_t(s, &self.log_sigmas)))
                .collect();
            float32 = false;
        } else if self.exponential {
            let (lo, hi) = (sig[sig.len() - 1], sig[0]);
            sig = sch::exponential_sigmas(lo, hi, n);
            ts = sig
                .iter()
                .map(|&s| sch::sigma_to_t(s, &self.log_sigmas))
                .collect();
            float32 = false;
        }
        sig.push(0.0);
        (ts, sig.into_iter().map(f32r).collect(), float32)
    }

    fn t_of(&self, sigma: f64, float32: bool) -> f64 {
        let t = sch::sigma_to_t(sigma, &self.log_sigmas);
        if float32 {
            f32r(t)
        } else {
            t
        }
    }
}

/// `exp(lerp(ln a, ln b, 0.5))` as torch computes it in float32 (`b - (b - a) · 0.5` in log space).
fn log_midpoint(a: f64, b: f64) -> f64 {
    let (la, lb) = (f32r(a.ln()), f32r(b.ln()));
    f32r(f32r(lb - f32r(f32r(lb - la) * 0.5)).exp())
}

/// `cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])`.
fn interleave(x: &[f64]) -> Vec<f64> {
    let mut out = vec![x[0]];
    for &v in &x[1..] {
        out.extend([v, v]);
    }
    out.push(x[x.len() - 1]);
    out
}

const NAME: &str = "KDPM2DiscreteScheduler";

pub(crate) struct KDpm2 {
    base: Base,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    /// The sample at the start of the current step (set by its first half).
    first_sample: Option<Tensor>,
}

impl KDpm2 {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        Ok(KDpm2 {
            base: Base::new(cfg, NAME)?,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            sigmas_interpol: Vec::new(),
            first_sample: None,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sig, float32) = self.base.schedule(n);
        let last = sig.len() - 1;
        // σ_interpol[i] = sqrt(σ_i σ_{i-1}); [0] is NaN in diffusers (never read), [last] = 0.
        let si: Vec<f64> = (0..sig.len())
            .map(|i| match i {
                0 => f64::NAN,
                i if i == last => 0.0,
                i => log_midpoint(sig[i], sig[i - 1]),
            })
            .collect();
        let mut t = vec![ts[0]];
        for k in 1..ts.len() {
            t.push(self.base.t_of(si[k], float32));
            t.push(ts[k]);
        }
        self.timesteps = t
            .into_iter()
            .map(|x| if float32 { f32r(x) } else { x })
            .collect();
        self.sigmas = interleave(&sig);
        self.sigmas_interpol = interleave(&si);
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
        sch::ve_init_noise_sigma(&self.sigmas, self.base.spacing)
    }

    pub(crate) fn order(&self) -> usize {
        2
    }

    pub(crate) fn reset(&mut self) {
        self.first_sample = None;
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        let sigma = if self.first_sample.is_none() {
            self.sigmas[idx]
        } else {
            self.sigmas_interpol[idx]
        };
        sch::ve_scale(x, sigma)
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        match self.first_sample.take() {
            None => {
                let sigma = self.sigmas[idx];
                let sigma_mid = self.sigmas_interpol[idx + 1];
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma)?;
                let derivative = sch::ve_derivative(sample, &x0, sigma)?;
                self.first_sample = Some(sample.clone());
                sample + derivative.affine(f32r(sigma_mid - sigma), 0.0)?
            }
            Some(x) => {
                let sigma = self.sigmas[idx - 1];
                let sigma_mid = self.sigmas_interpol[idx];
                let sigma_next = self.sigmas[idx];
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma_mid)?;
                let derivative = sch::ve_derivative(sample, &x0, sigma_mid)?;
                x + derivative.affine(f32r(sigma_next - sigma), 0.0)?
            }
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

const NAME_A: &str = "KDPM2AncestralDiscreteScheduler";

pub(crate) struct KDpm2Ancestral {
    base: Base,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    sigmas_up: Vec<f64>,
    sigmas_down: Vec<f64>,
    first_sample: Option<Tensor>,
}

impl KDpm2Ancestral {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        Ok(KDpm2Ancestral {
            base: Base::new(cfg, NAME_A)?,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            sigmas_interpol: Vec::new(),
            sigmas_up: Vec::new(),
            sigmas_down: Vec::new(),
            first_sample: None,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sig, float32) = self.base.schedule(n);
        let len = sig.len();
        let mut up = vec![0.0; len];
        let mut down = vec![0.0; len];
        for i in 0..len - 1 {
            // float32 like diffusers; where float32 cancels to ≤ 0 (huge σ_max, e.g. cosine
            // betas; diffusers then produces NaN) the exact σ_down = σ_next²/σ is used
            let (s, next) = (sig[i] as f32, sig[i + 1] as f32);
            let u = (next * next * (s * s - next * next) / (s * s)).sqrt();
            let d2 = next * next - u * u;
            up[i] = u as f64;
            down[i] = if d2 > 0.0 || next == 0.0 {
                d2.sqrt() as f64
            } else {
                f32r(sig[i + 1] * sig[i + 1] / sig[i])
            };
        }
        // σ_interpol = sqrt(σ_i σ_down_i); the last two are 0.
        let si: Vec<f64> = (0..len)
            .map(|i| {
                if i + 2 >= len {
                    0.0
                } else {
                    log_midpoint(sig[i], down[i])
                }
            })
            .collect();
        let mut t = vec![ts[0]];
        for k in 1..ts.len() {
            t.push(self.base.t_of(si[k - 1], float32));
            t.push(ts[k]);
        }
        self.timesteps = t
            .into_iter()
            .map(|x| if float32 { f32r(x) } else { x })
            .collect();
        self.sigmas = interleave(&sig);
        self.sigmas_interpol = interleave(&si);
        self.sigmas_up = interleave(&up);
        self.sigmas_down = interleave(&down);
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
        sch::ve_init_noise_sigma(&self.sigmas, self.base.spacing)
    }

    pub(crate) fn order(&self) -> usize {
        2
    }

    pub(crate) fn reset(&mut self) {
        self.first_sample = None;
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        let sigma = if self.first_sample.is_none() {
            self.sigmas[idx]
        } else {
            self.sigmas_interpol[idx - 1]
        };
        sch::ve_scale(x, sigma)
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        match self.first_sample.take() {
            None => {
                let sigma = self.sigmas[idx];
                let sigma_mid = self.sigmas_interpol[idx];
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma)?;
                let derivative = sch::ve_derivative(sample, &x0, sigma)?;
                self.first_sample = Some(sample.clone());
                sample + derivative.affine(f32r(sigma_mid - sigma), 0.0)?
            }
            Some(x) => {
                let sigma = self.sigmas[idx - 1];
                let sigma_mid = self.sigmas_interpol[idx - 1];
                let sigma_up = self.sigmas_up[idx - 1];
                let sigma_down = self.sigmas_down[idx - 1];
                let x0 = sch::ve_x0(self.base.prediction, model_output, sample, sigma_mid)?;
                let derivative = sch::ve_derivative(sample, &x0, sigma_mid)?;
                let prev = (x + derivative.affine(f32r(sigma_down - sigma), 0.0)?)?;
                let z = noise.randn(model_output.dims(), model_output.device())?;
                prev + z.affine(sigma_up, 0.0)?
            }
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
