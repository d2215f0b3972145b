//! Sana's prompt encoding: the `tokenizer.json` tokenizer, the Gemma-2 text encoder and the
//! pipeline's preprocessing, against the diffusers fixtures in `parity-sana` (found through
//! `EASEL_SANA_PARITY_DIR`, else `<CARGO_MANIFEST_DIR>/../../../shared/fixtures/parity-sana`;
//! without them those tests print a notice and pass), plus unit tests on tiny models written by
//! our own writers.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::max_diff;
use easel_diffusion::gemma::{self, Gemma2Config, Gemma2Model};
use easel_diffusion::sana::text::{
    negative_tokens, preprocess, prompt_tokens, select_index, SanaTextEncoder,
    DEFAULT_COMPLEX_HUMAN_INSTRUCTION,
};
use easel_diffusion::tokenizer_json::{TokenizerJson, TokenizerJsonError};
use serde_json::Value;

/// Tolerance of the README for `text_encoder_output` / `prompt_embeds` (max abs).
const TOL: f32 = 1e-4;

fn sana_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EASEL_SANA_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity-sana")
        });
    if dir.join("cases").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: Sana parity fixtures not found at {}",
            dir.display()
        );
        None
    }
}

struct Case {
    name: String,
    meta: Value,
    tensors: HashMap<String, Tensor>,
}

/// Every case of `cases/index.json` (a listed case without files fails).
fn cases(dir: &Path) -> Vec<Case> {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases/index.json")).unwrap())
            .unwrap();
    let cases: Vec<Case> = index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let p = dir.join("cases").join(&name);
            Case {
                meta: serde_json::from_str(&std::fs::read_to_string(p.join("case.json")).unwrap())
                    .unwrap(),
                tensors: candle_core::safetensors::load(
                    p.join("tensors.safetensors"),
                    &Device::Cpu,
                )
                .unwrap(),
                name,
            }
        })
        .collect();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn ids(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn as_i64(v: &[u32]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn instruction(case: &Case) -> Vec<String> {
    case.meta["text_encoding"]["complex_human_instruction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn fixture_tokenizer(dir: &Path) -> TokenizerJson {
    TokenizerJson::from_file(&dir.join("models/tiny-sana/tokenizer/tokenizer.json")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn readme_tokenizer_example() {
    let Some(dir) = sana_dir() else { return };
    let tok = fixture_tokenizer(&dir);
    assert_eq!(
        tok.encode("a red cat, café!", true),
        [2, 328, 411, 379, 275, 362, 328, 333, 200, 174, 264]
    );
    assert_eq!(
        tok.encode("a red cat, café!", false),
        [328, 411, 379, 275, 362, 328, 333, 200, 174, 264]
    );
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.token_id("<bos>"), Some(2));
    assert_eq!(tok.token_id("▁"), Some(261));
    assert_eq!(tok.id_to_token(2), Some("<bos>"));
    // Added tokens are recognised in the text, with or without special tokens.
    let a = tok.token_id("a").unwrap();
    assert_eq!(tok.encode("a<pad><bos>a", false), [a, 0, 2, a]);
    // Characters outside the vocabulary: UTF-8 bytes (é = C3 A9, 😀 = F0 9F 98 80).
    let b = |x: u8| 5 + x as u32;
    assert_eq!(
        tok.encode("é😀", false),
        [b(0xC3), b(0xA9), b(0xF0), b(0x9F), b(0x98), b(0x80)]
    );
    assert_eq!(tok.encode("", true), [2]);
}

#[test]
fn fixture_ids_masks_and_select_index_are_exact() {
    let Some(dir) = sana_dir() else { return };
    let tok = fixture_tokenizer(&dir);
    for case in cases(&dir) {
        let te = &case.meta["text_encoding"];
        let chi = instruction(&case);
        assert_eq!(chi, DEFAULT_COMPLEX_HUMAN_INSTRUCTION, "{}", case.name);
        let prompt = case.meta["prompt"].as_str().unwrap();
        assert_eq!(
            preprocess(prompt),
            te["prompt_after_preprocessing"].as_str().unwrap(),
            "{}",
            case.name
        );
        let m = te["max_sequence_length"].as_u64().unwrap() as usize;
        let t = prompt_tokens(&tok, prompt, &chi, m).unwrap();
        assert_eq!(
            t.text,
            te["text_encoded"].as_str().unwrap(),
            "{}",
            case.name
        );
        assert_eq!(
            t.num_chi_prompt_tokens as u64,
            te["num_chi_prompt_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            t.max_length_all as u64,
            te["max_length_all"].as_u64().unwrap()
        );
        assert_eq!(
            as_i64(&tok.encode(te["chi_prompt"].as_str().unwrap(), true)),
            ids(&case.tensors["chi_input_ids"]),
            "{} chi_input_ids",
            case.name
        );
        assert_eq!(
            as_i64(&t.input_ids),
            ids(&case.tensors["input_ids"]),
            "{} input_ids",
            case.name
        );
        assert_eq!(
            as_i64(&t.attention_mask),
            ids(&case.tensors["attention_mask"]),
            "{} attention_mask",
            case.name
        );
        let sel: Vec<i64> = t.select_index.iter().map(|&i| i as i64).collect();
        assert_eq!(sel, ids(&case.tensors["select_index"]), "{}", case.name);
        let kept: Vec<i64> = t
            .select_index
            .iter()
            .map(|&i| t.attention_mask[i] as i64)
            .collect();
        assert_eq!(kept, ids(&case.tensors["prompt_attention_mask"]));
        match case.tensors.get("negative_input_ids") {
            Some(neg_ids) => {
                let neg = case.meta["negative_prompt"].as_str().unwrap_or("");
                assert_eq!(
                    preprocess(neg),
                    te["negative_text_encoded"].as_str().unwrap()
                );
                let n = negative_tokens(&tok, neg, m).unwrap();
                assert_eq!(as_i64(&n.input_ids), ids(neg_ids), "{} negative", case.name);
                assert_eq!(
                    as_i64(&n.attention_mask),
                    ids(&case.tensors["negative_attention_mask"])
                );
                assert_eq!(n.select_index, (0..m).collect::<Vec<_>>());
            }
            None => assert!(case.meta["guidance_scale"].as_f64().unwrap() <= 1.0),
        }
        println!("{}: ids exact ({} tokens)", case.name, t.max_length_all);
    }
}

#[test]
fn fixture_embeddings_match_diffusers() {
    let Some(dir) = sana_dir() else { return };
    let enc =
        SanaTextEncoder::load(&dir.join("models/tiny-sana"), DType::F32, &Device::Cpu).unwrap();
    for case in cases(&dir) {
        let m = case.meta["text_encoding"]["max_sequence_length"]
            .as_u64()
            .unwrap() as usize;
        let mut enc = enc.clone();
        enc.instruction = instruction(&case);
        let prompt = case.meta["prompt"].as_str().unwrap();
        let e = enc.encode_full(prompt, m).unwrap();
        let d_out = max_diff(&e.text_encoder_output, &case.tensors["text_encoder_output"]);
        let d_emb = max_diff(&e.embeds, &case.tensors["prompt_embeds"]);
        let mask_ref = case.tensors["prompt_attention_mask"]
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(max_diff(&e.mask, &mask_ref), 0.0, "{} mask", case.name);
        assert_eq!(e.embeds.dims(), &[1, m, 48]);
        // The same through the short API.
        let (emb2, mask2) = enc.encode(prompt, m).unwrap();
        assert_eq!(max_diff(&emb2, &e.embeds), 0.0);
        assert_eq!(max_diff(&mask2, &e.mask), 0.0);
        let mut line = format!(
            "{}: text_encoder_output {d_out:.2e}, prompt_embeds {d_emb:.2e}",
            case.name
        );
        assert!(d_out <= TOL, "{} text_encoder_output {d_out}", case.name);
        assert!(d_emb <= TOL, "{} prompt_embeds {d_emb}", case.name);
        if let Some(neg_ref) = case.tensors.get("negative_prompt_embeds") {
            let neg = case.meta["negative_prompt"].as_str().unwrap_or("");
            let (ne, nm) = enc.encode_negative(neg, m).unwrap();
            let d_neg = max_diff(&ne, neg_ref);
            let nm_ref = case.tensors["negative_attention_mask"]
                .to_dtype(DType::F32)
                .unwrap();
            assert_eq!(max_diff(&nm, &nm_ref), 0.0);
            line += &format!(", negative_prompt_embeds {d_neg:.2e}");
            assert!(d_neg <= TOL, "{} negative_prompt_embeds {d_neg}", case.name);
        }
        println!("{line} (tolerance {TOL:.0e})");
    }
}

// ---------------------------------------------------------------------------------------------
// Preprocessing

#[test]
fn preprocessing_follows_python() {
    assert_eq!(preprocess("  A Red CAT\n"), "a red cat");
    // Python's isspace includes the separators U+001C..U+001F.
    assert_eq!(preprocess("\u{1c}\u{1f} x \u{3000}"), "x");
    // Final sigma, as Python's str.lower().
    assert_eq!(preprocess("ΟΔΟΣ ΣΑΣ"), "οδος σας");
    assert_eq!(preprocess("İ"), "i\u{307}");
    assert_eq!(select_index(562, 300)[..2], [0, 263]);
    assert_eq!(select_index(562, 300).len(), 300);
    assert_eq!(*select_index(562, 300).last().unwrap(), 561);
    assert_eq!(select_index(300, 300), (0..300).collect::<Vec<_>>());
    assert_eq!(select_index(10, 1), [0]);
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

/// A minimal tokenizer.json: characters a, b, c, ▁, merges (a b) → ab, (ab c) → abc.
fn small_json(normalizer: Value) -> String {
    serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<pad>", "normalized": false, "special": true},
            {"id": 1, "content": "<bos>", "normalized": false, "special": true},
            {"id": 2, "content": "<x>", "normalized": false, "special": true,
             "lstrip": true, "rstrip": true}
        ],
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [1], "tokens": ["<bos>"]}}},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": false,
            "vocab": {"<pad>": 0, "<bos>": 1, "<x>": 2, "<unk>": 3, "a": 4, "b": 5, "c": 6,
                      "▁": 7, "ab": 8, "abc": 9, "▁a": 10},
            "merges": ["a b", ["ab", "c"], ["▁", "a"]]}
    })
    .to_string()
}

#[test]
fn tokenizer_components() {
    let path = Path::new("small/tokenizer.json");
    let replace =
        serde_json::json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let tok = TokenizerJson::from_json_str(&small_json(replace.clone()), path).unwrap();
    // Merges by rank; unknown characters fused into one <unk> (no byte fallback here).
    assert_eq!(tok.encode("abc", true), [1, 9]);
    assert_eq!(tok.encode("abcab a", false), [9, 8, 10]);
    assert_eq!(tok.encode("zzab", false), [3, 8]);
    // lstrip / rstrip swallow the spaces beside an added token.
    assert_eq!(tok.encode("ab <x> c", false), [8, 2, 6]);
    // Prepend (Gemma-1 style dummy prefix) in a Sequence, applied to each non-empty piece.
    let seq = serde_json::json!({"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, replace]});
    let tok = TokenizerJson::from_json_str(&small_json(seq), path).unwrap();
    assert_eq!(tok.encode("a", false), [10]);
    assert_eq!(tok.encode("a<pad>a", false), [10, 0, 10]);
    assert_eq!(tok.encode("", false), Vec::<u32>::new());
    // Truncation leaves room for <bos>; padding on the right.
    // ("▁aaaa" → ▁a a a a, cut to two tokens after <bos>).
    let (ids, mask) = tok.encode_padded("aaaa", 3).unwrap();
    assert_eq!((ids, mask), (vec![1, 10, 4], vec![1, 1, 1]));
    let (ids, mask) = tok.encode_padded("a", 4).unwrap();
    assert_eq!((ids, mask), (vec![1, 10, 0, 0], vec![1, 1, 0, 0]));
    // Unsupported components are errors naming them.
    let bad = serde_json::json!({"type": "BertNormalizer"});
    match TokenizerJson::from_json_str(&small_json(bad), path) {
        Err(TokenizerJsonError::Unsupported { what, .. }) => {
            assert!(what.contains("BertNormalizer"))
        }
        other => panic!("expected an unsupported-normalizer error, got {other:?}"),
    }
}

/// Ids recorded from the `tokenizers` library (see the file's `generated_with`) for variants of
/// the fixture tokenizer exercising each component: Prepend, added tokens with lstrip / rstrip /
/// single_word / normalized, the five Split behaviors on a regex, unknowns with and without
/// fusing, NFKC + Lowercase + Strip, ignore_merges.
#[test]
fn tokenizer_variants_match_the_tokenizers_library() {
    let Some(dir) = sana_dir() else { return };
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("models/tiny-sana/tokenizer/tokenizer.json")).unwrap(),
    )
    .unwrap();
    let reference: Value =
        serde_json::from_str(include_str!("data/sana_text_tokenizer_reference.json")).unwrap();
    let mut checked = 0;
    for v in reference["variants"].as_array().unwrap() {
        let mut t = base.clone();
        for key in ["normalizer", "pre_tokenizer"] {
            if let Some(x) = v.get(key) {
                t[key] = x.clone();
            }
        }
        if let Some(m) = v.get("model").and_then(Value::as_object) {
            for (k, x) in m {
                t["model"][k] = x.clone();
            }
        }
        for a in v
            .get("extra_added")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            t["added_tokens"].as_array_mut().unwrap().push(a.clone());
            t["model"]["vocab"][a["content"].as_str().unwrap()] = a["id"].clone();
        }
        let name = v["name"].as_str().unwrap();
        let tok = TokenizerJson::from_json_str(&t.to_string(), Path::new(name)).unwrap();
        for c in v["cases"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tok.encode(text, true), want, "{name}: {text:?}");
            checked += 1;
        }
    }
    assert!(checked > 200);
    println!("{checked} tokenizations match");
}

#[test]
fn long_words_are_not_quadratic() {
    let Some(dir) = sana_dir() else { return };
    let tok = fixture_tokenizer(&dir);
    // One 200k-character "word" (no spaces): a quadratic merge loop would take minutes.
    let text = "the cat".repeat(30_000).replace(' ', "");
    let ids = tok.encode(&text, false);
    let again = tok.encode(&"thecat".repeat(3), false);
    assert_eq!(ids[..again.len()], again[..]);
}

// ---------------------------------------------------------------------------------------------
// Tiny writers and model properties

#[test]
fn tiny_writers_make_a_loadable_sana_text_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cfg = easel_diffusion::sana::text::write_tiny(root, 7).unwrap();
    assert!(
        cfg.vocab_size > 700,
        "merges were learned ({})",
        cfg.vocab_size
    );
    let enc = SanaTextEncoder::load(root, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(enc.tokenizer.vocab_size(), cfg.vocab_size);
    let t = enc.tokenizer.encode("a red cat", true);
    assert_eq!(t[0], 2);
    assert!(t.len() < 1 + "a red cat".len(), "merges apply: {t:?}");
    let chi = enc
        .tokenizer
        .encode(&DEFAULT_COMPLEX_HUMAN_INSTRUCTION.join("\n"), true);
    assert!(
        chi.len() < 300,
        "the instruction is learned ({} tokens)",
        chi.len()
    );
    let e = enc.encode_full("A photo of a cat", 300).unwrap();
    assert_eq!(e.embeds.dims(), &[1, 300, 48]);
    assert_eq!(e.mask.dims(), &[1, 300]);
    assert_eq!(e.tokens.max_length_all, chi.len() + 298);
    let v = e.embeds.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    let (neg, neg_mask) = enc.encode_negative("", 300).unwrap();
    assert_eq!(neg.dims(), &[1, 300, 48]);
    assert_eq!(neg_mask.sum_all().unwrap().to_scalar::<f32>().unwrap(), 1.0);
    // Deterministic: the same seed writes the same files.
    let other = root.join("again");
    easel_diffusion::sana::text::write_tiny(&other, 7).unwrap();
    for f in ["text_encoder/model.safetensors", "tokenizer/tokenizer.json"] {
        assert_eq!(
            std::fs::read(other.join(f)).unwrap(),
            std::fs::read(root.join(f)).unwrap(),
            "{f}"
        );
    }
    // bf16 loads and runs close to f32.
    let enc16 = SanaTextEncoder::load(root, DType::BF16, &Device::Cpu).unwrap();
    let (emb16, _) = enc16.encode("A photo of a cat", 300).unwrap();
    let d = max_diff(&emb16.to_dtype(DType::F32).unwrap(), &e.embeds);
    assert!(d < 0.5, "bf16 vs f32 {d}");
}

/// A tiny model written with `cfg`, loaded back.
fn model_with(cfg: &Gemma2Config, seed: u64) -> (tempfile::TempDir, Gemma2Model) {
    let tmp = tempfile::tempdir().unwrap();
    gemma::write_tiny(tmp.path(), cfg, seed).unwrap();
    let m = Gemma2Model::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    (tmp, m)
}

fn run(m: &Gemma2Model, ids: &[u32], mask: &[u32]) -> Tensor {
    let l = ids.len();
    let i = Tensor::from_slice(ids, (1, l), &Device::Cpu).unwrap();
    let a = Tensor::from_slice(mask, (1, l), &Device::Cpu).unwrap();
    m.forward(&i, &a).unwrap()
}

fn row(t: &Tensor, i: usize) -> Tensor {
    t.get(0).unwrap().get(i).unwrap()
}

#[test]
fn soft_capping_is_applied() {
    let ids = [2u32, 40, 41, 42, 43, 44, 45, 46];
    let mask = [1u32; 8];
    let mut cfg = Gemma2Config::tiny(64);
    cfg.initializer_range = 1.0; // large logits, so the cap matters
    let (_a, plain) = model_with(
        &Gemma2Config {
            attn_logit_softcapping: None,
            ..cfg.clone()
        },
        3,
    );
    let (_b, huge) = model_with(
        &Gemma2Config {
            attn_logit_softcapping: Some(1e6),
            ..cfg.clone()
        },
        3,
    );
    let (_c, tight) = model_with(
        &Gemma2Config {
            attn_logit_softcapping: Some(1.0),
            ..cfg.clone()
        },
        3,
    );
    let (p, h, t) = (
        run(&plain, &ids, &mask),
        run(&huge, &ids, &mask),
        run(&tight, &ids, &mask),
    );
    assert!(
        max_diff(&p, &h) < 1e-4,
        "a huge cap is no cap: {}",
        max_diff(&p, &h)
    );
    assert!(max_diff(&p, &t) > 1e-2, "a tight cap changes the output");
    // The first position sees only itself: capping cannot change it.
    assert!(max_diff(&row(&p, 0), &row(&t, 0)) < 1e-5);
    // The config's null is "no cap", a missing key is transformers' default 50.
    let none: Gemma2Config = serde_json::from_str(r#"{"attn_logit_softcapping": null}"#).unwrap();
    assert_eq!(none.attn_logit_softcapping, None);
    let dflt: Gemma2Config = serde_json::from_str("{}").unwrap();
    assert_eq!(dflt.attn_logit_softcapping, Some(50.0));
    assert_eq!(dflt.query_pre_attn_scalar, 256.0);
    assert!(dflt.is_sliding(0) && !dflt.is_sliding(1));
}

#[test]
fn sliding_window_and_masks() {
    let mut cfg = Gemma2Config::tiny(64);
    cfg.num_hidden_layers = 2;
    cfg.layer_types = Some(vec!["sliding_attention".into(); 2]);
    cfg.sliding_window = Some(2);
    let (_a, sliding) = model_with(&cfg, 5);
    let full_cfg = Gemma2Config {
        layer_types: Some(vec!["full_attention".into(); 2]),
        ..cfg.clone()
    };
    let (_b, full) = model_with(&full_cfg, 5);
    let a = [2u32, 10, 11, 12, 13, 14, 15, 16];
    let mut b = a;
    b[1] = 30; // change the token at position 1
    let mask = [1u32; 8];
    let (sa, sb) = (run(&sliding, &a, &mask), run(&sliding, &b, &mask));
    // Window 2 over 2 layers: position i sees i-2 ..= i, so 1 reaches positions 1..=3 only.
    for i in 0..8 {
        let d = max_diff(&row(&sa, i), &row(&sb, i));
        if (1..=3).contains(&i) {
            assert!(d > 1e-4, "position {i} should depend on position 1");
        } else {
            assert_eq!(d, 0.0, "position {i} is outside the window of position 1");
        }
    }
    let (fa, fb) = (run(&full, &a, &mask), run(&full, &b, &mask));
    assert!(
        max_diff(&row(&fa, 7), &row(&fb, 7)) > 1e-4,
        "full attention reaches the end"
    );
    assert_eq!(max_diff(&row(&fa, 0), &row(&fb, 0)), 0.0, "causal");

    // Key padding: a masked position influences no other position (pads included).
    let pad_mask = [1u32, 1, 1, 1, 0, 0, 0, 0];
    let mut c = a;
    c[5] = 31;
    let (pa, pc) = (run(&full, &a, &pad_mask), run(&full, &c, &pad_mask));
    for i in (0..8).filter(|&i| i != 5) {
        assert_eq!(max_diff(&row(&pa, i), &row(&pc, i)), 0.0, "position {i}");
    }
    // ... while an unmasked run does see it.
    let (ua, uc) = (run(&full, &a, &mask), run(&full, &c, &mask));
    assert!(max_diff(&row(&ua, 6), &row(&uc, 6)) > 1e-4);
    // A batch of two rows gives each row's own result.
    let ids = Tensor::new(&[a, c], &Device::Cpu).unwrap();
    let masks = Tensor::new(&[mask, pad_mask], &Device::Cpu).unwrap();
    let both = full.forward(&ids, &masks).unwrap();
    assert!(max_diff(&both.get(0).unwrap(), &ua.get(0).unwrap()) < 1e-5);
    assert!(max_diff(&both.get(1).unwrap(), &pc.get(0).unwrap()) < 1e-5);
}

#[test]
fn model_prefix_and_shards_load() {
    // A Gemma2ForCausalLM-style checkpoint (`model.` prefix) split in two shards with an index.
    let cfg = Gemma2Config::tiny(64);
    let tmp = tempfile::tempdir().unwrap();
    gemma::write_tiny(tmp.path(), &cfg, 9).unwrap();
    let base = Gemma2Model::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let tensors =
        candle_core::safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let sharded = tmp.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::copy(tmp.path().join("config.json"), sharded.join("config.json")).unwrap();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in tensors.into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        map.insert(format!("model.{k}"), Value::String(file));
        shards[i % 2].insert(format!("model.{k}"), v);
    }
    for (i, s) in shards.iter().enumerate() {
        let file = sharded.join(format!("model-0000{}-of-00002.safetensors", i + 1));
        candle_core::safetensors::save(s, file).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let loaded = Gemma2Model::load(&sharded, DType::F32, &Device::Cpu).unwrap();
    let ids = [2u32, 5, 6, 7];
    let mask = [1u32; 4];
    assert_eq!(
        max_diff(&run(&base, &ids, &mask), &run(&loaded, &ids, &mask)),
        0.0
    );
}
