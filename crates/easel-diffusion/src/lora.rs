//! LoRA adapters in the three common key layouts, merged into the base weights:
//! - diffusers: `unet.<module>.lora.down.weight` / `.lora.up.weight` (alpha = rank);
//! - PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight` (alpha = rank);
//! - kohya-ss / A1111: `lora_unet_<module with . as _>.lora_down.weight` / `.lora_up.weight`
//!   / `.alpha`, and `lora_te_` (`lora_te1_`, `lora_te2_`) for the text encoders.
//!
//! The applied weight is `W + scale * (alpha / rank) * up @ down` (convolution LoRAs are
//! reshaped to and from matrices). Merging happens once at load time, so a step costs the
//! same with or without LoRAs; the pipeline caches a merged model per LoRA set.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use easel_core::safetensors::{lora_key, LoraPart};

struct Pair {
    down: Option<Tensor>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

/// A loaded LoRA file: (component, module) → low-rank pair.
pub struct Lora {
    /// Keyed by component and module path, dotted (`down_blocks.0.attentions.0…to_q`) or, for
    /// kohya files, underscored (resolved against the model's weight names when merging).
    pairs: HashMap<(String, String), Pair>,
}

fn err(msg: String) -> candle_core::Error {
    candle_core::Error::Msg(msg)
}

impl Lora {
    pub fn load(path: &Path) -> Result<Lora> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| err(format!("reading LoRA {}: {e}", path.display())))?;
        let mut pairs: HashMap<(String, String), Pair> = HashMap::new();
        for (key, t) in tensors {
            let Some(k) = lora_key(&key) else {
                continue;
            };
            let p = pairs.entry((k.component, k.module)).or_insert(Pair {
                down: None,
                up: None,
                alpha: None,
            });
            match k.part {
                LoraPart::Down => p.down = Some(t),
                LoraPart::Up => p.up = Some(t),
                LoraPart::Alpha => {
                    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                    match v.as_slice() {
                        [a] => p.alpha = Some(*a),
                        _ => return Err(err(format!("`{key}`: an alpha is one number"))),
                    }
                }
            }
        }
        pairs.retain(|_, p| p.down.is_some() && p.up.is_some());
        if pairs.is_empty() {
            return Err(err(format!(
                "{} holds no LoRA weights in a known layout",
                path.display()
            )));
        }
        Ok(Lora { pairs })
    }

    /// Number of adapted modules.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `(weight name, alpha/rank * up @ down)` for every module of `component` present in
    /// `weights`. Errors if a module of this component matches no weight, or its pair has
    /// the shape of no weight (checked before multiplying: a file's small pair must not make
    /// a product larger than the weight it adapts).
    pub fn deltas(
        &self,
        component: &str,
        weights: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let weight_names: Vec<&String> = weights.keys().collect();
        let mut by_module: HashMap<String, &String> = HashMap::new();
        for &name in &weight_names {
            if let Some(m) = name.strip_suffix(".weight") {
                // Weight names of text encoders may carry a `text_model.` prefix that LoRA
                // files omit (or the other way round).
                for form in [m.to_string(), m.replace('.', "_")] {
                    by_module.insert(form.clone(), name);
                    if let Some(s) = form
                        .strip_prefix("text_model.")
                        .or_else(|| form.strip_prefix("text_model_"))
                    {
                        by_module.insert(s.to_string(), name);
                    }
                }
            }
        }
        // kohya's SDXL LoRAs name UNet modules as the original (SGM) UNet does.
        if component == "unet" {
            let layers = weight_names
                .iter()
                .filter_map(|n| {
                    n.strip_prefix("down_blocks.0.resnets.")?
                        .split('.')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .max()
                .map_or(0, |j| j + 1);
            for &name in &weight_names {
                if let Some(m) = name.strip_suffix(".weight") {
                    if let Some(sgm) = sgm_name(m, layers) {
                        by_module.insert(sgm.replace('.', "_"), name);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for ((comp, module), p) in &self.pairs {
            if comp != component {
                continue;
            }
            let target = by_module.get(module).ok_or_else(|| {
                err(format!(
                    "LoRA module `{module}` matches no {component} weight"
                ))
            })?;
            let (down, up) = (p.down.as_ref().unwrap(), p.up.as_ref().unwrap());
            let rank = down.dim(0)?;
            let w = &weights[*target];
            // up `[out, rank, 1…]` and down `[rank, in…]` for a weight `[out, in…]`.
            let fits = rank > 0
                && down.rank() >= 2
                && up.rank() >= 2
                && w.rank() >= 1
                && up.dim(1)? == rank
                && up.dim(0)? == w.dim(0)?
                && up.elem_count() == up.dim(0)? * rank
                && down.elem_count() / rank * w.dim(0)? == w.elem_count();
            if !fits {
                return Err(err(format!(
                    "LoRA module `{module}` ({:?} and {:?}) has the shape of no {component} \
                     weight `{target}` ({:?})",
                    down.dims(),
                    up.dims(),
                    weights[*target].dims()
                )));
            }
            let scale = p.alpha.unwrap_or(rank as f64) / rank as f64;
            let d2 = down.to_dtype(DType::F32)?.flatten_from(1)?;
            let u2 = up.to_dtype(DType::F32)?.flatten_from(1)?;
            let delta = (u2.matmul(&d2)? * scale)?.to_device(device)?;
            out.push(((*target).clone(), delta));
        }
        Ok(out)
    }
}

/// The SGM name of a diffusers UNet module inside an attention block (L layers per block).
fn sgm_name(module: &str, layers: usize) -> Option<String> {
    let parts: Vec<&str> = module.splitn(5, '.').collect();
    let num = |s: &str| s.parse::<usize>().ok();
    match parts.as_slice() {
        ["down_blocks", i, "attentions", j, rest] => Some(format!(
            "input_blocks.{}.1.{rest}",
            1 + num(i)? * (layers + 1) + num(j)?
        )),
        ["mid_block", "attentions", "0", rest @ ..] if !rest.is_empty() => {
            Some(format!("middle_block.1.{}", rest.join(".")))
        }
        ["up_blocks", i, "attentions", j, rest] => Some(format!(
            "output_blocks.{}.1.{rest}",
            num(i)? * (layers + 1) + num(j)?
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small pair whose product would be far larger than the weight it names is refused
    /// before it is multiplied (a 400 KB file must not ask for 40 GB).
    #[test]
    fn pairs_that_fit_no_weight_are_refused_before_multiplying() {
        let dev = Device::Cpu;
        let pair = |down: &[usize], up: &[usize]| Pair {
            down: Some(Tensor::zeros(down, DType::F32, &dev).unwrap()),
            up: Some(Tensor::zeros(up, DType::F32, &dev).unwrap()),
            alpha: None,
        };
        let weights: HashMap<String, Tensor> = [(
            "mid.proj.weight".to_string(),
            Tensor::zeros((8, 6), DType::F32, &dev).unwrap(),
        )]
        .into();
        let key = ("unet".to_string(), "mid.proj".to_string());
        for (down, up) in [
            (&[1, 100_000][..], &[100_000, 1][..]),
            (&[2, 6][..], &[8, 3][..]),
            (&[2, 5][..], &[8, 2][..]),
        ] {
            let lora = Lora {
                pairs: [(key.clone(), pair(down, up))].into(),
            };
            let e = lora.deltas("unet", &weights, &dev).expect_err("refused");
            assert!(e.to_string().contains("shape of no"), "{e}");
        }
        let lora = Lora {
            pairs: [(key, pair(&[2, 6], &[8, 2]))].into(),
        };
        let d = lora.deltas("unet", &weights, &dev).unwrap();
        assert_eq!(d[0].1.dims(), &[8, 6]);
    }
}
