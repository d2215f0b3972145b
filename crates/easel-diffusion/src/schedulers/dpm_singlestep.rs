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
//! does not implement it for this class). Flow matching (`use_flow_sigmas`, `flow_shift`,
//! `flow_prediction`, `mu` with `use_dynamic_shifting`) as in the multistep solver, whose
//! schedule and conversions it shares (`multistep.rs`).

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, FinalSigmasType, SchedulerConfig, SchedulerError, TimestepSpacing,
};
use super::dpm_multistep::{check_dpm, clipped_index, flow_shift_for, midpoint, record_dpm_output};
use super::multistep::{dpm_update, step_h, Base, Diffs};
use super::schedule::{self as sch, lin, Param, Spacing, Table};
use super::{Solver, TimestepOptions};
use crate::noise::NoiseSource;

const NAME: &str = "DPMSolverSinglestepScheduler";

pub(crate) struct DpmSinglestep {
    base: Base,
    algorithm: AlgorithmType,
    midpoint: bool,
    lower_order_final: bool,
    final_sigmas: FinalSigmasType,
    lambda_min_clipped: f64,
    order_list: Vec<usize>,
    group_sample: Option<Tensor>,
    dynamic_shifting: bool,
}

impl DpmSinglestep {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        check_dpm(cfg, NAME)?;
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
        if algorithm == AlgorithmType::DpmSolver && cfg.final_sigmas_type == FinalSigmasType::Zero {
            return Err(SchedulerError::unsupported_because(
                NAME,
                "final_sigmas_type",
                "zero",
                "dpmsolver needs final_sigmas_type sigma_min",
            ));
        }
        Ok(DpmSinglestep {
            base: Base::new(cfg, NAME, false, false)?,
            algorithm,
            midpoint: midpoint(cfg),
            lower_order_final: cfg.lower_order_final.unwrap_or(false),
            final_sigmas: cfg.final_sigmas_type,
            lambda_min_clipped: cfg.lambda_min_clipped,
            order_list: Vec::new(),
            group_sample: None,
            dynamic_shifting: cfg.use_dynamic_shifting,
        })
    }
}

impl Solver for DpmSinglestep {
    fn table(&self) -> &Table {
        &self.base.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.set_timesteps_with(n, &TimestepOptions::default())
    }

    fn set_timesteps_with(
        &mut self,
        n: usize,
        opts: &TimestepOptions,
    ) -> std::result::Result<(), SchedulerError> {
        let shift = flow_shift_for(&self.base, NAME, opts, self.dynamic_shifting)?;
        let b = &mut self.base;
        let last = sch::final_sigma(self.final_sigmas, b.train.min());
        if b.param == Param::Flow {
            b.set_flow_schedule(n, shift, last);
        } else {
            // always linspace (the class has no `timestep_spacing`)
            let spacing = Spacing {
                kind: TimestepSpacing::Linspace,
                ..b.spacing
            };
            let clipped = clipped_index(&b.train.ac, self.lambda_min_clipped);
            let ts = spacing.solver(n, spacing.num_train - clipped);
            b.set_schedule(ts, true, |_| last);
        }
        let solver_order = b.solver_order;
        if !self.lower_order_final
            && (!n.is_multiple_of(solver_order) || self.final_sigmas == FinalSigmasType::Zero)
        {
            self.lower_order_final = true;
        }
        self.order_list = order_list(solver_order, n, self.lower_order_final, self.final_sigmas);
        Ok(())
    }

    fn reset(&mut self) {
        self.base.history.clear();
        self.group_sample = None;
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let z = record_dpm_output(
            &mut self.base,
            self.algorithm,
            model_output,
            idx,
            sample,
            noise,
        )?;
        let b = &mut self.base;
        let order = self
            .order_list
            .get(idx)
            .copied()
            .unwrap_or(1)
            .min(b.history.len());
        if order == 1 {
            self.group_sample = Some(sample.clone());
        }
        let x = self
            .group_sample
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg(format!("{NAME}: no group start sample")))?;
        let outs = b.history.outs();
        let k = outs.len();
        let s = |j: usize| b.table.sigmas[idx + 1 - j];
        // every update of a group starts at the group's first sigma, s(order)
        let p = b.param;
        let h = step_h(p, s(0), s(order));
        let update = |m: &Tensor, d: Diffs| {
            dpm_update(
                p,
                self.algorithm,
                h,
                s(0),
                s(order),
                x,
                m,
                d,
                z.as_ref(),
                NAME,
            )
        };
        match order {
            1 => update(outs[k - 1], Diffs::None),
            2 => {
                let (m0, m1) = (outs[k - 1], outs[k - 2]);
                let r0 = step_h(p, s(1), s(2)) / h;
                let d1 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m1)])?;
                if self.midpoint {
                    update(m1, Diffs::Midpoint(&d1))
                } else {
                    update(m1, Diffs::Taylor(&d1, None))
                }
            }
            _ => {
                let (m0, m1, m2) = (outs[k - 1], outs[k - 2], outs[k - 3]);
                let (r0, r1) = (step_h(p, s(1), s(3)) / h, step_h(p, s(2), s(3)) / h);
                let d1_0 = lin(&[(1.0 / r1, m1), (-1.0 / r1, m2)])?;
                let d1_1 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m2)])?;
                if self.midpoint {
                    update(m2, Diffs::Taylor(&d1_1, None))
                } else {
                    let d1 = lin(&[(r0 / (r0 - r1), &d1_0), (-r1 / (r0 - r1), &d1_1)])?;
                    let d2 = lin(&[(2.0 / (r0 - r1), &d1_1), (-2.0 / (r0 - r1), &d1_0)])?;
                    update(m2, Diffs::Taylor(&d1, Some(&d2)))
                }
            }
        }
    }
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
