//! Sana (NVIDIA's linear-attention DiT, diffusers' `SanaPipeline` / `SanaPAGPipeline`): the
//! Gemma-2 prompt encoding with the complex human instruction, the transformer, the DC-AE
//! autoencoder and perturbed-attention guidance.

pub mod dcae;
pub mod pag;
pub mod text;
pub mod transformer;
