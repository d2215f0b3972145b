//! DEIS multistep (Zhang & Chen 2022, "logrho" variant), diffusers' `DEISMultistepScheduler`.
//! Integrates the noise prediction exactly for a polynomial extrapolation of it in
//! ρ = σ_vp/α (orders 1–3; the first step is first order, and with `lower_order_final` so are
//! the last ones below 15 steps).
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` linspace, `solver_order` 2,
//! `lower_order_final` true; `algorithm_type` dpmsolver/dpmsolver++ are mapped to deis and
//! `solver_type` midpoint/heun/bh1/bh2 to logrho, as diffusers does. The final sigma is the
//! smallest training sigma (DEIS has no `final_sigmas_type`). Karras and exponential sigmas
//! are taken; flow sigmas and dynamic shifting are rejected.

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing,
};
use super::schedule::{self as sch, alpha_sigma, f32r, lin, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "DEISMultistepScheduler";

pub(crate) struct Deis {
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    limit: X0Limit,
    solver_order: usize,
    lower_order_final: bool,
    karras: bool,
    exponential: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
}

impl Deis {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        sch::reject_unsupported_sigmas(cfg, NAME)?;
        if cfg.use_flow_sigmas {
            return Err(SchedulerError::unsupported(NAME, "use_flow_sigmas", true));
        }
        if cfg.use_dynamic_shifting {
            return Err(SchedulerError::unsupported(
                NAME,
                "use_dynamic_shifting",
                true,
            ));
        }
        match cfg.algorithm_type {
            None
            | Some(
                AlgorithmType::Deis | AlgorithmType::DpmSolver | AlgorithmType::DpmSolverPlusPlus,
            ) => {}
            Some(a) => {
                return Err(SchedulerError::unsupported(
                    NAME,
                    "algorithm_type",
                    format!("{a:?}"),
                ))
            }
        }
        if cfg.solver_order == 0 || cfg.solver_order > 3 {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "solver_order",
                cfg.solver_order,
                "must be 1, 2 or 3",
            ));
        }
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, false)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(Deis {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            limit: X0Limit::threshold_only(cfg),
            solver_order: cfg.solver_order,
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let mut ts = sch::solver_timesteps(
            self.spacing,
            self.num_train,
            self.num_train,
            n,
            self.steps_offset,
        );
        let mut sig: Vec<f64> = if self.karras || self.exponential {
            let (lo, hi) = (
                self.train_sigmas[0],
                self.train_sigmas[self.train_sigmas.len() - 1],
            );
            let sig = if self.karras {
                sch::karras_sigmas(lo, hi, n)
            } else {
                sch::exponential_sigmas(lo, hi, n)
            };
            ts = sig
                .iter()
                .map(|&s| {
                    let t = sch::sigma_to_t(s, &self.log_sigmas);
                    if self.karras {
                        sch::np_round(t)
                    } else {
                        t
                    }
                })
                .collect();
            let last = sig[sig.len() - 1];
            let mut sig = sig;
            sig.push(last);
            sig
        } else {
            let mut sig: Vec<f64> = ts
                .iter()
                .map(|&t| sch::interp(t, &self.train_sigmas))
                .collect();
            sig.push(self.train_sigmas[0]);
            sig
        };
        sig = sig.into_iter().map(f32r).collect();
        self.sigmas = sig;
        self.timesteps = ts.into_iter().map(f64::trunc).collect();
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
        1.0
    }

    pub(crate) fn order(&self) -> usize {
        1
    }

    pub(crate) fn reset(&mut self) {
        self.model_outputs = vec![None; self.solver_order];
        self.lower_order_nums = 0;
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, _idx: usize) -> Result<Tensor> {
        Ok(x.clone())
    }

    /// The noise prediction (DEIS integrates ε), via x0 so thresholding applies.
    fn convert(&self, model_output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        let (a, s) = alpha_sigma(sigma);
        let x0 = match self.prediction {
            PredictionType::Epsilon => lin(&[(1.0 / a, sample), (-s / a, model_output)])?,
            PredictionType::Sample => model_output.clone(),
            PredictionType::VPrediction => lin(&[(a, sample), (-s, model_output)])?,
        };
        let x0 = self.limit.apply(x0)?;
        lin(&[(1.0 / s, sample), (-a / s, &x0)])
    }

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let n = self.timesteps.len();
        let lower_order_final = idx + 1 == n && self.lower_order_final && n < 15;
        let lower_order_second = idx + 2 == n && self.lower_order_final && n < 15;
        let m = self.convert(model_output, sample, self.sigmas[idx])?;
        self.model_outputs.rotate_left(1);
        let last = self.model_outputs.len() - 1;
        self.model_outputs[last] = Some(m);
        let outs: Vec<&Tensor> = self.model_outputs.iter().flatten().collect();
        let k = outs.len();
        let s = |j: usize| alpha_sigma(self.sigmas[idx + 1 - j]);
        let prev = if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
            let ((a_t, s_t), (a_s, s_s)) = (s(0), s(1));
            let h = (a_t.ln() - s_t.ln()) - (a_s.ln() - s_s.ln());
            lin(&[(a_t / a_s, sample), (-s_t * (h.exp() - 1.0), outs[k - 1])])?
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
            let ((a_t, s_t), (a_0, s_0), (a_1, s_1)) = (s(0), s(1), s(2));
            let (rt, r0, r1) = (s_t / a_t, s_0 / a_0, s_1 / a_1);
            let ind = |t: f64, b: f64, c: f64| t * (-c.ln() + t.ln() - 1.0) / (b.ln() - c.ln());
            let coef1 = ind(rt, r0, r1) - ind(r0, r0, r1);
            let coef2 = ind(rt, r1, r0) - ind(r0, r1, r0);
            lin(&[
                (a_t / a_0, sample),
                (a_t * coef1, outs[k - 1]),
                (a_t * coef2, outs[k - 2]),
            ])?
        } else {
            let ((a_t, s_t), (a_0, s_0), (a_1, s_1), (a_2, s_2)) = (s(0), s(1), s(2), s(3));
            let (rt, r0, r1, r2) = (s_t / a_t, s_0 / a_0, s_1 / a_1, s_2 / a_2);
            let ind = |t: f64, b: f64, c: f64, d: f64| {
                let (lt, lb, lc, ld) = (t.ln(), b.ln(), c.ln(), d.ln());
                t * (lc * (ld - lt + 1.0) - ld * lt + ld + lt * lt - 2.0 * lt + 2.0)
                    / ((lb - lc) * (lb - ld))
            };
            let coef1 = ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2);
            let coef2 = ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0);
            let coef3 = ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1);
            lin(&[
                (a_t / a_0, sample),
                (a_t * coef1, outs[k - 1]),
                (a_t * coef2, outs[k - 2]),
                (a_t * coef3, outs[k - 3]),
            ])?
        };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        Ok(prev)
    }

    pub(crate) fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        idx: usize,
    ) -> Result<Tensor> {
        let (a, s) = alpha_sigma(self.sigmas[idx]);
        lin(&[(a, original), (s, noise)])
    }
}
