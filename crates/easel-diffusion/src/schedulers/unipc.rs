//! UniPC (Zhao et al. 2023), diffusers' `UniPCMultistepScheduler`: a multistep predictor
//! (UniP) plus a corrector (UniC) applied to the incoming sample on every step but the first,
//! reusing the model output just computed. B(h) is `h` (bh1) or `expm1(h)` (bh2).
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` linspace, `solver_order` 2,
//! `solver_type` bh2 (midpoint/heun/logrho mapped to bh2, as diffusers does),
//! `lower_order_final` true, `predict_x0` true, `final_sigmas_type` zero. Takes Karras and
//! exponential sigmas (with `sigma_min`/`sigma_max`), `disable_corrector`,
//! `rescale_betas_zero_snr`. Rejected: `solver_p`; flow sigmas and dynamic shifting
//! (diffusers' UniPC has them, with custom sigmas and `shift_terminal`; not implemented here).
//!
//! One deliberate difference: with noise prediction (`predict_x0` false) or `bh1` and a final
//! sigma of 0, diffusers' last step computes 0·∞ and returns NaN; here the last (first-order)
//! step takes the limit and returns the x0 prediction.

use candle_core::{Result, Tensor};

use super::config::{FinalSigmasType, SchedulerConfig, SchedulerError, SolverType};
use super::multistep::{self as ms, Base};
use super::schedule::{self as sch, alpha_sigma, lambda, lin, Table};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "UniPCMultistepScheduler";

pub(crate) struct UniPc {
    base: Base,
    bh1: bool,
    lower_order_final: bool,
    predict_x0: bool,
    disable_corrector: Vec<usize>,
    final_sigmas: FinalSigmasType,
    last_sample: Option<Tensor>,
    this_order: usize,
}

impl UniPc {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        ms::check_common(cfg, NAME, false)?;
        if cfg.solver_p {
            return Err(SchedulerError::unsupported(NAME, "solver_p", "a scheduler"));
        }
        ms::check_order(cfg, NAME, false)?;
        let mut base = Base::new(cfg, NAME, true, false)?;
        base.bounds = (cfg.sigma_min, cfg.sigma_max);
        Ok(UniPc {
            base,
            bh1: cfg.solver_type == Some(SolverType::Bh1),
            lower_order_final: cfg.lower_order_final.unwrap_or(true),
            predict_x0: cfg.predict_x0,
            disable_corrector: cfg.disable_corrector.clone(),
            final_sigmas: cfg.final_sigmas_type,
            last_sample: None,
            this_order: 1,
        })
    }

    /// The coefficient system shared by predictor and corrector: the ratios r_k, the matrix
    /// R (rows r^0, r^1, …), the right side b, h_phi_1 and B(h).
    fn system(&self, h: f64, rks: &[f64], order: usize) -> (Vec<Vec<f64>>, Vec<f64>, f64, f64) {
        let hh = if self.predict_x0 { -h } else { h };
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        let b_h = if self.bh1 { hh } else { hh.exp_m1() };
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r.push(
                rks.iter()
                    .map(|&x| x.powi(i as i32 - 1))
                    .collect::<Vec<f64>>(),
            );
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        (r, b, h_phi_1, b_h)
    }

    /// The base update x_t_ from x (at σ_s0) with model output m0 to σ_t.
    fn base_update(
        &self,
        x: &Tensor,
        m0: &Tensor,
        sig_t: f64,
        sig_s0: f64,
        h_phi_1: f64,
    ) -> Vec<(f64, Tensor)> {
        let (a_t, s_t) = alpha_sigma(sig_t);
        let (a_s0, s_s0) = alpha_sigma(sig_s0);
        if self.predict_x0 {
            vec![(s_t / s_s0, x.clone()), (-a_t * h_phi_1, m0.clone())]
        } else {
            vec![
                (a_t / a_s0, x.clone()),
                (-noise_coefficient(sig_t, sig_s0, h_phi_1), m0.clone()),
            ]
        }
    }

    /// UniP: predicts x at σ_{idx+1} from x at σ_idx and the stored outputs.
    fn predictor(&self, idx: usize, x: &Tensor, order: usize) -> Result<Tensor> {
        let sigmas = &self.base.table.sigmas;
        let outs = self.base.history.outs();
        let k = outs.len();
        let m0 = outs[k - 1];
        let (sig_t, sig_s0) = (sigmas[idx + 1], sigmas[idx]);
        let h = lam(sig_t) - lam(sig_s0);
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for i in 1..order {
            let rk = (lam(sigmas[idx - i]) - lam(sig_s0)) / h;
            rks.push(rk);
            d1s.push(lin(&[(1.0 / rk, outs[k - 1 - i]), (-1.0 / rk, m0)])?);
        }
        rks.push(1.0);
        let (r, b, h_phi_1, b_h) = self.system(h, &rks, order);
        let mut terms = self.base_update(x, m0, sig_t, sig_s0, h_phi_1);
        if !d1s.is_empty() {
            let rhos = if order == 2 {
                vec![0.5]
            } else {
                let m = order - 1;
                let a: Vec<Vec<f64>> = r[..m].iter().map(|row| row[..m].to_vec()).collect();
                sch::solve(a, b[..m].to_vec())
            };
            let c = self.coefficient(sig_t, b_h);
            for (rho, d) in rhos.iter().zip(&d1s) {
                terms.push((-c * rho, d.clone()));
            }
        }
        let refs: Vec<(f64, &Tensor)> = terms.iter().map(|(c, t)| (*c, t)).collect();
        lin(&refs)
    }

    /// UniC: corrects the sample at σ_idx (predicted by the previous step from `last`) using
    /// the model output `m_t` just computed there.
    fn corrector(&self, idx: usize, m_t: &Tensor, last: &Tensor, order: usize) -> Result<Tensor> {
        let sigmas = &self.base.table.sigmas;
        let outs = self.base.history.outs();
        let k = outs.len();
        let m0 = outs[k - 1];
        let (sig_t, sig_s0) = (sigmas[idx], sigmas[idx - 1]);
        let h = lam(sig_t) - lam(sig_s0);
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for i in 1..order {
            let rk = (lam(sigmas[idx - (i + 1)]) - lam(sig_s0)) / h;
            rks.push(rk);
            d1s.push(lin(&[(1.0 / rk, outs[k - 1 - i]), (-1.0 / rk, m0)])?);
        }
        rks.push(1.0);
        let (r, b, h_phi_1, b_h) = self.system(h, &rks, order);
        let rhos = if order == 1 {
            vec![0.5]
        } else {
            sch::solve(r, b)
        };
        let c = self.coefficient(sig_t, b_h);
        let mut terms = self.base_update(last, m0, sig_t, sig_s0, h_phi_1);
        for (rho, d) in rhos.iter().zip(&d1s) {
            terms.push((-c * rho, d.clone()));
        }
        let d1_t = (m_t - m0)?;
        terms.push((-c * rhos[rhos.len() - 1], d1_t));
        let refs: Vec<(f64, &Tensor)> = terms.iter().map(|(c, t)| (*c, t)).collect();
        lin(&refs)
    }

    /// α_t·B(h) (x0 prediction) or σ_t·B(h) (noise prediction).
    fn coefficient(&self, sig_t: f64, b_h: f64) -> f64 {
        let (a_t, s_t) = alpha_sigma(sig_t);
        if self.predict_x0 {
            a_t * b_h
        } else if s_t == 0.0 {
            0.0 // only reached without residual terms; see `noise_coefficient`
        } else {
            s_t * b_h
        }
    }
}

/// λ of a VE sigma.
fn lam(sigma: f64) -> f64 {
    lambda(sigma).0
}

impl Solver for UniPc {
    fn table(&self) -> &Table {
        &self.base.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let b = &mut self.base;
        let ts = b.spacing.solver(n, b.spacing.num_train);
        let (final_sigmas, min) = (self.final_sigmas, b.train.min());
        // sigma_min: the last converted sigma, else the smallest training sigma
        b.set_schedule(ts, true, |last| {
            sch::final_sigma(final_sigmas, last.unwrap_or(min))
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.base.history.clear();
        self.last_sample = None;
        self.this_order = 1;
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let use_corrector =
            idx > 0 && !self.disable_corrector.contains(&(idx - 1)) && self.last_sample.is_some();
        let sigma = self.base.table.sigmas[idx];
        let m = if self.predict_x0 {
            self.base.x0(model_output, sample, sigma)?
        } else {
            self.base.eps(model_output, sample, sigma)?
        };
        let sample = match (&self.last_sample, use_corrector) {
            (Some(last), true) => self.corrector(idx, &m, last, self.this_order)?,
            _ => sample.clone(),
        };
        self.base.history.push(m);
        let solver_order = self.base.solver_order;
        let this_order = if self.lower_order_final {
            solver_order.min(self.base.table.timesteps.len() - idx)
        } else {
            solver_order
        };
        self.this_order = this_order.min(self.base.history.warm() + 1);
        let prev = self.predictor(idx, &sample, self.this_order)?;
        self.last_sample = Some(sample);
        Ok(prev)
    }
}

/// σ_t·expm1(h) of the noise-prediction update. At a final σ_t = 0 (h = ∞) diffusers computes
/// 0·∞ = NaN; the limit α_t·σ_s/α_s − σ_t (the same quantity, since e^h = α_t σ_s / (σ_t α_s))
/// is used there instead, which makes the last step return the x0 prediction.
fn noise_coefficient(sig_t: f64, sig_s0: f64, h_phi_1: f64) -> f64 {
    let (a_t, s_t) = alpha_sigma(sig_t);
    if h_phi_1.is_finite() {
        s_t * h_phi_1
    } else {
        let (a_s0, s_s0) = alpha_sigma(sig_s0);
        a_t * s_s0 / a_s0 - s_t
    }
}
