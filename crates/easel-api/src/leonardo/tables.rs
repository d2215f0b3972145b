//! Leonardo's enums and what each means here: `SCHEDULERS` (its `sd_generation_schedulers`)
//! and `SD_VERSIONS` (its `sd_version`). The scheduler names themselves also resolve through
//! the core's one table of names (`easel_core::scheduler::resolve`), which runs them.

use easel_core::scheduler::{resolve, SchedulerKind};
use easel_providers::family;
use SchedulerKind::*;

/// Leonardo's `sd_generation_schedulers` enum and the kind each runs as here (every name is
/// also a row of the core's scheduler names, so it passes to a generation's `scheduler` as
/// is):
///
/// | Leonardo | Easel | why |
/// |---|---|---|
/// | `KLMS` | LMS (`LMSDiscreteScheduler`) | the k-diffusion LMS sampler |
/// | `EULER_ANCESTRAL_DISCRETE` | Euler ancestral | same diffusers class |
/// | `EULER_DISCRETE` (the spec's default) | Euler | same diffusers class |
/// | `DDIM` | DDIM | same diffusers class |
/// | `DPM_SOLVER` | DPM-Solver++ 2M (multistep) | diffusers' `DPMSolverMultistepScheduler` defaults |
/// | `PNDM` | PNDM (the model config's `skip_prk_steps`) | same diffusers class |
/// | `LEONARDO` | Euler ancestral | Leonardo's own, unpublished sampler; Euler ancestral is the nearest widely used one (an ancestral, few-step-friendly sampler) |
pub const SCHEDULERS: &[(&str, SchedulerKind)] = &[
    ("KLMS", Lms),
    ("EULER_ANCESTRAL_DISCRETE", EulerAncestral),
    ("EULER_DISCRETE", Euler),
    ("DDIM", Ddim),
    ("DPM_SOLVER", DpmSolverMultistep),
    ("PNDM", Pndm),
    ("LEONARDO", EulerAncestral),
];

/// A Leonardo scheduler name (exactly as the enum spells it) and its kind; `None` for names
/// outside Leonardo's enum (Easel's other names are not part of that dialect).
pub fn scheduler(name: &str) -> Option<(&'static str, SchedulerKind)> {
    SCHEDULERS.iter().copied().find(|(n, _)| *n == name)
}

/// The Leonardo name of the scheduler an Easel scheduler name runs (the first enum entry of
/// its kind: Euler ancestral is `EULER_ANCESTRAL_DISCRETE`); `None` when the kind has no
/// Leonardo name (Heun, UniPC, …) or the name is unknown.
pub fn scheduler_name(easel_name: &str) -> Option<&'static str> {
    if let Some((n, _)) = scheduler(easel_name) {
        return Some(n);
    }
    let (kind, _) = resolve(easel_name)?;
    SCHEDULERS.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
}

/// Leonardo's `sd_version` enum and the Easel family (or families, first preferred) a
/// request naming it runs on. Versions with no local family here (`v3`, `PHOENIX`, `FLUX`,
/// `FLUX_DEV`, `KINO_2_0`: other architectures or Leonardo's own models) have none: a request
/// must then name a model (`modelId`). `SDXL_LIGHTNING` takes any SDXL model (a Lightning
/// checkpoint registered with family `sdxl` is one; name it to get it).
pub const SD_VERSIONS: &[(&str, &[&str])] = &[
    ("v1_5", &[family::SD15, family::SD15_INPAINT]),
    ("v2", &[family::SD2]),
    ("v3", &[]),
    ("SDXL_0_8", &[family::SDXL]),
    ("SDXL_0_9", &[family::SDXL]),
    ("SDXL_1_0", &[family::SDXL]),
    ("SDXL_LIGHTNING", &[family::SDXL]),
    ("PHOENIX", &[]),
    ("FLUX", &[]),
    ("FLUX_DEV", &[]),
    ("KINO_2_0", &[]),
];

/// The families of a Leonardo `sd_version` (empty: none runs here); `None` when the name is
/// not in the enum.
pub fn sd_version(name: &str) -> Option<&'static [&'static str]> {
    SD_VERSIONS
        .iter()
        .find(|(v, _)| *v == name)
        .map(|(_, f)| *f)
}

/// The Leonardo `sd_version` of a family (its newest name: `sdxl` is `SDXL_1_0`), for
/// answers about a model; `None` for families Leonardo has no name for.
pub fn sd_version_of(family_name: &str) -> Option<&'static str> {
    match family_name {
        family::SD15 | family::SD15_INPAINT => Some("v1_5"),
        family::SD2 => Some("v2"),
        family::SDXL => Some("SDXL_1_0"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_cover_the_enum_and_resolve() {
        let names: Vec<_> = SCHEDULERS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "KLMS",
                "EULER_ANCESTRAL_DISCRETE",
                "EULER_DISCRETE",
                "DDIM",
                "DPM_SOLVER",
                "PNDM",
                "LEONARDO"
            ]
        );
        // Each runs through the core's one table as the kind documented here.
        for (name, kind) in SCHEDULERS {
            assert_eq!(resolve(name).map(|r| r.0), Some(*kind), "{name}");
        }
        assert_eq!(
            resolve("DPM_SOLVER").unwrap().1["algorithm_type"],
            "dpmsolver++"
        );
        assert_eq!(scheduler("LEONARDO"), Some(("LEONARDO", EulerAncestral)));
        assert_eq!(scheduler("euler_a"), None, "only Leonardo's enum");
        assert_eq!(scheduler("klms"), None, "spelled as the enum");
        // Back from what a job ran.
        assert_eq!(scheduler_name("LEONARDO"), Some("LEONARDO"));
        assert_eq!(scheduler_name("euler_a"), Some("EULER_ANCESTRAL_DISCRETE"));
        assert_eq!(scheduler_name("lms_karras"), Some("KLMS"));
        assert_eq!(scheduler_name("ddim"), Some("DDIM"));
        assert_eq!(scheduler_name("heun"), None);
        assert_eq!(scheduler_name("warp"), None);
    }

    #[test]
    fn sd_versions_map_to_families() {
        let names: Vec<_> = SD_VERSIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            names,
            [
                "v1_5",
                "v2",
                "v3",
                "SDXL_0_8",
                "SDXL_0_9",
                "SDXL_1_0",
                "SDXL_LIGHTNING",
                "PHOENIX",
                "FLUX",
                "FLUX_DEV",
                "KINO_2_0"
            ]
        );
        assert_eq!(
            sd_version("v1_5"),
            Some(&[family::SD15, family::SD15_INPAINT][..])
        );
        assert_eq!(sd_version("SDXL_1_0"), Some(&[family::SDXL][..]));
        assert_eq!(sd_version("FLUX"), Some(&[][..]));
        assert_eq!(sd_version("sdxl"), None);
        for (v, families) in SD_VERSIONS {
            for f in *families {
                let back = sd_version_of(f).unwrap();
                assert!(sd_version(back).unwrap().contains(f), "{v} {f}");
            }
        }
        assert_eq!(sd_version_of(easel_core::model::family::UNKNOWN), None);
    }
}
