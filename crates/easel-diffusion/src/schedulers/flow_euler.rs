//! Euler for flow-matching models, diffusers' `FlowMatchEulerDiscreteScheduler` (Stable
//! Diffusion 3, FLUX, Sana's alternative): the model predicts the velocity `v = noise − x0` of
//! `x = (1 − σ)·x0 + σ·noise`, and a step is `x + (σ_next − σ)·v`. With `stochastic_sampling`
//! a step re-noises instead: `x0 = x − σ·v`, `(1 − σ_next)·x0 + σ_next·noise` (one draw).
//!
//! The schedule, as diffusers builds it:
//! * the constructor shifts its 1000 training sigmas `t/N` (float32) with `shift`
//!   (`shift·s / (1 + (shift − 1)·s)`; not with `use_dynamic_shifting`) and keeps the first
//!   and last as `sigma_max`/`sigma_min`: 1 and `shift(1/N)` (0.002994 for shift 3);
//! * `set_timesteps(n)` spaces `n` timesteps linearly from `sigma_max·N` to `sigma_min·N`,
//!   divides by N and shifts **again** (so the shift is applied twice: the last sigma is
//!   `shift(shift(1/N))`, 0.00893 for shift 3), or with `use_dynamic_shifting` applies
//!   `time_shift(mu)` instead (`e^mu / (e^mu + 1/σ − 1)`, or `mu / (mu + 1/σ − 1)` with
//!   `time_shift_type` linear), then `shift_terminal` stretches `1 − σ` so the last sigma is
//!   that value, then Karras or exponential spacing between the first and last may replace
//!   them. This arithmetic is float64 (numpy on Python floats); the sigmas are stored as
//!   float32 and the timesteps are `σ·N` in float32 (fractional, not rounded);
//! * custom sigmas (FLUX passes `linspace(1, 1/n, n)`) go through the same shift / time
//!   shift / stretch but in **float32** (a float32 numpy array with Python scalars);
//! * the final sigma appended is 0 (1 with `invert_sigmas`, which also uses `1 − σ`).
//!
//! No input scaling, initial noise scale 1; img2img noising is diffusers' `scale_noise`,
//! `σ·noise + (1 − σ)·x`, answered by the shared `add_noise`. `calculate_shift` is the
//! pipelines' resolution-dependent `mu` (FLUX: `calculate_shift(image_seq_len, ...)` with the
//! config's `base_image_seq_len`, `max_image_seq_len`, `base_shift`, `max_shift`).
//!
//! Rejected: `use_beta_sigmas` (needs the Beta distribution's inverse CDF), more than one of
//! the Karras/exponential/beta options; `prediction_type` is not a parameter of this class
//! (ignored, as diffusers does). Not implemented: custom `timesteps`, `per_token_timesteps`.

use candle_core::{Result, Tensor};

use super::config::{SchedulerConfig, SchedulerError, TimeShiftType};
use super::schedule::{self as sch, lin, np_linspace, Levels, SigmaSchedule, Table};
use super::{Solver, TimestepOptions};
use crate::noise::NoiseSource;

const NAME: &str = "FlowMatchEulerDiscreteScheduler";

/// The resolution-dependent shift `mu` of the FLUX-style pipelines: linear in the image's
/// token count, `base_shift` at `base_seq_len` tokens and `max_shift` at `max_seq_len`
/// (float64, in diffusers' order of operations).
pub fn calculate_shift(
    image_seq_len: usize,
    base_seq_len: usize,
    max_seq_len: usize,
    base_shift: f64,
    max_shift: f64,
) -> f64 {
    let m = (max_shift - base_shift) / (max_seq_len as f64 - base_seq_len as f64);
    let b = base_shift - m * base_seq_len as f64;
    image_seq_len as f64 * m + b
}

impl SchedulerConfig {
    /// `calculate_shift` with this config's `base_image_seq_len`, `max_image_seq_len`,
    /// `base_shift` and `max_shift`: the `mu` a FLUX pipeline passes for `image_seq_len`
    /// latent tokens.
    pub fn calculate_shift(&self, image_seq_len: usize) -> f64 {
        calculate_shift(
            image_seq_len,
            self.base_image_seq_len,
            self.max_image_seq_len,
            self.base_shift,
            self.max_shift,
        )
    }
}

pub(crate) struct FlowEuler {
    num_train: usize,
    shift: f64,
    dynamic: bool,
    time_shift: TimeShiftType,
    shift_terminal: Option<f64>,
    spacing: SigmaSchedule,
    invert: bool,
    stochastic: bool,
    sigma_min: f64,
    sigma_max: f64,
    table: Table,
}

/// `shift·s / (1 + (shift − 1)·s)` in float32 (torch or numpy float32 with Python scalars).
fn shift_f32(s: f32, shift: f64) -> f32 {
    (shift as f32 * s) / (1.0 + (shift - 1.0) as f32 * s)
}

fn shift_f64(s: f64, shift: f64) -> f64 {
    shift * s / (1.0 + (shift - 1.0) * s)
}

impl FlowEuler {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, NAME)?;
        let n = cfg.num_train_timesteps;
        if n < 1 {
            return Err(SchedulerError::InvalidField {
                field: "num_train_timesteps".into(),
                value: n.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(t) = cfg.shift_terminal {
            if t == 1.0 || !t.is_finite() {
                return Err(SchedulerError::unsupported_because(
                    NAME,
                    "shift_terminal",
                    t,
                    "must be finite and not 1",
                ));
            }
        }
        // the training sigmas t/N, t = N..1, in float32; only their ends are kept
        let train = |t: usize| {
            let s = t as f32 / n as f32;
            let s = if cfg.use_dynamic_shifting {
                s
            } else {
                shift_f32(s, cfg.shift)
            };
            s as f64
        };
        Ok(FlowEuler {
            num_train: n,
            shift: cfg.shift,
            dynamic: cfg.use_dynamic_shifting,
            time_shift: cfg.time_shift_type,
            shift_terminal: cfg.shift_terminal.filter(|&t| t != 0.0),
            spacing: SigmaSchedule::from_config(cfg, false),
            invert: cfg.invert_sigmas,
            stochastic: cfg.stochastic_sampling,
            sigma_min: train(1),
            sigma_max: train(n),
            table: Table::new(NAME, Levels::Flow),
        })
    }

    /// The shifted (or time-shifted) and stretched sigmas in float64 (the default schedule).
    fn shape_f64(&self, sig: Vec<f64>, mu: Option<f64>) -> Vec<f64> {
        let mut sig: Vec<f64> = sig
            .into_iter()
            .map(|s| match (self.dynamic, mu) {
                (true, Some(mu)) => match self.time_shift {
                    TimeShiftType::Exponential => mu.exp() / (mu.exp() + (1.0 / s - 1.0)),
                    TimeShiftType::Linear => mu / (mu + (1.0 / s - 1.0)),
                },
                _ => shift_f64(s, self.shift),
            })
            .collect();
        if let (Some(term), Some(&last)) = (self.shift_terminal, sig.last()) {
            let scale = (1.0 - last) / (1.0 - term);
            for s in &mut sig {
                *s = 1.0 - (1.0 - *s) / scale;
            }
        }
        sig
    }

    /// The same for custom sigmas, in float32 as numpy computes it on a float32 array.
    fn shape_f32(&self, sig: &[f64], mu: Option<f64>) -> Vec<f64> {
        let mut sig: Vec<f32> = sig
            .iter()
            .map(|&s| {
                let s = s as f32;
                match (self.dynamic, mu) {
                    (true, Some(mu)) => {
                        let c = match self.time_shift {
                            TimeShiftType::Exponential => mu.exp() as f32,
                            TimeShiftType::Linear => mu as f32,
                        };
                        c / (c + (1.0 / s - 1.0))
                    }
                    _ => shift_f32(s, self.shift),
                }
            })
            .collect();
        if let (Some(term), Some(&last)) = (self.shift_terminal, sig.last()) {
            let scale = (1.0 - last) / (1.0 - term) as f32;
            for s in &mut sig {
                *s = 1.0 - (1.0 - *s) / scale;
            }
        }
        sig.into_iter().map(f64::from).collect()
    }
}

impl Solver for FlowEuler {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.set_timesteps_with(n, &TimestepOptions::default())
    }

    fn set_timesteps_with(
        &mut self,
        n: usize,
        opts: &TimestepOptions,
    ) -> std::result::Result<(), SchedulerError> {
        if self.dynamic && opts.mu.is_none() {
            return Err(SchedulerError::schedule(
                NAME,
                "use_dynamic_shifting needs mu (see calculate_shift)",
            ));
        }
        let nt = self.num_train as f64;
        let sig = match &opts.sigmas {
            Some(custom) => {
                if custom.len() != n {
                    return Err(SchedulerError::schedule(
                        NAME,
                        format!("{} custom sigmas for {n} inference steps", custom.len()),
                    ));
                }
                self.shape_f32(custom, opts.mu)
            }
            None => {
                let ts = np_linspace(self.sigma_max * nt, self.sigma_min * nt, n, true);
                self.shape_f64(ts.into_iter().map(|t| t / nt).collect(), opts.mu)
            }
        };
        let sig = match self.spacing {
            SigmaSchedule::Karras => sch::karras_sigmas(sig[n - 1], sig[0], n),
            SigmaSchedule::Exponential => sch::exponential_sigmas(sig[n - 1], sig[0], n),
            _ => sig,
        };
        let mut sig: Vec<f32> = sig.into_iter().map(|s| s as f32).collect();
        if self.invert {
            sig = sig.into_iter().map(|s| 1.0 - s).collect();
        }
        let nt32 = self.num_train as f32;
        self.table.timesteps = sig.iter().map(|&s| (s * nt32) as f64).collect();
        self.table.sigmas = sig.into_iter().map(f64::from).collect();
        self.table.sigmas.push(if self.invert { 1.0 } else { 0.0 });
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        // float32 scalars, as diffusers' 0-dim float32 sigma tensors
        let sigma = self.table.sigmas[idx] as f32;
        let next = self.table.sigmas[idx + 1] as f32;
        if self.stochastic {
            let x0 = lin(&[(1.0, sample), (-(sigma as f64), model_output)])?;
            let z = noise.randn(sample.dims(), sample.device())?;
            lin(&[((1.0 - next) as f64, &x0), (next as f64, &z)])
        } else {
            lin(&[(1.0, sample), ((next - sigma) as f64, model_output)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedulers::schedule::f32r;

    #[test]
    fn shift_rounding_is_float32() {
        // shift 3 at 1/1000: 0.0029940119... rounded to float32
        let s = shift_f32(0.001, 3.0);
        assert_eq!(s, (3.0f32 * 0.001f32) / (1.0 + 2.0f32 * 0.001f32));
        assert!((s as f64 - 0.003 / 1.002).abs() < 1e-9);
        assert_eq!(f32r(shift_f64(1.0, 3.0)), 1.0);
    }
}
