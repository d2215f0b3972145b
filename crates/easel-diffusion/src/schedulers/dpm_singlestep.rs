//! DPM-Solver / DPM-Solver++ singlestep (Lu et al. 2022), diffusers'
//! `DPMSolverSinglestepScheduler`: the steps are grouped (orders 1, 2, 3, 1, 2, 3, … per
//! `get_order_list`), and every update of a group starts from the sample at the group's start.
//! Used here for A1111's "DPM++ 2S" names (diffusers has no ancestral 2S).
//!
//! Timesteps: `linspace(0, N − 1 − clip, steps + 1)` rounded, reversed, last dropped (no
//! `timestep_spacing`). Class defaults: betas linear 0.0001 → 0.02, `algorithm_type`
//! dpmsolver++ (`sde-dpmsolver++` also; `deis` mapped to dpmsolver++), `solver_type` midpoint,
//! `lower_order_final` false (forced true, as diffusers does, when the step count is not a
//! multiple of the order or the final sigma is zero). `sde-dpmsolver` is rejected (diffusers
//! does not implement it for this class).

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, FinalSigmasType, PredictionType, SchedulerConfig, SchedulerError, SolverType,
};
use super::dpm_multistep::{
    check_common, clipped_index, convert_model_output, first_order, is_sde,
};
use super::schedule::{self as sch, alpha_sigma, f32r, lin, X0Limit};
use crate::noise::NoiseSource;

const NAME: &str = "DPMSolverSinglestepScheduler";

pub(crate) struct DpmSinglestep {
    ac: Vec<f64>,
    train_sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    num_train: usize,
    prediction: PredictionType,
    limit: X0Limit,
    algorithm: AlgorithmType,
    solver: SolverType,
    solver_order: usize,
    lower_order_final: bool,
    final_sigmas: FinalSigmasType,
    lambda_min_clipped: f64,
    karras: bool,
    exponential: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    order_list: Vec<usize>,
    model_outputs: Vec<Option<Tensor>>,
    group_sample: Option<Tensor>,
}

impl DpmSinglestep {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        check_common(cfg, NAME)?;
        if cfg.use_lu_lambdas {
            return Err(SchedulerError::unsupported(NAME, "use_lu_lambdas", true));
        }
        let algorithm = match cfg
            .algorithm_type
            .unwrap_or(AlgorithmType::DpmSolverPlusPlus)
        {
            AlgorithmType::Deis => AlgorithmType::DpmSolverPlusPlus,
            AlgorithmType::SdeDpmSolver => {
                return Err(SchedulerError::unsupported(
                    NAME,
                    "algorithm_type",
                    "sde-dpmsolver",
                ))
            }
            a => a,
        };
        let solver = match cfg.solver_type.unwrap_or(SolverType::Midpoint) {
            SolverType::Heun => SolverType::Heun,
            _ => SolverType::Midpoint,
        };
        if algorithm == AlgorithmType::DpmSolver && cfg.final_sigmas_type == FinalSigmasType::Zero {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "final_sigmas_type",
                "zero",
                "dpmsolver needs final_sigmas_type sigma_min",
            ));
        }
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, false)?;
        let train_sigmas = sch::train_sigmas(&ac);
        Ok(DpmSinglestep {
            log_sigmas: sch::log_sigmas(&train_sigmas),
            train_sigmas,
            num_train: cfg.num_train_timesteps,
            prediction: cfg.prediction_type,
            limit: X0Limit::threshold_only(cfg),
            algorithm,
            solver,
            solver_order: cfg.solver_order,
            lower_order_final: cfg.lower_order_final.unwrap_or(false),
            final_sigmas: cfg.final_sigmas_type,
            lambda_min_clipped: cfg.lambda_min_clipped,
            karras: cfg.use_karras_sigmas,
            exponential: cfg.use_exponential_sigmas,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            order_list: Vec::new(),
            model_outputs: Vec::new(),
            group_sample: None,
            ac,
        })
    }

    pub(crate) fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let clipped = clipped_index(&self.ac, self.lambda_min_clipped);
        let mut ts: Vec<f64> =
            sch::np_linspace(0.0, (self.num_train - 1 - clipped) as f64, n + 1, true)
                .into_iter()
                .map(sch::np_round)
                .rev()
                .collect();
        ts.pop();
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
            sig
        } else {
            ts.iter()
                .map(|&t| sch::interp(t, &self.train_sigmas))
                .collect()
        };
        sig.push(match self.final_sigmas {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => self.train_sigmas[0],
        });
        self.sigmas = sig.into_iter().map(f32r).collect();
        self.timesteps = ts.into_iter().map(f64::trunc).collect();
        if !self.lower_order_final
            && (n % self.solver_order > 0 || self.final_sigmas == FinalSigmasType::Zero)
        {
            self.lower_order_final = true;
        }
        self.order_list = order_list(
            self.solver_order,
            n,
            self.lower_order_final,
            self.final_sigmas,
        );
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
        self.group_sample = None;
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
        let mut order = self.order_list.get(idx).copied().unwrap_or(1);
        while order > 1 && self.model_outputs[self.model_outputs.len() - order].is_none() {
            order -= 1;
        }
        if order == 1 {
            self.group_sample = Some(sample.clone());
        }
        let x = self
            .group_sample
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("{NAME}: no group start sample")))?;
        let outs: Vec<&Tensor> = self.model_outputs.iter().flatten().collect();
        let s = |k: usize| self.sigmas[idx + 1 - k];
        let z = z.as_ref();
        match order {
            1 => first_order(self.algorithm, s(0), s(1), outs[outs.len() - 1], &x, z),
            2 => self.second_order([s(0), s(1), s(2)], &outs, &x, z),
            _ => self.third_order([s(0), s(1), s(2), s(3)], &outs, &x, z),
        }
    }

    fn second_order(
        &self,
        sig: [f64; 3],
        outs: &[&Tensor],
        x: &Tensor,
        z: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (l_t, a_t, s_t) = lambda(sig[0]);
        let (l_s0, _, _) = lambda(sig[1]);
        let (l_s1, a_s1, s_s1) = lambda(sig[2]);
        let k = outs.len();
        let (m0, m1) = (outs[k - 1], outs[k - 2]);
        let h = l_t - l_s1;
        let r0 = (l_s0 - l_s1) / h;
        let d1 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m1)])?;
        let midpoint = self.solver != SolverType::Heun;
        let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0);
        match self.algorithm {
            AlgorithmType::DpmSolver => {
                let c1 = if midpoint {
                    -0.5 * s_t * ep
                } else {
                    -s_t * (ep / h - 1.0)
                };
                lin(&[(a_t / a_s1, x), (-s_t * ep, m1), (c1, &d1)])
            }
            AlgorithmType::SdeDpmSolverPlusPlus => {
                let e2 = 1.0 - (-2.0 * h).exp();
                let c1 = if midpoint {
                    0.5 * a_t * e2
                } else {
                    a_t * (e2 / (-2.0 * h) + 1.0)
                };
                lin(&[
                    (s_t / s_s1 * (-h).exp(), x),
                    (a_t * e2, m1),
                    (c1, &d1),
                    (s_t * e2.sqrt(), noise_of(z)?),
                ])
            }
            _ => {
                let c1 = if midpoint {
                    -0.5 * a_t * em
                } else {
                    a_t * (em / h + 1.0)
                };
                lin(&[(s_t / s_s1, x), (-a_t * em, m1), (c1, &d1)])
            }
        }
    }

    fn third_order(
        &self,
        sig: [f64; 4],
        outs: &[&Tensor],
        x: &Tensor,
        z: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (l_t, a_t, s_t) = lambda(sig[0]);
        let (l_s0, _, _) = lambda(sig[1]);
        let (l_s1, _, _) = lambda(sig[2]);
        let (l_s2, a_s2, s_s2) = lambda(sig[3]);
        let k = outs.len();
        let (m0, m1, m2) = (outs[k - 1], outs[k - 2], outs[k - 3]);
        let h = l_t - l_s2;
        let (r0, r1) = ((l_s0 - l_s2) / h, (l_s1 - l_s2) / h);
        let d1_0 = lin(&[(1.0 / r1, m1), (-1.0 / r1, m2)])?;
        let d1_1 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m2)])?;
        let d1 = lin(&[(r0 / (r0 - r1), &d1_0), (-r1 / (r0 - r1), &d1_1)])?;
        let d2 = lin(&[(2.0 / (r0 - r1), &d1_1), (-2.0 / (r0 - r1), &d1_0)])?;
        let midpoint = self.solver != SolverType::Heun;
        let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0);
        match self.algorithm {
            AlgorithmType::DpmSolver => {
                if midpoint {
                    lin(&[
                        (a_t / a_s2, x),
                        (-s_t * ep, m2),
                        (-s_t * (ep / h - 1.0), &d1_1),
                    ])
                } else {
                    lin(&[
                        (a_t / a_s2, x),
                        (-s_t * ep, m2),
                        (-s_t * (ep / h - 1.0), &d1),
                        (-s_t * ((ep - h) / (h * h) - 0.5), &d2),
                    ])
                }
            }
            AlgorithmType::SdeDpmSolverPlusPlus => {
                let e2 = 1.0 - (-2.0 * h).exp();
                let c = a_t * (e2 / (-2.0 * h) + 1.0);
                let noise = noise_of(z)?;
                if midpoint {
                    lin(&[
                        (s_t / s_s2 * (-h).exp(), x),
                        (a_t * e2, m2),
                        (c, &d1_1),
                        (s_t * e2.sqrt(), noise),
                    ])
                } else {
                    lin(&[
                        (s_t / s_s2 * (-h).exp(), x),
                        (a_t * e2, m2),
                        (c, &d1),
                        (a_t * ((e2 - 2.0 * h) / (2.0 * h).powi(2) - 0.5), &d2),
                        (s_t * e2.sqrt(), noise),
                    ])
                }
            }
            _ => {
                if midpoint {
                    lin(&[
                        (s_t / s_s2, x),
                        (-a_t * em, m2),
                        (a_t * (em / h + 1.0), &d1_1),
                    ])
                } else {
                    lin(&[
                        (s_t / s_s2, x),
                        (-a_t * em, m2),
                        (a_t * (em / h + 1.0), &d1),
                        (-a_t * ((em + h) / (h * h) - 0.5), &d2),
                    ])
                }
            }
        }
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

fn lambda(sigma: f64) -> (f64, f64, f64) {
    let (a, s) = alpha_sigma(sigma);
    (a.ln() - s.ln(), a, s)
}

fn noise_of(z: Option<&Tensor>) -> Result<&Tensor> {
    z.ok_or_else(|| candle_core::Error::Msg(format!("{NAME}: SDE update without noise")))
}

/// diffusers' `get_order_list`: the solver order of each step.
pub(crate) fn order_list(
    order: usize,
    steps: usize,
    lower_order_final: bool,
    final_sigmas: FinalSigmasType,
) -> Vec<usize> {
    let repeat = |pattern: &[usize], times: usize| -> Vec<usize> {
        pattern
            .iter()
            .copied()
            .cycle()
            .take(pattern.len() * times)
            .collect()
    };
    let mut orders = if lower_order_final {
        match order {
            3 => match steps % 3 {
                0 => [
                    repeat(&[1, 2, 3], (steps / 3).saturating_sub(1)),
                    vec![1, 2, 1],
                ]
                .concat(),
                1 => [repeat(&[1, 2, 3], steps / 3), vec![1]].concat(),
                _ => [repeat(&[1, 2, 3], steps / 3), vec![1, 2]].concat(),
            },
            2 => match steps % 2 {
                0 => [repeat(&[1, 2], (steps / 2).saturating_sub(1)), vec![1, 1]].concat(),
                _ => [repeat(&[1, 2], steps / 2), vec![1]].concat(),
            },
            _ => vec![1; steps],
        }
    } else {
        match order {
            3 => repeat(&[1, 2, 3], steps / 3),
            2 => repeat(&[1, 2], steps / 2),
            _ => vec![1; steps],
        }
    };
    if final_sigmas == FinalSigmasType::Zero {
        if let Some(last) = orders.last_mut() {
            *last = 1;
        }
    }
    orders
}
