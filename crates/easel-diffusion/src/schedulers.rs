//! Diffusion schedulers: the diffusers algorithms (DDIM, DDPM, PNDM/PLMS, Euler, Euler
//! ancestral, Heun, LMS, KDPM2, KDPM2 ancestral, DPM-Solver multistep and singlestep, DEIS,
//! UniPC, LCM, TCD, and for flow-matching models FlowMatchEuler and DPM-Solver with flow
//! sigmas) behind one `Scheduler` value, configured from a diffusers `scheduler_config.json`
//! and checked step by step against diffusers' own tensors (`tests/schedulers.rs`, fixtures
//! in `shared/fixtures/parity` and `shared/fixtures/parity-sana`).
//!
//! How a pipeline drives it:
//!
//! ```ignore
//! let mut s = Scheduler::new(kind, SchedulerConfig::from_file(path)?)?;
//! s.set_timesteps(steps)?;
//! s.set_begin_index(s.begin_index_for_strength(strength)); // img2img; 0 for txt2img
//! let mut latents = match image_latents {
//!     Some(img) => s.add_noise(&img, &noise, 0)?,
//!     None => noise.affine(s.init_noise_sigma(), 0.0)?,
//! };
//! for (i, &t) in s.timesteps().to_vec().iter().enumerate() {
//!     let x = s.scale_model_input(&latents, i)?;
//!     let eps = unet(&x, t)?; // + classifier-free guidance
//!     latents = s.step(&eps, i, &latents, &mut rng)?;
//! }
//! ```
//!
//! Flow-matching models (Sana, FLUX) start from `noise` unscaled (`init_noise_sigma` is 1),
//! give the model the (fractional for FlowMatchEuler, integer for DPM-Solver) timestep, and
//! noise an img2img start with `add_noise` (`σ·noise + (1 − σ)·x`). FLUX's schedule takes
//! custom sigmas and a resolution-dependent `mu`: `set_timesteps_with(n, &TimestepOptions {
//! sigmas, mu: Some(config.calculate_shift(seq_len)) })`. `prediction_type` flow_prediction
//! is taken by the DPM-Solvers only (FlowMatchEuler always reads a velocity); every other
//! class rejects it.
//!
//! Indices: after `set_begin_index(b)`, `step_index` i (in `scale_model_input`, `step`,
//! `add_noise`) means loop iteration i, i.e. entry `b + i` of the full schedule, and
//! `timesteps()` lists the loop's timesteps (`all_timesteps()` the full schedule). Steps must be
//! taken in order (multistep solvers keep history); `set_timesteps` and `set_begin_index`
//! start over.
//!
//! Each scheduler lives in its own file with its config defaults next to its code and
//! implements `Solver` (its schedule and its step); the shared schedule math and the `Table`
//! that answers the common methods are in `schedule.rs`, the base of the sigma (k-diffusion)
//! schedulers in `ve.rs`, what the DPM-Solver family shares in `multistep.rs` (flow sigmas
//! included), the config parsing in `config.rs`; the name table is `easel_core::scheduler`.

mod config;
mod ddim;
mod ddpm;
mod deis;
mod dpm_multistep;
mod dpm_singlestep;
mod euler;
mod flow_euler;
mod heun;
mod kdpm2;
mod lcm;
mod lms;
mod multistep;
mod pndm;
mod schedule;
mod tcd;
mod unipc;
mod ve;

use candle_core::{Result, Tensor};

use crate::noise::NoiseSource;

pub use config::{
    quote_non_finite, AlgorithmType, BetaSchedule, FinalSigmasType, InterpolationType,
    PredictionType, SchedulerConfig, SchedulerError, SolverType, TimeShiftType, TimestepSpacing,
    TimestepType, VarianceType,
};
pub use easel_core::scheduler::{resolve, SchedulerKind, SchedulerName, SCHEDULER_NAMES};
pub use flow_euler::calculate_shift;

/// diffusers' extra `set_timesteps` arguments of the flow-matching schedulers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimestepOptions {
    /// Dynamic shifting (`use_dynamic_shifting`): FlowMatchEuler's time-shift exponent (see
    /// `calculate_shift`); for DPM-Solver with flow sigmas, `flow_shift` becomes `e^mu`.
    pub mu: Option<f64>,
    /// FlowMatchEuler: the sigmas before shifting, one per inference step (FLUX:
    /// `linspace(1, 1/n, n)`).
    pub sigmas: Option<Vec<f64>>,
}

impl TimestepOptions {
    fn is_empty(&self) -> bool {
        self.mu.is_none() && self.sigmas.is_none()
    }
}

/// What each scheduler implements: its schedule (`table`, filled by `set_timesteps`) and its
/// step. `set_timesteps` is followed by `reset`, which clears the stepping state.
trait Solver: Send + Sync {
    fn table(&self) -> &schedule::Table;
    fn set_timesteps(&mut self, n: usize) -> std::result::Result<(), SchedulerError>;
    /// `set_timesteps` with `mu` / custom sigmas; only the flow schedulers take them.
    fn set_timesteps_with(
        &mut self,
        n: usize,
        opts: &TimestepOptions,
    ) -> std::result::Result<(), SchedulerError> {
        if opts.is_empty() {
            self.set_timesteps(n)
        } else {
            Err(SchedulerError::schedule(
                self.table().name,
                "mu and custom sigmas are taken by the flow-matching schedulers only",
            ))
        }
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        idx: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor>;
    /// Clears the stepping state (multistep history, half-done steps).
    fn reset(&mut self) {}
    /// Model calls per step (diffusers' `order`).
    fn order(&self) -> usize {
        1
    }
    fn scale_model_input(&self, x: &Tensor, idx: usize) -> Result<Tensor> {
        self.table().scale_model_input(x, idx)
    }
}

/// One scheduler of any kind, with its schedule and its stepping state.
pub struct Scheduler {
    kind: SchedulerKind,
    config: SchedulerConfig,
    inner: Box<dyn Solver>,
    /// Requested `num_inference_steps` (None before `set_timesteps`).
    steps: Option<usize>,
    begin: usize,
    taken: usize,
}

impl Scheduler {
    /// Builds a scheduler; unsupported config values are rejected here, naming the field.
    pub fn new(
        kind: SchedulerKind,
        config: SchedulerConfig,
    ) -> std::result::Result<Self, SchedulerError> {
        let c = &config;
        let takes_flow_prediction = matches!(
            kind,
            SchedulerKind::DpmSolverMultistep
                | SchedulerKind::DpmSolverSinglestep
                | SchedulerKind::FlowMatchEuler
        );
        if c.prediction_type == PredictionType::Flow && !takes_flow_prediction {
            return Err(SchedulerError::unsupported_because(
                kind.class_name(),
                "prediction_type",
                "flow_prediction",
                "flow-matching models need FlowMatchEulerDiscreteScheduler or the DPM-Solvers",
            ));
        }
        let inner: Box<dyn Solver> = match kind {
            SchedulerKind::Ddim => Box::new(ddim::Ddim::new(c)?),
            SchedulerKind::Ddpm => Box::new(ddpm::Ddpm::new(c)?),
            SchedulerKind::Pndm => Box::new(pndm::Pndm::new(c)?),
            SchedulerKind::Euler => Box::new(euler::Euler::new(c)?),
            SchedulerKind::EulerAncestral => Box::new(euler::EulerAncestral::new(c)?),
            SchedulerKind::Heun => Box::new(heun::Heun::new(c)?),
            SchedulerKind::Lms => Box::new(lms::Lms::new(c)?),
            SchedulerKind::DpmSolverMultistep => Box::new(dpm_multistep::DpmMultistep::new(c)?),
            SchedulerKind::DpmSolverSinglestep => Box::new(dpm_singlestep::DpmSinglestep::new(c)?),
            SchedulerKind::KDpm2 => Box::new(kdpm2::KDpm2::new(c)?),
            SchedulerKind::KDpm2Ancestral => Box::new(kdpm2::KDpm2Ancestral::new(c)?),
            SchedulerKind::Deis => Box::new(deis::Deis::new(c)?),
            SchedulerKind::UniPc => Box::new(unipc::UniPc::new(c)?),
            SchedulerKind::Lcm => Box::new(lcm::Lcm::new(c)?),
            SchedulerKind::Tcd => Box::new(tcd::Tcd::new(c)?),
            SchedulerKind::FlowMatchEuler => Box::new(flow_euler::FlowEuler::new(c)?),
        };
        Ok(Scheduler {
            kind,
            config,
            inner,
            steps: None,
            begin: 0,
            taken: 0,
        })
    }

    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Computes the schedule for `num_inference_steps` and resets the stepping state and the
    /// begin index.
    pub fn set_timesteps(
        &mut self,
        num_inference_steps: usize,
    ) -> std::result::Result<(), SchedulerError> {
        self.set_timesteps_with(num_inference_steps, &TimestepOptions::default())
    }

    /// `set_timesteps` with diffusers' `mu` (dynamic shifting) and custom `sigmas` (as many
    /// as `num_inference_steps`); schedulers that do not take them return an error.
    pub fn set_timesteps_with(
        &mut self,
        num_inference_steps: usize,
        opts: &TimestepOptions,
    ) -> std::result::Result<(), SchedulerError> {
        let name = self.kind.class_name();
        if num_inference_steps == 0 {
            return Err(SchedulerError::schedule(
                name,
                "num_inference_steps must be at least 1",
            ));
        }
        if num_inference_steps > self.config.num_train_timesteps {
            return Err(SchedulerError::schedule(
                name,
                format!(
                    "num_inference_steps {num_inference_steps} is larger than num_train_timesteps {}",
                    self.config.num_train_timesteps
                ),
            ));
        }
        self.inner.set_timesteps_with(num_inference_steps, opts)?;
        self.inner.reset();
        self.steps = Some(num_inference_steps);
        self.begin = 0;
        self.taken = 0;
        Ok(())
    }

    /// The loop's timesteps (what the UNet gets, one per loop iteration), from the begin index on.
    pub fn timesteps(&self) -> &[f64] {
        let all = self.all_timesteps();
        &all[self.begin.min(all.len())..]
    }

    /// diffusers' `scheduler.timesteps`: the whole schedule, ignoring the begin index.
    pub fn all_timesteps(&self) -> &[f64] {
        &self.inner.table().timesteps
    }

    /// diffusers' `scheduler.sigmas` (whole schedule, final sigma included) for the schedulers
    /// that have them; interleaved like diffusers' for Heun and KDPM2.
    pub fn sigmas(&self) -> Option<&[f64]> {
        self.inner.table().sigmas()
    }

    /// The factor pure noise is scaled by to start a txt2img loop.
    pub fn init_noise_sigma(&self) -> f64 {
        self.inner.table().init_noise_sigma()
    }

    /// diffusers' `scheduler.order` (2 for Heun and KDPM2, whose loops take two model calls
    /// per step; 1 otherwise).
    pub fn order(&self) -> usize {
        self.inner.order()
    }

    /// img2img: the index of the full schedule the loop starts at for `strength` (diffusers'
    /// `get_timesteps`: `t_start = n - int(n · strength)`, times `order`). 0 before
    /// `set_timesteps`.
    pub fn begin_index_for_strength(&self, strength: f64) -> usize {
        let Some(n) = self.steps else {
            return 0;
        };
        let init = ((n as f64 * strength).max(0.0) as usize).min(n);
        (n - init) * self.order()
    }

    /// Starts the loop at entry `i` of the full schedule, and resets the stepping state.
    pub fn set_begin_index(&mut self, i: usize) {
        self.begin = i;
        self.taken = 0;
        self.inner.reset();
    }

    pub fn begin_index(&self) -> usize {
        self.begin
    }

    /// The UNet input for loop iteration `step_index` (identity for most schedulers; divides by
    /// `sqrt(σ² + 1)` for the sigma ones).
    pub fn scale_model_input(&self, x: &Tensor, step_index: usize) -> Result<Tensor> {
        let idx = self.index(step_index)?;
        let x = schedule::f32t(x)?;
        self.inner.scale_model_input(&x, idx)
    }

    /// One scheduler step of loop iteration `step_index`: from the model output (after
    /// guidance) and the current latents to the next latents. Schedulers that add noise draw it
    /// from `noise`, in diffusers' order.
    pub fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let idx = self.index(step_index)?;
        if step_index != self.taken {
            return Err(candle_core::Error::Msg(format!(
                "{}: step {step_index} called but step {} is next (steps must be taken in order)",
                self.kind.class_name(),
                self.taken
            )));
        }
        let mo = schedule::f32t(model_output)?;
        let x = schedule::f32t(sample)?;
        let out = self.inner.step(&mo, idx, &x, noise)?;
        self.taken += 1;
        Ok(out)
    }

    /// Noises `original` to the noise level of loop iteration `step_index` (img2img start:
    /// `step_index` 0). Flow schedulers: diffusers' `scale_noise`, `σ·noise + (1 − σ)·x`.
    pub fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> Result<Tensor> {
        let idx = self.index(step_index)?;
        let o = schedule::f32t(original)?;
        let n = schedule::f32t(noise)?;
        self.inner.table().add_noise(&o, &n, idx)
    }

    fn index(&self, step_index: usize) -> Result<usize> {
        if self.steps.is_none() {
            return Err(candle_core::Error::Msg(format!(
                "{}: set_timesteps must be called first",
                self.kind.class_name()
            )));
        }
        let idx = self.begin + step_index;
        let len = self.all_timesteps().len();
        if idx >= len {
            return Err(candle_core::Error::Msg(format!(
                "{}: step index {step_index} (schedule entry {idx}) is past the end of the {len}-entry schedule",
                self.kind.class_name()
            )));
        }
        Ok(idx)
    }
}
