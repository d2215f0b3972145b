//! Scheduler kinds and names, as data: the diffusion schedulers (one per diffusers class) and
//! the one table of names every dialect's sampler field resolves through. The algorithms live
//! in `easel-diffusion`; this is here so requests can be validated without it.
//!
//! The table of scheduler names: diffusers class names (Scenario's enum), short
//! A1111/ComfyUI-style names, A1111's display names, Stability's `K_*` samplers and
//! Leonardo's enum, each mapped to a kind and config overrides (JSON put over the model's
//! scheduler config, e.g. with `SchedulerConfig::from_json_with_overrides`).
//!
//! Lookup ignores case and treats ' ', '-' and '_' alike and "++" as "pp", so "DPM++ 2M
//! Karras", "dpmpp_2m_karras" and "DPMPP-2M-KARRAS" are one name.
//!
//! Choices worth knowing:
//! * Leonardo's `LEONARDO` scheduler is their own; it maps to Euler ancestral here (the
//!   dialect's enum is `leonardo::tables` in `easel-api`).
//! * "DPM++ 2S a" has no diffusers equivalent (diffusers' docs point to the singlestep
//!   solver); it maps to DPM-Solver++ singlestep order 2, which is not ancestral.
//! * `uni_pc` is ComfyUI's default UniPC (B(h) = h, `bh1`); `unipc` keeps diffusers' default
//!   (`bh2`).
//! * `pndm` keeps the model config's `skip_prk_steps` (true in Stable Diffusion's); `plms`
//!   forces it.
//! * "DPM++ SDE" (`DPMSolverSDEScheduler`, Brownian-tree noise) is not implemented: its names
//!   do not resolve.
//! * Flow-matching models (Sana, FLUX): `flow_euler` / "Euler (flow)" is
//!   `FlowMatchEulerDiscreteScheduler` with the model config's `shift` (diffusers' default 1
//!   when the config is another class's: Sana's DPM-Solver config has `flow_shift`, which
//!   FlowMatchEuler does not read). The DPM-Solver names keep a model config's
//!   `use_flow_sigmas`, so `dpmpp_2m` on Sana is its own flow DPM-Solver++; the Karras names
//!   are rejected there (Karras spacing cannot be combined with flow sigmas). These kinds
//!   are for flow-matching models only; the eps/v-prediction ones are not for those.

use serde_json::Value;

use SchedulerKind::*;

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
    /// Flow matching: `FlowMatchEulerDiscreteScheduler`.
    FlowMatchEuler,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 16] = [
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
        SchedulerKind::FlowMatchEuler,
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
            SchedulerKind::FlowMatchEuler => "FlowMatchEulerDiscreteScheduler",
        }
    }

    /// The kind of a diffusers class name (exact spelling, as in `_class_name`).
    pub fn from_class_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.class_name() == name)
    }
}

/// One name of the table.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerName {
    /// The name as written by its source (matched loosely, see the module doc).
    pub name: &'static str,
    pub kind: SchedulerKind,
    /// Config overrides, a JSON object.
    pub overrides: &'static str,
    /// Where the name comes from: "diffusers", "a1111", "comfyui", "stability", "leonardo", "easel".
    pub source: &'static str,
}

const fn n(
    name: &'static str,
    kind: SchedulerKind,
    overrides: &'static str,
    source: &'static str,
) -> SchedulerName {
    SchedulerName {
        name,
        kind,
        overrides,
        source,
    }
}

const NONE: &str = "{}";
const KARRAS: &str = r#"{"use_karras_sigmas": true}"#;
const DPMPP_2M: &str = r#"{"algorithm_type": "dpmsolver++", "solver_order": 2}"#;
const DPMPP_2M_KARRAS: &str =
    r#"{"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": true}"#;
const DPMPP_2M_SDE: &str = r#"{"algorithm_type": "sde-dpmsolver++", "solver_order": 2}"#;
const DPMPP_2M_SDE_KARRAS: &str =
    r#"{"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": true}"#;

/// Every accepted scheduler name (a data table: one row per name).
#[rustfmt::skip]
pub const SCHEDULER_NAMES: &[SchedulerName] = &[
    // diffusers class names (Scenario's `scheduler` enum): the class as the model config says
    n("DDIMScheduler", Ddim, NONE, "diffusers"),
    n("DDPMScheduler", Ddpm, NONE, "diffusers"),
    n("PNDMScheduler", Pndm, NONE, "diffusers"),
    n("EulerDiscreteScheduler", Euler, NONE, "diffusers"),
    n("EulerAncestralDiscreteScheduler", EulerAncestral, NONE, "diffusers"),
    n("HeunDiscreteScheduler", Heun, NONE, "diffusers"),
    n("LMSDiscreteScheduler", Lms, NONE, "diffusers"),
    n("DPMSolverMultistepScheduler", DpmSolverMultistep, NONE, "diffusers"),
    n("DPMSolverSinglestepScheduler", DpmSolverSinglestep, NONE, "diffusers"),
    n("KDPM2DiscreteScheduler", KDpm2, NONE, "diffusers"),
    n("KDPM2AncestralDiscreteScheduler", KDpm2Ancestral, NONE, "diffusers"),
    n("DEISMultistepScheduler", Deis, NONE, "diffusers"),
    n("UniPCMultistepScheduler", UniPc, NONE, "diffusers"),
    n("LCMScheduler", Lcm, NONE, "diffusers"),
    n("TCDScheduler", Tcd, NONE, "diffusers"),
    n("FlowMatchEulerDiscreteScheduler", FlowMatchEuler, NONE, "diffusers"),
    // short names (ComfyUI sampler names and A1111 display names, loosely matched)
    n("ddim", Ddim, NONE, "comfyui"),
    n("ddpm", Ddpm, NONE, "comfyui"),
    n("pndm", Pndm, NONE, "easel"),
    n("plms", Pndm, r#"{"skip_prk_steps": true}"#, "a1111"),
    n("euler", Euler, NONE, "comfyui"),
    n("euler_karras", Euler, KARRAS, "easel"),
    n("euler_a", EulerAncestral, NONE, "a1111"),
    n("euler_ancestral", EulerAncestral, NONE, "comfyui"),
    n("heun", Heun, NONE, "comfyui"),
    n("heun_karras", Heun, KARRAS, "easel"),
    n("lms", Lms, NONE, "comfyui"),
    n("lms_karras", Lms, KARRAS, "a1111"),
    n("dpmpp_2m", DpmSolverMultistep, DPMPP_2M, "comfyui"),
    n("dpmpp_2m_karras", DpmSolverMultistep, DPMPP_2M_KARRAS, "a1111"),
    n("dpmpp_2m_sde", DpmSolverMultistep, DPMPP_2M_SDE, "comfyui"),
    n("dpmpp_2m_sde_karras", DpmSolverMultistep, DPMPP_2M_SDE_KARRAS, "a1111"),
    n("dpm_singlestep", DpmSolverSinglestep, NONE, "easel"),
    n("dpmpp_2s", DpmSolverSinglestep, DPMPP_2M, "easel"),
    n("dpmpp_2s_karras", DpmSolverSinglestep, DPMPP_2M_KARRAS, "easel"),
    n("dpmpp_2s_a", DpmSolverSinglestep, DPMPP_2M, "a1111"),
    n("dpmpp_2s_a_karras", DpmSolverSinglestep, DPMPP_2M_KARRAS, "a1111"),
    n("dpmpp_2s_ancestral", DpmSolverSinglestep, DPMPP_2M, "comfyui"),
    n("dpm_2", KDpm2, NONE, "comfyui"),
    n("dpm2", KDpm2, NONE, "a1111"),
    n("dpm_2_karras", KDpm2, KARRAS, "easel"),
    n("dpm2_karras", KDpm2, KARRAS, "a1111"),
    n("dpm_2_a", KDpm2Ancestral, NONE, "easel"),
    n("dpm2_a", KDpm2Ancestral, NONE, "a1111"),
    n("dpm_2_ancestral", KDpm2Ancestral, NONE, "comfyui"),
    n("dpm_2_a_karras", KDpm2Ancestral, KARRAS, "easel"),
    n("dpm2_a_karras", KDpm2Ancestral, KARRAS, "a1111"),
    n("deis", Deis, NONE, "comfyui"),
    n("unipc", UniPc, NONE, "a1111"),
    n("uni_pc", UniPc, r#"{"solver_type": "bh1"}"#, "comfyui"),
    n("uni_pc_bh2", UniPc, r#"{"solver_type": "bh2"}"#, "comfyui"),
    n("lcm", Lcm, NONE, "comfyui"),
    n("tcd", Tcd, NONE, "easel"),
    n("flow_euler", FlowMatchEuler, NONE, "easel"),
    n("Euler (flow)", FlowMatchEuler, NONE, "easel"),
    n("flow_match_euler", FlowMatchEuler, NONE, "easel"),
    // Stability's `sampler` enum
    n("K_EULER", Euler, NONE, "stability"),
    n("K_EULER_ANCESTRAL", EulerAncestral, NONE, "stability"),
    n("K_HEUN", Heun, NONE, "stability"),
    n("K_LMS", Lms, NONE, "stability"),
    n("K_DPM_2", KDpm2, NONE, "stability"),
    n("K_DPM_2_ANCESTRAL", KDpm2Ancestral, NONE, "stability"),
    n("K_DPMPP_2M", DpmSolverMultistep, DPMPP_2M, "stability"),
    n("K_DPMPP_2S_ANCESTRAL", DpmSolverSinglestep, DPMPP_2M, "stability"),
    // Leonardo's `sd_generation_schedulers` (DDIM and PNDM are the short names above)
    n("KLMS", Lms, NONE, "leonardo"),
    n("EULER_ANCESTRAL_DISCRETE", EulerAncestral, NONE, "leonardo"),
    n("EULER_DISCRETE", Euler, NONE, "leonardo"),
    n("DPM_SOLVER", DpmSolverMultistep, DPMPP_2M, "leonardo"),
    n("LEONARDO", EulerAncestral, NONE, "leonardo"),
];

/// The lookup form of a name: lower case, "++" → "pp", runs of ' ', '-', '_' → one '_'.
pub fn normalize(name: &str) -> String {
    let lower = name.trim().to_lowercase().replace("++", "pp");
    let mut out = String::with_capacity(lower.len());
    for c in lower.chars() {
        if matches!(c, ' ' | '-' | '_') {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The kind and config overrides of a scheduler name, or None if the name is unknown.
pub fn resolve(name: &str) -> Option<(SchedulerKind, Value)> {
    let key = normalize(name);
    SCHEDULER_NAMES
        .iter()
        .find(|e| normalize(e.name) == key)
        .map(|e| {
            let overrides = serde_json::from_str(e.overrides)
                .unwrap_or_else(|_| Value::Object(Default::default()));
            (e.kind, overrides)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_whatever_their_spelling() {
        for name in ["DPM++ 2M Karras", "dpmpp_2m_karras", "DPMPP-2M-KARRAS"] {
            assert_eq!(normalize(name), "dpmpp_2m_karras", "{name}");
            let (kind, overrides) = resolve(name).unwrap();
            assert_eq!(kind, DpmSolverMultistep);
            assert_eq!(overrides["use_karras_sigmas"], true, "{overrides}");
        }
        assert_eq!(
            resolve("EulerAncestralDiscreteScheduler").map(|r| r.0),
            Some(EulerAncestral)
        );
        assert_eq!(resolve("K_HEUN").map(|r| r.0), Some(Heun));
        for name in [
            "FlowMatchEulerDiscreteScheduler",
            "flow_euler",
            "Euler (flow)",
            "Flow-Euler",
        ] {
            assert_eq!(resolve(name).map(|r| r.0), Some(FlowMatchEuler), "{name}");
        }
        assert_eq!(
            SchedulerKind::from_class_name("FlowMatchEulerDiscreteScheduler"),
            Some(FlowMatchEuler)
        );
        assert_eq!(resolve("dpmpp_sde"), None, "not implemented: not resolved");
        assert_eq!(resolve("warp"), None);
    }
}
