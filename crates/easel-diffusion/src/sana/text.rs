//! Sana's prompt encoding, as diffusers' `SanaPipeline.encode_prompt` (and the PAG pipeline's)
//! does it with `clean_caption=False`:
//!
//! 1. the prompt becomes `prompt.lower().strip()` ([`preprocess`]);
//! 2. the complex human instruction (CHI, by default [`DEFAULT_COMPLEX_HUMAN_INSTRUCTION`], the
//!    pipeline's default argument) joined with `\n` is put in front, with no separator (its last
//!    line ends in a space); the instruction itself keeps its case;
//! 3. `num_chi_prompt_tokens` = the instruction's token count with `<bos>`, and
//!    `max_length_all = num_chi_prompt_tokens + M - 2` (M = `max_sequence_length`); the joint
//!    text is tokenized, truncated and right-padded with `<pad>` to `max_length_all`;
//! 4. Gemma-2 encodes all positions with the attention mask, and only
//!    `select_index = [0] + [L-(M-1) .. L)` is kept: `<bos>` and the last M-1 rows (the prompt
//!    and its padding; the "- 2" covers `<bos>` and the instruction's trailing `▁`, which merges
//!    with the prompt's first letter);
//! 5. the negative prompt (classifier-free guidance) is lower-cased and stripped too, gets no
//!    instruction, and is padded to M; all M rows are kept.
//!
//! Without an instruction (an empty list, as `complex_human_instruction=None` in diffusers)
//! the prompt is padded to M and every row is kept.
//!
//! Python's `str.lower()` and `str.strip()` are followed: Rust's `to_lowercase` uses the same
//! full Unicode mappings (`İ` → `i̇`, final sigma `Σ` → `ς` at a word end, as Python does), and
//! `strip()` removes what Python's `str.isspace` calls whitespace (Unicode White_Space plus the
//! separators U+001C..U+001F). Differences can only come from different Unicode versions
//! between Python's and Rust's tables. The masks come out as f32 tensors of 0s and 1s.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

use crate::gemma::{self, Gemma2Config, Gemma2Model};
use crate::tokenizer_json::{self, TokenizerJson};

/// The `complex_human_instruction` default of diffusers' Sana pipelines (8 lines; the last
/// ends in a space).
pub const DEFAULT_COMPLEX_HUMAN_INSTRUCTION: [&str; 8] = [
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
];

/// diffusers' default `max_sequence_length` for Sana.
pub const DEFAULT_MAX_SEQUENCE_LENGTH: usize = 300;

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// Python's `str.isspace` for one character.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `text.lower().strip()` with Python's semantics (see the module docs).
pub fn preprocess(text: &str) -> String {
    text.to_lowercase().trim_matches(py_space).to_string()
}

/// `[0] + list(range(-(M - 1), 0))` taken modulo `max_length_all` (the rows kept).
pub fn select_index(max_length_all: usize, max_sequence_length: usize) -> Vec<usize> {
    let m = max_sequence_length;
    let mut idx = vec![0];
    idx.extend(max_length_all + 1 - m.max(1)..max_length_all);
    idx.truncate(m);
    idx
}

/// The token-level part of the encoding (no model involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    /// The exact string given to the tokenizer (instruction + preprocessed prompt).
    pub text: String,
    /// Token count of the instruction alone, with `<bos>` (0 without an instruction).
    pub num_chi_prompt_tokens: usize,
    /// Padded length L of `input_ids`.
    pub max_length_all: usize,
    /// `[L]` ids, right-padded with `<pad>`.
    pub input_ids: Vec<u32>,
    /// `[L]` 1 for tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// `[M]` rows of the encoder output that are kept.
    pub select_index: Vec<usize>,
}

/// A prompt's tokens after the instruction (preprocessed as `prompt_tokens` does), and how
/// many of them the encoder keeps (`max_sequence_length - 2`; all of them without an
/// instruction but the BOS).
pub fn prompt_count<S: AsRef<str>>(
    tokenizer: &TokenizerJson,
    prompt: &str,
    instruction: &[S],
    max_sequence_length: usize,
) -> (usize, usize) {
    let prompt = preprocess(prompt);
    let Some((chi, n)) = instruction_text(tokenizer, instruction) else {
        let n = tokenizer.encode(&prompt, true).len();
        return (n.saturating_sub(1), max_sequence_length.saturating_sub(1));
    };
    let all = tokenizer.encode(&(chi + &prompt), true).len();
    (all.saturating_sub(n), max_sequence_length.saturating_sub(2))
}

/// The instruction's lines joined as the prompt's prefix, and its token count (BOS
/// included); `None` without an instruction.
fn instruction_text<S: AsRef<str>>(
    tokenizer: &TokenizerJson,
    instruction: &[S],
) -> Option<(String, usize)> {
    if instruction.is_empty() {
        return None;
    }
    let chi = instruction
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join("\n");
    let n = tokenizer.encode(&chi, true).len();
    Some((chi, n))
}

/// Steps 1-3 (and the selection of step 4) for a prompt: `instruction` empty means none.
pub fn prompt_tokens<S: AsRef<str>>(
    tokenizer: &TokenizerJson,
    prompt: &str,
    instruction: &[S],
    max_sequence_length: usize,
) -> Result<PromptTokens> {
    let prompt = preprocess(prompt);
    let (text, num_chi, max_length_all) = match instruction_text(tokenizer, instruction) {
        None => (prompt, 0, max_sequence_length),
        Some((chi, n)) => {
            let all = (n + max_sequence_length).saturating_sub(2);
            (chi + &prompt, n, all)
        }
    };
    if max_sequence_length == 0 || max_length_all + 1 < max_sequence_length {
        return Err(err(format!(
            "max_sequence_length {max_sequence_length} does not fit the padded length {max_length_all}"
        )));
    }
    let (input_ids, attention_mask) = tokenizer
        .encode_padded(&text, max_length_all)
        .map_err(|e| err(e.to_string()))?;
    Ok(PromptTokens {
        text,
        num_chi_prompt_tokens: num_chi,
        max_length_all,
        input_ids,
        attention_mask,
        select_index: select_index(max_length_all, max_sequence_length),
    })
}

/// Step 5: the negative prompt, preprocessed, no instruction, padded to M (all rows kept).
pub fn negative_tokens(
    tokenizer: &TokenizerJson,
    negative_prompt: &str,
    max_sequence_length: usize,
) -> Result<PromptTokens> {
    prompt_tokens::<&str>(tokenizer, negative_prompt, &[], max_sequence_length)
}

/// Everything one encoding produces.
#[derive(Debug, Clone)]
pub struct PromptEncoding {
    pub tokens: PromptTokens,
    /// [1, L, D] the encoder's output at every position (pads included).
    pub text_encoder_output: Tensor,
    /// [1, M, D] the kept rows.
    pub embeds: Tensor,
    /// [1, M] f32 mask of the kept rows.
    pub mask: Tensor,
}

/// Sana's text side: the Gemma tokenizer, the Gemma-2 encoder and the instruction.
#[derive(Debug, Clone)]
pub struct SanaTextEncoder {
    pub tokenizer: TokenizerJson,
    pub model: Gemma2Model,
    /// The complex human instruction lines (empty: none).
    pub instruction: Vec<String>,
}

impl SanaTextEncoder {
    /// Load from a Sana pipeline folder: `tokenizer/tokenizer.json` and `text_encoder/`, with
    /// the default instruction.
    pub fn load(pipeline_dir: &Path, dtype: DType, device: &Device) -> Result<SanaTextEncoder> {
        let tokenizer = TokenizerJson::from_file(&pipeline_dir.join("tokenizer/tokenizer.json"))
            .map_err(|e| err(e.to_string()))?;
        if tokenizer.pad_id().is_none() {
            return Err(err(format!(
                "{}: the tokenizer has no <pad> token",
                pipeline_dir.display()
            )));
        }
        let model = Gemma2Model::load(&pipeline_dir.join("text_encoder"), dtype, device)?;
        Ok(SanaTextEncoder {
            tokenizer,
            model,
            instruction: DEFAULT_COMPLEX_HUMAN_INSTRUCTION
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    }

    /// The prompt's embeddings [1, M, D] and mask [1, M] (f32).
    pub fn encode(&self, prompt: &str, max_sequence_length: usize) -> Result<(Tensor, Tensor)> {
        let e = self.encode_full(prompt, max_sequence_length)?;
        Ok((e.embeds, e.mask))
    }

    /// The negative prompt's embeddings [1, M, D] and mask [1, M] (f32).
    pub fn encode_negative(
        &self,
        negative_prompt: &str,
        max_sequence_length: usize,
    ) -> Result<(Tensor, Tensor)> {
        let e = self.run(negative_tokens(
            &self.tokenizer,
            negative_prompt,
            max_sequence_length,
        )?)?;
        Ok((e.embeds, e.mask))
    }

    /// The prompt's encoding with its intermediate results.
    pub fn encode_full(&self, prompt: &str, max_sequence_length: usize) -> Result<PromptEncoding> {
        self.run(prompt_tokens(
            &self.tokenizer,
            prompt,
            &self.instruction,
            max_sequence_length,
        )?)
    }

    /// Run the encoder on tokens and keep the selected rows.
    pub fn run(&self, tokens: PromptTokens) -> Result<PromptEncoding> {
        let dev = self.model.device();
        let l = tokens.max_length_all;
        let ids = Tensor::from_slice(&tokens.input_ids, (1, l), dev)?;
        let mask_all =
            Tensor::from_slice(&tokens.attention_mask, (1, l), dev)?.to_dtype(DType::F32)?;
        let out = self.model.forward(&ids, &mask_all)?;
        let idx: Vec<u32> = tokens.select_index.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, tokens.select_index.len(), dev)?;
        let embeds = out.index_select(&idx, 1)?;
        let mask = mask_all.index_select(&idx, 1)?;
        Ok(PromptEncoding {
            tokens,
            text_encoder_output: out,
            embeds,
            mask,
        })
    }
}

/// Sentences the tiny tokenizer learns its merges from, besides the default instruction.
const TINY_CORPUS: [&str; 6] = [
    "a photo of a cat sitting on a red sofa in a sunny room",
    "a watercolor painting of two foxes in the snow",
    "a lighthouse on a rocky coast under a stormy sky",
    "a cyberpunk city street at night with neon signs",
    "portrait of an astronaut, highly detailed, soft light",
    "a bowl of fruit on a wooden table, still life",
];

/// Write the text side of a tiny Sana pipeline folder: `tokenizer/` (a Gemma-style
/// byte-fallback BPE of about 760 tokens whose 400 merges are learned from the default
/// instruction and a few prompts, see [`tokenizer_json::write_tiny`]) and `text_encoder/`
/// (a random [`Gemma2Config::tiny`] model from `seed`, see [`gemma::write_tiny`]). Returns the
/// encoder's config (its `hidden_size` is the transformer's `caption_channels`).
pub fn write_tiny(pipeline_dir: &Path, seed: u64) -> Result<Gemma2Config> {
    let corpus: Vec<&str> = DEFAULT_COMPLEX_HUMAN_INSTRUCTION
        .iter()
        .chain(TINY_CORPUS.iter())
        .copied()
        .collect();
    let dir = pipeline_dir.join("tokenizer");
    let vocab = tokenizer_json::write_tiny(&dir, &corpus, 400)
        .map_err(|e| err(format!("writing {}: {e}", dir.display())))?;
    let cfg = Gemma2Config::tiny(vocab);
    gemma::write_tiny(&pipeline_dir.join("text_encoder"), &cfg, seed)?;
    Ok(cfg)
}
