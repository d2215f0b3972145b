//! The schedule math the schedulers share: training betas and `alphas_cumprod`, the training
//! sigmas, the timestep spacings, sigma conversions (interpolation, Karras, exponential, Lu
//! lambdas, sigma → timestep), numpy/torch-compatible `linspace`/`arange`, the x0/noise
//! conversions of a model output, small tensor helpers (linear combinations, clipping, dynamic
//! thresholding), and `Table`: a scheduler's timesteps and noise levels, from which the
//! common `Scheduler` methods (sigmas, initial noise, input scaling, `add_noise`) are answered.
//!
//! Precision: diffusers builds its schedules with float32 torch tensors (betas, `alphas_cumprod`,
//! the training sigmas) and float64 numpy arrays in between, then stores `sigmas` as float32.
//! Where a float32 rounding changes results beyond the parity tolerance (the smallest sigmas
//! come from `1 - alphas_cumprod` near 1) it is reproduced with `f32r`; all other scalar
//! math is float64. Tensors are float32.

use candle_core::{DType, Result, Tensor};

use super::config::{
    BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, SchedulerError, TimestepSpacing,
};

/// Rounds to float32 precision (what storing in a float32 tensor does).
pub(crate) fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

/// The beta defaults of one diffusers class (they differ between classes).
pub(crate) struct BetaDefaults {
    pub start: f64,
    pub end: f64,
    pub schedule: BetaSchedule,
}

/// diffusers' default for most classes: linear 0.0001 → 0.02.
pub(crate) const LINEAR_DEFAULTS: BetaDefaults = BetaDefaults {
    start: 0.0001,
    end: 0.02,
    schedule: BetaSchedule::Linear,
};

/// `alphas_cumprod` (float32 values) from the config's betas. `zero_snr`: the class honours
/// `rescale_betas_zero_snr` (the caller sets the last entry to 2^-24 where diffusers does).
pub(crate) fn alphas_cumprod(
    cfg: &SchedulerConfig,
    d: &BetaDefaults,
    zero_snr: bool,
) -> std::result::Result<Vec<f64>, SchedulerError> {
    let n = cfg.num_train_timesteps;
    if n < 2 {
        return Err(SchedulerError::InvalidField {
            field: "num_train_timesteps".into(),
            value: n.to_string(),
            reason: "must be at least 2".into(),
        });
    }
    let start = cfg.beta_start.unwrap_or(d.start);
    let end = cfg.beta_end.unwrap_or(d.end);
    let mut betas: Vec<f32> = if let Some(tb) = &cfg.trained_betas {
        if tb.len() != n {
            return Err(SchedulerError::InvalidField {
                field: "trained_betas".into(),
                value: format!("[{} values]", tb.len()),
                reason: format!("expected num_train_timesteps = {n} values"),
            });
        }
        tb.iter().map(|&b| b as f32).collect()
    } else {
        match cfg.beta_schedule.unwrap_or(d.schedule) {
            BetaSchedule::Linear => torch_linspace_f32(start, end, n),
            BetaSchedule::ScaledLinear => torch_linspace_f32(start.sqrt(), end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(n, |t| {
                ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                    .cos()
                    .powi(2)
            }),
            BetaSchedule::Exp => betas_for_alpha_bar(n, |t| (t * -12.0).exp()),
            BetaSchedule::Laplace => betas_for_alpha_bar(n, |t| {
                let lmb = -0.5 * (0.5 - t).signum() * (1.0 - 2.0 * (0.5 - t).abs() + 1e-6).ln();
                let snr = lmb.exp();
                (snr / (1.0 + snr)).sqrt()
            }),
            BetaSchedule::Sigmoid => torch_linspace_f32(-6.0, 6.0, n)
                .into_iter()
                .map(|x| {
                    let s = 1.0 / (1.0 + (-(x as f64)).exp());
                    (s * (end - start) + start) as f32
                })
                .collect(),
        }
    };
    if zero_snr && cfg.rescale_betas_zero_snr {
        betas = rescale_zero_terminal_snr(&betas);
    }
    let alphas: Vec<f32> = betas.iter().map(|&b| 1.0 - b).collect();
    Ok(cumprod_f32(&alphas))
}

/// `torch.linspace(start, end, n, dtype=float32)` as PyTorch's CPU kernel computes it
/// (float32 step, the second half counted back from `end`).
pub(crate) fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n == 1 {
        return vec![s];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                s + step * i as f32
            } else {
                e - step * (n - i - 1) as f32
            }
        })
        .collect()
}

fn betas_for_alpha_bar(n: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `torch.cumprod` on CPU: accumulated in float64, each output rounded to float32.
fn cumprod_f32(alphas: &[f32]) -> Vec<f64> {
    let mut p = 1.0f64;
    alphas
        .iter()
        .map(|&a| {
            p *= a as f64;
            f32r(p)
        })
        .collect()
}

/// Lin et al. 2023, algorithm 1: rescale betas to zero terminal SNR (float32 like diffusers).
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|&b| 1.0 - b).collect();
    let mut sq: Vec<f32> = cumprod_f32(&alphas)
        .iter()
        .map(|&a| (a as f32).sqrt())
        .collect();
    let s0 = sq[0];
    let st = sq[sq.len() - 1];
    let scale = s0 / (s0 - st);
    for v in &mut sq {
        *v = (*v - st) * scale;
    }
    let bar: Vec<f32> = sq.iter().map(|&v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for i in 1..bar.len() {
        out.push(1.0 - bar[i] / bar[i - 1]);
    }
    out
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32, ascending in t.
pub(crate) fn train_sigmas(ac: &[f64]) -> Vec<f64> {
    ac.iter()
        .map(|&a| {
            let a = a as f32;
            ((1.0 - a) / a).sqrt() as f64
        })
        .collect()
}

/// `np.log` of the float32 training sigmas (a float32 array).
pub(crate) fn log_sigmas(sigmas: &[f64]) -> Vec<f64> {
    sigmas.iter().map(|&s| f32r(s.ln())).collect()
}

/// `np.linspace(start, stop, num, endpoint)` (float64).
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    if div == 0 {
        return vec![start; num];
    }
    let step = (stop - start) / div as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if endpoint && num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// `np.arange(start, stop, step)` for a negative float step, as numpy fills it.
pub(crate) fn np_arange_down(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len)
        .map(|i| {
            if i == 0 {
                start
            } else {
                start + i as f64 * delta
            }
        })
        .collect()
}

/// numpy's rounding (half to even).
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// A class's timestep spacing (the config's, else the class default) and the config values
/// the spacings read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spacing {
    pub kind: TimestepSpacing,
    pub num_train: usize,
    pub steps_offset: usize,
}

impl Spacing {
    pub(crate) fn new(cfg: &SchedulerConfig, default: TimestepSpacing) -> Self {
        Spacing {
            kind: cfg.timestep_spacing.unwrap_or(default),
            num_train: cfg.num_train_timesteps,
            steps_offset: cfg.steps_offset,
        }
    }

    /// The timesteps of schedulers with one entry per inference step (DDIM, DDPM, PNDM, Euler,
    /// Heun, LMS, KDPM2), descending. `linspace` values are rounded to integers when
    /// `round_linspace` (the integer schedulers) and to float32 otherwise.
    pub(crate) fn spaced(&self, n: usize, round_linspace: bool) -> Vec<f64> {
        let num_train = self.num_train;
        match self.kind {
            TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n, true)
                .into_iter()
                .rev()
                .map(|t| if round_linspace { np_round(t) } else { f32r(t) })
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = num_train / n;
                (0..n)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(num_train as f64, num_train, n),
        }
    }

    /// The integer timesteps of the multistep solvers (DPM-Solver, UniPC, DEIS): `n + 1` points
    /// with the last dropped. `last_timestep` is `num_train` unless `lambda_min_clipped` cuts it.
    pub(crate) fn solver(&self, n: usize, last_timestep: usize) -> Vec<f64> {
        match self.kind {
            TimestepSpacing::Linspace => {
                let mut t: Vec<f64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1, true)
                    .into_iter()
                    .map(np_round)
                    .rev()
                    .collect();
                t.pop();
                t
            }
            TimestepSpacing::Leading => {
                let ratio = last_timestep / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(last_timestep as f64, self.num_train, n),
        }
    }
}

/// Trailing spacing: `round(arange(from, 0, -num_train / n)) - 1`.
fn trailing(from: f64, num_train: usize, n: usize) -> Vec<f64> {
    np_arange_down(from, 0.0, -(num_train as f64 / n as f64))
        .into_iter()
        .map(|t| np_round(t) - 1.0)
        .collect()
}

/// `np.interp(x, arange(len(fp)), fp)`.
pub(crate) fn interp(x: f64, fp: &[f64]) -> f64 {
    let n = fp.len();
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return fp[0];
    }
    if x >= (n - 1) as f64 {
        return fp[n - 1];
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return fp[j];
    }
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

/// diffusers' `_sigma_to_t`: the fractional training timestep of `sigma`, by linear
/// interpolation in log-sigma (`log_sigmas` ascending in t).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    if sigma.is_nan() {
        return f64::NAN;
    }
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // argmax of cumsum(dists >= 0): the last index with log_sigmas[i] <= log_sigma, else 0.
    let low = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let high = low + 1;
    let (lo, hi) = (log_sigmas[low], log_sigmas[high]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * high as f64
}

/// Karras et al. (2022) sigmas, rho = 7, from `sigma_max` down to `sigma_min`.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n, true)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// Sigmas evenly spaced in log space, from `sigma_max` down to `sigma_min`.
pub(crate) fn exponential_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), n, true)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The training noise levels of the sigma-based schedulers: `alphas_cumprod`, the sigmas
/// (ascending in t, float32 values) and their logs.
pub(crate) struct TrainSigmas {
    pub ac: Vec<f64>,
    pub sigmas: Vec<f64>,
    pub log: Vec<f64>,
}

impl TrainSigmas {
    /// `zero_snr`: the class honours `rescale_betas_zero_snr` (and then, like diffusers, sets
    /// the last `alphas_cumprod` entry to 2^-24 so the largest sigma stays finite).
    pub(crate) fn new(
        cfg: &SchedulerConfig,
        d: &BetaDefaults,
        zero_snr: bool,
    ) -> std::result::Result<Self, SchedulerError> {
        let mut ac = alphas_cumprod(cfg, d, zero_snr)?;
        if zero_snr && cfg.rescale_betas_zero_snr {
            if let Some(last) = ac.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let sigmas = train_sigmas(&ac);
        let log = log_sigmas(&sigmas);
        Ok(TrainSigmas { ac, sigmas, log })
    }

    /// The smallest training sigma (t = 0).
    pub(crate) fn min(&self) -> f64 {
        self.sigmas[0]
    }

    /// The largest training sigma (t = N − 1).
    pub(crate) fn max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// The training sigma at a fractional timestep.
    pub(crate) fn at(&self, t: f64) -> f64 {
        interp(t, &self.sigmas)
    }
}

/// How a sigma scheduler spaces its sigmas: interpolated at the spaced timesteps, or one of
/// the conversions (whose timesteps then come from the sigmas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigmaSchedule {
    Interpolated,
    Karras,
    Exponential,
    LuLambdas,
}

impl SigmaSchedule {
    /// From `use_karras_sigmas`, `use_exponential_sigmas` and (when the class takes it)
    /// `use_lu_lambdas`, in that order of precedence.
    pub(crate) fn from_config(cfg: &SchedulerConfig, takes_lu: bool) -> Self {
        if cfg.use_karras_sigmas {
            SigmaSchedule::Karras
        } else if cfg.use_exponential_sigmas {
            SigmaSchedule::Exponential
        } else if takes_lu && cfg.use_lu_lambdas {
            SigmaSchedule::LuLambdas
        } else {
            SigmaSchedule::Interpolated
        }
    }

    /// The converted sigmas (from `hi` down to `lo`; Lu lambdas span the training range) and
    /// their fractional timesteps, rounded to integers when `round_t` (Karras and Lu only).
    /// None when interpolated.
    pub(crate) fn convert(
        self,
        train: &TrainSigmas,
        lo: f64,
        hi: f64,
        n: usize,
        round_t: bool,
    ) -> Option<(Vec<f64>, Vec<f64>)> {
        let sig = match self {
            SigmaSchedule::Interpolated => return None,
            SigmaSchedule::Karras => karras_sigmas(lo, hi, n),
            SigmaSchedule::Exponential => exponential_sigmas(lo, hi, n),
            // Lu et al.'s uniform-lambda schedule over ln σ, as diffusers computes it.
            SigmaSchedule::LuLambdas => {
                np_linspace(train.log[train.log.len() - 1], train.log[0], n, true)
                    .into_iter()
                    .map(f64::exp)
                    .collect()
            }
        };
        let round = round_t && self != SigmaSchedule::Exponential;
        let ts = sig
            .iter()
            .map(|&s| {
                let t = sigma_to_t(s, &train.log);
                if round {
                    np_round(t)
                } else {
                    t
                }
            })
            .collect();
        Some((ts, sig))
    }
}

/// The sigma appended after the last step: 0, or the smallest training sigma.
pub(crate) fn final_sigma(kind: FinalSigmasType, sigma_min: f64) -> f64 {
    match kind {
        FinalSigmasType::Zero => 0.0,
        FinalSigmasType::SigmaMin => sigma_min,
    }
}

/// (alpha_t, sigma_t) of the variance-preserving process at a VE sigma.
pub(crate) fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// How a scheduler sigma reads as a point `x = α·x0 + σ_t·noise`: the VE sigma of a
/// variance-preserving process (`α = 1/sqrt(σ² + 1)`, `σ_t = σ·α`), or a flow-matching sigma
/// (`α = 1 − σ`, `σ_t = σ`; DPM-Solver's `use_flow_sigmas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Vp,
    Flow,
}

impl Param {
    pub(crate) fn alpha_sigma(self, sigma: f64) -> (f64, f64) {
        match self {
            Param::Vp => alpha_sigma(sigma),
            Param::Flow => (1.0 - sigma, sigma),
        }
    }

    /// λ = ln α − ln σ_t (+∞ at σ = 0).
    pub(crate) fn lambda(self, sigma: f64) -> f64 {
        let (a, s) = self.alpha_sigma(sigma);
        a.ln() - s.ln()
    }
}

/// λ = ln α − ln σ of a VE sigma, with its α and σ.
pub(crate) fn lambda(sigma: f64) -> (f64, f64, f64) {
    let (a, s) = alpha_sigma(sigma);
    (a.ln() - s.ln(), a, s)
}

/// Σ cᵢ·xᵢ over tensors of one shape (float32).
pub(crate) fn lin(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for &(c, t) in terms {
        let term = t.affine(c, 0.0)?;
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    acc.ok_or_else(|| candle_core::Error::Msg("empty linear combination".into()))
}

/// Float32 view of a tensor (a no-op when it already is).
pub(crate) fn f32t(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// How a predicted x0 is limited before use (`thresholding` wins over `clip_sample`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum X0Limit {
    None,
    Clip(f64),
    Threshold { ratio: f64, max: f64 },
}

impl X0Limit {
    pub(crate) fn from_config(cfg: &SchedulerConfig, clip_default: bool) -> Self {
        if cfg.thresholding {
            X0Limit::Threshold {
                ratio: cfg.dynamic_thresholding_ratio,
                max: cfg.sample_max_value,
            }
        } else if cfg.clip_sample.unwrap_or(clip_default) {
            X0Limit::Clip(cfg.clip_sample_range)
        } else {
            X0Limit::None
        }
    }

    /// Thresholding only (classes without `clip_sample`).
    pub(crate) fn threshold_only(cfg: &SchedulerConfig) -> Self {
        if cfg.thresholding {
            X0Limit::Threshold {
                ratio: cfg.dynamic_thresholding_ratio,
                max: cfg.sample_max_value,
            }
        } else {
            X0Limit::None
        }
    }

    pub(crate) fn apply(self, x0: Tensor) -> Result<Tensor> {
        match self {
            X0Limit::None => Ok(x0),
            X0Limit::Clip(r) => x0.clamp(-r, r),
            X0Limit::Threshold { ratio, max } => threshold_sample(&x0, ratio, max),
        }
    }
}

/// Imagen's dynamic thresholding: per batch item, s = the `ratio` quantile of |x| clamped to
/// [1, max]; x is clamped to [-s, s] and divided by s.
pub(crate) fn threshold_sample(x: &Tensor, ratio: f64, max_value: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let b = dims.first().copied().unwrap_or(1);
    let flat = f32t(x)?.reshape((b, ()))?;
    let rows: Vec<Vec<f32>> = flat.abs()?.to_vec2()?;
    let mut s = Vec::with_capacity(b);
    for mut row in rows {
        row.sort_by(|a, b| a.total_cmp(b));
        let pos = ratio * (row.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let q = row[lo] as f64 + (row[hi] as f64 - row[lo] as f64) * (pos - lo as f64);
        s.push(q.clamp(1.0, max_value) as f32);
    }
    let s = Tensor::from_vec(s, (b, 1), x.device())?;
    flat.broadcast_minimum(&s)?
        .broadcast_maximum(&s.neg()?)?
        .broadcast_div(&s)?
        .reshape(dims)
}

/// 8-point Gauss–Legendre nodes and weights on [-1, 1] (exact for polynomials of degree ≤ 15).
const GAUSS_LEGENDRE_8: [(f64, f64); 8] = [
    (-0.960_289_856_497_536_3, 0.101_228_536_290_376_26),
    (-0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (-0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (-0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (0.960_289_856_497_536_3, 0.101_228_536_290_376_26),
];

/// ∫ f from a to b. Used for LMS, whose integrands are polynomials of degree ≤ 3, so the
/// 8-point rule is exact (scipy's `quad` is exact for them as well).
pub(crate) fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let half = 0.5 * (b - a);
    let mid = 0.5 * (a + b);
    half * GAUSS_LEGENDRE_8
        .iter()
        .map(|&(x, w)| w * f(mid + half * x))
        .sum::<f64>()
}

/// Solves `a · x = b` (small dense system, partial pivoting). UniPC's coefficients.
pub(crate) fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// `alphas_cumprod[t]` for an integer timestep, or an error if it is outside the table.
pub(crate) fn ac_at(ac: &[f64], t: f64, name: &str) -> Result<f64> {
    if t < 0.0 || t.fract() != 0.0 || t as usize >= ac.len() {
        return Err(candle_core::Error::Msg(format!(
            "{name}: timestep {t} is outside the training schedule (0..{})",
            ac.len()
        )));
    }
    Ok(ac[t as usize])
}

/// x0 predicted from a model output at a point `x = a·x0 + s·ε` of the VP process.
pub(crate) fn x0_of(
    pred: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    a: f64,
    s: f64,
) -> Result<Tensor> {
    match pred {
        PredictionType::Epsilon => lin(&[(1.0 / a, sample), (-s / a, model_output)]),
        PredictionType::Sample => Ok(model_output.clone()),
        PredictionType::VPrediction => lin(&[(a, sample), (-s, model_output)]),
        // exact for the flow parametrization (s = σ); DPM-Solver passes σ itself as `s`
        PredictionType::Flow => lin(&[(1.0, sample), (-s, model_output)]),
    }
}

/// The noise ε predicted from a model output at a point `x = a·x0 + s·ε` of the VP process.
pub(crate) fn eps_of(
    pred: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    a: f64,
    s: f64,
) -> Result<Tensor> {
    match pred {
        PredictionType::Epsilon => Ok(model_output.clone()),
        PredictionType::Sample => lin(&[(1.0 / s, sample), (-a / s, model_output)]),
        PredictionType::VPrediction => lin(&[(a, model_output), (s, sample)]),
        // noise = x0 + v = x + (1 − σ)·v, for the flow parametrization (a = 1 − σ)
        PredictionType::Flow => lin(&[(1.0, sample), (a, model_output)]),
    }
}

/// Predicted x0 and noise from a model output at `alpha_prod` (variance-preserving form).
pub(crate) fn vp_x0_eps(
    pred: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    alpha_prod: f64,
) -> Result<(Tensor, Tensor)> {
    let (a, s) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    Ok((
        x0_of(pred, model_output, sample, a, s)?,
        eps_of(pred, model_output, sample, a, s)?,
    ))
}

/// `sqrt(a)·x0 + sqrt(1 - a)·noise`: the forward process of the alpha-based schedulers.
pub(crate) fn vp_add_noise(original: &Tensor, noise: &Tensor, alpha_prod: f64) -> Result<Tensor> {
    lin(&[
        (alpha_prod.sqrt(), original),
        ((1.0 - alpha_prod).sqrt(), noise),
    ])
}

/// `t / c` with `c` a float32 scalar (a true division, as torch does with a scalar tensor).
pub(crate) fn div_scalar(t: &Tensor, c: f64) -> Result<Tensor> {
    t.broadcast_div(&Tensor::new(&[c as f32], t.device())?)
}

/// x0 predicted by a sigma (variance-exploding) scheduler at `sigma` from the model output;
/// the scalar factors in float32 as diffusers computes them.
pub(crate) fn ve_x0(
    pred: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f64,
) -> Result<Tensor> {
    match pred {
        PredictionType::Epsilon => sample - model_output.affine(sigma, 0.0)?,
        PredictionType::VPrediction => {
            let s = sigma as f32;
            let s2 = s * s + 1.0;
            model_output.affine((-s / s2.sqrt()) as f64, 0.0)? + div_scalar(sample, s2 as f64)?
        }
        PredictionType::Sample => Ok(model_output.clone()),
        PredictionType::Flow => Err(candle_core::Error::Msg(
            "flow_prediction is not supported by the sigma schedulers".into(),
        )),
    }
}

/// `(sample - x0) / sigma`: the ODE derivative of the sigma schedulers.
pub(crate) fn ve_derivative(sample: &Tensor, x0: &Tensor, sigma: f64) -> Result<Tensor> {
    div_scalar(&(sample - x0)?, sigma)
}

/// Rejects the sigma options no scheduler here implements.
pub(crate) fn reject_unsupported_sigmas(
    cfg: &SchedulerConfig,
    name: &'static str,
) -> std::result::Result<(), SchedulerError> {
    if cfg.use_beta_sigmas {
        return Err(SchedulerError::unsupported_because(
            name,
            "use_beta_sigmas",
            true,
            "beta sigmas are not implemented; use use_karras_sigmas or use_exponential_sigmas",
        ));
    }
    let chosen = [cfg.use_karras_sigmas, cfg.use_exponential_sigmas]
        .iter()
        .filter(|&&b| b)
        .count();
    if chosen > 1 {
        return Err(SchedulerError::unsupported_because(
            name,
            "use_exponential_sigmas",
            true,
            "only one of use_karras_sigmas and use_exponential_sigmas can be set",
        ));
    }
    Ok(())
}

/// `x / sqrt(σ² + 1)` (float32 scalar, true division, as diffusers).
pub(crate) fn ve_scale(x: &Tensor, sigma: f64) -> Result<Tensor> {
    let s = sigma as f32;
    div_scalar(x, (s * s + 1.0).sqrt() as f64)
}

/// `alphas_cumprod` "before" the first training step: 1 with `set_alpha_to_one` (whose class
/// default is `default`), else `alphas_cumprod[0]`.
pub(crate) fn final_alpha(cfg: &SchedulerConfig, ac: &[f64], default: bool) -> f64 {
    if cfg.set_alpha_to_one.unwrap_or(default) {
        1.0
    } else {
        ac[0]
    }
}

/// How a scheduler expresses its noise levels.
pub(crate) enum Levels {
    /// `alphas_cumprod` by training timestep (DDIM, DDPM, PNDM, LCM, TCD): no sigmas, the UNet
    /// input unscaled, noise added at the entry's timestep.
    Alphas(Vec<f64>),
    /// Variance-exploding sigmas (Euler, Heun, LMS, KDPM2): the UNet input divided by
    /// `sqrt(σ² + 1)`, `x0 + σ·noise`; the spacing decides `init_noise_sigma`.
    Ve(TimestepSpacing),
    /// VE sigmas read as a VP process (the multistep solvers): `α·x0 + σ_vp·noise`.
    Vp,
    /// Flow-matching sigmas (FlowMatchEuler, DPM-Solver with `use_flow_sigmas`): the model
    /// input unscaled, `(1 − σ)·x0 + σ·noise` (diffusers' `scale_noise`), initial noise 1.
    Flow,
}

/// A scheduler's schedule: its timesteps and noise levels (`sigmas`, with the final one, empty
/// for `Levels::Alphas`). Answers the methods every scheduler has in common.
pub(crate) struct Table {
    pub name: &'static str,
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f64>,
    pub levels: Levels,
}

impl Table {
    pub(crate) fn new(name: &'static str, levels: Levels) -> Self {
        Table {
            name,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            levels,
        }
    }

    pub(crate) fn sigmas(&self) -> Option<&[f64]> {
        match self.levels {
            Levels::Alphas(_) => None,
            _ => Some(&self.sigmas),
        }
    }

    /// σ_max for the VE schedulers with linspace/trailing spacing, `sqrt(σ_max² + 1)` for
    /// leading; 1 otherwise.
    pub(crate) fn init_noise_sigma(&self) -> f64 {
        let Levels::Ve(spacing) = self.levels else {
            return 1.0;
        };
        let max = self
            .sigmas
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        match spacing {
            TimestepSpacing::Leading => f32r((max * max + 1.0).sqrt()),
            _ => max,
        }
    }

    pub(crate) fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        match self.levels {
            Levels::Ve(_) => ve_scale(x, self.sigmas[idx]),
            _ => Ok(x.clone()),
        }
    }

    pub(crate) fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        idx: usize,
    ) -> Result<Tensor> {
        match &self.levels {
            Levels::Alphas(_) => vp_add_noise(original, noise, self.alpha(self.timesteps[idx])?),
            Levels::Ve(_) => original + noise.affine(self.sigmas[idx], 0.0)?,
            Levels::Vp => {
                let (a, s) = alpha_sigma(self.sigmas[idx]);
                lin(&[(a, original), (s, noise)])
            }
            Levels::Flow => {
                // float32 like diffusers: σ and 1 − σ rounded before the products
                let s = self.sigmas[idx] as f32;
                lin(&[(s as f64, noise), ((1.0 - s) as f64, original)])
            }
        }
    }

    /// `alphas_cumprod[t]` (alpha schedulers), or an error naming the scheduler.
    pub(crate) fn alpha(&self, t: f64) -> Result<f64> {
        match &self.levels {
            Levels::Alphas(ac) => ac_at(ac, t, self.name),
            _ => Err(candle_core::Error::Msg(format!(
                "{}: no alphas_cumprod table",
                self.name
            ))),
        }
    }

    /// `alphas_cumprod[prev_t]`, or `final_alpha` when `prev_t` is before the first step.
    pub(crate) fn alpha_prev(&self, prev_t: f64, final_alpha: f64) -> Result<f64> {
        if prev_t >= 0.0 {
            self.alpha(prev_t)
        } else {
            Ok(final_alpha)
        }
    }
}
