//! Prompt parsing in the style of AUTOMATIC1111's web UI: emphasis weights, `BREAK`, and
//! prompts longer than CLIP's 75-token window split into chunks.
//!
//! # Emphasis syntax ([`parse_weights`])
//!
//! | syntax | effect |
//! |---|---|
//! | `(text)` | weight × 1.1 (nests: `((text))` × 1.21) |
//! | `[text]` | weight × 1/1.1 |
//! | `(text:1.5)` | weight × 1.5 (any `[+-]?[.0-9]+` number) |
//! | `\(` `\)` `\[` `\]` `\\` | the literal character; a lone `\` is dropped |
//! | `BREAK` (a whole word, upper case) | ends the current 75-token chunk |
//!
//! Like A1111: an unmatched `)` or `]` is kept as text; brackets still open at the end of the
//! prompt apply to everything after them; `text:1.5)` without an open `(` is plain text; runs
//! of equal weight are merged (so `(a)(b)` gives one piece `ab` at 1.1). Weights are computed
//! in f64 (merging compares f64 values, exactly as Python does) and returned as f32.
//!
//! `BREAK` is returned as the piece `("BREAK", -1.0)` ([`BREAK_TEXT`], [`BREAK_WEIGHT`]; see
//! [`is_break`]): the same marker A1111 uses. Two deliberate differences from A1111, both in
//! cases where A1111 misbehaves: a `BREAK` inside brackets still breaks (A1111 multiplies the
//! marker's -1 and then encodes the word "break" with a negative weight), and a weight that
//! matches the number pattern but is not a number (`(a:1.2.3)`, `(a:.)`) is read as text
//! (`:` and the digits) followed by a `)` that closes with × 1.1 (A1111 raises an error).
//!
//! # Chunks ([`tokenize_weighted`])
//!
//! Each piece is tokenized on its own (without BOS/EOS) and the tokens are laid out into chunks
//! of 75, as A1111's `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line` does:
//! - when a chunk is full and the next token is not a comma, and the chunk's last comma
//!   (`,</w>`) lies within its last [`COMMA_BACKTRACK`] tokens, the tokens after that comma
//!   move to the next chunk (so a chunk ends at a comma rather than mid-phrase);
//! - `BREAK` closes the current chunk, even an empty one (`a BREAK BREAK b` has an empty chunk
//!   in the middle, as in A1111);
//! - every chunk is `[BOS, up to 75 tokens, EOS, PAD...]` (77 ids), with weight 1.0 at BOS,
//!   EOS and padding;
//! - the empty prompt gives one chunk `[BOS, EOS, PAD...]`, which is also what
//!   `ClipTokenizer::encode_padded("", 77)` gives.
//!
//! A prompt of at most 75 tokens without emphasis gives one chunk whose ids equal
//! `encode_padded(prompt, 77)`, so plain prompts condition exactly as in diffusers.
//!
//! # How the pipeline uses it
//!
//! 1. `tokenize_weighted` for the prompt and for the negative prompt (an absent negative
//!    prompt is `""`). If their chunk counts differ, the shorter one is padded with
//!    [`Chunk::empty`] chunks ([`WeightedTokens::pad_to`]), as A1111's `pad_cond_uncond`
//!    does, so both halves of the CFG batch have the same sequence length.
//! 2. Each chunk's 77 ids go through the CLIP text encoder on their own (the usual
//!    `[1, 77]` input, no attention mask), giving `z` of shape `[77, D]` (SD 1.x: the last
//!    hidden state after the final layer norm; SDXL: the penultimate hidden state of each
//!    encoder, concatenated on the last axis).
//! 3. Emphasis, A1111's "Original" mode: `m0 = mean(z)`, `z = z * weights[:, None]`,
//!    `z = z * (m0 / mean(z))` (restores the mean over the whole chunk). When all weights are 1
//!    this is the identity, so skip it then to stay bit-exact with diffusers.
//! 4. The chunks' `z` are concatenated along the sequence axis: `[1, 77 * n, D]` is the
//!    UNet's `encoder_hidden_states` (cross-attention takes any sequence length).
//! 5. SDXL: both tokenizers chunk the prompt separately (their chunk counts can differ, e.g.
//!    through `!`; pad the smaller with empty chunks); the pooled embedding comes from the
//!    first chunk of the second encoder, as A1111 does.

use crate::tokenizer::ClipTokenizer;

/// Tokens of prompt text per chunk (CLIP's 77 positions minus BOS and EOS).
pub const CHUNK_LEN: usize = 75;
/// How far back from the end of a full chunk a comma may be to move the rest to the next
/// chunk (A1111's `comma_padding_backtrack` default).
pub const COMMA_BACKTRACK: usize = 20;
/// Text of the `BREAK` marker piece returned by [`parse_weights`].
pub const BREAK_TEXT: &str = "BREAK";
/// Weight of the `BREAK` marker piece returned by [`parse_weights`].
pub const BREAK_WEIGHT: f32 = -1.0;

const ROUND_MULTIPLIER: f64 = 1.1;
const SQUARE_MULTIPLIER: f64 = 1.0 / 1.1;

/// True for the `BREAK` marker piece of [`parse_weights`].
pub fn is_break(piece: &(String, f32)) -> bool {
    piece.0 == BREAK_TEXT && piece.1 == BREAK_WEIGHT
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String, f64),
    Break,
}

/// Splits a prompt into (text, weight) pieces following A1111's emphasis syntax (see the module
/// documentation). `BREAK` is the piece `("BREAK", -1.0)`. Never empty: `""` gives
/// `[("", 1.0)]`.
pub fn parse_weights(prompt: &str) -> Vec<(String, f32)> {
    parse(prompt)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text, weight) => (text, weight as f32),
            Piece::Break => (BREAK_TEXT.to_string(), BREAK_WEIGHT),
        })
        .collect()
}

fn parse(prompt: &str) -> Vec<Piece> {
    static BREAK_RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let break_re = BREAK_RE
        .get_or_init(|| regex::Regex::new(r"\s*\bBREAK\b\s*").expect("BREAK pattern is valid"));
    let mut res: Vec<Piece> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();

    fn multiply_range(res: &mut [Piece], start: usize, multiplier: f64) {
        for piece in &mut res[start..] {
            if let Piece::Text(_, weight) = piece {
                *weight *= multiplier;
            }
        }
    }

    let bytes = prompt.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                // `\(`, `\)`, `\[`, `\]`, `\\` are the literal character; a lone `\` vanishes.
                match bytes.get(i + 1) {
                    Some(&c @ (b'(' | b')' | b'[' | b']' | b'\\')) => {
                        res.push(Piece::Text(char::from(c).to_string(), 1.0));
                        i += 2;
                    }
                    _ => {
                        res.push(Piece::Text(String::new(), 1.0));
                        i += 1;
                    }
                }
            }
            b'(' => {
                round.push(res.len());
                i += 1;
            }
            b'[' => {
                square.push(res.len());
                i += 1;
            }
            b':' => match explicit_weight(&prompt[i..]) {
                // `:<number>)`
                Some((len, weight)) => {
                    match (round.pop(), weight) {
                        (Some(start), Some(weight)) => multiply_range(&mut res, start, weight),
                        (Some(start), None) => {
                            // Not a number: `:` and the digits are text, `)` closes.
                            round.push(start);
                            res.push(Piece::Text(":".into(), 1.0));
                            i += 1;
                            continue;
                        }
                        (None, _) => res.push(Piece::Text(prompt[i..i + len].to_string(), 1.0)),
                    }
                    i += len;
                }
                None => {
                    res.push(Piece::Text(":".into(), 1.0));
                    i += 1;
                }
            },
            b')' => {
                match round.pop() {
                    Some(start) => multiply_range(&mut res, start, ROUND_MULTIPLIER),
                    None => res.push(Piece::Text(")".into(), 1.0)),
                }
                i += 1;
            }
            b']' => {
                match square.pop() {
                    Some(start) => multiply_range(&mut res, start, SQUARE_MULTIPLIER),
                    None => res.push(Piece::Text("]".into(), 1.0)),
                }
                i += 1;
            }
            _ => {
                // A run of plain text (the special characters are ASCII, so byte positions
                // found here are char boundaries).
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'\\' | b'(' | b')' | b'[' | b']' | b':'))
                    .map_or(bytes.len(), |p| i + p);
                for (k, part) in break_re.split(&prompt[i..end]).enumerate() {
                    if k > 0 {
                        res.push(Piece::Break);
                    }
                    res.push(Piece::Text(part.to_string(), 1.0));
                }
                i = end;
            }
        }
    }

    for start in round {
        multiply_range(&mut res, start, ROUND_MULTIPLIER);
    }
    for start in square {
        multiply_range(&mut res, start, SQUARE_MULTIPLIER);
    }

    if res.is_empty() {
        res.push(Piece::Text(String::new(), 1.0));
    }

    // Merge runs of identical weights (never across a BREAK).
    let mut merged: Vec<Piece> = Vec::with_capacity(res.len());
    for piece in res {
        if let (Some(Piece::Text(text, weight)), Piece::Text(next, next_weight)) =
            (merged.last_mut(), &piece)
        {
            if *weight == *next_weight {
                text.push_str(next);
                continue;
            }
        }
        merged.push(piece);
    }
    merged
}

/// At a `:`, matches `:[+-]?[.0-9]+\)`: the match length in bytes and the parsed number
/// (`None` when the digits and dots do not form a number, e.g. `1.2.3`).
fn explicit_weight(s: &str) -> Option<(usize, Option<f64>)> {
    let bytes = s.as_bytes();
    let mut j = 1;
    if matches!(bytes.get(j), Some(b'+' | b'-')) {
        j += 1;
    }
    let digits = j;
    while matches!(bytes.get(j), Some(b'.' | b'0'..=b'9')) {
        j += 1;
    }
    if j == digits || bytes.get(j) != Some(&b')') {
        return None;
    }
    Some((j + 1, s[1..j].parse::<f64>().ok()))
}

/// One CLIP input: 77 ids `[BOS, tokens..., EOS, PAD...]` and a weight per id (1.0 at BOS,
/// EOS and padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Chunk {
    /// `[BOS, EOS, PAD...]` with all weights 1.0: the chunk of the empty prompt, used to pad
    /// the shorter of prompt / negative prompt.
    pub fn empty(tok: &ClipTokenizer) -> Chunk {
        Chunk::wrap(tok, &[], &[])
    }

    fn wrap(tok: &ClipTokenizer, ids: &[u32], weights: &[f32]) -> Chunk {
        debug_assert!(ids.len() <= CHUNK_LEN && ids.len() == weights.len());
        let mut out_ids = Vec::with_capacity(CHUNK_LEN + 2);
        out_ids.push(tok.bos());
        out_ids.extend_from_slice(ids);
        out_ids.push(tok.eos());
        out_ids.resize(CHUNK_LEN + 2, tok.pad());
        let mut out_weights = Vec::with_capacity(CHUNK_LEN + 2);
        out_weights.push(1.0);
        out_weights.extend_from_slice(weights);
        out_weights.resize(CHUNK_LEN + 2, 1.0);
        Chunk {
            ids: out_ids,
            weights: out_weights,
        }
    }

    /// True when every weight is 1.0 (emphasis is then a no-op).
    pub fn is_unweighted(&self) -> bool {
        self.weights.iter().all(|&w| w == 1.0)
    }
}

/// A prompt as CLIP inputs: one or more chunks of 77 ids (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedTokens {
    pub chunks: Vec<Chunk>,
}

impl WeightedTokens {
    /// Appends empty chunks until there are at least `n` (to match the other half of the CFG
    /// batch).
    pub fn pad_to(&mut self, n: usize, tok: &ClipTokenizer) {
        while self.chunks.len() < n {
            self.chunks.push(Chunk::empty(tok));
        }
    }
}

/// Tokenizes an A1111-style prompt into weighted chunks of 77 (see the module documentation).
pub fn tokenize_weighted(tok: &ClipTokenizer, prompt: &str) -> WeightedTokens {
    let comma = tok.token_id(",</w>");
    let mut b = ChunkBuilder {
        tok,
        chunks: Vec::new(),
        ids: Vec::with_capacity(CHUNK_LEN),
        weights: Vec::with_capacity(CHUNK_LEN),
        last_comma: None,
    };
    for piece in parse(prompt) {
        let (text, weight) = match piece {
            Piece::Break => {
                b.next_chunk();
                continue;
            }
            Piece::Text(text, weight) => (text, weight as f32),
        };
        for id in tok.encode(&text) {
            if Some(id) == comma {
                b.last_comma = Some(b.ids.len());
            } else if let Some(at) = b
                .last_comma
                .filter(|&at| b.ids.len() == CHUNK_LEN && CHUNK_LEN - at <= COMMA_BACKTRACK)
            {
                // Full chunk and a comma near its end: what follows the comma moves on.
                let moved_ids = b.ids.split_off(at + 1);
                let moved_weights = b.weights.split_off(at + 1);
                b.next_chunk();
                b.ids = moved_ids;
                b.weights = moved_weights;
            }
            if b.ids.len() == CHUNK_LEN {
                b.next_chunk();
            }
            b.ids.push(id);
            b.weights.push(weight);
        }
    }
    if !b.ids.is_empty() || b.chunks.is_empty() {
        b.next_chunk();
    }
    WeightedTokens { chunks: b.chunks }
}

struct ChunkBuilder<'a> {
    tok: &'a ClipTokenizer,
    chunks: Vec<Chunk>,
    ids: Vec<u32>,
    weights: Vec<f32>,
    /// Position of the current chunk's last comma.
    last_comma: Option<usize>,
}

impl ChunkBuilder<'_> {
    fn next_chunk(&mut self) {
        self.chunks
            .push(Chunk::wrap(self.tok, &self.ids, &self.weights));
        self.ids.clear();
        self.weights.clear();
        self.last_comma = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_weight_pattern() {
        assert_eq!(explicit_weight(":1.5)"), Some((5, Some(1.5))));
        assert_eq!(explicit_weight(":-.5)x"), Some((5, Some(-0.5))));
        assert_eq!(explicit_weight(":1.2.3)"), Some((7, None)));
        assert_eq!(explicit_weight(":1.5"), None);
        assert_eq!(explicit_weight(":)"), None);
        assert_eq!(explicit_weight(":+)"), None);
        assert_eq!(explicit_weight(": 1)"), None);
    }
}
