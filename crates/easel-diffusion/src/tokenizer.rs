//! The CLIP tokenizer of Stable Diffusion: byte-level BPE with an end-of-word suffix (`</w>`).
//!
//! It reproduces what diffusers gets from `transformers.CLIPTokenizer` (and the `tokenizers`
//! library reading `tokenizer.json`), id for id:
//!
//! 1. Special tokens (`<|startoftext|>`, `<|endoftext|>`, and the pad token when it is an
//!    ordinary vocabulary entry such as SDXL's `!`) are cut out of the raw text first; each
//!    becomes its own id. The text between them goes through the remaining steps.
//! 2. Normalization: NFC, every run of whitespace becomes one space, then lower-casing one
//!    character at a time (as `tokenizers` does: `Σ` always becomes `σ`).
//! 3. CLIP's pre-tokenizer regex splits the text into words: the strings `<|startoftext|>` /
//!    `<|endoftext|>`, English contractions (`'s`, `'t`, ...), runs of letters, single digits,
//!    and runs of other non-space characters. Whitespace is dropped. Each word is split again
//!    with GPT-2's pattern (the ByteLevel step of `tokenizer.json`), which only matters for a
//!    special token that appears after lower-casing (`<|EndOfText|>`): it becomes `<|`,
//!    `endoftext`, `|>`, as in the `tokenizers` library (transformers' default backend);
//!    transformers' old pure-Python tokenizer gave the special id instead.
//! 4. Each word's UTF-8 bytes are mapped to GPT-2's printable byte alphabet, `</w>` is appended
//!    to the last symbol, and BPE merges are applied, lowest rank first, until none applies.
//!    Symbols missing from the vocabulary become the unknown token (never happens with a real
//!    CLIP vocabulary, which holds all 512 byte symbols).
//!
//! Merges are kept as a map from a pair of token ids to (rank, merged id), so a merge step is one
//! hash lookup per adjacent pair; results per word are cached (bounded).
//!
//! A quirk kept on purpose for parity: when the pad token is an ordinary symbol (SDXL's second
//! tokenizer pads with `!`, id 0), every `!` in a prompt is encoded as that special token (id 0)
//! rather than as the BPE token `!</w>`. diffusers does the same (see huggingface/diffusers#4153).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regex::Regex;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

const BOS_TOKEN: &str = "<|startoftext|>";
const EOS_TOKEN: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";
/// CLIP's pre-tokenizer pattern, as in OpenAI's `simple_tokenizer.py` and `tokenizer.json`.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// GPT-2's pattern, which `tokenizer.json`'s ByteLevel step applies again to each word (the
/// whitespace branches are left out: words hold no whitespace). It only changes the words
/// `<|startoftext|>` / `<|endoftext|>` (into `<|`, letters, `|>`).
const BYTE_LEVEL_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";
/// Words kept in the BPE cache before it is emptied.
const CACHE_LIMIT: usize = 16_384;

/// Errors from loading a tokenizer. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON in tokenizer file {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid tokenizer file {path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path} line {line}: merge part or result {token:?} is not in the vocabulary")]
    MergeNotInVocab {
        path: PathBuf,
        line: usize,
        token: String,
    },
    #[error("special token {token:?} is not in the vocabulary ({path})")]
    MissingSpecialToken { path: PathBuf, token: String },
    #[error("no tokenizer in {dir}: expected vocab.json and merges.txt, or tokenizer.json")]
    NotFound { dir: PathBuf },
}

/// A CLIP byte-level BPE tokenizer. Cheap to share (`&self` everywhere; the word cache is
/// behind a mutex).
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    /// id -> token string (for the few lookups by id, e.g. `with_pad`).
    tokens: HashMap<u32, String>,
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Vocabulary id of each byte's symbol inside a word, and at the end of a word (`</w>`).
    byte_ids: [Option<u32>; 256],
    byte_end_ids: [Option<u32>; 256],
    /// GPT-2's byte -> printable character table.
    byte_chars: [char; 256],
    split: Regex,
    byte_level_split: Regex,
    whitespace: Regex,
    /// Strings cut out of the raw text before normalization, with their ids.
    specials: Vec<(String, u32)>,
    bos: u32,
    eos: u32,
    pad: u32,
    unk: Option<u32>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.vocab.len())
            .field("merges", &self.merges.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("unk", &self.unk)
            .field("specials", &self.specials)
            .finish()
    }
}

impl Clone for ClipTokenizer {
    fn clone(&self) -> Self {
        ClipTokenizer {
            vocab: self.vocab.clone(),
            tokens: self.tokens.clone(),
            merges: self.merges.clone(),
            byte_ids: self.byte_ids,
            byte_end_ids: self.byte_end_ids,
            byte_chars: self.byte_chars,
            split: self.split.clone(),
            byte_level_split: self.byte_level_split.clone(),
            whitespace: self.whitespace.clone(),
            specials: self.specials.clone(),
            bos: self.bos,
            eos: self.eos,
            pad: self.pad,
            unk: self.unk,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` (or `tokenizer_2/`) folder: `vocab.json` + `merges.txt`
    /// when both exist, otherwise `tokenizer.json`. `tokenizer_config.json` (or, for keys it
    /// lacks, `special_tokens_map.json`) then sets the BOS, EOS, unknown and pad tokens, so
    /// SDXL's `tokenizer_2` (pad `!`) pads with id 0.
    pub fn from_dir(dir: &Path) -> Result<ClipTokenizer, TokenizerError> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        let json = dir.join("tokenizer.json");
        let mut tok = if vocab.is_file() && merges.is_file() {
            Self::from_files(&vocab, &merges)?
        } else if json.is_file() {
            Self::from_tokenizer_json(&json)?
        } else {
            return Err(TokenizerError::NotFound {
                dir: dir.to_path_buf(),
            });
        };

        let config = read_optional_json(&dir.join("tokenizer_config.json"))?;
        let map = read_optional_json(&dir.join("special_tokens_map.json"))?;
        let lookup = |key: &str| -> Option<(String, PathBuf)> {
            for (path, value) in [&config, &map].into_iter().flatten() {
                if let Some(token) = value.get(key).and_then(token_content) {
                    return Some((token, path.clone()));
                }
            }
            None
        };
        let resolve = |tok: &ClipTokenizer, token: String, path: PathBuf| {
            tok.token_id(&token)
                .ok_or(TokenizerError::MissingSpecialToken { path, token })
        };
        if let Some((token, path)) = lookup("bos_token") {
            let id = resolve(&tok, token, path)?;
            tok.bos = id;
            tok.add_special(id);
        }
        if let Some((token, path)) = lookup("eos_token") {
            let id = resolve(&tok, token, path)?;
            tok.eos = id;
            tok.add_special(id);
        }
        if let Some((token, path)) = lookup("unk_token") {
            let id = resolve(&tok, token, path)?;
            tok.unk = Some(id);
            tok.add_special(id);
        }
        if let Some((token, path)) = lookup("pad_token") {
            let id = resolve(&tok, token, path)?;
            tok = tok.with_pad(id);
        }
        Ok(tok)
    }

    /// Loads `vocab.json` (token -> id) and `merges.txt` (one `left right` pair per line, by
    /// rank; a leading `#version` line is skipped). BOS is `<|startoftext|>`, EOS, pad and
    /// unknown are `<|endoftext|>`.
    pub fn from_files(
        vocab_json: &Path,
        merges_txt: &Path,
    ) -> Result<ClipTokenizer, TokenizerError> {
        let vocab_value = read_json(vocab_json)?;
        let vocab = parse_vocab(&vocab_value, vocab_json)?;
        let text = std::fs::read_to_string(merges_txt).map_err(|source| TokenizerError::Io {
            path: merges_txt.to_path_buf(),
            source,
        })?;
        let mut merges = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if (index == 0 && line.starts_with("#version")) || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    merges.push((a.to_string(), b.to_string(), index + 1));
                }
                _ => {
                    return Err(TokenizerError::Format {
                        path: merges_txt.to_path_buf(),
                        message: format!(
                            "line {}: expected two tokens separated by one space, got {line:?}",
                            index + 1
                        ),
                    })
                }
            }
        }
        let bos = *vocab
            .get(BOS_TOKEN)
            .ok_or_else(|| TokenizerError::MissingSpecialToken {
                path: vocab_json.to_path_buf(),
                token: BOS_TOKEN.into(),
            })?;
        let eos = *vocab
            .get(EOS_TOKEN)
            .ok_or_else(|| TokenizerError::MissingSpecialToken {
                path: vocab_json.to_path_buf(),
                token: EOS_TOKEN.into(),
            })?;
        let specials = vec![(BOS_TOKEN.to_string(), bos), (EOS_TOKEN.to_string(), eos)];
        Self::build(
            vocab,
            &merges,
            merges_txt,
            END_OF_WORD,
            specials,
            (bos, eos, eos, Some(eos)),
        )
    }

    /// Loads a `tokenizers` library `tokenizer.json` holding a CLIP BPE model. BOS/EOS come
    /// from the post-processor (`cls` / `sep`) or the `<|startoftext|>` / `<|endoftext|>`
    /// tokens; added special tokens are cut out of the text; pad is `padding.pad_id` when set,
    /// otherwise EOS (use [`ClipTokenizer::with_pad`] for SDXL's second tokenizer).
    pub fn from_tokenizer_json(path: &Path) -> Result<ClipTokenizer, TokenizerError> {
        let root = read_json(path)?;
        let format = |message: String| TokenizerError::Format {
            path: path.to_path_buf(),
            message,
        };
        let model = root
            .get("model")
            .ok_or_else(|| format("no \"model\" object".into()))?;
        if let Some(kind) = model.get("type").and_then(Value::as_str) {
            if kind != "BPE" {
                return Err(format(format!("model type is {kind:?}, expected \"BPE\"")));
            }
        }
        let mut vocab = parse_vocab(
            model
                .get("vocab")
                .ok_or_else(|| format("no \"model.vocab\"".into()))?,
            path,
        )?;
        let mut merges = Vec::new();
        let list = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| format("no \"model.merges\" array".into()))?;
        for (index, merge) in list.iter().enumerate() {
            let pair = match merge {
                Value::String(s) => {
                    let mut parts = s.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(a), Some(b), None) => Some((a.to_string(), b.to_string())),
                        _ => None,
                    }
                }
                Value::Array(items) if items.len() == 2 => match (&items[0], &items[1]) {
                    (Value::String(a), Value::String(b)) => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            };
            let (a, b) = pair
                .ok_or_else(|| format(format!("model.merges[{index}] is not a pair: {merge}")))?;
            merges.push((a, b, index));
        }
        let suffix = match model.get("end_of_word_suffix") {
            Some(Value::String(s)) => s.clone(),
            _ => END_OF_WORD.to_string(),
        };

        // Added tokens: ids for tokens the model vocab may lack, and the special ones are split out.
        let mut specials = Vec::new();
        if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
            for token in added {
                let (Some(id), Some(content)) = (
                    token.get("id").and_then(Value::as_u64),
                    token.get("content").and_then(Value::as_str),
                ) else {
                    return Err(format(format!("added token without id/content: {token}")));
                };
                let id = u32::try_from(id)
                    .map_err(|_| format(format!("added token id {id} too large")))?;
                vocab.entry(content.to_string()).or_insert(id);
                if token
                    .get("special")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    specials.push((content.to_string(), id));
                }
            }
        }

        let mut bos = vocab.get(BOS_TOKEN).copied();
        let mut eos = vocab.get(EOS_TOKEN).copied();
        if let Some((cls, sep)) = root.get("post_processor").and_then(find_cls_sep) {
            bos = Some(cls);
            eos = Some(sep);
        }
        let bos = bos.ok_or_else(|| TokenizerError::MissingSpecialToken {
            path: path.to_path_buf(),
            token: BOS_TOKEN.into(),
        })?;
        let eos = eos.ok_or_else(|| TokenizerError::MissingSpecialToken {
            path: path.to_path_buf(),
            token: EOS_TOKEN.into(),
        })?;
        let unk =
            match model.get("unk_token") {
                Some(Value::String(s)) => Some(*vocab.get(s.as_str()).ok_or_else(|| {
                    TokenizerError::MissingSpecialToken {
                        path: path.to_path_buf(),
                        token: s.clone(),
                    }
                })?),
                _ => None,
            };
        let pad = root
            .get("padding")
            .and_then(|p| p.get("pad_id"))
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .unwrap_or(eos);
        let mut tok = Self::build(
            vocab,
            &merges,
            path,
            &suffix,
            specials,
            (bos, eos, eos, unk),
        )?;
        tok.add_special(bos);
        tok.add_special(eos);
        Ok(if pad != eos { tok.with_pad(pad) } else { tok })
    }

    fn build(
        vocab: HashMap<String, u32>,
        merges: &[(String, String, usize)],
        merges_path: &Path,
        suffix: &str,
        specials: Vec<(String, u32)>,
        (bos, eos, pad, unk): (u32, u32, u32, Option<u32>),
    ) -> Result<ClipTokenizer, TokenizerError> {
        let id_of = |token: &str, line: usize| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| TokenizerError::MergeNotInVocab {
                    path: merges_path.to_path_buf(),
                    line,
                    token: token.to_string(),
                })
        };
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, (a, b, line)) in merges.iter().enumerate() {
            let left = id_of(a, *line)?;
            let right = id_of(b, *line)?;
            let merged = id_of(&format!("{a}{b}"), *line)?;
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            // A repeated pair keeps its first (best) rank, as the reference implementations do.
            merge_map.entry((left, right)).or_insert((rank, merged));
        }

        let byte_chars = bytes_to_unicode();
        let mut byte_ids = [None; 256];
        let mut byte_end_ids = [None; 256];
        for (b, c) in byte_chars.iter().enumerate() {
            let mut s = c.to_string();
            byte_ids[b] = vocab.get(&s).copied();
            s.push_str(suffix);
            byte_end_ids[b] = vocab.get(&s).copied();
        }
        let tokens = vocab.iter().map(|(k, v)| (*v, k.clone())).collect();

        let mut tok = ClipTokenizer {
            vocab,
            tokens,
            merges: merge_map,
            byte_ids,
            byte_end_ids,
            byte_chars,
            split: Regex::new(CLIP_PATTERN).expect("CLIP pattern is valid"),
            byte_level_split: Regex::new(BYTE_LEVEL_PATTERN).expect("GPT-2 pattern is valid"),
            whitespace: Regex::new(r"\s+").expect("whitespace pattern is valid"),
            specials: Vec::new(),
            bos,
            eos,
            pad,
            unk,
            cache: Mutex::new(HashMap::new()),
        };
        for (content, id) in specials {
            tok.add_special_token(content, id);
        }
        Ok(tok)
    }

    /// Pads with this id instead. SDXL's second tokenizer pads with 0 (`!`). As in
    /// transformers, the pad token becomes a special token: its text is cut out of prompts and
    /// encoded as this id (for `!`: every `!` in a prompt becomes id 0, as diffusers does).
    pub fn with_pad(mut self, pad_id: u32) -> Self {
        self.pad = pad_id;
        self.add_special(pad_id);
        self
    }

    fn add_special(&mut self, id: u32) {
        if let Some(content) = self.tokens.get(&id).cloned() {
            self.add_special_token(content, id);
        }
    }

    fn add_special_token(&mut self, content: String, id: u32) {
        if content.is_empty() || self.specials.iter().any(|(c, _)| *c == content) {
            return;
        }
        self.specials.push((content, id));
        self.cache
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// Number of entries in the vocabulary (49408 for SD's CLIP tokenizers).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Id of a vocabulary entry, e.g. `",</w>"`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Vocabulary entry of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(&id).map(String::as_str)
    }

    /// BPE token ids of the text, without BOS/EOS.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_special(rest) {
                Some((start, len, id)) => {
                    self.encode_plain(&rest[..start], &mut ids);
                    ids.push(id);
                    rest = &rest[start + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// `[BOS, up to max_len - 2 ids, EOS, PAD...]`, exactly `max_len` long: what diffusers gets
    /// with `padding="max_length", max_length=max_len, truncation=True`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = self.encode(text);
        ids.truncate(max_len.saturating_sub(2));
        let mut out = Vec::with_capacity(max_len.max(2));
        out.push(self.bos);
        out.extend_from_slice(&ids);
        out.push(self.eos);
        out.resize(max_len.max(2), self.pad);
        out.truncate(max_len);
        out
    }

    /// Leftmost special token in `text` (longest on a tie): (byte offset, byte length, id).
    fn next_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (content, id) in &self.specials {
            if let Some(pos) = text.find(content.as_str()) {
                let better = match best {
                    None => true,
                    Some((p, l, _)) => pos < p || (pos == p && content.len() > l),
                };
                if better {
                    best = Some((pos, content.len(), *id));
                }
            }
        }
        best
    }

    /// Normalizes, splits and BPE-encodes text that holds no special token.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let nfc: String = text.nfc().collect();
        let spaced = self.whitespace.replace_all(&nfc, " ");
        // Character by character, as the `tokenizers` Lowercase normalizer does.
        let lower: String = spaced.chars().flat_map(char::to_lowercase).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for word in self.split.find_iter(&lower) {
            let word = word.as_str();
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let mut ids = Vec::new();
            for part in self.byte_level_split.find_iter(word) {
                self.bpe(part.as_str(), &mut ids);
            }
            out.extend_from_slice(&ids);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.to_string(), ids);
        }
    }

    /// Appends the BPE ids of one pre-tokenized word.
    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        let mut symbols: Vec<u32> = Vec::with_capacity(bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            let id = if i + 1 == bytes.len() {
                self.byte_end_ids[b as usize]
            } else {
                self.byte_ids[b as usize]
            };
            // A symbol outside the vocabulary becomes the unknown token (dropped without one).
            match id.or(self.unk) {
                Some(id) => symbols.push(id),
                None => continue,
            }
        }
        loop {
            // The adjacent pair with the lowest merge rank.
            let mut best: Option<(u32, u32, u32, u32)> = None; // (rank, left, right, merged)
            for pair in symbols.windows(2) {
                if let Some(&(rank, merged)) = self.merges.get(&(pair[0], pair[1])) {
                    if best.is_none_or(|(r, ..)| rank < r) {
                        best = Some((rank, pair[0], pair[1], merged));
                    }
                }
            }
            let Some((_, left, right, merged)) = best else {
                break;
            };
            // Merge every occurrence, left to right.
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
            if symbols.len() == 1 {
                break;
            }
        }
        out.extend_from_slice(&symbols);
    }

    /// The byte-level form of a byte string (GPT-2's printable alphabet), as vocabulary
    /// entries spell it.
    pub fn byte_level(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|&b| self.byte_chars[b as usize]).collect()
    }
}

/// GPT-2's reversible byte -> printable character table: printable Latin-1 bytes map to
/// themselves, the others to U+0100 onwards in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are valid chars");
            next += 1;
            c
        };
    }
    table
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional_json(path: &Path) -> Result<Option<(PathBuf, Value)>, TokenizerError> {
    if path.is_file() {
        Ok(Some((path.to_path_buf(), read_json(path)?)))
    } else {
        Ok(None)
    }
}

fn parse_vocab(value: &Value, path: &Path) -> Result<HashMap<String, u32>, TokenizerError> {
    let object = value.as_object().ok_or_else(|| TokenizerError::Format {
        path: path.to_path_buf(),
        message: "vocabulary is not a JSON object of token -> id".into(),
    })?;
    let mut vocab = HashMap::with_capacity(object.len());
    for (token, id) in object {
        let id = id
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| TokenizerError::Format {
                path: path.to_path_buf(),
                message: format!("vocabulary id of {token:?} is not a non-negative integer: {id}"),
            })?;
        vocab.insert(token.clone(), id);
    }
    Ok(vocab)
}

/// A special token in `tokenizer_config.json` / `special_tokens_map.json`: a string, or an
/// object with `content` (`AddedToken`).
fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `cls` / `sep` ids of a Roberta/Bert post-processor, possibly inside a `Sequence`.
fn find_cls_sep(value: &Value) -> Option<(u32, u32)> {
    match value.get("type").and_then(Value::as_str)? {
        "RobertaProcessing" | "BertProcessing" => {
            let id = |key: &str| {
                value
                    .get(key)?
                    .get(1)?
                    .as_u64()
                    .and_then(|id| u32::try_from(id).ok())
            };
            Some((id("cls")?, id("sep")?))
        }
        "Sequence" => value
            .get("processors")?
            .as_array()?
            .iter()
            .find_map(find_cls_sep),
        _ => None,
    }
}
