//! The local diffusion engine: the only crate that depends on candle. Pipelines, schedulers,
//! loaders and the pieces they share (tokenizer, PyTorch-compatible noise).

pub mod bench;
pub mod blocks;
pub mod clip;
pub mod device;
pub mod engine;
pub mod family;
pub mod gemma;
pub mod kernels;
pub mod loader;
pub mod lora;
pub mod memory;
pub mod noise;
pub mod pixels;
pub mod prompt;
pub mod rng;
pub mod sana;
pub mod schedulers;
pub mod sd;
pub mod taesd;
pub mod tiny;
pub mod tokenizer;
pub mod tokenizer_json;
pub mod vae;

/// This crate's unit tests run with the allocator the binary installs, so the weights they
/// load are mapped files' views (`memory`) as in the binary; the integration tests read
/// weights into buffers.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: memory::Allocator = memory::Allocator;
