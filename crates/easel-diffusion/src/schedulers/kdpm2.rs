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

use super::config::{PredictionType, SchedulerConfig, SchedulerError};
use super::heun::K_DEFAULTS;
use super::schedule::{self as sch, f32r, Table};
use super::ve::{ancestral_sigmas, euler_step, VeBase};
use super::Solver;
use crate::noise::NoiseSource;

/// What both variants share: the base schedule, the table, the midpoint sigmas and the
/// stepping state.
struct Base {
    ve: VeBase,
    table: Table,
    sigmas_interpol: Vec<f64>,
    /// The sample at the start of the current step (set by its first half).
    first_sample: Option<Tensor>,
}

impl Base {
    fn new(cfg: &SchedulerConfig, name: &'static str) -> std::result::Result<Self, SchedulerError> {
        let ve = VeBase::new(cfg, name, &K_DEFAULTS, false, true)?;
        if cfg.prediction_type == PredictionType::Sample {
            return Err(SchedulerError::unsupported(
                name,
                "prediction_type",
                "sample",
            ));
        }
        Ok(Base {
            table: ve.table(name),
            ve,
            sigmas_interpol: Vec::new(),
            first_sample: None,
        })
    }

    /// Fills the table from the per-step timesteps `ts`, sigmas `sig` and midpoint sigmas
    /// `si`; the midpoint timestep after step k − 1 is that of `si[mid(k)]`.
    fn fill(
        &mut self,
        ts: &[f64],
        sig: &[f64],
        si: &[f64],
        mid: impl Fn(usize) -> usize,
        float32: bool,
    ) {
        let round = |x: f64| if float32 { f32r(x) } else { x };
        let mut t = vec![round(ts[0])];
        for k in 1..ts.len() {
            t.push(round(round(sch::sigma_to_t(
                si[mid(k)],
                &self.ve.train.log,
            ))));
            t.push(round(ts[k]));
        }
        self.table.timesteps = t;
        self.table.sigmas = interleave(sig);
        self.sigmas_interpol = interleave(si);
    }

    /// The first half: an Euler step from σ_i to the midpoint σ; keeps the sample.
    fn first_half(
        &mut self,
        model_output: &Tensor,
        sample: &Tensor,
        sigma: f64,
        sigma_mid: f64,
    ) -> Result<Tensor> {
        let derivative = self.ve.derivative(model_output, sample, sigma)?;
        self.first_sample = Some(sample.clone());
        euler_step(sample, &derivative, sigma, sigma_mid)
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

pub(crate) struct KDpm2(Base);

impl KDpm2 {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        Ok(KDpm2(Base::new(cfg, NAME)?))
    }
}

impl Solver for KDpm2 {
    fn table(&self) -> &Table {
        &self.0.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sig, converted) = self.0.ve.schedule(n, true, 0.0);
        let last = sig.len() - 1;
        // σ_interpol[i] = sqrt(σ_i σ_{i-1}); [0] is NaN in diffusers (never read), [last] = 0.
        let si: Vec<f64> = (0..sig.len())
            .map(|i| match i {
                0 => f64::NAN,
                i if i == last => 0.0,
                i => log_midpoint(sig[i], sig[i - 1]),
            })
            .collect();
        self.0.fill(&ts, &sig, &si, |k| k, !converted);
        Ok(())
    }

    fn order(&self) -> usize {
        2
    }

    fn reset(&mut self) {
        self.0.first_sample = None;
    }

    fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        let b = &self.0;
        let sigma = if b.first_sample.is_none() {
            b.table.sigmas[idx]
        } else {
            b.sigmas_interpol[idx]
        };
        sch::ve_scale(x, sigma)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let b = &mut self.0;
        match b.first_sample.take() {
            None => {
                let (sigma, sigma_mid) = (b.table.sigmas[idx], b.sigmas_interpol[idx + 1]);
                b.first_half(model_output, sample, sigma, sigma_mid)
            }
            Some(x) => {
                let (sigma, sigma_next) = (b.table.sigmas[idx - 1], b.table.sigmas[idx]);
                let sigma_mid = b.sigmas_interpol[idx];
                let derivative = b.ve.derivative(model_output, sample, sigma_mid)?;
                euler_step(&x, &derivative, sigma, sigma_next)
            }
        }
    }
}

const NAME_A: &str = "KDPM2AncestralDiscreteScheduler";

pub(crate) struct KDpm2Ancestral {
    base: Base,
    sigmas_up: Vec<f64>,
    sigmas_down: Vec<f64>,
}

impl KDpm2Ancestral {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        Ok(KDpm2Ancestral {
            base: Base::new(cfg, NAME_A)?,
            sigmas_up: Vec::new(),
            sigmas_down: Vec::new(),
        })
    }
}

impl Solver for KDpm2Ancestral {
    fn table(&self) -> &Table {
        &self.base.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sig, converted) = self.base.ve.schedule(n, true, 0.0);
        let len = sig.len();
        let mut up = vec![0.0; len];
        let mut down = vec![0.0; len];
        for i in 0..len - 1 {
            // float32 like diffusers; where float32 cancels to ≤ 0 (huge σ_max, e.g. cosine
            // betas; diffusers then produces NaN) the exact σ_down = σ_next²/σ is used
            let (u, d2) = ancestral_sigmas(sig[i], sig[i + 1]);
            up[i] = u as f64;
            down[i] = if d2 > 0.0 || sig[i + 1] as f32 == 0.0 {
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
        self.base.fill(&ts, &sig, &si, |k| k - 1, !converted);
        self.sigmas_up = interleave(&up);
        self.sigmas_down = interleave(&down);
        Ok(())
    }

    fn order(&self) -> usize {
        2
    }

    fn reset(&mut self) {
        self.base.first_sample = None;
    }

    fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        let b = &self.base;
        let sigma = if b.first_sample.is_none() {
            b.table.sigmas[idx]
        } else {
            b.sigmas_interpol[idx - 1]
        };
        sch::ve_scale(x, sigma)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let b = &mut self.base;
        match b.first_sample.take() {
            None => {
                let (sigma, sigma_mid) = (b.table.sigmas[idx], b.sigmas_interpol[idx]);
                b.first_half(model_output, sample, sigma, sigma_mid)
            }
            Some(x) => {
                let sigma = b.table.sigmas[idx - 1];
                let sigma_mid = b.sigmas_interpol[idx - 1];
                let (sigma_up, sigma_down) = (self.sigmas_up[idx - 1], self.sigmas_down[idx - 1]);
                let derivative = b.ve.derivative(model_output, sample, sigma_mid)?;
                let prev = euler_step(&x, &derivative, sigma, sigma_down)?;
                let z = noise.randn(model_output.dims(), model_output.device())?;
                prev + z.affine(sigma_up, 0.0)?
            }
        }
    }
}
