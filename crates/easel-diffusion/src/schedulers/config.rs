//! `SchedulerConfig`: every diffusers scheduler constructor argument the schedulers here read,
//! parsed from a `scheduler_config.json` (or any JSON object), plus `SchedulerError`.
//!
//! Parsing follows diffusers' `from_config`: unknown keys are ignored (a model's config carries
//! keys of its own class that another class does not take), `null` means "not given", and the
//! non-finite floats that strict JSON cannot hold are accepted as the strings `"-inf"`, `"inf"`
//! and `"nan"`; `from_file` also takes the bare words Python writes for them (`-Infinity`,
//! `Infinity`, `NaN`, as in Sana's `"lambda_min_clipped": -Infinity`), see `quote_non_finite`. A few defaults differ between diffusers classes (e.g. `beta_start`,
//! `timestep_spacing`, `clip_sample`); those fields are `Option`s here and `None` means "the
//! default of the class the scheduler is built as", which each scheduler file fills in.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Everything that can go wrong building a scheduler. Each message names the field and value.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler config: `{field}` = {value}: {reason}")]
    InvalidField {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{scheduler}: `{field}` = {value} is not supported{reason}")]
    Unsupported {
        scheduler: &'static str,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{scheduler}: {message}")]
    Schedule {
        scheduler: &'static str,
        message: String,
    },
    #[error("scheduler config: expected a JSON object, got {0}")]
    NotAnObject(String),
    #[error("cannot read scheduler config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scheduler config {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl SchedulerError {
    pub(crate) fn unsupported(
        scheduler: &'static str,
        field: &'static str,
        value: impl std::fmt::Display,
    ) -> Self {
        SchedulerError::Unsupported {
            scheduler,
            field,
            value: value.to_string(),
            reason: String::new(),
        }
    }

    pub(crate) fn unsupported_because(
        scheduler: &'static str,
        field: &'static str,
        value: impl std::fmt::Display,
        reason: &str,
    ) -> Self {
        SchedulerError::Unsupported {
            scheduler,
            field,
            value: value.to_string(),
            reason: format!(" ({reason})"),
        }
    }

    pub(crate) fn schedule(scheduler: &'static str, message: impl Into<String>) -> Self {
        SchedulerError::Schedule {
            scheduler,
            message: message.into(),
        }
    }
}

/// `beta_schedule`: how the training betas are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, N)`.
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end), N) ** 2` (Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal (`alpha_bar(t) = cos((t + 0.008) / 1.008 · π/2)²`).
    SquaredcosCapV2,
    /// `alpha_bar(t) = exp(-12 t)` (diffusers' Heun only, accepted everywhere here).
    Exp,
    /// The Laplace schedule (diffusers' DDPM only, accepted everywhere here).
    Laplace,
    /// `sigmoid(linspace(-6, 6, N)) · (beta_end - beta_start) + beta_start` (DDPM).
    Sigmoid,
}

/// `prediction_type`: what the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    /// `"sample"` (also accepted as `"original_sample"`): the model predicts x0.
    Sample,
    /// `"flow_prediction"`: the model predicts the flow velocity `v = noise − x0` of a
    /// flow-matching model (`x = (1 − σ)·x0 + σ·noise`). DPM-Solver++ only (and
    /// FlowMatchEuler, which always reads its model output as a velocity).
    Flow,
}

/// `time_shift_type` of dynamic shifting: how `mu` bends the sigmas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeShiftType {
    /// `e^mu / (e^mu + (1/σ − 1))` (FLUX).
    Exponential,
    /// `mu / (mu + (1/σ − 1))`.
    Linear,
}

/// `timestep_spacing`: how the inference timesteps are picked from the training ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Linspace,
    Trailing,
}

/// `timestep_type` (Euler): `continuous` gives the UNet `0.25 · ln σ` with v-prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepType {
    Discrete,
    Continuous,
}

/// `final_sigmas_type`: the sigma after the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSigmasType {
    Zero,
    SigmaMin,
}

/// `interpolation_type` (Euler). Only `linear` is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpolationType {
    Linear,
    LogLinear,
}

/// `algorithm_type` of the DPM-Solver family and DEIS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmType {
    DpmSolver,
    DpmSolverPlusPlus,
    SdeDpmSolver,
    SdeDpmSolverPlusPlus,
    Deis,
}

/// `solver_type` of the multistep solvers (DPM-Solver: midpoint/heun, UniPC: bh1/bh2, DEIS: logrho).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverType {
    Midpoint,
    Heun,
    Bh1,
    Bh2,
    Logrho,
}

/// `variance_type` (DDPM; DPM-Solver's learned variants are rejected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceType {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
    FixedLargeLog,
    Learned,
    LearnedRange,
}

/// Every diffusers scheduler constructor argument used here, with diffusers' defaults.
/// `None` in an `Option` field means "the default of the class": see the module doc.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// `_class_name` of the file, if any (informational; `resolve` maps it to a kind).
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<BetaSchedule>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: Option<bool>,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    /// PNDM: run PLMS only (Stable Diffusion's configs say true).
    pub skip_prk_steps: bool,
    pub interpolation_type: InterpolationType,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    /// Rejected when true (needs the Beta distribution's inverse CDF).
    pub use_beta_sigmas: bool,
    pub use_lu_lambdas: bool,
    /// DPM-Solver (multistep, singlestep): flow-matching sigmas shifted by `flow_shift`;
    /// rejected by the other classes.
    pub use_flow_sigmas: bool,
    /// FlowMatchEuler: shift by `mu` (given to `set_timesteps_with`) instead of `shift`;
    /// DPM-Solver with flow sigmas: a given `mu` replaces `flow_shift` by `e^mu`. Rejected
    /// elsewhere.
    pub use_dynamic_shifting: bool,
    /// DPM-Solver's `flow_shift` (default 1).
    pub flow_shift: f64,
    /// FlowMatchEuler's `shift` (default 1; DPM-Solver's `flow_shift` is not read by it).
    pub shift: f64,
    /// FlowMatchEuler's resolution-dependent shift parameters (what `calculate_shift` reads):
    /// defaults 0.5, 1.15, 256, 4096.
    pub base_shift: f64,
    pub max_shift: f64,
    pub base_image_seq_len: usize,
    pub max_image_seq_len: usize,
    /// FlowMatchEuler: `1 − σ` schedules (Mochi).
    pub invert_sigmas: bool,
    /// FlowMatchEuler: stretch the shifted sigmas so the last one is this value (LTX-Video).
    pub shift_terminal: Option<f64>,
    pub time_shift_type: TimeShiftType,
    /// FlowMatchEuler: re-noise to the next sigma from the predicted x0 (one draw per step).
    pub stochastic_sampling: bool,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub timestep_type: TimestepType,
    pub final_sigmas_type: FinalSigmasType,
    pub solver_order: usize,
    pub algorithm_type: Option<AlgorithmType>,
    pub solver_type: Option<SolverType>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: bool,
    pub lambda_min_clipped: f64,
    pub variance_type: Option<VarianceType>,
    /// UniPC: predict x0 (true) or noise.
    pub predict_x0: bool,
    /// UniPC: steps whose corrector is skipped.
    pub disable_corrector: Vec<usize>,
    /// UniPC `solver_p` given (non-null): rejected.
    pub solver_p: bool,
    pub original_inference_steps: usize,
    pub timestep_scaling: f64,
    /// Not a diffusers config key but the `eta` argument of `step`: DDIM's noise weight
    /// (default 0, deterministic) and TCD's gamma (default 0.3). Read from the key `"eta"`.
    pub eta: Option<f64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: None,
            beta_end: None,
            beta_schedule: None,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            clip_sample: None,
            clip_sample_range: 1.0,
            set_alpha_to_one: None,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            skip_prk_steps: false,
            interpolation_type: InterpolationType::Linear,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            use_dynamic_shifting: false,
            flow_shift: 1.0,
            shift: 1.0,
            base_shift: 0.5,
            max_shift: 1.15,
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            time_shift_type: TimeShiftType::Exponential,
            stochastic_sampling: false,
            sigma_min: None,
            sigma_max: None,
            timestep_type: TimestepType::Discrete,
            final_sigmas_type: FinalSigmasType::Zero,
            solver_order: 2,
            algorithm_type: None,
            solver_type: None,
            lower_order_final: None,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            variance_type: None,
            predict_x0: true,
            disable_corrector: Vec::new(),
            solver_p: false,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
            eta: None,
        }
    }
}

impl SchedulerConfig {
    /// Parses a diffusers scheduler config object. Unknown keys are ignored.
    pub fn from_json(v: &Value) -> Result<Self, SchedulerError> {
        let obj = v
            .as_object()
            .ok_or_else(|| SchedulerError::NotAnObject(short(v)))?;
        let r = Reader(obj);
        let d = SchedulerConfig::default();
        Ok(SchedulerConfig {
            class_name: r.string("_class_name")?.map(str::to_string),
            num_train_timesteps: r
                .usize("num_train_timesteps")?
                .unwrap_or(d.num_train_timesteps),
            beta_start: r.f64("beta_start")?,
            beta_end: r.f64("beta_end")?,
            beta_schedule: r.choice(
                "beta_schedule",
                &[
                    ("linear", BetaSchedule::Linear),
                    ("scaled_linear", BetaSchedule::ScaledLinear),
                    ("squaredcos_cap_v2", BetaSchedule::SquaredcosCapV2),
                    ("exp", BetaSchedule::Exp),
                    ("laplace", BetaSchedule::Laplace),
                    ("sigmoid", BetaSchedule::Sigmoid),
                ],
            )?,
            trained_betas: r.f64_list("trained_betas")?,
            prediction_type: r
                .choice(
                    "prediction_type",
                    &[
                        ("epsilon", PredictionType::Epsilon),
                        ("v_prediction", PredictionType::VPrediction),
                        ("sample", PredictionType::Sample),
                        ("original_sample", PredictionType::Sample),
                        ("flow_prediction", PredictionType::Flow),
                    ],
                )?
                .unwrap_or(d.prediction_type),
            timestep_spacing: r.choice(
                "timestep_spacing",
                &[
                    ("leading", TimestepSpacing::Leading),
                    ("linspace", TimestepSpacing::Linspace),
                    ("trailing", TimestepSpacing::Trailing),
                ],
            )?,
            steps_offset: r.usize("steps_offset")?.unwrap_or(d.steps_offset),
            rescale_betas_zero_snr: r.bool("rescale_betas_zero_snr")?.unwrap_or(false),
            clip_sample: r.bool("clip_sample")?,
            clip_sample_range: r.f64("clip_sample_range")?.unwrap_or(d.clip_sample_range),
            set_alpha_to_one: r.bool("set_alpha_to_one")?,
            thresholding: r.bool("thresholding")?.unwrap_or(false),
            dynamic_thresholding_ratio: r
                .f64("dynamic_thresholding_ratio")?
                .unwrap_or(d.dynamic_thresholding_ratio),
            sample_max_value: r.f64("sample_max_value")?.unwrap_or(d.sample_max_value),
            skip_prk_steps: r.bool("skip_prk_steps")?.unwrap_or(false),
            interpolation_type: r
                .choice(
                    "interpolation_type",
                    &[
                        ("linear", InterpolationType::Linear),
                        ("log_linear", InterpolationType::LogLinear),
                    ],
                )?
                .unwrap_or(d.interpolation_type),
            use_karras_sigmas: r.bool("use_karras_sigmas")?.unwrap_or(false),
            use_exponential_sigmas: r.bool("use_exponential_sigmas")?.unwrap_or(false),
            use_beta_sigmas: r.bool("use_beta_sigmas")?.unwrap_or(false),
            use_lu_lambdas: r.bool("use_lu_lambdas")?.unwrap_or(false),
            use_flow_sigmas: r.bool("use_flow_sigmas")?.unwrap_or(false),
            use_dynamic_shifting: r.bool("use_dynamic_shifting")?.unwrap_or(false),
            flow_shift: r.f64("flow_shift")?.unwrap_or(d.flow_shift),
            shift: r.f64("shift")?.unwrap_or(d.shift),
            base_shift: r.f64("base_shift")?.unwrap_or(d.base_shift),
            max_shift: r.f64("max_shift")?.unwrap_or(d.max_shift),
            base_image_seq_len: r
                .usize("base_image_seq_len")?
                .unwrap_or(d.base_image_seq_len),
            max_image_seq_len: r.usize("max_image_seq_len")?.unwrap_or(d.max_image_seq_len),
            invert_sigmas: r.bool("invert_sigmas")?.unwrap_or(false),
            shift_terminal: r.f64("shift_terminal")?,
            time_shift_type: r
                .choice(
                    "time_shift_type",
                    &[
                        ("exponential", TimeShiftType::Exponential),
                        ("linear", TimeShiftType::Linear),
                    ],
                )?
                .unwrap_or(d.time_shift_type),
            stochastic_sampling: r.bool("stochastic_sampling")?.unwrap_or(false),
            sigma_min: r.f64("sigma_min")?,
            sigma_max: r.f64("sigma_max")?,
            timestep_type: r
                .choice(
                    "timestep_type",
                    &[
                        ("discrete", TimestepType::Discrete),
                        ("continuous", TimestepType::Continuous),
                    ],
                )?
                .unwrap_or(d.timestep_type),
            final_sigmas_type: r
                .choice(
                    "final_sigmas_type",
                    &[
                        ("zero", FinalSigmasType::Zero),
                        ("sigma_min", FinalSigmasType::SigmaMin),
                    ],
                )?
                .unwrap_or(d.final_sigmas_type),
            solver_order: r.usize("solver_order")?.unwrap_or(d.solver_order),
            algorithm_type: r.choice(
                "algorithm_type",
                &[
                    ("dpmsolver", AlgorithmType::DpmSolver),
                    ("dpmsolver++", AlgorithmType::DpmSolverPlusPlus),
                    ("sde-dpmsolver", AlgorithmType::SdeDpmSolver),
                    ("sde-dpmsolver++", AlgorithmType::SdeDpmSolverPlusPlus),
                    ("deis", AlgorithmType::Deis),
                ],
            )?,
            solver_type: r.choice(
                "solver_type",
                &[
                    ("midpoint", SolverType::Midpoint),
                    ("heun", SolverType::Heun),
                    ("bh1", SolverType::Bh1),
                    ("bh2", SolverType::Bh2),
                    ("logrho", SolverType::Logrho),
                ],
            )?,
            lower_order_final: r.bool("lower_order_final")?,
            euler_at_final: r.bool("euler_at_final")?.unwrap_or(false),
            lambda_min_clipped: r.f64("lambda_min_clipped")?.unwrap_or(d.lambda_min_clipped),
            variance_type: r.choice(
                "variance_type",
                &[
                    ("fixed_small", VarianceType::FixedSmall),
                    ("fixed_small_log", VarianceType::FixedSmallLog),
                    ("fixed_large", VarianceType::FixedLarge),
                    ("fixed_large_log", VarianceType::FixedLargeLog),
                    ("learned", VarianceType::Learned),
                    ("learned_range", VarianceType::LearnedRange),
                ],
            )?,
            predict_x0: r.bool("predict_x0")?.unwrap_or(true),
            disable_corrector: r.usize_list("disable_corrector")?.unwrap_or_default(),
            solver_p: r.get("solver_p").is_some(),
            original_inference_steps: r
                .usize("original_inference_steps")?
                .unwrap_or(d.original_inference_steps),
            timestep_scaling: r.f64("timestep_scaling")?.unwrap_or(d.timestep_scaling),
            eta: r.f64("eta")?,
        })
    }

    /// `from_json` of `base` with the keys of `overrides` (e.g. from `resolve`) put over it.
    pub fn from_json_with_overrides(
        base: &Value,
        overrides: &Value,
    ) -> Result<Self, SchedulerError> {
        let mut merged = base
            .as_object()
            .cloned()
            .ok_or_else(|| SchedulerError::NotAnObject(short(base)))?;
        if let Some(o) = overrides.as_object() {
            for (k, v) in o {
                merged.insert(k.clone(), v.clone());
            }
        } else if !overrides.is_null() {
            return Err(SchedulerError::NotAnObject(short(overrides)));
        }
        Self::from_json(&Value::Object(merged))
    }

    /// Reads and parses a `scheduler_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchedulerError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let v: Value = serde_json::from_str(&quote_non_finite(&text)).map_err(|source| {
            SchedulerError::Json {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::from_json(&v)
    }
}

/// Deserializes through `from_json`, so a scheduler config can sit inside other serde types.
impl<'de> serde::Deserialize<'de> for SchedulerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        SchedulerConfig::from_json(&v).map_err(serde::de::Error::custom)
    }
}

/// Python's `json.dump` writes non-finite floats as the bare words `NaN`, `Infinity` and
/// `-Infinity` (diffusers' `lambda_min_clipped: -Infinity` in Sana's `scheduler_config.json`),
/// which strict JSON parsers reject. Outside string literals, those words become the strings
/// `"nan"`, `"inf"` and `"-inf"`, which `from_json` reads as the numbers.
pub fn quote_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("Infinity") && !text.contains("NaN") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let word = [
                ("-Infinity", "\"-inf\""),
                ("Infinity", "\"inf\""),
                ("NaN", "\"nan\""),
            ]
            .into_iter()
            .find(|(w, _)| rest.starts_with(w));
            if let Some((w, quoted)) = word {
                out.push_str(quoted);
                rest = &rest[w.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Typed access to one JSON object's keys, with errors naming the key and value.
struct Reader<'a>(&'a Map<String, Value>);

impl Reader<'_> {
    /// The value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, v: &Value, reason: &str) -> SchedulerError {
        SchedulerError::InvalidField {
            field: key.to_string(),
            value: short(v),
            reason: reason.to_string(),
        }
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        parse_f64(v)
            .map(Some)
            .ok_or_else(|| self.bad(key, v, "expected a number (or \"inf\", \"-inf\", \"nan\")"))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_bool()
            .map(Some)
            .ok_or_else(|| self.bad(key, v, "expected true or false"))
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        parse_usize(v)
            .map(Some)
            .ok_or_else(|| self.bad(key, v, "expected a non-negative integer"))
    }

    fn string(&self, key: &str) -> Result<Option<&str>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_str()
            .map(Some)
            .ok_or_else(|| self.bad(key, v, "expected a string"))
    }

    fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, SchedulerError> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        options
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, t)| Some(t))
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.bad(
                    key,
                    &Value::String(s.to_string()),
                    &format!("expected one of {}", names.join(", ")),
                )
            })
    }

    fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.bad(key, v, "expected a list of numbers"))?;
        items
            .iter()
            .map(|x| parse_f64(x).ok_or_else(|| self.bad(key, x, "expected a list of numbers")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn usize_list(&self, key: &str) -> Result<Option<Vec<usize>>, SchedulerError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.bad(key, v, "expected a list of integers"))?;
        items
            .iter()
            .map(|x| parse_usize(x).ok_or_else(|| self.bad(key, x, "expected a list of integers")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn parse_f64(v: &Value) -> Option<f64> {
    if let Some(x) = v.as_f64() {
        return Some(x);
    }
    match v.as_str()?.trim().to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

fn parse_usize(v: &Value) -> Option<usize> {
    if let Some(u) = v.as_u64() {
        return usize::try_from(u).ok();
    }
    let f = v.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f < 1e15).then_some(f as usize)
}
