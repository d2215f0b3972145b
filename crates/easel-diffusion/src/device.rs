//! Choosing the compute device from a short spec: `cpu`, `cuda`, `cuda:N`, `metal`,
//! `metal:N` or `auto`. The GPU backends are cargo features (`cuda`, `metal`); asking for one
//! that this build lacks is an error that says how to get it, never a silent CPU fallback.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Result};

/// A parsed device spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    /// A CUDA GPU by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
    /// A Metal GPU by ordinal (`metal` is `metal:0`).
    Metal(usize),
    /// CUDA when compiled in and a GPU answers, else Metal likewise, else the CPU.
    Auto,
}

impl FromStr for DeviceSpec {
    type Err = candle_core::Error;

    fn from_str(spec: &str) -> Result<DeviceSpec> {
        let s = spec.trim().to_ascii_lowercase();
        let (kind, ordinal) = match s.split_once(':') {
            Some((kind, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    candle_core::Error::Msg(format!(
                        "invalid device `{spec}`: the part after `:` must be a GPU number such as 0"
                    ))
                })?;
                (kind, Some(n))
            }
            None => (s.as_str(), None),
        };
        match (kind, ordinal) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("auto", None) => Ok(DeviceSpec::Auto),
            ("cuda", n) => Ok(DeviceSpec::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(DeviceSpec::Metal(n.unwrap_or(0))),
            _ => Err(candle_core::Error::Msg(format!(
                "unknown device `{spec}`: use cpu, cuda, cuda:N, metal or auto"
            ))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

/// Whether this build has the CUDA backend (the `cuda` feature).
pub fn has_cuda() -> bool {
    candle_core::utils::cuda_is_available()
}

/// Whether this build has the Metal backend (the `metal` feature).
pub fn has_metal() -> bool {
    candle_core::utils::metal_is_available()
}

/// The device for `spec` (see [`DeviceSpec`]). Errors when the backend is not compiled in,
/// or when the GPU cannot be opened.
pub fn device(spec: &str) -> Result<Device> {
    match spec.parse::<DeviceSpec>()? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => {
            if !has_cuda() {
                candle_core::bail!("this build has no CUDA support; rebuild with --features cuda");
            }
            Device::new_cuda(n)
        }
        DeviceSpec::Metal(n) => {
            if !has_metal() {
                candle_core::bail!(
                    "this build has no Metal support; rebuild with --features metal"
                );
            }
            Device::new_metal(n)
        }
        DeviceSpec::Auto => {
            if has_cuda() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if has_metal() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

/// The device's spec as [`device`] takes it (`cpu`, `cuda:0`, `metal:0`): where `auto`
/// landed.
pub fn name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spec() {
        let p = |s: &str| s.parse::<DeviceSpec>().unwrap();
        assert_eq!(p("cpu"), DeviceSpec::Cpu);
        assert_eq!(p(" CPU "), DeviceSpec::Cpu);
        assert_eq!(p("auto"), DeviceSpec::Auto);
        assert_eq!(p("cuda"), DeviceSpec::Cuda(0));
        assert_eq!(p("cuda:0"), DeviceSpec::Cuda(0));
        assert_eq!(p("cuda:3"), DeviceSpec::Cuda(3));
        assert_eq!(p("Cuda:1"), DeviceSpec::Cuda(1));
        assert_eq!(p("metal"), DeviceSpec::Metal(0));
        assert_eq!(p("metal:1"), DeviceSpec::Metal(1));
        for s in ["cpu", "auto", "cuda:0", "cuda:2", "metal:0"] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn refuses_unknown_specs_clearly() {
        for (spec, needle) in [
            ("gpu", "unknown device `gpu`"),
            ("", "unknown device"),
            ("cpu:0", "unknown device"),
            ("auto:1", "unknown device"),
            ("cuda:", "GPU number"),
            ("cuda:x", "GPU number"),
            ("cuda:-1", "GPU number"),
            ("cuda:0:1", "GPU number"),
        ] {
            let e = spec.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
        assert!(device("tpu").is_err());
    }

    #[test]
    fn cpu_always_works() {
        assert!(matches!(device("cpu").unwrap(), Device::Cpu));
    }

    #[test]
    fn auto_falls_back_to_the_cpu_without_gpu_backends() {
        let d = device("auto").unwrap();
        if !has_cuda() && !has_metal() {
            assert!(matches!(d, Device::Cpu));
        }
    }

    #[test]
    fn a_backend_not_compiled_in_says_how_to_get_it() {
        if !has_cuda() {
            let e = device("cuda:1").unwrap_err().to_string();
            assert!(
                e.contains("this build has no CUDA support; rebuild with --features cuda"),
                "{e}"
            );
        }
        if !has_metal() {
            let e = device("metal").unwrap_err().to_string();
            assert!(
                e.contains("this build has no Metal support; rebuild with --features metal"),
                "{e}"
            );
        }
    }
}
