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
//!
//! Flow matching (Sana): `use_flow_sigmas` with `flow_shift` (schedule in `multistep.rs`),
//! `prediction_type` flow_prediction (x0 = x − σ·v), α = 1 − σ and σ_t = σ in the updates;
//! with `use_dynamic_shifting` a `mu` given to `set_timesteps_with` replaces `flow_shift` by
//! e^mu for that schedule (diffusers writes it into the config). The first step is first
//! order, and the last one too with `final_sigmas_type` zero.
//!
//! Rejected: beta sigmas, learned variance, flow prediction with the noise-predicting
//! `dpmsolver`/`sde-dpmsolver` (as diffusers), flow sigmas combined with Karras, exponential
//! or Lu spacing, dynamic shifting without flow sigmas.

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, SchedulerError,
    SolverType,
};
use super::multistep::{self as ms, dpm_update, step_h, Base, Diffs};
use super::schedule::{self as sch, lin, Param, Table, X0Limit};
use super::{Solver, TimestepOptions};
use crate::noise::NoiseSource;

const NAME: &str = "DPMSolverMultistepScheduler";

pub(crate) struct DpmMultistep {
    base: Base,
    algorithm: AlgorithmType,
    midpoint: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigmas: FinalSigmasType,
    lambda_min_clipped: f64,
    beta_is_cosine: bool,
    dynamic_shifting: bool,
}

/// Rejects what the DPM-Solver family here does not implement (shared with singlestep).
pub(crate) fn check_dpm(
    cfg: &SchedulerConfig,
    name: &'static str,
) -> std::result::Result<(), SchedulerError> {
    ms::check_common(cfg, name, true)?;
    if let Some(v) = cfg.variance_type {
        return Err(SchedulerError::unsupported(
            name,
            "variance_type",
            format!("{v:?}"),
        ));
    }
    let algorithm = cfg
        .algorithm_type
        .unwrap_or(AlgorithmType::DpmSolverPlusPlus);
    if cfg.prediction_type == PredictionType::Flow
        && matches!(
            algorithm,
            AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver
        )
    {
        return Err(SchedulerError::unsupported_because(
            name,
            "prediction_type",
            "flow_prediction",
            "flow prediction needs algorithm_type dpmsolver++ or sde-dpmsolver++",
        ));
    }
    ms::check_order(cfg, name, true)
}

/// `mu` of `set_timesteps_with` for the DPM-Solvers: the flow shift it stands for (e^mu),
/// else the configured `flow_shift`; an error where the config does not take it.
pub(crate) fn flow_shift_for(
    b: &Base,
    name: &'static str,
    opts: &TimestepOptions,
    dynamic: bool,
) -> std::result::Result<f64, SchedulerError> {
    if opts.sigmas.is_some() {
        return Err(SchedulerError::schedule(
            name,
            "custom sigmas are not supported (FlowMatchEulerDiscreteScheduler takes them)",
        ));
    }
    match opts.mu {
        None => Ok(b.flow_shift),
        Some(mu) if dynamic && b.param == Param::Flow => Ok(mu.exp()),
        Some(_) => Err(SchedulerError::schedule(
            name,
            "mu needs use_dynamic_shifting and use_flow_sigmas",
        )),
    }
}

/// `solver_type` as the DPM-Solvers read it: heun, else midpoint.
pub(crate) fn midpoint(cfg: &SchedulerConfig) -> bool {
    cfg.solver_type != Some(SolverType::Heun)
}

impl DpmMultistep {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        check_dpm(cfg, NAME)?;
        let algorithm = match cfg
            .algorithm_type
            .unwrap_or(AlgorithmType::DpmSolverPlusPlus)
        {
            AlgorithmType::Deis => AlgorithmType::DpmSolverPlusPlus,
            a => a,
        };
        if !ms::plus_plus(algorithm) && cfg.final_sigmas_type == FinalSigmasType::Zero {
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
        Ok(DpmMultistep {
            base: Base::new(cfg, NAME, true, true)?,
            algorithm,
            midpoint: midpoint(cfg),
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            euler_at_final: cfg.euler_at_final,
            final_sigmas: cfg.final_sigmas_type,
            lambda_min_clipped: cfg.lambda_min_clipped,
            beta_is_cosine: cfg.beta_schedule == Some(BetaSchedule::SquaredcosCapV2),
            dynamic_shifting: cfg.use_dynamic_shifting,
        })
    }
}

impl Solver for DpmMultistep {
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
        if b.param == Param::Flow {
            let last = sch::final_sigma(self.final_sigmas, b.train.min());
            b.set_flow_schedule(n, shift, last);
            return Ok(());
        }
        let last_timestep =
            b.spacing.num_train - clipped_index(&b.train.ac, self.lambda_min_clipped);
        let ts = b.spacing.solver(n, last_timestep);
        let last = sch::final_sigma(self.final_sigmas, b.train.min());
        b.set_schedule(ts, !self.beta_is_cosine, |_| last);
        Ok(())
    }

    fn reset(&mut self) {
        self.base.history.clear();
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
        let final_first = self.euler_at_final || self.final_sigmas == FinalSigmasType::Zero;
        let order = b.step_order(idx, self.lower_order_final, final_first);
        let outs = b.history.outs();
        let k = outs.len();
        let s = |j: usize| b.table.sigmas[idx + 1 - j];
        let p = b.param;
        let h = step_h(p, s(0), s(1));
        let update = |d: Diffs| {
            dpm_update(
                p,
                self.algorithm,
                h,
                s(0),
                s(1),
                sample,
                outs[k - 1],
                d,
                z.as_ref(),
                NAME,
            )
        };
        match order {
            1 => update(Diffs::None),
            2 => {
                let r0 = step_h(p, s(1), s(2)) / h;
                let d1 = lin(&[(1.0 / r0, outs[k - 1]), (-1.0 / r0, outs[k - 2])])?;
                if self.midpoint {
                    update(Diffs::Midpoint(&d1))
                } else {
                    update(Diffs::Taylor(&d1, None))
                }
            }
            _ => {
                let (r0, r1) = (step_h(p, s(1), s(2)) / h, step_h(p, s(2), s(3)) / h);
                let (m0, m1, m2) = (outs[k - 1], outs[k - 2], outs[k - 3]);
                let d1_0 = lin(&[(1.0 / r0, m0), (-1.0 / r0, m1)])?;
                let d1_1 = lin(&[(1.0 / r1, m1), (-1.0 / r1, m2)])?;
                let d1 = lin(&[(1.0 + r0 / (r0 + r1), &d1_0), (-r0 / (r0 + r1), &d1_1)])?;
                let d2 = lin(&[(1.0 / (r0 + r1), &d1_0), (-1.0 / (r0 + r1), &d1_1)])?;
                update(Diffs::Taylor(&d1, Some(&d2)))
            }
        }
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

/// The opening of a DPM-Solver step: convert the model output at step `idx`, push it on the
/// history, and draw the step's noise when the algorithm is an SDE variant.
pub(crate) fn record_dpm_output(
    b: &mut Base,
    algorithm: AlgorithmType,
    model_output: &Tensor,
    idx: usize,
    sample: &Tensor,
    noise: &mut dyn NoiseSource,
) -> Result<Option<Tensor>> {
    let sigma = b.table.sigmas[idx];
    let m = convert_model_output(b, algorithm, model_output, sample, sigma)?;
    b.history.push(m);
    if ms::is_sde(algorithm) {
        Ok(Some(
            noise.randn(model_output.dims(), model_output.device())?,
        ))
    } else {
        Ok(None)
    }
}

/// The model output in the form the algorithm integrates: x0 for DPM-Solver++, noise for
/// DPM-Solver (through the thresholded x0 when thresholding).
pub(crate) fn convert_model_output(
    b: &Base,
    algorithm: AlgorithmType,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f64,
) -> Result<Tensor> {
    if ms::plus_plus(algorithm) {
        return b.x0(model_output, sample, sigma);
    }
    let eps = b.eps(model_output, sample, sigma)?;
    if let X0Limit::Threshold { .. } = b.limit {
        let (a, s) = b.param.alpha_sigma(sigma);
        let x0 = b
            .limit
            .apply(sch::x0_of(PredictionType::Epsilon, &eps, sample, a, s)?)?;
        return sch::eps_of(PredictionType::Sample, &x0, sample, a, s);
    }
    Ok(eps)
}
