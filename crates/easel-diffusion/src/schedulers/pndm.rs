//! PNDM (Liu et al. 2022), diffusers' `PNDMScheduler`: Runge–Kutta warm-up steps (PRK) then
//! linear multistep (PLMS). With `skip_prk_steps` (Stable Diffusion's configs) it is PLMS only:
//! the schedule repeats its second timestep once and the first two model calls form one
//! second-order step, so a loop has `steps + 1` iterations.
//!
//! Class defaults: betas linear 0.0001 → 0.02, `timestep_spacing` leading, `set_alpha_to_one`
//! false. `prediction_type` sample is rejected (diffusers rejects it at step time).

use candle_core::{Result, Tensor};

use super::config::{PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing};
use super::schedule::{self as sch, Levels, Spacing, Table};
use super::Solver;
use crate::noise::NoiseSource;

const NAME: &str = "PNDMScheduler";

pub(crate) struct Pndm {
    table: Table,
    final_ac: f64,
    spacing: Spacing,
    v_prediction: bool,
    skip_prk: bool,
    n: usize,
    prk_len: usize,
    prk_timesteps: Vec<f64>,
    // stepping state
    counter: usize,
    ets: Vec<Tensor>,
    cur_model_output: Option<Tensor>,
    cur_sample: Option<Tensor>,
}

impl Pndm {
    pub(crate) fn new(cfg: &SchedulerConfig) -> std::result::Result<Self, SchedulerError> {
        if cfg.prediction_type == PredictionType::Sample {
            return Err(SchedulerError::unsupported(
                NAME,
                "prediction_type",
                "sample",
            ));
        }
        let ac = sch::alphas_cumprod(cfg, &sch::LINEAR_DEFAULTS, false)?;
        Ok(Pndm {
            final_ac: sch::final_alpha(cfg, &ac, false),
            table: Table::new(NAME, Levels::Alphas(ac)),
            spacing: Spacing::new(cfg, TimestepSpacing::Leading),
            v_prediction: cfg.prediction_type == PredictionType::VPrediction,
            skip_prk: cfg.skip_prk_steps,
            n: 0,
            prk_len: 0,
            prk_timesteps: Vec::new(),
            counter: 0,
            ets: Vec::new(),
            cur_model_output: None,
            cur_sample: None,
        })
    }
}

impl Solver for Pndm {
    fn table(&self) -> &Table {
        &self.table
    }

    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError> {
        self.n = n;
        // ascending, as diffusers' `_timesteps`
        let mut base = self.spacing.spaced(n, true);
        base.reverse();
        if self.skip_prk {
            self.prk_timesteps.clear();
            let len = base.len();
            let mut plms: Vec<f64> = base[..len.saturating_sub(1)].to_vec();
            if len >= 2 {
                plms.push(base[len - 2]);
            }
            if let Some(&last) = base.last() {
                plms.push(last);
            }
            plms.reverse();
            self.table.timesteps = plms;
        } else {
            if base.len() < 4 {
                return Err(SchedulerError::schedule(
                    NAME,
                    format!("PRK warm-up needs at least 4 steps, got {n} (or set skip_prk_steps)"),
                ));
            }
            let half = (self.spacing.num_train / n / 2) as f64;
            let tail = &base[base.len() - 4..];
            // repeat(2) + tile([0, half]) → [t0, t0+half, t1, t1+half, ...]
            let prk: Vec<f64> = tail.iter().flat_map(|&t| [t, t + half]).collect();
            // prk[:-1].repeat(2)[1:-1][::-1]
            let rep: Vec<f64> = prk[..prk.len() - 1].iter().flat_map(|&t| [t, t]).collect();
            let mut prk_ts: Vec<f64> = rep[1..rep.len() - 1].to_vec();
            prk_ts.reverse();
            let mut plms: Vec<f64> = base[..base.len() - 3].to_vec();
            plms.reverse();
            self.prk_len = prk_ts.len();
            self.prk_timesteps = prk_ts.clone();
            prk_ts.extend(plms);
            self.table.timesteps = prk_ts;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.counter = 0;
        self.ets.clear();
        self.cur_model_output = None;
        self.cur_sample = None;
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let t = self.table.timesteps[idx];
        if !self.skip_prk && self.counter < self.prk_len {
            self.step_prk(model_output, t, sample)
        } else {
            self.step_plms(model_output, t, sample)
        }
    }
}

impl Pndm {
    fn step_prk(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let diff_to_prev = if self.counter % 2 == 1 {
            0.0
        } else {
            (self.spacing.num_train / self.n / 2) as f64
        };
        let prev_t = timestep - diff_to_prev;
        let t = self.prk_timesteps[self.counter / 4 * 4];
        let add = |acc: &Option<Tensor>, c: f64| -> Result<Tensor> {
            let term = model_output.affine(c, 0.0)?;
            match acc {
                Some(a) => a + term,
                None => Ok(term),
            }
        };
        let mut mo = model_output.clone();
        match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(add(&self.cur_model_output, 1.0 / 6.0)?);
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
            }
            1 | 2 => self.cur_model_output = Some(add(&self.cur_model_output, 1.0 / 3.0)?),
            _ => {
                mo = add(&self.cur_model_output, 1.0 / 6.0)?;
                self.cur_model_output = None;
            }
        }
        let cur = self.cur_sample.clone().unwrap_or_else(|| sample.clone());
        let prev = self.prev_sample(&cur, t, prev_t, &mo)?;
        self.counter += 1;
        Ok(prev)
    }

    fn step_plms(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
    ) -> Result<Tensor> {
        if !self.skip_prk && self.ets.len() < 3 {
            return Err(candle_core::Error::Msg(format!(
                "{NAME}: PLMS steps need the PRK warm-up first"
            )));
        }
        let ratio = (self.spacing.num_train / self.n) as f64;
        let mut t = timestep;
        let mut prev_t = timestep - ratio;
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_t = timestep;
            t = timestep + ratio;
        }
        let e = &self.ets;
        let k = e.len();
        let mut x = sample.clone();
        let mo = if k == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output.clone()
        } else if k == 1 && self.counter == 1 {
            x = self
                .cur_sample
                .take()
                .ok_or_else(|| candle_core::Error::Msg(format!("{NAME}: missing first sample")))?;
            sch::lin(&[(0.5, model_output), (0.5, &e[0])])?
        } else if k == 2 {
            sch::lin(&[(1.5, &e[1]), (-0.5, &e[0])])?
        } else if k == 3 {
            sch::lin(&[
                (23.0 / 12.0, &e[2]),
                (-16.0 / 12.0, &e[1]),
                (5.0 / 12.0, &e[0]),
            ])?
        } else {
            sch::lin(&[
                (55.0 / 24.0, &e[k - 1]),
                (-59.0 / 24.0, &e[k - 2]),
                (37.0 / 24.0, &e[k - 3]),
                (-9.0 / 24.0, &e[k - 4]),
            ])?
        };
        let prev = self.prev_sample(&x, t, prev_t, &mo)?;
        self.counter += 1;
        Ok(prev)
    }

    /// Formula (9) of the PNDM paper: x_{t-δ} from x_t and the (combined) noise estimate.
    fn prev_sample(
        &self,
        sample: &Tensor,
        t: f64,
        prev_t: f64,
        model_output: &Tensor,
    ) -> Result<Tensor> {
        let a_t = self.table.alpha(t)?;
        let a_prev = self.table.alpha_prev(prev_t, self.final_ac)?;
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let mo = if self.v_prediction {
            sch::lin(&[(a_t.sqrt(), model_output), (b_t.sqrt(), sample)])?
        } else {
            model_output.clone()
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        sch::lin(&[(sample_coeff, sample), (-(a_prev - a_t) / denom, &mo)])
    }
}
