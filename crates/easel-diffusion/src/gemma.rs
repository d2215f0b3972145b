//! The Gemma-2 text model (transformers' `Gemma2Model`), Sana's text encoder: token ids and an
//! attention mask in, `last_hidden_state` (after the final norm) out, written on candle-nn.
//!
//! Points that differ from a plain Llama-style decoder, all as transformers 5 computes them
//! with its eager attention (the only one that supports soft-capping):
//!
//! - embeddings are multiplied by `sqrt(hidden_size)` rounded to the embedding dtype first;
//! - RMSNorm scales by `(1 + w)` and is computed in f32 whatever the model dtype, then cast back;
//!   every layer has four of them: before and after attention, before and after the MLP
//!   (`input_layernorm`, `post_attention_layernorm`, `pre_feedforward_layernorm`,
//!   `post_feedforward_layernorm`), the "post" ones applied to the branch before the residual;
//! - attention logits are scaled by `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`) and, when
//!   `attn_logit_softcapping` is set, soft-capped `c * tanh(x / c)` before the mask is added;
//!   softmax in f32;
//! - the mask is causal plus key padding from the attention mask; masked logits get the dtype's
//!   lowest finite value (not -inf), so a row with every key masked attends uniformly, as in
//!   transformers. Query rows at padding positions are computed like any other (they see the
//!   real tokens before them), so every position of the output matches, pads included;
//! - `sliding_attention` layers (from `layer_types`, or the legacy rule: even layers slide)
//!   also hide keys `window` or more positions back (`kv > q - sliding_window`);
//! - grouped-query attention (query head h reads key/value head h / (heads / kv_heads)), RoPE
//!   on rotate-half pairs with `rope_parameters.rope_theta` (or legacy `rope_theta`); positions
//!   are 0..L whatever the padding; cos/sin are computed in f32 as transformers does;
//! - MLP `down(gelu_tanh(gate(x)) * up(x))`.
//!
//! Weights load from a transformers folder: `config.json` plus `model.safetensors`, or shards
//! listed by `model.safetensors.index.json` (also the `.fp16` / `.bf16` variants diffusers
//! names `model.fp16.safetensors` / `model.safetensors.index.fp16.json`); keys as
//! `Gemma2Model` writes them (`embed_tokens.weight`, `layers.N....`, `norm.weight`), or with
//! the `model.` prefix of a `Gemma2ForCausalLM` checkpoint (its `lm_head` is ignored).
//! [`write_tiny`] writes a small random-weight folder of this layout.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, VarBuilder};

use crate::kernels::{
    self,
    linear::{linear_b, Linear},
};
use serde::{Deserialize, Serialize};

use crate::loader;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// `rope_parameters` of a transformers 5 config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// The fields of a transformers `Gemma2Config` the model uses, with transformers' defaults
/// (those of gemma-2-2b).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gemma2Config {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_kv_heads")]
    pub num_key_value_heads: usize,
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    #[serde(default = "d_act")]
    pub hidden_activation: String,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    /// transformers 5: `{"rope_theta": ..., "rope_type": "default"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    /// Older configs: the base directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    /// An integer in transformers' config (written as one when it is whole: transformers 5
    /// refuses `24.0`).
    #[serde(default = "d_scalar", serialize_with = "whole_as_integer")]
    pub query_pre_attn_scalar: f64,
    /// Window of the sliding layers; `null` disables the window.
    #[serde(default = "d_window")]
    pub sliding_window: Option<usize>,
    /// `sliding_attention` / `full_attention` per layer; absent: even layers slide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Attention logit soft-cap; `null` disables it (absent: 50).
    #[serde(default = "d_attn_cap")]
    pub attn_logit_softcapping: Option<f64>,
    /// Only used by the LM head (not here); kept so written configs are complete.
    #[serde(default = "d_final_cap")]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default = "d_init")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn whole_as_integer<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn d_vocab() -> usize {
    256_000
}
fn d_hidden() -> usize {
    2304
}
fn d_intermediate() -> usize {
    9216
}
fn d_layers() -> usize {
    26
}
fn d_heads() -> usize {
    8
}
fn d_kv_heads() -> usize {
    4
}
fn d_head_dim() -> usize {
    256
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_positions() -> usize {
    8192
}
fn d_eps() -> f64 {
    1e-6
}
fn d_scalar() -> f64 {
    256.0
}
fn d_window() -> Option<usize> {
    Some(4096)
}
fn d_attn_cap() -> Option<f64> {
    Some(50.0)
}
fn d_final_cap() -> Option<f64> {
    Some(30.0)
}
fn d_init() -> f64 {
    0.02
}

impl Gemma2Config {
    /// The RoPE base: `rope_parameters.rope_theta`, else `rope_theta`, else 10000.
    pub fn rope_base(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }

    /// Whether layer `i` uses the sliding window.
    pub fn is_sliding(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(i).is_some_and(|t| t == "sliding_attention"),
            None => i.is_multiple_of(2),
        }
    }

    /// A small configuration of the same structure (4 layers sliding/full, GQA 4/2 heads of
    /// 16, soft-capping 50, `query_pre_attn_scalar` 24), as the parity fixture's text encoder.
    pub fn tiny(vocab_size: usize) -> Gemma2Config {
        Gemma2Config {
            vocab_size,
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            hidden_activation: d_act(),
            max_position_embeddings: 8192,
            rms_norm_eps: 1e-6,
            rope_parameters: Some(RopeParameters {
                rope_theta: Some(10_000.0),
                rope_type: Some("default".into()),
            }),
            rope_theta: None,
            attention_bias: false,
            query_pre_attn_scalar: 24.0,
            sliding_window: Some(4096),
            layer_types: Some(
                (0..4)
                    .map(|i| {
                        if i % 2 == 0 {
                            "sliding_attention"
                        } else {
                            "full_attention"
                        }
                        .to_string()
                    })
                    .collect(),
            ),
            attn_logit_softcapping: Some(50.0),
            final_logit_softcapping: Some(30.0),
            initializer_range: 0.25,
            pad_token_id: Some(0),
            bos_token_id: Some(2),
            eos_token_id: Some(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluTanh,
    GeluErf,
}

impl Activation {
    fn parse(name: &str) -> Result<Activation> {
        match name {
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            other => Err(err(format!(
                "unsupported Gemma2 hidden_activation `{other}` (gelu_pytorch_tanh or gelu)"
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::GeluTanh => x.gelu(),
            Activation::GeluErf => kernels::gelu(x),
        }
    }
}

/// Gemma's RMSNorm: `x / sqrt(mean(x²) + eps) * (1 + w)`, in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    /// `1 + w`, in f32.
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
        let w = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        Ok(RmsNorm {
            scale: (w + 1.0)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        y.broadcast_mul(&self.scale)?.to_dtype(dtype)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_attn_norm: RmsNorm,
    pre_ff_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ff_norm: RmsNorm,
    sliding: bool,
}

/// transformers' `Gemma2Model`: the decoder stack without the LM head.
#[derive(Debug, Clone)]
pub struct Gemma2Model {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    cfg: Gemma2Config,
    act: Activation,
    dtype: DType,
    device: Device,
}

impl Gemma2Model {
    /// Build from weights; `vb` at the checkpoint root (a `model.` prefix is detected).
    pub fn new(vb: VarBuilder, cfg: &Gemma2Config) -> Result<Gemma2Model> {
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        if cfg.num_attention_heads == 0
            || cfg.num_key_value_heads == 0
            || !cfg
                .num_attention_heads
                .is_multiple_of(cfg.num_key_value_heads)
        {
            return Err(err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                cfg.num_attention_heads, cfg.num_key_value_heads
            )));
        }
        if !cfg.head_dim.is_multiple_of(2) {
            return Err(err(format!("head_dim {} is odd (RoPE)", cfg.head_dim)));
        }
        if let Some(t) = cfg
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.as_ref())
        {
            if t != "default" {
                return Err(err(format!("unsupported Gemma2 rope_type `{t}` (default)")));
            }
        }
        if let Some(types) = &cfg.layer_types {
            if let Some(bad) = types
                .iter()
                .find(|t| *t != "sliding_attention" && *t != "full_attention")
            {
                return Err(err(format!("unsupported Gemma2 layer type `{bad}`")));
            }
        }
        let h = cfg.hidden_size;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let embed = Embedding::new(vb.pp("embed_tokens").get((cfg.vocab_size, h), "weight")?, h);
        let norm = |vb: VarBuilder| RmsNorm::load(h, cfg.rms_norm_eps, vb);
        let bias = cfg.attention_bias;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("layers.{i}"));
                let a = l.pp("self_attn");
                let m = l.pp("mlp");
                Ok(Layer {
                    input_norm: norm(l.pp("input_layernorm"))?,
                    q: linear_b(h, nh * hd, bias, a.pp("q_proj"))?,
                    k: linear_b(h, nkv * hd, bias, a.pp("k_proj"))?,
                    v: linear_b(h, nkv * hd, bias, a.pp("v_proj"))?,
                    o: linear_b(nh * hd, h, bias, a.pp("o_proj"))?,
                    post_attn_norm: norm(l.pp("post_attention_layernorm"))?,
                    pre_ff_norm: norm(l.pp("pre_feedforward_layernorm"))?,
                    gate: linear_b(h, cfg.intermediate_size, false, m.pp("gate_proj"))?,
                    up: linear_b(h, cfg.intermediate_size, false, m.pp("up_proj"))?,
                    down: linear_b(cfg.intermediate_size, h, false, m.pp("down_proj"))?,
                    post_ff_norm: norm(l.pp("post_feedforward_layernorm"))?,
                    sliding: cfg.is_sliding(i),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gemma2Model {
            embed,
            layers,
            norm: norm(vb.pp("norm"))?,
            cfg: cfg.clone(),
            act: Activation::parse(&cfg.hidden_activation)?,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Load a transformers folder (`config.json` + weights, see the module docs), converting
    /// the weights to `dtype`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Gemma2Model> {
        let cfg: Gemma2Config = loader::read_config(&dir.join("config.json"))?;
        let files = loader::weight_files(dir, "model")?;
        let vb = crate::loader::var_builder(&files, "", &[], dtype, device)?;
        Gemma2Model::new(vb, &cfg)
    }

    pub fn config(&self) -> &Gemma2Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `last_hidden_state` [B, L, hidden] for `input_ids` [B, L] (u32 or i64) and
    /// `attention_mask` [B, L] (1 = token, 0 = padding; any dtype).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let ids = input_ids.to_dtype(DType::U32)?.to_device(&self.device)?;
        let (b, l) = ids.dims2()?;
        let keep: Vec<Vec<f32>> = attention_mask
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec2()?;
        if keep.len() != b || keep.iter().any(|r| r.len() != l) {
            return Err(err(format!(
                "attention_mask {:?} does not match input_ids {:?}",
                attention_mask.shape(),
                ids.shape()
            )));
        }
        let full = self.mask(&keep, None)?;
        let sliding = match self.cfg.sliding_window {
            Some(w) if w < l && self.layers.iter().any(|x| x.sliding) => {
                Some(self.mask(&keep, Some(w))?)
            }
            _ => None,
        };
        let (cos, sin) = self.rope_tables(l)?;

        let x = self.embed.forward(&ids)?;
        let normalizer = Tensor::new((self.cfg.hidden_size as f64).sqrt() as f32, &self.device)?
            .to_dtype(x.dtype())?;
        let mut x = x.broadcast_mul(&normalizer)?;
        for layer in &self.layers {
            let mask = match (&sliding, layer.sliding) {
                (Some(s), true) => s,
                _ => &full,
            };
            x = self.layer(layer, &x, mask, &cos, &sin)?;
        }
        self.norm.forward(&x)
    }

    /// Additive mask [B, 1, L, L] in f32: 0 where query i may see key j, else f32's lowest
    /// value (the model dtype's lowest for f16 / bf16 models, as transformers uses).
    fn mask(&self, keep: &[Vec<f32>], window: Option<usize>) -> Result<Tensor> {
        let l = keep.first().map_or(0, Vec::len);
        let low = match self.dtype {
            DType::F16 => -65504.0,
            DType::BF16 => -3.389_531_4e38,
            _ => f32::MIN,
        };
        let mut m = Vec::with_capacity(keep.len() * l * l);
        for row in keep {
            for i in 0..l {
                for (j, &k) in row.iter().enumerate() {
                    let visible = j <= i && k != 0.0 && window.is_none_or(|w| j + w > i);
                    m.push(if visible { 0.0 } else { low });
                }
            }
        }
        Tensor::from_vec(m, (keep.len(), 1, l, l), &self.device)
    }

    /// cos and sin [L, head_dim / 2] for positions 0..L, computed in f32 as transformers
    /// does (inverse frequencies and angles rounded to f32), in the model dtype.
    fn rope_tables(&self, l: usize) -> Result<(Tensor, Tensor)> {
        let hd = self.cfg.head_dim;
        let base = self.cfg.rope_base();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let e = ((2 * i) as f32 / hd as f32) as f64;
                (1.0 / (base.powf(e) as f32) as f64) as f32
            })
            .collect();
        let mut cos = Vec::with_capacity(l * hd / 2);
        let mut sin = Vec::with_capacity(l * hd / 2);
        for p in 0..l {
            for &f in &inv {
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let t = |v: Vec<f32>| Tensor::from_vec(v, (l, hd / 2), &self.device)?.to_dtype(self.dtype);
        Ok((t(cos)?, t(sin)?))
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let y = layer.input_norm.forward(x)?;
        let y = self.attention(layer, &y, mask, cos, sin)?;
        let x = (x + layer.post_attn_norm.forward(&y)?)?;
        let y = layer.pre_ff_norm.forward(&x)?;
        let y = (self.act.apply(&layer.gate.forward(&y)?)? * layer.up.forward(&y)?)?;
        let y = layer.down.forward(&y)?;
        x + layer.post_ff_norm.forward(&y)?
    }

    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let rep = nh / nkv;
        let heads = |lin: &Linear, n: usize| -> Result<Tensor> {
            lin.forward(x)?
                .reshape((b, l, n, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = candle_nn::rotary_emb::rope(&heads(&layer.q, nh)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&heads(&layer.k, nkv)?, cos, sin)?;
        let v = heads(&layer.v, nkv)?;
        // Query heads kv*rep .. kv*rep+rep share key/value head kv: group them on the rows.
        let q = q.reshape((b, nkv, rep * l, hd))?;
        let scores = (q.matmul(&k.t()?)? * self.cfg.query_pre_attn_scalar.powf(-0.5))?;
        let scores = match self.cfg.attn_logit_softcapping {
            Some(c) => ((scores / c)?.tanh()? * c)?,
            None => scores,
        };
        let scores = scores
            .reshape((b, nh, l, l))?
            .to_dtype(DType::F32)?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(self.dtype)?
            .reshape((b, nkv, rep * l, l))?;
        let out = probs
            .matmul(&v)?
            .reshape((b, nh, l, hd))?
            .transpose(1, 2)?
            .reshape((b, l, nh * hd))?;
        layer.o.forward(&out)
    }
}

/// Write a random-weight `Gemma2Model` folder: `dir/config.json` (`cfg`, with transformers'
/// `architectures` / `model_type`) and `dir/model.safetensors` (f32) with the keys
/// `Gemma2Model` writes. Weights are drawn with `TorchRng` from `seed` in key order: matrices
/// normal with std `cfg.initializer_range`, norm weights normal with std 0.1 (so `1 + w` is
/// not all ones). The same seed gives the same files.
pub fn write_tiny(dir: &Path, cfg: &Gemma2Config, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| err(e.to_string()))?;
    config["architectures"] = serde_json::json!(["Gemma2Model"]);
    config["model_type"] = serde_json::json!("gemma2");
    config["dtype"] = serde_json::json!("float32");
    let text = serde_json::to_string_pretty(&config).map_err(|e| err(e.to_string()))? + "\n";
    let path = dir.join("config.json");
    std::fs::write(&path, text).map_err(|e| err(format!("writing {}: {e}", path.display())))?;

    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q, kv, ff) = (
        cfg.num_attention_heads * hd,
        cfg.num_key_value_heads * hd,
        cfg.intermediate_size,
    );
    let mut shapes: Vec<(String, Vec<usize>, f32)> = Vec::new();
    let w = cfg.initializer_range as f32;
    shapes.push(("embed_tokens.weight".into(), vec![cfg.vocab_size, h], w));
    for i in 0..cfg.num_hidden_layers {
        let p = format!("layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![q, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, q]),
            ("mlp.gate_proj", vec![ff, h]),
            ("mlp.up_proj", vec![ff, h]),
            ("mlp.down_proj", vec![h, ff]),
        ] {
            shapes.push((format!("{p}.{name}.weight"), shape.clone(), w));
            if cfg.attention_bias && name.starts_with("self_attn") {
                shapes.push((format!("{p}.{name}.bias"), vec![shape[0]], w));
            }
        }
        for n in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            shapes.push((format!("{p}.{n}.weight"), vec![h], 0.1));
        }
    }
    shapes.push(("norm.weight".into(), vec![h], 0.1));

    let mut rng = crate::rng::TorchRng::new(seed);
    let mut tensors = std::collections::HashMap::new();
    for (name, shape, std) in shapes {
        let n = shape.iter().product();
        let v: Vec<f32> = rng.randn_vec(n).into_iter().map(|x| x * std).collect();
        tensors.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
    }
    let path = dir.join("model.safetensors");
    crate::loader::save_safetensors(&tensors, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers reads `query_pre_attn_scalar` as an integer: a whole value is written as
    /// one, so the folders Easel writes load in transformers too.
    #[test]
    fn configs_write_whole_scalars_as_integers() {
        let v = serde_json::to_value(Gemma2Config::tiny(10)).unwrap();
        assert_eq!(v["query_pre_attn_scalar"], serde_json::json!(24));
        assert!(v["query_pre_attn_scalar"].is_u64() || v["query_pre_attn_scalar"].is_i64());
        let back: Gemma2Config = serde_json::from_value(v).unwrap();
        assert_eq!(back.query_pre_attn_scalar, 24.0);
    }
}
