//! The denoiser: diffusers' `UNet2DConditionModel` for SD 1.x, 2.x and XL, configured from
//! the folder's `config.json`. Covers per-level head counts and transformer depths, conv or
//! linear projections, SDXL's `text_time` added embedding (size/crop conditioning and pooled
//! text), and inpainting UNets (9 input channels).

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::blocks::{conv1x1, conv3x3, group_norm, Downsample, ResnetBlock, Upsample};
use crate::kernels::{self, Conv2d, GroupNorm, Linear};
use crate::loader;
use crate::lora::Lora;

/// A config value given once for all levels or per level.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerLevel {
    One(usize),
    Many(Vec<usize>),
}

impl PerLevel {
    fn at(&self, level: usize) -> usize {
        match self {
            PerLevel::One(v) => *v,
            PerLevel::Many(v) => v.get(level).or(v.last()).copied().unwrap_or(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct UnetConfig {
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "two")]
    pub layers_per_block: usize,
    /// In SD configs this is the number of heads (diffusers' historical naming) unless
    /// `num_attention_heads` is given.
    #[serde(default = "eight")]
    pub attention_head_dim: PerLevel,
    #[serde(default)]
    pub num_attention_heads: Option<PerLevel>,
    pub cross_attention_dim: usize,
    #[serde(default = "one_level")]
    pub transformer_layers_per_block: PerLevel,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "mid_type")]
    pub mid_block_type: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    #[serde(default)]
    pub upcast_attention: bool,
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn eight() -> PerLevel {
    PerLevel::One(8)
}
fn one_level() -> PerLevel {
    PerLevel::One(1)
}
fn thirty_two() -> usize {
    32
}
fn norm_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn mid_type() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

impl UnetConfig {
    fn heads(&self, level: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .at(level)
    }

    fn check(&self) -> Result<()> {
        let unsupported = |what: String| {
            Err(candle_core::Error::Msg(format!(
                "unsupported UNet config: {what}"
            )))
        };
        if self.time_cond_proj_dim.is_some() {
            return unsupported("time_cond_proj_dim (LCM-distilled guidance embedding)".into());
        }
        if self.class_embed_type.is_some() {
            return unsupported("class_embed_type".into());
        }
        if self.only_cross_attention.as_bool() == Some(true) {
            return unsupported("only_cross_attention".into());
        }
        match self.addition_embed_type.as_deref() {
            None | Some("text_time") => {}
            Some(o) => return unsupported(format!("addition_embed_type `{o}`")),
        }
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") | None => {}
            Some(o) => return unsupported(format!("mid_block_type `{o}`")),
        }
        if self.down_block_types.len() != self.block_out_channels.len()
            || self.up_block_types.len() != self.block_out_channels.len()
        {
            return unsupported("block type lists must match block_out_channels".into());
        }
        Ok(())
    }
}

/// Sinusoidal embedding of (possibly fractional) timesteps, as diffusers' `get_timestep_embedding`.
pub fn timestep_embedding(
    t: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    shift: f64,
) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[&cos, &sin], 1)?
    } else {
        Tensor::cat(&[&sin, &cos], 1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(1, 0, 1)
    } else {
        Ok(emb)
    }
}

struct Attention {
    heads: usize,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl Attention {
    fn load(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Attention {
            heads,
            q: Linear::load(dim, dim, false, vb.pp("to_q"))?,
            k: Linear::load(context_dim, dim, false, vb.pp("to_k"))?,
            v: Linear::load(context_dim, dim, false, vb.pp("to_v"))?,
            out: Linear::load(dim, dim, true, vb.pp("to_out.0"))?,
        })
    }

    /// `residual + attention(x, context)`.
    fn forward_add(&self, x: &Tensor, context: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let dim = x.dim(2)?;
        let hd = dim / self.heads;
        let a = kernels::attention(
            &self.q.forward(x)?,
            &self.k.forward(context)?,
            &self.v.forward(context)?,
            self.heads,
            (hd as f64).powf(-0.5),
            false,
        )?;
        self.out.forward_add(&a, residual)
    }
}

struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn load(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let inner = dim * 4;
        Ok(TransformerBlock {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::load(dim, dim, heads, vb.pp("attn1"))?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::load(dim, context_dim, heads, vb.pp("attn2"))?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff_in: Linear::load(dim, inner * 2, true, vb.pp("ff.net.0.proj"))?,
            ff_out: Linear::load(inner, dim, true, vb.pp("ff.net.2"))?,
        })
    }

    /// Each residual is added in its output projection's product.
    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let y = self.norm1.forward(x)?;
        let x = self.attn1.forward_add(&y, &y, x)?;
        let x = self
            .attn2
            .forward_add(&self.norm2.forward(&x)?, context, &x)?;
        // GEGLU: the projection's first half is the value, the second the gate.
        let h = self.ff_in.forward(&self.norm3.forward(&x)?)?;
        self.ff_out.forward_add(&kernels::geglu(&h)?, &x)
    }
}

enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel`: group norm, projection in, transformer blocks,
/// projection out, residual.
struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<TransformerBlock>,
    proj_out: Proj,
}

impl SpatialTransformer {
    fn load(
        c: usize,
        heads: usize,
        depth: usize,
        cfg: &UnetConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let proj = |name: &str| -> Result<Proj> {
            if cfg.use_linear_projection {
                Ok(Proj::Linear(Linear::load(c, c, true, vb.pp(name))?))
            } else {
                Ok(Proj::Conv(conv1x1(c, c, vb.pp(name))?))
            }
        };
        Ok(SpatialTransformer {
            norm: group_norm(cfg.norm_num_groups, c, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks: (0..depth)
                .map(|i| {
                    TransformerBlock::load(
                        c,
                        cfg.cross_attention_dim,
                        heads,
                        vb.pp(format!("transformer_blocks.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            proj_out: proj("proj_out")?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let y = self.norm.forward(x)?;
        let to_seq =
            |t: &Tensor| -> Result<Tensor> { t.permute((0, 2, 3, 1))?.reshape((b, h * w, c)) };
        let mut y = match &self.proj_in {
            Proj::Conv(p) => to_seq(&p.forward(&y)?)?,
            Proj::Linear(p) => p.forward(&to_seq(&y)?)?,
        };
        for blk in &self.blocks {
            y = blk.forward(&y, context)?;
        }
        let to_map = |t: &Tensor| -> Result<Tensor> {
            t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
        };
        match &self.proj_out {
            Proj::Conv(p) => p.forward_add(&to_map(&y)?, x),
            Proj::Linear(p) => x + to_map(&p.forward(&y)?)?,
        }
    }
}

/// One level of the down or up path: resnets, each optionally followed by a transformer.
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    down: Option<Downsample>,
    up: Option<Upsample>,
}

pub struct Unet {
    pub config: UnetConfig,
    conv_in: Conv2d,
    time_1: Linear,
    time_2: Linear,
    add_1: Option<Linear>,
    add_2: Option<Linear>,
    down: Vec<Level>,
    mid_res1: ResnetBlock,
    mid_attn: SpatialTransformer,
    mid_res2: ResnetBlock,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// The weights' dtype: what [`Unet::forward`] computes in.
    dtype: DType,
}

/// SDXL's six size numbers for a `batch` of `height` × `width` images, as diffusers' SDXL
/// pipelines pass them by default: original size, crop origin (0, 0), target size.
pub fn sdxl_time_ids(height: usize, width: usize, batch: usize, dev: &Device) -> Result<Tensor> {
    let (h, w) = (height as f32, width as f32);
    Tensor::new(&[[h, w, 0.0, 0.0, h, w]], dev)?.repeat((batch, 1))
}

/// SDXL's extra conditioning: pooled text embedding and the six size/crop numbers.
pub struct AddedCond<'a> {
    pub text_embeds: &'a Tensor,
    pub time_ids: &'a Tensor,
}

impl Unet {
    pub fn load(vb: VarBuilder, cfg: UnetConfig) -> Result<Unet> {
        cfg.check()?;
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let (g, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        let res = |cin, cout, vb| ResnetBlock::load(cin, cout, g, eps, Some(temb), vb);

        let mut down = Vec::new();
        let mut cout = ch[0];
        for (i, kind) in cfg.down_block_types.iter().enumerate() {
            let cin = cout;
            cout = ch[i];
            let b = vb.pp(format!("down_blocks.{i}"));
            let cross = kind.starts_with("CrossAttn");
            let mut level = Level {
                resnets: vec![],
                attentions: vec![],
                down: None,
                up: None,
            };
            for j in 0..cfg.layers_per_block {
                level.resnets.push(res(
                    if j == 0 { cin } else { cout },
                    cout,
                    b.pp(format!("resnets.{j}")),
                )?);
                if cross {
                    let t = cfg.transformer_layers_per_block.at(i);
                    level.attentions.push(SpatialTransformer::load(
                        cout,
                        cfg.heads(i),
                        t,
                        &cfg,
                        b.pp(format!("attentions.{j}")),
                    )?);
                }
            }
            if i + 1 < n {
                level.down = Some(Downsample::load(cout, cout, false, b.pp("downsamplers.0"))?);
            }
            down.push(level);
        }

        let last = ch[n - 1];
        let m = vb.pp("mid_block");
        let mid_res1 = res(last, last, m.pp("resnets.0"))?;
        let mid_attn = SpatialTransformer::load(
            last,
            cfg.heads(n - 1),
            cfg.transformer_layers_per_block.at(n - 1),
            &cfg,
            m.pp("attentions.0"),
        )?;
        let mid_res2 = res(last, last, m.pp("resnets.1"))?;

        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up = Vec::new();
        let mut out_ch = rev[0];
        for (i, kind) in cfg.up_block_types.iter().enumerate() {
            let prev = out_ch;
            out_ch = rev[i];
            let input = rev[(i + 1).min(n - 1)];
            let lvl = n - 1 - i;
            let b = vb.pp(format!("up_blocks.{i}"));
            let cross = kind.starts_with("CrossAttn");
            let mut level = Level {
                resnets: vec![],
                attentions: vec![],
                down: None,
                up: None,
            };
            let layers = cfg.layers_per_block + 1;
            for j in 0..layers {
                let skip = if j + 1 == layers { input } else { out_ch };
                let rin = if j == 0 { prev } else { out_ch };
                level
                    .resnets
                    .push(res(rin + skip, out_ch, b.pp(format!("resnets.{j}")))?);
                if cross {
                    let t = cfg.transformer_layers_per_block.at(lvl);
                    level.attentions.push(SpatialTransformer::load(
                        out_ch,
                        cfg.heads(lvl),
                        t,
                        &cfg,
                        b.pp(format!("attentions.{j}")),
                    )?);
                }
            }
            if i + 1 < n {
                level.up = Some(Upsample::load(out_ch, b.pp("upsamplers.0"))?);
            }
            up.push(level);
        }

        let (add_1, add_2) = match (
            &cfg.addition_embed_type,
            cfg.projection_class_embeddings_input_dim,
        ) {
            (Some(_), Some(input)) => (
                Some(Linear::load(
                    input,
                    temb,
                    true,
                    vb.pp("add_embedding.linear_1"),
                )?),
                Some(Linear::load(
                    temb,
                    temb,
                    true,
                    vb.pp("add_embedding.linear_2"),
                )?),
            ),
            (Some(_), None) => {
                return Err(candle_core::Error::Msg(
                    "text_time UNet without projection_class_embeddings_input_dim".into(),
                ))
            }
            _ => (None, None),
        };
        Ok(Unet {
            conv_in: conv3x3(cfg.in_channels, ch[0], vb.pp("conv_in"))?,
            time_1: Linear::load(ch[0], temb, true, vb.pp("time_embedding.linear_1"))?,
            time_2: Linear::load(temb, temb, true, vb.pp("time_embedding.linear_2"))?,
            add_1,
            add_2,
            down,
            mid_res1,
            mid_attn,
            mid_res2,
            up,
            norm_out: group_norm(g, ch[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(ch[0], cfg.out_channels, vb.pp("conv_out"))?,
            config: cfg,
            dtype: vb.dtype(),
        })
    }

    /// Load a diffusers `unet/` folder (`config.json` + `diffusion_pytorch_model.safetensors`
    /// or its `.fp16` variant), read in parallel into memory, with `loras` (file, scale) merged in.
    pub fn from_dir(
        dir: &Path,
        loras: &[(&Lora, f64)],
        dtype: DType,
        device: &Device,
    ) -> Result<Unet> {
        let cfg: UnetConfig = loader::read_config(&dir.join("config.json"))?;
        let weights = loader::weight_files(dir, "diffusion_pytorch_model")?;
        Unet::load(
            loader::var_builder(&weights, "unet", loras, dtype, device)?,
            cfg,
        )
    }

    /// The dtype the UNet computes in (its weights').
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Predict noise (or v / x0, per the model) for `sample` [B, C, h, w] at `timestep`
    /// (a scalar, broadcast over the batch), conditioned on `context` [B, T, D]. The inputs
    /// are converted to the UNet's own dtype and the prediction comes back in `sample`'s.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<AddedCond>,
    ) -> Result<Tensor> {
        let dtype = self.dtype;
        let out = self.forward_own(
            &sample.to_dtype(dtype)?,
            timestep,
            &context.to_dtype(dtype)?,
            added,
        )?;
        out.to_dtype(sample.dtype())
    }

    /// [`Unet::forward`] on inputs already in the UNet's dtype.
    fn forward_own(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<AddedCond>,
    ) -> Result<Tensor> {
        let b = sample.dim(0)?;
        let dtype = self.dtype;
        let cfg = &self.config;
        let t = Tensor::full(timestep as f32, b, sample.device())?;
        let t_emb = timestep_embedding(
            &t,
            cfg.block_out_channels[0],
            cfg.flip_sin_to_cos,
            cfg.freq_shift,
        )?
        .to_dtype(dtype)?;
        let mut emb = self.time_2.forward(&self.time_1.forward(&t_emb)?.silu()?)?;
        if let (Some(a1), Some(a2)) = (&self.add_1, &self.add_2) {
            let added = added.ok_or_else(|| {
                candle_core::Error::Msg("this UNet needs text_embeds and time_ids".into())
            })?;
            let dim = cfg.addition_time_embed_dim.unwrap_or(256);
            let ids = added.time_ids.flatten_all()?;
            let time = timestep_embedding(&ids, dim, cfg.flip_sin_to_cos, cfg.freq_shift)?
                .reshape((b, ()))?
                .to_dtype(dtype)?;
            let input = Tensor::cat(&[&added.text_embeds.to_dtype(dtype)?, &time], 1)?;
            emb = (emb + a2.forward(&a1.forward(&input)?.silu()?)?)?;
        }

        let mut x = self.conv_in.forward(sample)?;
        let mut skips = vec![x.clone()];
        for level in &self.down {
            for (j, r) in level.resnets.iter().enumerate() {
                x = r.forward(&x, Some(&emb))?;
                if let Some(a) = level.attentions.get(j) {
                    x = a.forward(&x, context)?;
                }
                skips.push(x.clone());
            }
            if let Some(d) = &level.down {
                x = d.forward(&x)?;
                skips.push(x.clone());
            }
        }
        x = self.mid_res1.forward(&x, Some(&emb))?;
        x = self.mid_attn.forward(&x, context)?;
        x = self.mid_res2.forward(&x, Some(&emb))?;
        for level in &self.up {
            for (j, r) in level.resnets.iter().enumerate() {
                let skip = skips
                    .pop()
                    .ok_or_else(|| candle_core::Error::Msg("UNet skip stack underflow".into()))?;
                x = r.forward(&Tensor::cat(&[&x, &skip], 1)?, Some(&emb))?;
                if let Some(a) = level.attentions.get(j) {
                    x = a.forward(&x, context)?;
                }
            }
            if let Some(u) = &level.up {
                x = u.forward(&x)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }
}
