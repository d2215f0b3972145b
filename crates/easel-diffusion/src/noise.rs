//! Where random tensors come from. Pipelines and schedulers draw every random tensor through
//! a `NoiseSource`, in the same order diffusers does, so a seeded `rng::TorchRng` reproduces
//! diffusers' (and ComfyUI's CPU-generator) noise, and tests can replay recorded noise.

use candle_core::{Device, Result, Tensor};

pub trait NoiseSource {
    /// A float32 tensor of standard normal samples with this shape.
    fn randn(&mut self, shape: &[usize], device: &Device) -> Result<Tensor>;
}

/// Replays recorded tensors in order (parity tests; resuming a run).
pub struct Recorded {
    pub tensors: std::collections::VecDeque<Tensor>,
}

impl NoiseSource for Recorded {
    fn randn(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let t = self
            .tensors
            .pop_front()
            .ok_or_else(|| candle_core::Error::Msg("no recorded noise left".into()))?;
        if t.dims() != shape {
            return Err(candle_core::Error::Msg(format!(
                "recorded noise has shape {:?}, {:?} was asked for",
                t.dims(),
                shape
            )));
        }
        t.to_device(device)
    }
}
