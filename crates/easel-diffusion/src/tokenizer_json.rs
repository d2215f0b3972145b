//! A BPE tokenizer read from a Hugging Face `tokenizer.json`, of the kind Gemma (and so Sana's
//! text encoder) uses: SentencePiece-style BPE with `▁` for spaces and byte fallback.
//!
//! It reproduces the `tokenizers` library's `Tokenizer::encode` for the components such files
//! use, in the library's order:
//!
//! 1. **Added tokens** (`added_tokens`: `<bos>`, `<pad>`, ...) are cut out of the raw text first
//!    (leftmost match, the longest at that position), those with `normalized: false` on the raw
//!    text, those with `normalized: true` on each normalized piece (their content normalized
//!    too). `lstrip` / `rstrip` swallow the whitespace beside a match, `single_word` only
//!    matches between non-word characters. They are recognised whether or not special tokens
//!    are added (as `tokenizers` does by default).
//! 2. **Normalizer**, applied to each piece between added tokens: `Replace` (literal or regex
//!    pattern), `Prepend` (only to a non-empty piece), `NFC`/`NFD`/`NFKC`/`NFKD`, `Lowercase`
//!    (character by character), `Strip`, and `Sequence` of those. Gemma-2 has a single
//!    `Replace(" " → "▁")` (no dummy prefix); Gemma-1-style files add `Prepend("▁")`.
//! 3. **Pre-tokenizer**: `Split` on a literal or regex pattern with any of the five behaviors
//!    (non-inverted), or a `Sequence` of them. Gemma's `Split(" ", MergedWithPrevious)` never
//!    fires, since the normalizer has already replaced every space.
//! 4. **BPE** on each pre-token: characters (with `continuing_subword_prefix` /
//!    `end_of_word_suffix` when set) become their vocabulary ids; a character outside the
//!    vocabulary becomes its UTF-8 bytes `<0xXX>` with `byte_fallback`, else `unk_token`
//!    (consecutive unknowns fused with `fuse_unk`). Merges are then applied lowest rank first,
//!    leftmost first among equal ranks, through a priority queue over a linked list of
//!    symbols, so a word of n characters costs O(n log n) map lookups (a 300-token prompt is
//!    one "word" here). Merges are kept as a hash map `(left id, right id) → (rank, merged id)`.
//!    `ignore_merges` (a whole word in the vocabulary is taken as is) is honoured.
//! 5. **Post-processor**: `TemplateProcessing`'s single-sequence template (Gemma: `<bos>` then
//!    the text, no `<eos>`), only when special tokens are asked for.
//!
//! Any other component type is an error naming it, not silently ignored. The file's own
//! `truncation` / `padding` entries are ignored: callers pad and truncate explicitly
//! ([`TokenizerJson::encode_padded`], which truncates before the template is applied, as
//! `tokenizers` does). [`write_tiny`] writes a small tokenizer of this kind from our own word
//! list, for tests and tiny models.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use unicode_normalization::UnicodeNormalization;

/// Errors from reading a `tokenizer.json`; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerJsonError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid tokenizer file {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("unsupported tokenizer component in {path}: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("tokenizer has no pad token (`<pad>` or `padding.pad_id`)")]
    NoPad,
}

type Res<T> = std::result::Result<T, TokenizerJsonError>;

/// A string pattern of a normalizer or pre-tokenizer: `{"String": ...}` or `{"Regex": ...}`.
#[derive(Debug, Clone)]
enum Pattern {
    Literal(String),
    Regex(regex::Regex),
}

impl Pattern {
    /// Byte ranges of the non-overlapping matches, left to right.
    fn find_all(&self, text: &str) -> Vec<(usize, usize)> {
        match self {
            Pattern::Literal(s) if s.is_empty() => Vec::new(),
            Pattern::Literal(s) => text
                .match_indices(s.as_str())
                .map(|(i, m)| (i, i + m.len()))
                .collect(),
            Pattern::Regex(r) => r
                .find_iter(text)
                .filter(|m| !m.is_empty())
                .map(|m| (m.start(), m.end()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum Normalizer {
    Replace { pattern: Pattern, content: String },
    Prepend(String),
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
    Lowercase,
    Strip { left: bool, right: bool },
    Sequence(Vec<Normalizer>),
}

impl Normalizer {
    fn apply(&self, text: String) -> String {
        match self {
            Normalizer::Replace { pattern, content } => {
                let mut out = String::with_capacity(text.len());
                let mut last = 0;
                for (s, e) in pattern.find_all(&text) {
                    out.push_str(&text[last..s]);
                    out.push_str(content);
                    last = e;
                }
                out.push_str(&text[last..]);
                out
            }
            Normalizer::Prepend(p) if !text.is_empty() => format!("{p}{text}"),
            Normalizer::Prepend(_) => text,
            Normalizer::Nfc => text.nfc().collect(),
            Normalizer::Nfd => text.nfd().collect(),
            Normalizer::Nfkc => text.nfkc().collect(),
            Normalizer::Nfkd => text.nfkd().collect(),
            // Per character, as `tokenizers` does (no context-dependent final sigma).
            Normalizer::Lowercase => text.chars().flat_map(char::to_lowercase).collect(),
            Normalizer::Strip { left, right } => {
                let t = if *left { text.trim_start() } else { &text };
                let t = if *right { t.trim_end() } else { t };
                t.to_string()
            }
            Normalizer::Sequence(list) => list.iter().fold(text, |t, n| n.apply(t)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitBehavior {
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

#[derive(Debug, Clone)]
enum PreTokenizer {
    Split {
        pattern: Pattern,
        behavior: SplitBehavior,
    },
    Sequence(Vec<PreTokenizer>),
}

impl PreTokenizer {
    fn split(&self, pieces: Vec<String>) -> Vec<String> {
        match self {
            PreTokenizer::Sequence(list) => list.iter().fold(pieces, |p, t| t.split(p)),
            PreTokenizer::Split { pattern, behavior } => pieces
                .into_iter()
                .flat_map(|p| split_piece(&p, pattern, *behavior))
                .collect(),
        }
    }
}

/// One piece cut by `pattern`, as `NormalizedString::split` does for each behavior.
fn split_piece(text: &str, pattern: &Pattern, behavior: SplitBehavior) -> Vec<String> {
    // The whole text as alternating (range, is_match) parts.
    let mut parts: Vec<((usize, usize), bool)> = Vec::new();
    let mut last = 0;
    for (s, e) in pattern.find_all(text) {
        if s > last {
            parts.push(((last, s), false));
        }
        parts.push(((s, e), true));
        last = e;
    }
    if last < text.len() {
        parts.push(((last, text.len()), false));
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    match behavior {
        SplitBehavior::Removed => out.extend(parts.iter().filter(|p| !p.1).map(|p| p.0)),
        SplitBehavior::Isolated => out.extend(parts.iter().map(|p| p.0)),
        SplitBehavior::Contiguous => {
            let mut prev_match = false;
            for &(r, m) in &parts {
                match out.last_mut() {
                    Some(l) if m && prev_match => l.1 = r.1,
                    _ => out.push(r),
                }
                prev_match = m;
            }
        }
        SplitBehavior::MergedWithPrevious => {
            let mut prev_match = false;
            for &(r, m) in &parts {
                match out.last_mut() {
                    Some(l) if m && !prev_match => l.1 = r.1,
                    _ => out.push(r),
                }
                prev_match = m;
            }
        }
        SplitBehavior::MergedWithNext => {
            let mut prev_match = false;
            for &(r, m) in parts.iter().rev() {
                match out.last_mut() {
                    Some(l) if m && !prev_match => l.0 = r.0,
                    _ => out.push(r),
                }
                prev_match = m;
            }
            out.reverse();
        }
    }
    out.into_iter()
        .filter(|(s, e)| e > s)
        .map(|(s, e)| text[s..e].to_string())
        .collect()
}

#[derive(Debug, Clone)]
enum TemplateItem {
    Sequence,
    Special(Vec<u32>),
}

#[derive(Debug, Clone, Deserialize)]
struct AddedTokenJson {
    id: u32,
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default = "yes")]
    normalized: bool,
}

fn yes() -> bool {
    true
}

/// One added token as matched in text.
#[derive(Debug, Clone)]
struct AddedPattern {
    text: String,
    id: u32,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
}

/// Matches one set of added tokens in a text.
#[derive(Debug, Clone, Default)]
struct AddedMatcher {
    /// Grouped by first character, longest first.
    by_first: HashMap<char, Vec<AddedPattern>>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl AddedMatcher {
    fn add(&mut self, pattern: String, t: &AddedTokenJson) {
        let Some(first) = pattern.chars().next() else {
            return;
        };
        self.by_first.entry(first).or_default().push(AddedPattern {
            text: pattern,
            id: t.id,
            single_word: t.single_word,
            lstrip: t.lstrip,
            rstrip: t.rstrip,
        });
    }

    /// Longest pattern first within each group (stable: equal lengths keep file order).
    fn finish(&mut self) {
        for list in self.by_first.values_mut() {
            list.sort_by_key(|p| Reverse(p.text.len()));
        }
    }

    /// The text cut into `(text, None)` and `(matched, Some(id))` parts, in order.
    fn split<'a>(&self, text: &'a str) -> Vec<(&'a str, Option<u32>)> {
        if self.by_first.is_empty() {
            return vec![(text, None)];
        }
        let mut out = Vec::new();
        let mut done = 0; // end of the last match
        let mut pos = 0; // where the scan goes on
        while pos < text.len() {
            let c = text[pos..]
                .chars()
                .next()
                .expect("pos is on a char boundary");
            let found = self.by_first.get(&c).and_then(|list| {
                list.iter()
                    .find(|p| text[pos..].starts_with(p.text.as_str()))
            });
            let Some(found) = found else {
                pos += c.len_utf8();
                continue;
            };
            let (mut start, mut end) = (pos, pos + found.text.len());
            pos = end;
            if found.single_word {
                let before = text[..start].chars().next_back().is_some_and(is_word_char);
                let after = text[end..].chars().next().is_some_and(is_word_char);
                if before || after {
                    continue;
                }
            }
            if found.lstrip {
                let ws: usize = text[done.min(start)..start]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_whitespace())
                    .map(char::len_utf8)
                    .sum();
                start -= ws;
            }
            if found.rstrip {
                // The scan goes on after the match itself, as `tokenizers` finds all matches
                // before stripping: a token inside the stripped whitespace still counts.
                end += text[end..]
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .map(char::len_utf8)
                    .sum::<usize>();
            }
            if start > done {
                out.push((&text[done..start], None));
            }
            out.push((&text[start..end], Some(found.id)));
            done = end;
        }
        if done < text.len() {
            out.push((&text[done..], None));
        }
        out
    }
}

/// The BPE model of the file.
#[derive(Debug, Clone)]
struct Bpe {
    vocab: HashMap<String, u32>,
    merges: HashMap<(u32, u32), (u32, u32)>,
    unk: Option<u32>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    /// The id of `<0xXX>` for each byte, when in the vocabulary.
    byte_ids: [Option<u32>; 256],
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

impl Bpe {
    /// Append the ids of one pre-token to `out`.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(word) {
                out.push(id);
                return;
            }
        }
        let mut ids: Vec<u32> = Vec::with_capacity(word.len());
        // A pending unknown (fused while consecutive). Like `tokenizers`, it is written out
        // only before the next in-vocabulary character or at the end.
        let mut unk: Option<u32> = None;
        let n_chars = word.chars().count();
        for (i, c) in word.chars().enumerate() {
            let mut s = String::new();
            if i > 0 {
                if let Some(p) = &self.continuing_subword_prefix {
                    s.push_str(p);
                }
            }
            s.push(c);
            if i + 1 == n_chars {
                if let Some(x) = &self.end_of_word_suffix {
                    s.push_str(x);
                }
            }
            if let Some(&id) = self.vocab.get(&s) {
                ids.extend(unk.take());
                ids.push(id);
                continue;
            }
            if self.byte_fallback {
                let bytes: Option<Vec<u32>> =
                    s.bytes().map(|b| self.byte_ids[b as usize]).collect();
                if let Some(bytes) = bytes {
                    ids.extend(bytes);
                    continue;
                }
            }
            if let Some(u) = self.unk {
                if unk.is_some() && !self.fuse_unk {
                    ids.extend(unk.take());
                }
                unk = Some(u);
            }
        }
        ids.extend(unk);
        self.merge_all(&ids, out);
    }

    /// Apply merges (lowest rank first, then leftmost) and append the result to `out`.
    fn merge_all(&self, ids: &[u32], out: &mut Vec<u32>) {
        let n = ids.len();
        let mut sym: Vec<Symbol> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Symbol {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            })
            .collect();
        // (rank, left position, merged id); popped smallest first.
        let mut queue: BinaryHeap<Reverse<(u32, usize, u32)>> = BinaryHeap::new();
        for i in 0..n.saturating_sub(1) {
            if let Some(&(rank, new)) = self.merges.get(&(ids[i], ids[i + 1])) {
                queue.push(Reverse((rank, i, new)));
            }
        }
        while let Some(Reverse((rank, pos, new))) = queue.pop() {
            let left = sym[pos];
            if !left.alive || left.next == NONE {
                continue;
            }
            let right = sym[left.next];
            // Skip entries made stale by an earlier merge.
            if self.merges.get(&(left.id, right.id)) != Some(&(rank, new)) {
                continue;
            }
            sym[pos].id = new;
            sym[pos].next = right.next;
            sym[left.next].alive = false;
            if right.next != NONE {
                sym[right.next].prev = pos;
            }
            let cur = sym[pos];
            if cur.prev != NONE {
                if let Some(&(r, m)) = self.merges.get(&(sym[cur.prev].id, cur.id)) {
                    queue.push(Reverse((r, cur.prev, m)));
                }
            }
            if cur.next != NONE {
                if let Some(&(r, m)) = self.merges.get(&(cur.id, sym[cur.next].id)) {
                    queue.push(Reverse((r, pos, m)));
                }
            }
        }
        out.extend(sym.iter().filter(|s| s.alive).map(|s| s.id));
    }
}

/// A tokenizer loaded from a `tokenizer.json` (BPE model). See the module docs.
#[derive(Debug, Clone)]
pub struct TokenizerJson {
    bpe: Bpe,
    /// Added tokens matched on the raw text (`normalized: false`).
    raw_added: AddedMatcher,
    /// Added tokens matched on normalized text (`normalized: true`).
    normalized_added: AddedMatcher,
    /// Added token contents → ids (they win over the model vocabulary in `token_id`).
    added_ids: HashMap<String, u32>,
    /// id → token string, for the model vocabulary and the added tokens.
    tokens: HashMap<u32, String>,
    normalizer: Option<Normalizer>,
    pre_tokenizer: Option<PreTokenizer>,
    template: Option<Vec<TemplateItem>>,
    pad: Option<u32>,
}

#[derive(Deserialize)]
struct FileJson {
    #[serde(default)]
    added_tokens: Vec<AddedTokenJson>,
    #[serde(default)]
    normalizer: Value,
    #[serde(default)]
    pre_tokenizer: Value,
    #[serde(default)]
    post_processor: Value,
    #[serde(default)]
    padding: Value,
    model: ModelJson,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    vocab: Value,
    #[serde(default)]
    merges: Vec<MergeJson>,
    #[serde(default)]
    unk_token: Option<String>,
    #[serde(default)]
    fuse_unk: bool,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    ignore_merges: bool,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    dropout: Option<f64>,
}

/// A merge as `["a", "b"]` (current format) or `"a b"` (older files).
#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Pair(String, String),
    Joined(String),
}

impl TokenizerJson {
    /// Read and check a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Res<TokenizerJson> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerJsonError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parse the text of a `tokenizer.json`; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Res<TokenizerJson> {
        let invalid = |msg: String| TokenizerJsonError::Invalid {
            path: path.to_path_buf(),
            msg,
        };
        let unsupported = |what: String| TokenizerJsonError::Unsupported {
            path: path.to_path_buf(),
            what,
        };
        let file: FileJson = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let m = file.model;
        match m.kind.as_deref() {
            Some("BPE") | None => {}
            Some(other) => return Err(unsupported(format!("model type `{other}` (only BPE)"))),
        }
        if m.dropout.is_some_and(|d| d > 0.0) {
            return Err(unsupported("BPE dropout".into()));
        }
        let vocab: HashMap<String, u32> =
            serde_json::from_value(m.vocab).map_err(|e| invalid(format!("model.vocab: {e}")))?;
        let mut merges = HashMap::with_capacity(m.merges.len());
        for (rank, entry) in m.merges.into_iter().enumerate() {
            let (a, b) = match entry {
                MergeJson::Pair(a, b) => (a, b),
                MergeJson::Joined(s) => {
                    let mut it = s.split(' ');
                    match (it.next(), it.next(), it.next()) {
                        (Some(a), Some(b), None) => (a.to_string(), b.to_string()),
                        _ => return Err(invalid(format!("merge `{s}` is not two tokens"))),
                    }
                }
            };
            let id = |t: &str| {
                vocab
                    .get(t)
                    .copied()
                    .ok_or_else(|| invalid(format!("merge token `{t}` is not in the vocabulary")))
            };
            // The merged token keeps the left part's prefix only.
            let b_rest = match &m.continuing_subword_prefix {
                Some(p) => b.strip_prefix(p.as_str()).unwrap_or(&b),
                None => &b,
            };
            let merged = id(&format!("{a}{b_rest}"))?;
            merges.insert((id(&a)?, id(&b)?), (rank as u32, merged));
        }
        let unk = match &m.unk_token {
            Some(u) => Some(
                *vocab
                    .get(u)
                    .ok_or_else(|| invalid(format!("unk_token `{u}` is not in the vocabulary")))?,
            ),
            None => None,
        };
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = vocab.get(&format!("<0x{b:02X}>")).copied();
        }
        let normalizer = parse_normalizer(&file.normalizer, &unsupported, &invalid)?;
        let pre_tokenizer = parse_pre_tokenizer(&file.pre_tokenizer, &unsupported, &invalid)?;
        let template = parse_post_processor(&file.post_processor, &unsupported, &invalid)?;

        let mut tokens: HashMap<u32, String> = vocab.iter().map(|(t, &i)| (i, t.clone())).collect();
        let mut raw_added = AddedMatcher::default();
        let mut normalized_added = AddedMatcher::default();
        let mut added_ids = HashMap::new();
        for t in &file.added_tokens {
            tokens.insert(t.id, t.content.clone());
            added_ids.insert(t.content.clone(), t.id);
            if t.normalized {
                let p = match &normalizer {
                    Some(n) => n.apply(t.content.clone()),
                    None => t.content.clone(),
                };
                normalized_added.add(p, t);
            } else {
                raw_added.add(t.content.clone(), t);
            }
        }
        raw_added.finish();
        normalized_added.finish();
        let pad = file
            .padding
            .get("pad_id")
            .and_then(Value::as_u64)
            .map(|p| p as u32)
            .or_else(|| {
                added_ids
                    .get("<pad>")
                    .or_else(|| vocab.get("<pad>"))
                    .copied()
            });
        Ok(TokenizerJson {
            bpe: Bpe {
                vocab,
                merges,
                unk,
                fuse_unk: m.fuse_unk,
                byte_fallback: m.byte_fallback,
                ignore_merges: m.ignore_merges,
                byte_ids,
                continuing_subword_prefix: m.continuing_subword_prefix,
                end_of_word_suffix: m.end_of_word_suffix,
            },
            raw_added,
            normalized_added,
            added_ids,
            tokens,
            normalizer,
            pre_tokenizer,
            template,
            pad,
        })
    }

    /// Token ids of `text`; with `add_special_tokens`, the post-processor's template is applied
    /// (Gemma: `<bos>` first).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Vec<u32> {
        let ids = self.encode_plain(text);
        if add_special_tokens {
            self.apply_template(ids)
        } else {
            ids
        }
    }

    /// As transformers' `tokenizer(text, padding="max_length", max_length, truncation=True,
    /// add_special_tokens=True)` with right padding and right truncation: the text's ids are cut
    /// to leave room for the template's special tokens, the template is applied, then `<pad>`
    /// fills up to `max_length`. Returns (ids, attention mask of 1s and 0s).
    pub fn encode_padded(&self, text: &str, max_length: usize) -> Res<(Vec<u32>, Vec<u32>)> {
        let pad = self.pad.ok_or(TokenizerJsonError::NoPad)?;
        let mut ids = self.encode_plain(text);
        ids.truncate(max_length.saturating_sub(self.num_special_tokens()));
        let mut ids = self.apply_template(ids);
        ids.truncate(max_length);
        let mut mask = vec![1u32; ids.len()];
        ids.resize(max_length, pad);
        mask.resize(max_length, 0);
        Ok((ids, mask))
    }

    /// How many ids the template adds to one sequence.
    pub fn num_special_tokens(&self) -> usize {
        self.template.as_ref().map_or(0, |t| {
            t.iter()
                .map(|i| match i {
                    TemplateItem::Special(ids) => ids.len(),
                    TemplateItem::Sequence => 0,
                })
                .sum()
        })
    }

    /// The id of a token (added tokens first, then the model vocabulary).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.added_ids
            .get(token)
            .or_else(|| self.bpe.vocab.get(token))
            .copied()
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(&id).map(String::as_str)
    }

    /// The padding id: the file's `padding.pad_id`, else the id of `<pad>`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Number of distinct ids (model vocabulary and added tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn apply_template(&self, ids: Vec<u32>) -> Vec<u32> {
        let Some(template) = &self.template else {
            return ids;
        };
        let mut out = Vec::with_capacity(ids.len() + 2);
        for item in template {
            match item {
                TemplateItem::Sequence => out.extend_from_slice(&ids),
                TemplateItem::Special(s) => out.extend_from_slice(s),
            }
        }
        out
    }

    fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for (piece, id) in self.raw_added.split(text) {
            if let Some(id) = id {
                out.push(id);
                continue;
            }
            let normalized = match &self.normalizer {
                Some(n) => n.apply(piece.to_string()),
                None => piece.to_string(),
            };
            for (part, id) in self.normalized_added.split(&normalized) {
                if let Some(id) = id {
                    out.push(id);
                    continue;
                }
                let words = match &self.pre_tokenizer {
                    Some(p) => p.split(vec![part.to_string()]),
                    None => vec![part.to_string()],
                };
                for w in &words {
                    self.bpe.encode_word(w, &mut out);
                }
            }
        }
        out
    }
}

fn parse_pattern(v: &Value, invalid: &dyn Fn(String) -> TokenizerJsonError) -> Res<Pattern> {
    if let Some(s) = v.get("String").and_then(Value::as_str) {
        return Ok(Pattern::Literal(s.to_string()));
    }
    if let Some(r) = v.get("Regex").and_then(Value::as_str) {
        return regex::Regex::new(r)
            .map(Pattern::Regex)
            .map_err(|e| invalid(format!("pattern /{r}/: {e}")));
    }
    Err(invalid(format!("pattern {v} is neither String nor Regex")))
}

fn kind(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("?")
}

fn parse_normalizer(
    v: &Value,
    unsupported: &dyn Fn(String) -> TokenizerJsonError,
    invalid: &dyn Fn(String) -> TokenizerJsonError,
) -> Res<Option<Normalizer>> {
    if v.is_null() {
        return Ok(None);
    }
    let s = |key: &str| -> Res<String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("normalizer {} without `{key}`", kind(v))))
    };
    let n = match kind(v) {
        "Replace" => Normalizer::Replace {
            pattern: parse_pattern(&v["pattern"], invalid)?,
            content: s("content")?,
        },
        "Prepend" => Normalizer::Prepend(s("prepend")?),
        "NFC" => Normalizer::Nfc,
        "NFD" => Normalizer::Nfd,
        "NFKC" => Normalizer::Nfkc,
        "NFKD" => Normalizer::Nfkd,
        "Lowercase" => Normalizer::Lowercase,
        "Strip" => Normalizer::Strip {
            left: v["strip_left"].as_bool().unwrap_or(true),
            right: v["strip_right"].as_bool().unwrap_or(true),
        },
        "Sequence" => {
            let list = v["normalizers"]
                .as_array()
                .ok_or_else(|| invalid("normalizer Sequence without `normalizers`".into()))?;
            let mut out = Vec::new();
            for n in list {
                out.extend(parse_normalizer(n, unsupported, invalid)?);
            }
            Normalizer::Sequence(out)
        }
        other => return Err(unsupported(format!("normalizer `{other}`"))),
    };
    Ok(Some(n))
}

fn parse_pre_tokenizer(
    v: &Value,
    unsupported: &dyn Fn(String) -> TokenizerJsonError,
    invalid: &dyn Fn(String) -> TokenizerJsonError,
) -> Res<Option<PreTokenizer>> {
    if v.is_null() {
        return Ok(None);
    }
    let p = match kind(v) {
        "Split" => {
            if v["invert"].as_bool().unwrap_or(false) {
                return Err(unsupported("pre-tokenizer Split with invert".into()));
            }
            let behavior = match v["behavior"].as_str() {
                Some("Removed") => SplitBehavior::Removed,
                Some("Isolated") => SplitBehavior::Isolated,
                Some("MergedWithPrevious") => SplitBehavior::MergedWithPrevious,
                Some("MergedWithNext") => SplitBehavior::MergedWithNext,
                Some("Contiguous") => SplitBehavior::Contiguous,
                other => {
                    return Err(unsupported(format!("Split behavior {other:?}")));
                }
            };
            PreTokenizer::Split {
                pattern: parse_pattern(&v["pattern"], invalid)?,
                behavior,
            }
        }
        "Sequence" => {
            let list = v["pretokenizers"]
                .as_array()
                .ok_or_else(|| invalid("pre-tokenizer Sequence without `pretokenizers`".into()))?;
            let mut out = Vec::new();
            for p in list {
                out.extend(parse_pre_tokenizer(p, unsupported, invalid)?);
            }
            PreTokenizer::Sequence(out)
        }
        other => return Err(unsupported(format!("pre-tokenizer `{other}`"))),
    };
    Ok(Some(p))
}

fn parse_post_processor(
    v: &Value,
    unsupported: &dyn Fn(String) -> TokenizerJsonError,
    invalid: &dyn Fn(String) -> TokenizerJsonError,
) -> Res<Option<Vec<TemplateItem>>> {
    if v.is_null() {
        return Ok(None);
    }
    if kind(v) != "TemplateProcessing" {
        return Err(unsupported(format!("post-processor `{}`", kind(v))));
    }
    let single = v["single"]
        .as_array()
        .ok_or_else(|| invalid("TemplateProcessing without `single`".into()))?;
    let mut items = Vec::new();
    for item in single {
        if let Some(s) = item.get("SpecialToken") {
            let name = s["id"]
                .as_str()
                .ok_or_else(|| invalid(format!("template item {item}")))?;
            let ids = v["special_tokens"][name]["ids"]
                .as_array()
                .ok_or_else(|| invalid(format!("template special token `{name}` has no ids")))?
                .iter()
                .map(|i| {
                    i.as_u64()
                        .map(|i| i as u32)
                        .ok_or_else(|| invalid(format!("special token `{name}` id {i}")))
                })
                .collect::<Res<Vec<u32>>>()?;
            items.push(TemplateItem::Special(ids));
        } else if item.get("Sequence").is_some() {
            items.push(TemplateItem::Sequence);
        } else {
            return Err(invalid(format!("template item {item}")));
        }
    }
    Ok(Some(items))
}

// ---------------------------------------------------------------------------------------------
// A tiny tokenizer of the same kind, made by our own code.

/// The special tokens of [`write_tiny`], with Gemma's ids 0-4.
pub const TINY_SPECIALS: [&str; 5] = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"];

/// Write `dir/tokenizer.json` and `dir/tokenizer_config.json`: a Gemma-style byte-fallback BPE
/// tokenizer. Vocabulary: ids 0-4 the specials ([`TINY_SPECIALS`]), 5-260 the byte tokens
/// `<0x00>`..`<0xFF>`, then `▁`, `\n`, `\t` and printable ASCII, then the results of up to
/// `merges` merges learned from `corpus` (each round merges the most frequent adjacent pair,
/// ties to the smallest pair; words are the corpus split at spaces, each after a `▁` as
/// SentencePiece sees them, characters outside the base alphabet ending a word). Normalizer
/// `Replace(" " → "▁")`, post-processor `<bos>` + text, as Gemma-2. Returns the vocabulary size.
pub fn write_tiny(dir: &Path, corpus: &[&str], merges: usize) -> std::io::Result<usize> {
    let mut tokens: Vec<String> = TINY_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    let base: Vec<char> = ['▁', '\n', '\t']
        .into_iter()
        .chain((0x21u8..=0x7e).map(char::from))
        .collect();
    tokens.extend(base.iter().map(|c| c.to_string()));
    let learned = learn_merges(corpus, &base, merges);
    for (a, b) in &learned {
        let t = format!("{a}{b}");
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = TINY_SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let file = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": false},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab,
            "merges": learned.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        }
    });
    let config = json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "padding_side": "left",
        "model_max_length": 1e30,
        "tokenizer_class": "GemmaTokenizer",
    });
    std::fs::create_dir_all(dir)?;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).map(|s| s + "\n");
    std::fs::write(dir.join("tokenizer.json"), pretty(&file)?)?;
    std::fs::write(dir.join("tokenizer_config.json"), pretty(&config)?)?;
    Ok(tokens.len())
}

/// Byte-pair merges learned from `corpus` over the characters in `base`.
fn learn_merges(corpus: &[&str], base: &[char], n: usize) -> Vec<(String, String)> {
    // Words with counts: runs of base characters, each space turned into a leading `▁`.
    let mut counts: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for text in corpus {
        let normalized = text.replace(' ', "▁");
        let mut word: Vec<String> = Vec::new();
        let mut flush = |w: &mut Vec<String>| {
            if w.len() > 1 {
                *counts.entry(std::mem::take(w)).or_default() += 1;
            }
            w.clear();
        };
        for c in normalized.chars() {
            if !base.contains(&c) || c == '\n' || c == '\t' {
                flush(&mut word);
                continue;
            }
            if c == '▁' {
                flush(&mut word);
            }
            word.push(c.to_string());
        }
        flush(&mut word);
    }
    let mut words: Vec<(Vec<String>, usize)> = counts.into_iter().collect();
    let mut merges = Vec::new();
    while merges.len() < n {
        let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (w, c) in &words {
            for p in w.windows(2) {
                *pairs.entry((&p[0], &p[1])).or_default() += c;
            }
        }
        // Highest count; among equals the smallest pair (the first in the map).
        let Some(((a, b), _)) = pairs
            .into_iter()
            .fold(
                None,
                |best: Option<((&str, &str), usize)>, (p, c)| match best {
                    Some((_, bc)) if bc >= c => best,
                    _ => Some((p, c)),
                },
            )
            .map(|((a, b), c)| ((a.to_string(), b.to_string()), c))
        else {
            break;
        };
        let merged = format!("{a}{b}");
        for (w, _) in &mut words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(std::mem::take(&mut w[i]));
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push((a, b));
    }
    merges
}
