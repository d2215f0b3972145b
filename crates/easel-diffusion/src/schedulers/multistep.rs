//! What the multistep solver family shares (DPM-Solver multistep and singlestep, DEIS,
//! UniPC): the config checks, the training sigmas and the schedule setup (spaced integer
//! timesteps, interpolated or converted sigmas, the final sigma), the model-output history,
//! the x0/noise conversions at a VE sigma read as a VP process (α = 1/sqrt(σ²+1),
//! σ_vp = σ·α) or, with `use_flow_sigmas` (DPM-Solver only), at a flow-matching sigma
//! (α = 1 − σ, σ_t = σ), and the DPM-Solver updates of orders 1–3 (in λ = ln α − ln σ_t).
//!
//! Flow sigmas (diffusers' `use_flow_sigmas`, Sana's DPM-Solver++): in float64,
//! `s = 1 − linspace(1, 1/N, n + 1)`, shifted `flow_shift·s / (1 + (flow_shift − 1)·s)`,
//! reversed, last dropped; timesteps `int64(s·N)` (truncated), sigmas float32 plus the final
//! sigma. The timestep spacing, `lambda_min_clipped` and the betas do not enter; the betas'
//! VP sigma is only the `final_sigmas_type` sigma_min value, as in diffusers. With
//! `flow_prediction` the data prediction is `x0 = x − σ·v`.

use std::collections::VecDeque;

use candle_core::{Result, Tensor};

use super::config::{
    AlgorithmType, PredictionType, SchedulerConfig, SchedulerError, TimeShiftType, TimestepSpacing,
};
use super::schedule::{
    self as sch, f32r, lin, np_linspace, Levels, Param, SigmaSchedule, Spacing, Table, TrainSigmas,
    X0Limit,
};

/// Rejects the options no multistep solver here implements. `takes_flow`: the class
/// implements `use_flow_sigmas` (DPM-Solver multistep and singlestep); the others reject it,
/// and dynamic shifting, which only means something with flow sigmas.
pub(crate) fn check_common(
    cfg: &SchedulerConfig,
    name: &'static str,
    takes_flow: bool,
) -> std::result::Result<(), SchedulerError> {
    sch::reject_unsupported_sigmas(cfg, name)?;
    if cfg.use_flow_sigmas && !takes_flow {
        return Err(SchedulerError::unsupported_because(
            name,
            "use_flow_sigmas",
            true,
            "flow sigmas are implemented for DPMSolverMultistepScheduler and \
             DPMSolverSinglestepScheduler only; FlowMatchEulerDiscreteScheduler is the flow Euler",
        ));
    }
    if cfg.use_flow_sigmas {
        for (field, set) in [
            ("use_karras_sigmas", cfg.use_karras_sigmas),
            ("use_exponential_sigmas", cfg.use_exponential_sigmas),
            ("use_lu_lambdas", cfg.use_lu_lambdas),
        ] {
            if set {
                return Err(SchedulerError::unsupported_because(
                    name,
                    field,
                    true,
                    "cannot be combined with use_flow_sigmas (diffusers would space VP sigmas \
                     and read them as flow sigmas)",
                ));
            }
        }
    }
    if cfg.use_dynamic_shifting && !(takes_flow && cfg.use_flow_sigmas) {
        return Err(SchedulerError::unsupported_because(
            name,
            "use_dynamic_shifting",
            true,
            "dynamic shifting needs use_flow_sigmas",
        ));
    }
    if cfg.use_dynamic_shifting && cfg.time_shift_type != TimeShiftType::Exponential {
        return Err(SchedulerError::unsupported_because(
            name,
            "time_shift_type",
            "linear",
            "DPM-Solver's dynamic shifting is exponential (flow_shift = e^mu)",
        ));
    }
    Ok(())
}

/// The flow-matching sigmas of DPM-Solver's `use_flow_sigmas` (float64, see the module doc),
/// `n` of them from near 1 down, and their (fractional) timesteps `σ·N`.
pub(crate) fn flow_sigmas(n: usize, num_train: usize, shift: f64) -> (Vec<f64>, Vec<f64>) {
    let mut sig: Vec<f64> = np_linspace(1.0, 1.0 / num_train as f64, n + 1, true)
        .into_iter()
        .map(|a| {
            let s = 1.0 - a;
            shift * s / (1.0 + (shift - 1.0) * s)
        })
        .rev()
        .collect();
    sig.pop();
    let ts = sig.iter().map(|&s| s * num_train as f64).collect();
    (ts, sig)
}

/// Rejects `solver_order` 0, and above 3 when `up_to_3`.
pub(crate) fn check_order(
    cfg: &SchedulerConfig,
    name: &'static str,
    up_to_3: bool,
) -> std::result::Result<(), SchedulerError> {
    let o = cfg.solver_order;
    if o == 0 || (up_to_3 && o > 3) {
        let reason = if up_to_3 {
            "must be 1, 2 or 3"
        } else {
            "must be ≥ 1"
        };
        return Err(SchedulerError::unsupported_because(
            name,
            "solver_order",
            o,
            reason,
        ));
    }
    Ok(())
}

/// The configuration, schedule and model-output history of a multistep solver.
pub(crate) struct Base {
    /// How the sigmas read (VP, or flow with `use_flow_sigmas`).
    pub param: Param,
    /// `flow_shift` (flow sigmas).
    pub flow_shift: f64,
    pub train: TrainSigmas,
    pub spacing: Spacing,
    pub prediction: PredictionType,
    pub limit: X0Limit,
    pub solver_order: usize,
    pub schedule: SigmaSchedule,
    /// `sigma_min`/`sigma_max` of converted sigmas (UniPC), else the training range.
    pub bounds: (Option<f64>, Option<f64>),
    pub table: Table,
    pub history: History,
}

impl Base {
    /// `zero_snr`: the class honours `rescale_betas_zero_snr`; `takes_lu`: `use_lu_lambdas`.
    pub(crate) fn new(
        cfg: &SchedulerConfig,
        name: &'static str,
        zero_snr: bool,
        takes_lu: bool,
    ) -> std::result::Result<Self, SchedulerError> {
        let flow = cfg.use_flow_sigmas;
        Ok(Base {
            param: if flow { Param::Flow } else { Param::Vp },
            flow_shift: cfg.flow_shift,
            train: TrainSigmas::new(cfg, &sch::LINEAR_DEFAULTS, zero_snr)?,
            spacing: Spacing::new(cfg, TimestepSpacing::Linspace),
            prediction: cfg.prediction_type,
            limit: X0Limit::threshold_only(cfg),
            solver_order: cfg.solver_order,
            schedule: SigmaSchedule::from_config(cfg, takes_lu),
            bounds: (None, None),
            table: Table::new(name, if flow { Levels::Flow } else { Levels::Vp }),
            history: History::new(cfg.solver_order),
        })
    }

    /// Fills the table from the spaced timesteps `ts`: sigmas interpolated there, or
    /// converted (with their timesteps, rounded when `round_t`); then the final sigma, which
    /// `last` picks given the last converted sigma (None when interpolated). Timesteps are
    /// truncated to integers (`.to(torch.int64)`), sigmas stored as float32.
    pub(crate) fn set_schedule(
        &mut self,
        ts: Vec<f64>,
        round_t: bool,
        last: impl FnOnce(Option<f64>) -> f64,
    ) {
        let n = ts.len();
        let lo = self.bounds.0.unwrap_or(self.train.min());
        let hi = self.bounds.1.unwrap_or(self.train.max());
        let (ts, mut sig, last) = match self.schedule.convert(&self.train, lo, hi, n, round_t) {
            Some((ts, sig)) => {
                let l = last(Some(sig[sig.len() - 1]));
                (ts, sig, l)
            }
            None => {
                let sig = ts.iter().map(|&t| self.train.at(t)).collect();
                (ts, sig, last(None))
            }
        };
        sig.push(last);
        self.table.sigmas = sig.into_iter().map(f32r).collect();
        self.table.timesteps = ts.into_iter().map(f64::trunc).collect();
    }

    /// The flow-sigma schedule (`use_flow_sigmas`) of `n` steps with `shift` (`flow_shift`,
    /// or `e^mu`), then the final sigma `last`.
    pub(crate) fn set_flow_schedule(&mut self, n: usize, shift: f64, last: f64) {
        let (ts, mut sig) = flow_sigmas(n, self.spacing.num_train, shift);
        sig.push(last);
        self.table.sigmas = sig.into_iter().map(f32r).collect();
        self.table.timesteps = ts.into_iter().map(f64::trunc).collect();
    }

    /// The model output as x0 (limited): data prediction. `flow_prediction` reads the raw
    /// sigma (`x − σ·v`) whatever the parametrization, as diffusers does.
    pub(crate) fn x0(&self, model_output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        let (a, s) = self.param.alpha_sigma(sigma);
        let s = if self.prediction == PredictionType::Flow {
            sigma
        } else {
            s
        };
        let x0 = sch::x0_of(self.prediction, model_output, sample, a, s)?;
        self.limit.apply(x0)
    }

    /// The model output as noise ε (not limited).
    pub(crate) fn eps(&self, model_output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        let (a, s) = self.param.alpha_sigma(sigma);
        sch::eps_of(self.prediction, model_output, sample, a, s)
    }

    /// The noise ε of the limited x0 prediction.
    pub(crate) fn eps_via_x0(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        sigma: f64,
    ) -> Result<Tensor> {
        let x0 = self.x0(model_output, sample, sigma)?;
        let (a, s) = self.param.alpha_sigma(sigma);
        sch::eps_of(PredictionType::Sample, &x0, sample, a, s)
    }

    /// The order of a multistep step (DPM-Solver multistep, DEIS): 1 on the first step and
    /// when `final_first_order` holds at the last; lower near the end with
    /// `lower_order_final` below 15 steps.
    pub(crate) fn step_order(
        &self,
        idx: usize,
        lower_order_final: bool,
        final_first: bool,
    ) -> usize {
        let n = self.table.timesteps.len();
        let lower = lower_order_final && n < 15;
        let warm = self.history.warm();
        if self.solver_order == 1 || warm < 1 || (idx + 1 == n && (final_first || lower)) {
            1
        } else if self.solver_order == 2 || warm < 2 || (idx + 2 == n && lower) {
            2
        } else {
            3
        }
    }
}

/// The last `cap` converted model outputs, and how many steps since the reset stored one.
pub(crate) struct History {
    outs: VecDeque<Tensor>,
    cap: usize,
    pushed: usize,
}

impl History {
    fn new(cap: usize) -> Self {
        History {
            outs: VecDeque::with_capacity(cap),
            cap,
            pushed: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.outs.clear();
        self.pushed = 0;
    }

    pub(crate) fn push(&mut self, m: Tensor) {
        if self.outs.len() == self.cap {
            self.outs.pop_front();
        }
        self.outs.push_back(m);
        self.pushed += 1;
    }

    /// The stored outputs, oldest first.
    pub(crate) fn outs(&self) -> Vec<&Tensor> {
        self.outs.iter().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.outs.len()
    }

    /// diffusers' `lower_order_nums` during a step: the steps before this one, at most `cap`.
    pub(crate) fn warm(&self) -> usize {
        self.pushed.saturating_sub(1).min(self.cap)
    }
}

pub(crate) fn is_sde(a: AlgorithmType) -> bool {
    matches!(
        a,
        AlgorithmType::SdeDpmSolver | AlgorithmType::SdeDpmSolverPlusPlus
    )
}

pub(crate) fn plus_plus(a: AlgorithmType) -> bool {
    matches!(
        a,
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::SdeDpmSolverPlusPlus
    )
}

/// The difference terms of a DPM-Solver update beyond first order.
#[derive(Clone, Copy)]
pub(crate) enum Diffs<'a> {
    None,
    /// Second order, midpoint form: D1 only.
    Midpoint(&'a Tensor),
    /// Taylor (Heun) form: D1 and, for third order, D2.
    Taylor(&'a Tensor, Option<&'a Tensor>),
}

/// One DPM-Solver(++) update of `x` (at σ `sig_s`, converted output `m`) to σ `sig_t` over
/// the step `h` in λ, with the difference terms `d` and, for the SDE variants, the noise `z`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dpm_update(
    param: Param,
    algorithm: AlgorithmType,
    h: f64,
    sig_t: f64,
    sig_s: f64,
    x: &Tensor,
    m: &Tensor,
    d: Diffs,
    z: Option<&Tensor>,
    name: &str,
) -> Result<Tensor> {
    let (a_t, s_t) = param.alpha_sigma(sig_t);
    let (a_s, s_s) = param.alpha_sigma(sig_s);
    let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0);
    let e2 = 1.0 - (-2.0 * h).exp();
    // (x, m, D1 midpoint, D1 Taylor, D2, noise) coefficients
    let (cx, cm, c_mid, c1, c2, cz) = match algorithm {
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => (
            s_t / s_s,
            -a_t * em,
            -0.5 * a_t * em,
            a_t * (em / h + 1.0),
            Some(-a_t * ((em + h) / (h * h) - 0.5)),
            None,
        ),
        AlgorithmType::DpmSolver => (
            a_t / a_s,
            -s_t * ep,
            -0.5 * s_t * ep,
            -s_t * (ep / h - 1.0),
            Some(-s_t * ((ep - h) / (h * h) - 0.5)),
            None,
        ),
        AlgorithmType::SdeDpmSolverPlusPlus => (
            s_t / s_s * (-h).exp(),
            a_t * e2,
            0.5 * a_t * e2,
            a_t * (e2 / (-2.0 * h) + 1.0),
            Some(a_t * ((e2 - 2.0 * h) / (2.0 * h).powi(2) - 0.5)),
            Some(s_t * e2.sqrt()),
        ),
        AlgorithmType::SdeDpmSolver => (
            a_t / a_s,
            -2.0 * s_t * ep,
            -s_t * ep,
            -2.0 * s_t * (ep / h - 1.0),
            None,
            Some(s_t * ((2.0 * h).exp() - 1.0).sqrt()),
        ),
    };
    let mut terms = vec![(cx, x), (cm, m)];
    match d {
        Diffs::None => {}
        Diffs::Midpoint(d1) => terms.push((c_mid, d1)),
        Diffs::Taylor(d1, d2) => {
            terms.push((c1, d1));
            if let Some(d2) = d2 {
                let c2 = c2.ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "{name}: sde-dpmsolver has no third-order update"
                    ))
                })?;
                terms.push((c2, d2));
            }
        }
    }
    if let Some(cz) = cz {
        let z =
            z.ok_or_else(|| candle_core::Error::Msg(format!("{name}: SDE update without noise")))?;
        terms.push((cz, z));
    }
    lin(&terms)
}

/// λ(σ_t) − λ(σ_s).
pub(crate) fn step_h(param: Param, sig_t: f64, sig_s: f64) -> f64 {
    param.lambda(sig_t) - param.lambda(sig_s)
}
