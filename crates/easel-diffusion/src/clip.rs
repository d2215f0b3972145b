//! The CLIP text encoder of Stable Diffusion (transformers' `CLIPTextModel`, and
//! `CLIPTextModelWithProjection` for SDXL's second encoder), written on candle-nn.
//!
//! Configured from the folder's `config.json`; weights read from safetensors (`loader::read_tensors`), with or
//! without the `text_model.` key prefix. Batches of any size work: the causal mask is built
//! for the sequence and broadcast over the batch (no padding mask, as the SD pipelines use).
//! One forward pass gives what every pipeline needs: the last hidden state after the final
//! layer norm (SD 1.x/2.x conditioning), the output of the second-to-last layer (SDXL and
//! "clip skip"), and the pooled, projected embedding at the first end-of-text token (SDXL).

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::kernels::{self, Linear};
use crate::loader;
use crate::lora::Lora;

/// The fields of a transformers `CLIPTextConfig` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Pooling position: the first token equal to this id (legacy configs with 2: the
    /// largest id, which is end-of-text in CLIP's vocabulary).
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn default_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    QuickGelu,
    Gelu,
}

impl Activation {
    fn parse(name: &str) -> Result<Activation> {
        match name {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(candle_core::Error::Msg(format!(
                "unsupported CLIP hidden_act `{other}` (quick_gelu or gelu)"
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => kernels::quick_gelu(x),
            Activation::Gelu => kernels::gelu(x),
        }
    }
}

struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// What one forward pass returns.
pub struct ClipOutput {
    /// [B, T, hidden] after the final layer norm.
    pub last_hidden_state: Tensor,
    /// [B, T, hidden] output of the second-to-last encoder layer (no final norm).
    pub penultimate: Tensor,
    /// [B, projection_dim] (or [B, hidden] without a projection): the final-norm state at the
    /// first end-of-text token, projected when the model has `text_projection`.
    pub pooled: Tensor,
}

pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    heads: usize,
    act: Activation,
    eos_token_id: Option<u32>,
}

impl ClipTextModel {
    /// The dtype the encoder computes in and returns (its weights').
    pub fn dtype(&self) -> candle_core::DType {
        self.position_embedding.dtype()
    }

    /// Build from weights. `vb` is at the checkpoint root: the `text_model.` prefix is
    /// detected; `text_projection` is used when present.
    pub fn load(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<ClipTextModel> {
        let tm = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(candle_core::Error::Msg(format!(
                "hidden_size {h} is not divisible by num_attention_heads {}",
                cfg.num_attention_heads
            )));
        }
        let emb = tm.pp("embeddings");
        let token_embedding = embedding(cfg.vocab_size, h, emb.pp("token_embedding"))?;
        let position_embedding = emb
            .pp("position_embedding")
            .get((cfg.max_position_embeddings, h), "weight")?;
        let ln = |vb: VarBuilder| layer_norm(h, cfg.layer_norm_eps, vb);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = tm.pp(format!("encoder.layers.{i}"));
                let a = l.pp("self_attn");
                Ok(Layer {
                    ln1: ln(l.pp("layer_norm1"))?,
                    q: Linear::load(h, h, true, a.pp("q_proj"))?.input_major()?,
                    k: Linear::load(h, h, true, a.pp("k_proj"))?.input_major()?,
                    v: Linear::load(h, h, true, a.pp("v_proj"))?.input_major()?,
                    out: Linear::load(h, h, true, a.pp("out_proj"))?.input_major()?,
                    ln2: ln(l.pp("layer_norm2"))?,
                    fc1: Linear::load(h, cfg.intermediate_size, true, l.pp("mlp.fc1"))?
                        .input_major()?,
                    fc2: Linear::load(cfg.intermediate_size, h, true, l.pp("mlp.fc2"))?
                        .input_major()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = ln(tm.pp("final_layer_norm"))?;
        let text_projection = match (
            vb.contains_tensor("text_projection.weight"),
            cfg.projection_dim,
        ) {
            (true, Some(p)) => Some(Linear::load(h, p, false, vb.pp("text_projection"))?),
            _ => None,
        };
        Ok(ClipTextModel {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            text_projection,
            heads: cfg.num_attention_heads,
            act: Activation::parse(&cfg.hidden_act)?,
            eos_token_id: cfg.eos_token_id,
        })
    }

    /// Load a diffusers `text_encoder/` folder: `config.json` and `model.safetensors` (or its
    /// `.fp16` variant), read in parallel into memory, with `loras` merged in (`component`: `text_encoder`
    /// or `text_encoder_2`, as LoRA files name them).
    pub fn from_dir(
        dir: &Path,
        component: &str,
        loras: &[(&Lora, f64)],
        dtype: DType,
        device: &Device,
    ) -> Result<ClipTextModel> {
        let cfg: ClipTextConfig = loader::read_config(&dir.join("config.json"))?;
        let weights = loader::weight_files(dir, "model")?;
        ClipTextModel::load(
            loader::var_builder(&weights, component, loras, dtype, device)?,
            &cfg,
        )
    }

    /// Encode token ids [B, T] (u32 or i64).
    pub fn forward(&self, input_ids: &Tensor) -> Result<ClipOutput> {
        let ids = input_ids.to_dtype(DType::U32)?;
        let (_, t) = ids.dims2()?;
        let pos = self.position_embedding.narrow(0, 0, t)?;
        let mut x = self.token_embedding.forward(&ids)?.broadcast_add(&pos)?;
        let mut penultimate = None;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer(layer, &x)?;
            if i + 2 == n {
                penultimate = Some(x.clone());
            }
        }
        let penultimate = match penultimate {
            Some(p) => p,
            None => x.clone(),
        };
        let last = self.final_layer_norm.forward(&x)?;
        let pooled = self.pool(&last, &ids)?;
        Ok(ClipOutput {
            last_hidden_state: last,
            penultimate,
            pooled,
        })
    }

    fn layer(&self, l: &Layer, x: &Tensor) -> Result<Tensor> {
        let h = x.dim(D::Minus1)?;
        let hd = h / self.heads;
        let y = l.ln1.forward(x)?;
        let (q, k, v) = (l.q.forward(&y)?, l.k.forward(&y)?, l.v.forward(&y)?);
        let attn = kernels::attention(&q, &k, &v, self.heads, (hd as f64).powf(-0.5), true)?;
        let x = l.out.forward_add(&attn, x)?;
        let y = l.ln2.forward(&x)?;
        l.fc2.forward_add(&self.act.apply(&l.fc1.forward(&y)?)?, &x)
    }

    fn pool(&self, last: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let rows = ids.to_vec2::<u32>()?;
        let picked = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let pos = match self.eos_token_id {
                    Some(eos) if eos != 2 => row.iter().position(|&id| id == eos),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    // Legacy: the largest id (end-of-text), first occurrence.
                    let max = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|&id| id == max).unwrap_or(0)
                });
                last.get(i)?.get(pos)
            })
            .collect::<Result<Vec<_>>>()?;
        let pooled = Tensor::stack(&picked, 0)?;
        match &self.text_projection {
            Some(p) => p.forward(&pooled),
            None => Ok(pooled),
        }
    }
}
