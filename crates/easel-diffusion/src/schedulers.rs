//! Diffusion schedulers: the diffusers algorithms (DDIM, DDPM, PNDM/PLMS, Euler, Euler
//! ancestral, Heun, LMS, KDPM2, KDPM2 ancestral, DPM-Solver multistep and singlestep, DEIS,
//! UniPC, LCM, TCD) behind one `Scheduler` value, configured from a diffusers
//! `scheduler_config.json` and checked step by step against diffusers' own tensors
//! (`tests/schedulers.rs`, fixtures in `shared/fixtures/parity`).
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
//! Indices: after `set_begin_index(b)`, `step_index` i (in `scale_model_input`, `step`,
//! `add_noise`) means loop iteration i, i.e. entry `b + i` of the full schedule, and
//! `timesteps()` lists the loop's timesteps (`all_timesteps()` the full schedule). Steps must be
//! taken in order (multistep solvers keep history); `set_timesteps` and `set_begin_index`
//! start over.
//!
//! Each scheduler lives in its own file with its config defaults next to its code; the shared
//! schedule math is in `schedule.rs`, the config parsing in `config.rs`, the name table in
//! `names.rs`.

mod config;
mod ddim;
mod ddpm;
mod deis;
mod dpm_multistep;
mod dpm_singlestep;
mod euler;
mod heun;
mod kdpm2;
mod lcm;
mod lms;
mod names;
mod pndm;
mod schedule;
mod tcd;
mod unipc;

use candle_core::{Result, Tensor};

use crate::noise::NoiseSource;

pub use config::{
    AlgorithmType, BetaSchedule, FinalSigmasType, InterpolationType, PredictionType,
    SchedulerConfig, SchedulerError, SolverType, TimestepSpacing, TimestepType, VarianceType,
};
pub use names::{resolve, SchedulerName, SCHEDULER_NAMES};

/// The scheduler algorithms (Scenario's scheduler enum, one per diffusers class).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Ddim,
    Ddpm,
    Pndm,
    Euler,
    EulerAncestral,
    Heun,
    Lms,
    DpmSolverMultistep,
    DpmSolverSinglestep,
    KDpm2,
    KDpm2Ancestral,
    Deis,
    UniPc,
    Lcm,
    Tcd,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 15] = [
        SchedulerKind::Ddim,
        SchedulerKind::Ddpm,
        SchedulerKind::Pndm,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::Heun,
        SchedulerKind::Lms,
        SchedulerKind::DpmSolverMultistep,
        SchedulerKind::DpmSolverSinglestep,
        SchedulerKind::KDpm2,
        SchedulerKind::KDpm2Ancestral,
        SchedulerKind::Deis,
        SchedulerKind::UniPc,
        SchedulerKind::Lcm,
        SchedulerKind::Tcd,
    ];

    /// The diffusers class name.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Ddpm => "DDPMScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::Euler => "EulerDiscreteScheduler",
            SchedulerKind::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SchedulerKind::Heun => "HeunDiscreteScheduler",
            SchedulerKind::Lms => "LMSDiscreteScheduler",
            SchedulerKind::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            SchedulerKind::DpmSolverSinglestep => "DPMSolverSinglestepScheduler",
            SchedulerKind::KDpm2 => "KDPM2DiscreteScheduler",
            SchedulerKind::KDpm2Ancestral => "KDPM2AncestralDiscreteScheduler",
            SchedulerKind::Deis => "DEISMultistepScheduler",
            SchedulerKind::UniPc => "UniPCMultistepScheduler",
            SchedulerKind::Lcm => "LCMScheduler",
            SchedulerKind::Tcd => "TCDScheduler",
        }
    }

    /// The kind of a diffusers class name (exact spelling, as in `_class_name`).
    pub fn from_class_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.class_name() == name)
    }
}

enum Inner {
    Ddim(ddim::Ddim),
    Ddpm(ddpm::Ddpm),
    Pndm(pndm::Pndm),
    Euler(euler::Euler),
    EulerAncestral(euler::EulerAncestral),
    Heun(heun::Heun),
    Lms(lms::Lms),
    DpmMultistep(dpm_multistep::DpmMultistep),
    DpmSinglestep(dpm_singlestep::DpmSinglestep),
    KDpm2(kdpm2::KDpm2),
    KDpm2Ancestral(kdpm2::KDpm2Ancestral),
    Deis(deis::Deis),
    UniPc(unipc::UniPc),
    Lcm(lcm::Lcm),
    Tcd(tcd::Tcd),
}

/// Runs `$body` with `$s` bound to the scheduler inside `$inner`, whatever its kind.
macro_rules! each {
    ($inner:expr, $s:ident => $body:expr) => {
        match $inner {
            Inner::Ddim($s) => $body,
            Inner::Ddpm($s) => $body,
            Inner::Pndm($s) => $body,
            Inner::Euler($s) => $body,
            Inner::EulerAncestral($s) => $body,
            Inner::Heun($s) => $body,
            Inner::Lms($s) => $body,
            Inner::DpmMultistep($s) => $body,
            Inner::DpmSinglestep($s) => $body,
            Inner::KDpm2($s) => $body,
            Inner::KDpm2Ancestral($s) => $body,
            Inner::Deis($s) => $body,
            Inner::UniPc($s) => $body,
            Inner::Lcm($s) => $body,
            Inner::Tcd($s) => $body,
        }
    };
}

/// One scheduler of any kind, with its schedule and its stepping state.
pub struct Scheduler {
    kind: SchedulerKind,
    config: SchedulerConfig,
    inner: Inner,
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
        let inner = match kind {
            SchedulerKind::Ddim => Inner::Ddim(ddim::Ddim::new(c)?),
            SchedulerKind::Ddpm => Inner::Ddpm(ddpm::Ddpm::new(c)?),
            SchedulerKind::Pndm => Inner::Pndm(pndm::Pndm::new(c)?),
            SchedulerKind::Euler => Inner::Euler(euler::Euler::new(c)?),
            SchedulerKind::EulerAncestral => Inner::EulerAncestral(euler::EulerAncestral::new(c)?),
            SchedulerKind::Heun => Inner::Heun(heun::Heun::new(c)?),
            SchedulerKind::Lms => Inner::Lms(lms::Lms::new(c)?),
            SchedulerKind::DpmSolverMultistep => {
                Inner::DpmMultistep(dpm_multistep::DpmMultistep::new(c)?)
            }
            SchedulerKind::DpmSolverSinglestep => {
                Inner::DpmSinglestep(dpm_singlestep::DpmSinglestep::new(c)?)
            }
            SchedulerKind::KDpm2 => Inner::KDpm2(kdpm2::KDpm2::new(c)?),
            SchedulerKind::KDpm2Ancestral => Inner::KDpm2Ancestral(kdpm2::KDpm2Ancestral::new(c)?),
            SchedulerKind::Deis => Inner::Deis(deis::Deis::new(c)?),
            SchedulerKind::UniPc => Inner::UniPc(unipc::UniPc::new(c)?),
            SchedulerKind::Lcm => Inner::Lcm(lcm::Lcm::new(c)?),
            SchedulerKind::Tcd => Inner::Tcd(tcd::Tcd::new(c)?),
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
        each!(&mut self.inner, s => s.set_timesteps(num_inference_steps))?;
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
        each!(&self.inner, s => s.timesteps())
    }

    /// diffusers' `scheduler.sigmas` (whole schedule, final sigma included) for the schedulers
    /// that have them; interleaved like diffusers' for Heun and KDPM2.
    pub fn sigmas(&self) -> Option<&[f64]> {
        each!(&self.inner, s => s.sigmas())
    }

    /// The factor pure noise is scaled by to start a txt2img loop.
    pub fn init_noise_sigma(&self) -> f64 {
        each!(&self.inner, s => s.init_noise_sigma())
    }

    /// diffusers' `scheduler.order` (2 for Heun and KDPM2, whose loops take two model calls
    /// per step; 1 otherwise).
    pub fn order(&self) -> usize {
        each!(&self.inner, s => s.order())
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
        each!(&mut self.inner, s => s.reset());
    }

    pub fn begin_index(&self) -> usize {
        self.begin
    }

    /// The UNet input for loop iteration `step_index` (identity for most schedulers; divides by
    /// `sqrt(σ² + 1)` for the sigma ones).
    pub fn scale_model_input(&self, x: &Tensor, step_index: usize) -> Result<Tensor> {
        let idx = self.index(step_index)?;
        let x = schedule::f32t(x)?;
        each!(&self.inner, s => s.scale_model_input(&x, idx))
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
        let out = each!(&mut self.inner, s => s.step(&mo, idx, &x, noise))?;
        self.taken += 1;
        Ok(out)
    }

    /// Noises `original` to the noise level of loop iteration `step_index` (img2img start:
    /// `step_index` 0).
    pub fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> Result<Tensor> {
        let idx = self.index(step_index)?;
        let o = schedule::f32t(original)?;
        let n = schedule::f32t(noise)?;
        each!(&self.inner, s => s.add_noise(&o, &n, idx))
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
