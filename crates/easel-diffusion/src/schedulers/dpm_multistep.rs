//! DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022), diffusers'
//! `DPMSolverMultistepScheduler`: "DPM++ 2M" (`dpmsolver++`, order 2), its Karras variant, and
//! the SDE variant "DPM++ 2M SDE" (`sde-dpmsolver++`, one noise tensor per step).
//!
//! Works in λ = ln(α/σ) of the VP process (α = 1/sqrt(σ²+1), σ_vp = σ·α for the VE sigma σ).
//! The first step is first order, and with `lower_order_final` (default) so are the last ones
//! when there are fewer than 15 steps; `final_sigmas_type` zero forces a first-order last step.
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` linspace, `algorithm_type`
//! dpmsolver++ (`deis` is mapped to it, as diffusers does), `solver_type` midpoint (logrho/bh1/bh2
//! mapped to midpoint), `lower_order_final` true. Takes Karras, exponential and Lu lambdas.
//! Rejected: flow sigmas, dynamic shifting, beta sigmas, learned variance, flow prediction.

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, FinalSigmasType, PredictionType, SchedulerConfig, SchedulerError, SolverType,
    TimestepSpacing,
};
use super::schedule::{self as sch, alpha_sigma, f32r, lin, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "DPMSolverMultistepScheduler";

pub(crate) struct DpmMultistep {
    ac: Vec<f64>,
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    prediction: PredictionType,
    limit: X0Limit,
    algorithm: AlgorithmType,
    solver: SolverType,
    solver_order: usize,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigmas: FinalSigmasType,
    lambda_min_clipped: f64,
    karras: bool,
    exponential: bool,
    lu_lambdas: bool,
    beta_is_cosine: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
}

/// Rejects what the DPM-Solver family here does not implement (shared with singlestep).
pub(crate) fn check_common(
    cfg: &SchedulerConfig,
    name: &'static str,
) -> std::result::Result<(), SchedulerError> {
    sch::reject_unsupported_sigmas(cfg, name)?;
    if cfg.use_flow_sigmas {
        return Err(SchedulerError::unsupported(name, "use_flow_sigmas", true));
    }
    if cfg.use_dynamic_shifting {
        return Err(SchedulerError::unsupported(
            name,
            "use_dynamic_shifting",
            true,
        ));
    }
    if let Some(v) = cfg.variance_type {
        return Err(SchedulerError::unsupported(
            name,
            "variance_type",
            format!("{v:?}"),
        ));
    }
    if cfg.solver_order == 0 || cfg.solver_order > 3 {
        return Err(SchedulerError::unsupported_because(
            name,
            "solver_order",
            cfg.solver_order,
            "must be 1, 2 or 3",
        ));
    }
    Ok(())
}

impl DpmMultistep {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        check_common(cfg, NAME)?;
        let algorithm = match cfg
            .algorithm_type
            .unwrap_or(AlgorithmType::DpmSolverPlusPlus)
        {
            AlgorithmType::Deis => AlgorithmType::DpmSolverPlusPlus,
            a => a,
        };
        let solver = match cfg.solver_type.unwrap_or(SolverType::Midpoint) {
            SolverType::Heun => SolverType::Heun,
            _ => SolverType::Midpoint,
        };
        let plus_plus = matches!(
            algorithm,
            AlgorithmType::DpmSolverPlusPlus | AlgorithmType::SdeDpmSolverPlusPlus
        );
        if !plus_plus && cfg.final_sigmas_type == FinalSigmasType::Zero {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "final_sigmas_type",
                "zero",
                "dpmsolver and sde-dpmsolver need final_sigmas_type sigma_min",
            ));
        }
        if algorithm == AlgorithmType::SdeDpmSolver && cfg.solver_order == 3 {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "solver_order",
                3,
                "sde-dpmsolver has no third-order update",
            ));
        }
        let mut ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, true)?;
        if cfg.rescale_betas_zero_snr {
            if let Some(last) = ac.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(DpmMultistep {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            spacing: sch::spacing(cfg, TimestepSpacing::Linspace),
            steps_offset: cfg.steps_offset,
            prediction: cfg.prediction_type,
            limit: X0Limit::threshold_only(cfg),
            algorithm,
            solver,
            solver_order: cfg.solver_order,
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            euler_at_final: cfg.euler_at_final,
            final_sigmas: cfg.final_sigmas_type,
            lambda_min_clipped: cfg.lambda_min_clipped,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            lu_lambdas: cfg.use_lu_lambdas,
            beta_is_cosine: cfg.beta_schedule == Some(super::config::BetaSchedule::SquaredcosCapV2),
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            ac,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let last_timestep = self.num_train - clipped_index(&self.ac, self.lambda_min_clipped);
        let mut ts = sch::solver_timesteps(
            self.spacing,
            self.num_train,
            last_timestep,
            n,
            self.steps_offset,
        );
        let (sig, round) = if self.karras || self.exponential || self.lu_lambdas {
            let flipped: Vec<f64> = self.train_sigmas.iter().rev().copied().collect();
            let (lo, hi) = (flipped[flipped.len() - 1], flipped[0]);
            if self.karras {
                (sch::karras_sigmas(lo, hi, n), !self.beta_is_cosine)
            } else if self.exponential {
                (sch::exponential_sigmas(lo, hi, n), false)
            } else {
                // Lu et al.'s uniform-lambda schedule over ln σ, as diffusers computes it.
                let (l_lo, l_hi) = (
                    self.log_sigmas[0],
                    self.log_sigmas[self.log_sigmas.len() - 1],
                );
                let sig = sch::np_linspace(l_hi, l_lo, n, true)
                    .into_iter()
                    .map(f64::exp)
                    .collect();
                (sig, !self.beta_is_cosine)
            }
        } else {
            let sig = ts
                .iter()
                .map(|&t| sch::interp(t, &self.train_sigmas))
                .collect();
            (sig, false)
        };
        if self.karras || self.exponential || self.lu_lambdas {
            ts = sig
                .iter()
                .map(|&s| {
                    let t = sch::sigma_to_t(s, &self.log_sigmas);
                    if round {
                        sch::np_round(t)
                    } else {
                        t
                    }
                })
                .collect();
        }
        let mut sig: Vec<f64> = sig;
        sig.push(match self.final_sigmas {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => self.train_sigmas[0],
        });
        self.sigmas = sig.into_iter().map(f32r).collect();
        // `.to(torch.int64)` truncates
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

    pub(crate) fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let n = self.timesteps.len();
        let lower_order_final = idx == n - 1
            && (self.euler_at_final
                || (self.lower_order_final && n < 15)
                || self.final_sigmas == FinalSigmasType::Zero);
        let lower_order_second = idx + 2 == n && self.lower_order_final && n < 15;
        let m = convert_model_output(
            self.algorithm,
            self.prediction,
            self.limit,
            model_output,
            sample,
            self.sigmas[idx],
        )?;
        self.model_outputs.rotate_left(1);
        let last = self.model_outputs.len() - 1;
        self.model_outputs[last] = Some(m);
        let z = if is_sde(self.algorithm) {
            Some(noise.randn(model_output.dims(), model_output.device())?)
        } else {
            None
        };
        let outs: Vec<&Tensor> = self.model_outputs.iter().flatten().collect();
        let order = if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let s = |k: usize| self.sigmas[idx + 1 - k];
        let prev = match order {
            1 => first_order(
                self.algorithm,
                s(0),
                s(1),
                outs[outs.len() - 1],
                sample,
                z.as_ref(),
            )?,
            2 => second_order(
                self.algorithm,
                self.solver,
                [s(0), s(1), s(2)],
                &outs,
                sample,
                z.as_ref(),
            )?,
            _ => third_order(
                self.algorithm,
                [s(0), s(1), s(2), s(3)],
                &outs,
                sample,
                z.as_ref(),
            )?,
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

/// diffusers' `lambda_min_clipped` cut: how many of the lowest-λ training steps to drop.
pub(crate) fn clipped_index(ac: &[f64], lambda_min_clipped: f64) -> usize {
    // searchsorted(flip(lambda_t), lambda_min_clipped): entries strictly below the bound
    ac.iter()
        .rev()
        .map(|&a| {
            let a = a as f32;
            let (alpha, sigma) = (a.sqrt(), (1.0 - a).sqrt());
            (alpha.ln() - sigma.ln()) as f64
        })
        .take_while(|&l| l < lambda_min_clipped)
        .count()
}

pub(crate) fn is_sde(a: AlgorithmType) -> bool {
    matches!(
        a,
        AlgorithmType::SdeDpmSolver | AlgorithmType::SdeDpmSolverPlusPlus
    )
}

fn plus_plus(a: AlgorithmType) -> bool {
    matches!(
        a,
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::SdeDpmSolverPlusPlus
    )
}

/// The model output in the form the algorithm integrates: x0 for DPM-Solver++, noise for
/// DPM-Solver.
pub(crate) fn convert_model_output(
    algorithm: AlgorithmType,
    prediction: PredictionType,
    limit: X0Limit,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f64,
) -> Result<Tensor> {
    let (alpha_t, sigma_t) = alpha_sigma(sigma);
    if plus_plus(algorithm) {
        let x0 = match prediction {
            PredictionType::Epsilon => {
                lin(&[(1.0 / alpha_t, sample), (-sigma_t / alpha_t, model_output)])?
            }
            PredictionType::Sample => model_output.clone(),
            PredictionType::VPrediction => lin(&[(alpha_t, sample), (-sigma_t, model_output)])?,
        };
        limit.apply(x0)
    } else {
        let eps = match prediction {
            PredictionType::Epsilon => model_output.clone(),
            PredictionType::Sample => {
                lin(&[(1.0 / sigma_t, sample), (-alpha_t / sigma_t, model_output)])?
            }
            PredictionType::VPrediction => lin(&[(alpha_t, model_output), (sigma_t, sample)])?,
        };
        if let X0Limit::Threshold { .. } = limit {
            let x0 = lin(&[(1.0 / alpha_t, sample), (-sigma_t / alpha_t, &eps)])?;
            let x0 = limit.apply(x0)?;
            return lin(&[(1.0 / sigma_t, sample), (-alpha_t / sigma_t, &x0)]);
        }
        Ok(eps)
    }
}

/// λ = ln α − ln σ of a VE sigma, with its α and σ.
fn lambda(sigma: f64) -> (f64, f64, f64) {
    let (a, s) = alpha_sigma(sigma);
    (a.ln() - s.ln(), a, s)
}

fn need_noise(z: Option<&Tensor>) -> Result<&Tensor> {
    z.ok_or_else(|| candle_core::Error::Msg(format!("{NAME}: SDE update without noise")))
}

/// One first-order (DDIM-equivalent) update from σ_s to σ_t; `m` is the converted output.
pub(crate) fn first_order(
    algorithm: AlgorithmType,
    sigma_t: f64,
    sigma_s: f64,
    m: &Tensor,
    sample: &Tensor,
    z: Option<&Tensor>,
) -> Result<Tensor> {
    let (l_t, a_t, s_t) = lambda(sigma_t);
    let (l_s, a_s, s_s) = lambda(sigma_s);
    let h = l_t - l_s;
    match algorithm {
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => {
            lin(&[(s_t / s_s, sample), (-a_t * ((-h).exp() - 1.0), m)])
        }
        AlgorithmType::DpmSolver => lin(&[(a_t / a_s, sample), (-s_t * (h.exp() - 1.0), m)]),
        AlgorithmType::SdeDpmSolverPlusPlus => lin(&[
            (s_t / s_s * (-h).exp(), sample),
            (a_t * (1.0 - (-2.0 * h).exp()), m),
            (s_t * (1.0 - (-2.0 * h).exp()).sqrt(), need_noise(z)?),
        ]),
        AlgorithmType::SdeDpmSolver => lin(&[
            (a_t / a_s, sample),
            (-2.0 * s_t * (h.exp() - 1.0), m),
            (s_t * ((2.0 * h).exp() - 1.0).sqrt(), need_noise(z)?),
        ]),
    }
}

/// Multistep second-order update; `sig` = [σ_t, σ_s0, σ_s1], `outs` oldest first.
fn second_order(
    algorithm: AlgorithmType,
    solver: SolverType,
    sig: [f64; 3],
    outs: &[&Tensor],
    sample: &Tensor,
    z: Option<&Tensor>,
) -> Result<Tensor> {
    let (l_t, a_t, s_t) = lambda(sig[0]);
    let (l_s0, a_s0, s_s0) = lambda(sig[1]);
    let (l_s1, _, _) = lambda(sig[2]);
    let (m0, m1) = (outs[outs.len() - 1], outs[outs.len() - 2]);
    let (h, h_0) = (l_t - l_s0, l_s0 - l_s1);
    let r0 = h_0 / h;
    let d1 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m1)])?;
    let midpoint = solver != SolverType::Heun;
    let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0);
    match algorithm {
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => {
            let c1 = if midpoint {
                -0.5 * a_t * em
            } else {
                a_t * (em / h + 1.0)
            };
            lin(&[(s_t / s_s0, sample), (-a_t * em, m0), (c1, &d1)])
        }
        AlgorithmType::DpmSolver => {
            let c1 = if midpoint {
                -0.5 * s_t * ep
            } else {
                -s_t * (ep / h - 1.0)
            };
            lin(&[(a_t / a_s0, sample), (-s_t * ep, m0), (c1, &d1)])
        }
        AlgorithmType::SdeDpmSolverPlusPlus => {
            let e2 = 1.0 - (-2.0 * h).exp();
            let c1 = if midpoint {
                0.5 * a_t * e2
            } else {
                a_t * (e2 / (-2.0 * h) + 1.0)
            };
            lin(&[
                (s_t / s_s0 * (-h).exp(), sample),
                (a_t * e2, m0),
                (c1, &d1),
                (s_t * e2.sqrt(), need_noise(z)?),
            ])
        }
        AlgorithmType::SdeDpmSolver => {
            let c1 = if midpoint {
                -s_t * ep
            } else {
                -2.0 * s_t * (ep / h - 1.0)
            };
            lin(&[
                (a_t / a_s0, sample),
                (-2.0 * s_t * ep, m0),
                (c1, &d1),
                (s_t * ((2.0 * h).exp() - 1.0).sqrt(), need_noise(z)?),
            ])
        }
    }
}

/// Multistep third-order update; `sig` = [σ_t, σ_s0, σ_s1, σ_s2], `outs` oldest first.
fn third_order(
    algorithm: AlgorithmType,
    sig: [f64; 4],
    outs: &[&Tensor],
    sample: &Tensor,
    z: Option<&Tensor>,
) -> Result<Tensor> {
    let (l_t, a_t, s_t) = lambda(sig[0]);
    let (l_s0, a_s0, s_s0) = lambda(sig[1]);
    let (l_s1, _, _) = lambda(sig[2]);
    let (l_s2, _, _) = lambda(sig[3]);
    let k = outs.len();
    let (m0, m1, m2) = (outs[k - 1], outs[k - 2], outs[k - 3]);
    let (h, h_0, h_1) = (l_t - l_s0, l_s0 - l_s1, l_s1 - l_s2);
    let (r0, r1) = (h_0 / h, h_1 / h);
    let d1_0 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m1)])?;
    let d1_1 = lin(&[(1.0 / r1, m1), (-1.0 / r1, m2)])?;
    let d1 = lin(&[(1.0 + r0 / (r0 + r1), &d1_0), (-r0 / (r0 + r1), &d1_1)])?;
    let d2 = lin(&[(1.0 / (r0 + r1), &d1_0), (-1.0 / (r0 + r1), &d1_1)])?;
    let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0);
    match algorithm {
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => lin(&[
            (s_t / s_s0, sample),
            (-a_t * em, m0),
            (a_t * (em / h + 1.0), &d1),
            (-a_t * ((em + h) / (h * h) - 0.5), &d2),
        ]),
        AlgorithmType::DpmSolver => lin(&[
            (a_t / a_s0, sample),
            (-s_t * ep, m0),
            (-s_t * (ep / h - 1.0), &d1),
            (-s_t * ((ep - h) / (h * h) - 0.5), &d2),
        ]),
        AlgorithmType::SdeDpmSolverPlusPlus => {
            let e2 = 1.0 - (-2.0 * h).exp();
            lin(&[
                (s_t / s_s0 * (-h).exp(), sample),
                (a_t * e2, m0),
                (a_t * (e2 / (-2.0 * h) + 1.0), &d1),
                (a_t * ((e2 - 2.0 * h) / (2.0 * h).powi(2) - 0.5), &d2),
                (s_t * e2.sqrt(), need_noise(z)?),
            ])
        }
        AlgorithmType::SdeDpmSolver => Err(candle_core::Error::Msg(format!(
            "{NAME}: sde-dpmsolver has no third-order update"
        ))),
    }
}
