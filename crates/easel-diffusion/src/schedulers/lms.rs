//! Linear multistep (k-diffusion's `sample_lms`), diffusers' `LMSDiscreteScheduler`: order 4
//! Adams–Bashforth in sigma. The coefficient of each stored derivative is the integral of its
//! Lagrange basis polynomial over the next sigma interval; the polynomials have degree ≤ 3,
//! so Gauss–Legendre quadrature gives them exactly (diffusers uses scipy's `quad`).
//!
//! Like diffusers, the order at schedule entry i is `min(i + 1, 4)` even when fewer derivatives
//! are stored (img2img), and only the stored ones are used.
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` linspace. Takes
//! `use_karras_sigmas` and `use_exponential_sigmas`.

use std::collections::VecDeque;

use candle_core::{Result, Tensor};

use super::config::{SchedulerConfig, SchedulerError};
use super::schedule::{self as sch, f32r, Table};
use super::ve::VeBase;
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "LMSDiscreteScheduler";
const ORDER: usize = 4;

pub(crate) struct Lms {
    base: VeBase,
    table: Table,
    derivatives: VecDeque<Tensor>,
}

impl Lms {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        let base = VeBase::new(cfg, NAME, &sch::LINEAR_DEFAULTS, false, true)?;
        Ok(Lms {
            table: base.table(NAME),
            base,
            derivatives: VecDeque::new(),
        })
    }

    /// ∫ over [σ_t, σ_{t+1}] of the Lagrange basis polynomial of node `current` among the
    /// `order` nodes σ_t, σ_{t-1}, …
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = &self.table.sigmas;
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - s[t - k]) / (s[t - current] - s[t - k]))
                .product::<f64>()
        };
        sch::integrate(basis, s[t], s[t + 1])
    }
}

impl Solver for Lms {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        let (ts, sigmas, _) = self.base.schedule(n, false, 0.0);
        self.table.sigmas = sigmas;
        self.table.timesteps = ts.into_iter().map(f32r).collect();
        Ok(())
    }

    fn reset(&mut self) {
        self.derivatives.clear();
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let sigma = self.table.sigmas[idx];
        let derivative = self.base.derivative(model_output, sample, sigma)?;
        self.derivatives.push_back(derivative);
        if self.derivatives.len() > ORDER {
            self.derivatives.pop_front();
        }
        let order = (idx + 1).min(ORDER);
        // sample + Σ coeff·derivative, summed in diffusers' order (newest derivative first)
        let mut terms: Vec<(f64, &Tensor)> = Vec::with_capacity(order);
        for (current, d) in (0..order).zip(self.derivatives.iter().rev()) {
            terms.push((self.coefficient(order, idx, current), d));
        }
        sample + sch::lin(&terms)?
    }
}
