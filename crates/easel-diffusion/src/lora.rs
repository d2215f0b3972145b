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

/// Split a key into (component, module, part) for each layout.
fn parse_key(key: &str) -> Option<(String, String, &'static str)> {
    let (comp, rest) = if let Some(r) = key.strip_prefix("lora_unet_") {
        ("unet", r)
    } else if let Some(r) = key.strip_prefix("lora_te2_") {
        ("text_encoder_2", r)
    } else if let Some(r) = key
        .strip_prefix("lora_te1_")
        .or_else(|| key.strip_prefix("lora_te_"))
    {
        ("text_encoder", r)
    } else {
        let (comp, r) = key.split_once('.')?;
        (comp, r)
    };
    for (suffix, part) in [
        (".lora.down.weight", "down"),
        (".lora.up.weight", "up"),
        // Legacy diffusers text encoders (patched projections).
        (".lora_linear_layer.down.weight", "down"),
        (".lora_linear_layer.up.weight", "up"),
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
        (".alpha", "alpha"),
    ] {
        if let Some(module) = rest.strip_suffix(suffix) {
            return Some((comp.to_string(), module.to_string(), part));
        }
    }
    None
}

impl Lora {
    pub fn load(path: &Path) -> Result<Lora> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| err(format!("reading LoRA {}: {e}", path.display())))?;
        let mut pairs: HashMap<(String, String), Pair> = HashMap::new();
        for (key, t) in tensors {
            let Some((comp, module, part)) = parse_key(&key) else {
                continue;
            };
            let p = pairs.entry((comp, module)).or_insert(Pair {
                down: None,
                up: None,
                alpha: None,
            });
            match part {
                "down" => p.down = Some(t),
                "up" => p.up = Some(t),
                _ => p.alpha = Some(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0]),
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
    /// `weight_names`. Errors if a module of this component matches no weight.
    pub fn deltas(
        &self,
        component: &str,
        weight_names: &[String],
        device: &Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut by_module: HashMap<String, &String> = HashMap::new();
        for name in weight_names {
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
            for name in weight_names {
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
    use super::parse_key;

    #[test]
    fn keys_of_each_layout() {
        let m = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
        assert_eq!(
            parse_key(&format!("unet.{m}.lora.down.weight")),
            Some(("unet".into(), m.into(), "down"))
        );
        assert_eq!(
            parse_key(&format!("unet.{m}.lora_B.weight")),
            Some(("unet".into(), m.into(), "up"))
        );
        let k = m.replace('.', "_");
        assert_eq!(
            parse_key(&format!("lora_unet_{k}.alpha")),
            Some(("unet".into(), k.clone(), "alpha"))
        );
        assert_eq!(
            parse_key("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight")
                .unwrap()
                .0,
            "text_encoder"
        );
        assert_eq!(parse_key("unet.conv_in.weight"), None);
    }
}
