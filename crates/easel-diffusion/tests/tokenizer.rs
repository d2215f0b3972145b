//! CLIP tokenizer and A1111 prompt parsing.
//!
//! Token ids are checked against the parity fixtures (ids recorded from diffusers /
//! transformers). The fixtures are found through `EASEL_PARITY_DIR`, else
//! `<CARGO_MANIFEST_DIR>/../../../shared/fixtures/parity`; without them those tests print a
//! notice and pass. Expected values of the prompt-parsing tests were worked out with A1111's
//! `parse_prompt_attention` / `tokenize_line` algorithm.

use std::path::{Path, PathBuf};

use easel_diffusion::prompt::{
    is_break, parse_weights, tokenize_weighted, Chunk, WeightedTokens, BREAK_TEXT, BREAK_WEIGHT,
    CHUNK_LEN,
};
use easel_diffusion::tokenizer::{ClipTokenizer, TokenizerError};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn parity_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("EASEL_PARITY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity"),
    };
    if dir.join("models").is_dir() {
        Some(dir)
    } else {
        println!("skipping: parity fixtures not found at {}", dir.display());
        None
    }
}

fn tok_dir(parity: &Path, model: &str, folder: &str) -> PathBuf {
    parity.join("models").join(model).join(folder)
}

/// The tiny SD tokenizer (pad = EOS), or None without fixtures.
fn sd_tokenizer() -> Option<ClipTokenizer> {
    let parity = parity_dir()?;
    Some(ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sd", "tokenizer")).unwrap())
}

/// The tokenizer of `dir` loaded the three ways: folder, vocab.json + merges.txt,
/// tokenizer.json (the last two given the pad id the folder's config names).
fn all_loaders(dir: &Path, pad: u32) -> Vec<(&'static str, ClipTokenizer)> {
    let from_files =
        ClipTokenizer::from_files(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap();
    let from_json = ClipTokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    let (from_files, from_json) = if pad == from_files.eos() {
        (from_files, from_json)
    } else {
        (from_files.with_pad(pad), from_json.with_pad(pad))
    };
    vec![
        ("from_dir", ClipTokenizer::from_dir(dir).unwrap()),
        ("from_files", from_files),
        ("from_tokenizer_json", from_json),
    ]
}

fn ids_row(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
) -> Option<Vec<u32>> {
    let t = tensors.get(name)?;
    assert_eq!(t.dims(), &[1, 77], "{name} shape");
    let rows = t.to_vec2::<i64>().unwrap();
    Some(rows[0].iter().map(|&v| u32::try_from(v).unwrap()).collect())
}

struct Case {
    name: String,
    model: String,
    prompt: String,
    negative: Option<String>,
    tensors: std::collections::HashMap<String, candle_core::Tensor>,
}

fn cases(parity: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(parity.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
        let tensors = candle_core::safetensors::load(
            dir.join("tensors.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        out.push(Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            model: json["model"].as_str().unwrap().to_string(),
            prompt: json["prompt"].as_str().unwrap().to_string(),
            negative: json["negative_prompt"].as_str().map(str::to_string),
            tensors,
        });
    }
    assert!(!out.is_empty(), "no cases under {}", parity.display());
    out
}

// ---------------------------------------------------------------------------------------------
// Tokenizer against the recorded ids

#[test]
fn every_case_matches_recorded_input_ids() {
    let Some(parity) = parity_dir() else { return };
    let mut checked = 0;
    for case in cases(&parity) {
        let mut sets = vec![("tokenizer", "input_ids", "negative_input_ids", 614)];
        if case.tensors.contains_key("input_ids_2") {
            sets.push(("tokenizer_2", "input_ids_2", "negative_input_ids_2", 0));
        }
        for (folder, pos_name, neg_name, pad) in sets {
            let dir = tok_dir(&parity, &case.model, folder);
            for (how, tok) in all_loaders(&dir, pad) {
                assert_eq!(tok.pad(), pad, "{} {folder} {how}: pad", case.name);
                let expected = ids_row(&case.tensors, pos_name).unwrap();
                assert_eq!(
                    tok.encode_padded(&case.prompt, 77),
                    expected,
                    "{} {folder} {how}: {pos_name} of {:?}",
                    case.name,
                    case.prompt
                );
                checked += 1;
                if let Some(expected) = ids_row(&case.tensors, neg_name) {
                    let negative = case.negative.as_deref().unwrap_or("");
                    assert_eq!(
                        tok.encode_padded(negative, 77),
                        expected,
                        "{} {folder} {how}: {neg_name} of {negative:?}",
                        case.name
                    );
                    checked += 1;
                }
            }
        }
    }
    // 15 cases, 3 loaders: at least the positive ids of each.
    assert!(checked >= 45, "only {checked} id rows checked");
}

#[test]
fn readme_examples() {
    let Some(tok) = sd_tokenizer() else { return };
    assert_eq!((tok.bos(), tok.eos(), tok.pad()), (613, 614, 614));
    assert_eq!(tok.vocab_size(), 615);
    assert_eq!(tok.encode("a red cat"), [320, 521, 515]);
    assert_eq!(tok.encode("42 cats"), [275, 273, 66, 64, 83, 338]);
    let padded = tok.encode_padded("a red cat", 77);
    assert_eq!(padded.len(), 77);
    assert_eq!(&padded[..5], &[613, 320, 521, 515, 614]);
    assert!(padded[5..].iter().all(|&id| id == 614));
    assert_eq!(
        tok.encode_padded("42 cats", 8),
        [613, 275, 273, 66, 64, 83, 338, 614]
    );
    assert_eq!(tok.token_id(",</w>"), Some(267));
    assert_eq!(tok.id_to_token(515), Some("cat</w>"));
}

#[test]
fn empty_and_whitespace_prompts() {
    let Some(tok) = sd_tokenizer() else { return };
    for text in ["", " ", "  \n\t ", "\u{a0}\u{3000}"] {
        assert_eq!(tok.encode(text), Vec::<u32>::new(), "{text:?}");
        let padded = tok.encode_padded(text, 77);
        assert_eq!(padded[0], 613);
        assert!(padded[1..].iter().all(|&id| id == 614));
    }
}

#[test]
fn whitespace_and_case_are_normalized() {
    let Some(tok) = sd_tokenizer() else { return };
    let plain = tok.encode("a red cat");
    for variant in [
        "A RED CAT",
        "  a   red\tcat \n",
        "a\u{a0}red\u{2003}cat",
        "a\r\nRed\u{3000}cAt",
    ] {
        assert_eq!(tok.encode(variant), plain, "{variant:?}");
    }
    // Contractions split off; the tab is a word boundary. (Ids from the `tokenizers` library.)
    assert_eq!(tok.encode("it's A  RED\tcat"), [578, 6, 338, 320, 521, 515]);
}

#[test]
fn unicode_is_nfc_normalized_and_byte_encoded() {
    let Some(tok) = sd_tokenizer() else { return };
    // Precomposed and decomposed é give the same ids.
    let composed = tok.encode("caf\u{e9}");
    assert_eq!(composed, [66, 64, 69, 127, 358]);
    assert_eq!(tok.encode("cafe\u{301}"), composed);
    // Lower-casing is per character, as in `tokenizers`: a final Σ stays σ, not ς.
    assert_eq!(tok.encode("ΣΑΣ"), [139, 225, 138, 109, 139, 481]);
    assert_eq!(tok.encode("σας"), [139, 225, 138, 109, 139, 480]);
    // İ lower-cases to i + U+0307.
    assert_eq!(tok.encode("İ"), [328, 136, 485]);
    // CJK letters stay one word; bytes map through GPT-2's table.
    assert_eq!(tok.encode("猫猫"), [163, 234, 104, 163, 234, 360]);
    assert_eq!(tok.byte_level("猫".as_bytes()), "çĮ«");
}

#[test]
fn matches_the_tokenizers_library() {
    // Ids the `tokenizers` library (transformers' backend) gives for the tiny tokenizer.
    let Some(tok) = sd_tokenizer() else { return };
    let cases: &[(&str, &[u32])] = &[
        // Hangul jamo compose under NFC.
        ("\u{1100}\u{1161} \u{ac00}", &[166, 108, 478, 166, 108, 478]),
        (
            "THEY'LL I'M we're",
            &[
                83, 71, 68, 344, 6, 75, 331, 328, 6, 332, 86, 324, 6, 81, 324,
            ],
        ),
        ("don't", &[518, 333, 6, 339]),
        // An emoji is a punctuation run between letters.
        ("a\u{1f600}b", &[320, 172, 253, 246, 478, 321]),
        // No compatibility normalization (NFC, not NFKC).
        (
            "\u{ff46}\u{ff55}\u{ff4c}\u{ff4c} \u{fb01}",
            &[
                171, 121, 228, 171, 121, 243, 171, 121, 234, 171, 121, 490, 171, 105, 479,
            ],
        ),
        // Digits one by one; other numerals are not letters.
        (
            "\u{661}\u{662} \u{216b} \u{bd}",
            &[149, 350, 149, 351, 158, 227, 375, 126, 377],
        ),
        ("\u{1c4}", &[131, 484]),
        // U+0085 is whitespace; U+200B is not.
        ("x\u{85}y\u{200b}z", &[343, 344, 158, 222, 489, 345]),
    ];
    for (text, ids) in cases {
        assert_eq!(tok.encode(text), *ids, "{text:?}");
    }
}

#[test]
fn special_tokens_in_text() {
    let Some(parity) = parity_dir() else { return };
    let tok = ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sd", "tokenizer")).unwrap();
    // Literal special tokens are cut out before normalization...
    assert_eq!(tok.encode("<|startoftext|>x"), [613, 343]);
    assert_eq!(tok.encode("a<|endoftext|>a"), [320, 614, 320]);
    // ...but not when they only match after lower-casing: then they are text (`<|`, letters,
    // `|>`), as in the `tokenizers` library.
    assert_eq!(
        tok.encode("<|StartOfText|>x"),
        [27, 347, 536, 549, 83, 78, 69, 83, 68, 87, 339, 91, 285, 343]
    );
    assert_eq!(
        tok.encode("<|EndOfText|>'t"),
        [27, 347, 68, 77, 518, 69, 83, 68, 87, 339, 91, 285, 6, 339]
    );
    assert_eq!(tok.encode("! !! !!!"), [256, 0, 256, 0, 0, 256]);
    assert_eq!(tok.encode("grass!"), [568, 256]);

    // SDXL's tokenizer_2 pads with "!", which makes every "!" the pad token (as diffusers).
    for (how, tok2) in all_loaders(&tok_dir(&parity, "tiny-sdxl", "tokenizer_2"), 0) {
        assert_eq!(tok2.pad(), 0, "{how}");
        assert_eq!(tok2.encode("! !! !!!"), [0; 6], "{how}");
        assert_eq!(tok2.encode("grass!"), [568, 0], "{how}");
        let padded = tok2.encode_padded("a red cat", 77);
        assert_eq!(&padded[..6], &[613, 320, 521, 515, 614, 0], "{how}");
        assert!(padded[5..].iter().all(|&id| id == 0), "{how}");
    }
}

#[test]
fn long_prompt_is_truncated_like_diffusers() {
    let Some(parity) = parity_dir() else { return };
    let tok = ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sd", "tokenizer")).unwrap();
    let case = cases(&parity)
        .into_iter()
        .find(|c| c.name == "sd-txt2img-pndm-long-prompt")
        .expect("long-prompt case");
    let all = tok.encode(&case.prompt);
    assert!(all.len() > 75, "{} tokens", all.len());
    let padded = tok.encode_padded(&case.prompt, 77);
    assert_eq!(padded.len(), 77);
    assert_eq!(padded[0], 613);
    assert_eq!(&padded[1..76], &all[..75]);
    assert_eq!(padded[76], 614);
    assert_eq!(padded, ids_row(&case.tensors, "input_ids").unwrap());
    // Smaller and degenerate lengths.
    assert_eq!(
        tok.encode_padded(&case.prompt, 4),
        [613, all[0], all[1], 614]
    );
    assert_eq!(tok.encode_padded("a red cat", 2), [613, 614]);
    assert_eq!(tok.encode_padded("a red cat", 1), [613]);
    assert_eq!(tok.encode_padded("a red cat", 0), Vec::<u32>::new());
}

#[test]
fn cache_gives_the_same_ids() {
    let Some(tok) = sd_tokenizer() else { return };
    let first = tok.encode("a dog with a blue ball on the green grass");
    for _ in 0..3 {
        assert_eq!(
            tok.encode("a dog with a blue ball on the green grass"),
            first
        );
    }
    assert_eq!(
        tok.clone()
            .encode("a dog with a blue ball on the green grass"),
        first
    );
}

#[test]
fn loading_errors_name_the_file() {
    let missing = Path::new("/nonexistent/easel/tokenizer");
    let err = ClipTokenizer::from_dir(missing).unwrap_err();
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/easel/tokenizer"),
        "{err}"
    );

    let err = ClipTokenizer::from_files(&missing.join("vocab.json"), &missing.join("merges.txt"))
        .unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    assert!(err.to_string().contains("vocab.json"), "{err}");

    let dir = std::env::temp_dir().join(format!("easel-tok-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    std::fs::write(
        &vocab,
        r#"{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "<|startoftext|>": 4, "<|endoftext|>": 5}"#,
    )
    .unwrap();
    std::fs::write(&merges, "#version: 0.2\na b</w>\n").unwrap();
    let err = ClipTokenizer::from_files(&vocab, &merges).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MergeNotInVocab { line: 2, token, .. } if token == "ab</w>"),
        "{err}"
    );
    assert!(err.to_string().contains("merges.txt"), "{err}");
    std::fs::write(&merges, "#version: 0.2\na b</w> c\n").unwrap();
    let err = ClipTokenizer::from_files(&vocab, &merges).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err}");
    std::fs::write(&vocab, "{not json").unwrap();
    let err = ClipTokenizer::from_files(&vocab, &merges).unwrap_err();
    assert!(matches!(err, TokenizerError::Json { .. }), "{err}");
    assert!(err.to_string().contains("vocab.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minimal_vocab_without_fixtures() {
    // A hand-made vocabulary: exercises BPE rank order and unknown symbols without fixtures.
    let dir = std::env::temp_dir().join(format!("easel-tok-mini-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    std::fs::write(
        &vocab,
        r#"{"a": 0, "b": 1, "c": 2, "a</w>": 3, "b</w>": 4, "c</w>": 5, "ab": 6, "bc</w>": 7,
            "abc</w>": 8, "<|startoftext|>": 9, "<|endoftext|>": 10}"#,
    )
    .unwrap();
    // "b c</w>" ranks before "a b": "abc" -> a + bc</w>, and no merge gives abc</w> from that.
    std::fs::write(&merges, "#version: 0.2\nb c</w>\na b\nab c</w>\n").unwrap();
    let tok = ClipTokenizer::from_files(&vocab, &merges).unwrap();
    assert_eq!(tok.encode("abc"), [0, 7]);
    assert_eq!(tok.encode("ab"), [0, 4]);
    assert_eq!(tok.encode("abca"), [6, 2, 3]);
    // "d" is not in the vocabulary: unknown = <|endoftext|>.
    assert_eq!(tok.encode("ad"), [0, 10]);
    assert_eq!(tok.encode_padded("c", 5), [9, 5, 10, 10, 10]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// parse_weights (expected values from A1111's parse_prompt_attention)

fn pieces(list: &[(&str, f64)]) -> Vec<(String, f32)> {
    list.iter()
        .map(|&(text, weight)| (text.to_string(), weight as f32))
        .collect()
}

const BRK: (&str, f64) = ("BREAK", -1.0);

#[test]
fn parse_weights_plain_and_nesting() {
    assert_eq!(
        parse_weights("normal text"),
        pieces(&[("normal text", 1.0)])
    );
    assert_eq!(parse_weights(""), pieces(&[("", 1.0)]));
    assert_eq!(
        parse_weights("an (important) word"),
        pieces(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
    );
    assert_eq!(
        parse_weights("((a)) [b] [[c]] (((d)))"),
        pieces(&[
            ("a", 1.2100000000000002),
            (" ", 1.0),
            ("b", 0.9090909090909091),
            (" ", 1.0),
            ("c", 0.8264462809917354),
            (" ", 1.0),
            ("d", 1.3310000000000004),
        ])
    );
    // Adjacent equal weights merge.
    assert_eq!(
        parse_weights("(unnecessary)(parens)"),
        pieces(&[("unnecessaryparens", 1.1)])
    );
    // ... compared as f64, like Python: 1.1 * 1.1 != 1.21.
    assert_eq!(
        parse_weights("((a))(b:1.21)"),
        pieces(&[("a", 1.2100000000000002), ("b", 1.21)])
    );
    assert_eq!(parse_weights("(a)(b:1.1)"), pieces(&[("ab", 1.1)]));
}

#[test]
fn parse_weights_explicit() {
    assert_eq!(
        parse_weights("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
        pieces(&[
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ])
    );
    assert_eq!(
        parse_weights("(a:0) (b:-1) (c:+.5) (d:2.)"),
        pieces(&[
            ("a", 0.0),
            (" ", 1.0),
            ("b", -1.0),
            (" ", 1.0),
            ("c", 0.5),
            (" ", 1.0),
            ("d", 2.0),
        ])
    );
    assert_eq!(
        parse_weights("((a):1.5)"),
        pieces(&[("a", 1.6500000000000001)])
    );
    // A weight needs `(`...`)`: in square brackets or without a `)` it is text.
    assert_eq!(
        parse_weights("[a:1.5]"),
        pieces(&[("a:1.5", 0.9090909090909091)])
    );
    assert_eq!(
        parse_weights("cat: 1.2) dog"),
        pieces(&[("cat: 1.2) dog", 1.0)])
    );
    // A `:1.5)` with no open `(` is text.
    assert_eq!(
        parse_weights("a) b] c:1.2)"),
        pieces(&[("a) b] c:1.2)", 1.0)])
    );
}

#[test]
fn parse_weights_escapes() {
    assert_eq!(parse_weights(r"\(literal\]"), pieces(&[("(literal]", 1.0)]));
    assert_eq!(parse_weights(r"\[x\)"), pieces(&[("[x)", 1.0)]));
    // `\\` is a backslash; a lone backslash vanishes.
    assert_eq!(parse_weights(r"\\ and a\b"), pieces(&[(r"\ and ab", 1.0)]));
    assert_eq!(parse_weights(r"(\(x\))"), pieces(&[("(x)", 1.1)]));
}

#[test]
fn parse_weights_unbalanced() {
    assert_eq!(parse_weights("(unbalanced"), pieces(&[("unbalanced", 1.1)]));
    assert_eq!(parse_weights("[[x]"), pieces(&[("x", 0.8264462809917354)]));
    assert_eq!(
        parse_weights("(a [b (c:1.3)] d"),
        pieces(&[
            ("a ", 1.1),
            ("b ", 1.0),
            ("c", 1.3000000000000003),
            (" d", 1.1)
        ])
    );
    assert_eq!(parse_weights("a) b]"), pieces(&[("a) b]", 1.0)]));
}

#[test]
fn parse_weights_break() {
    assert_eq!(
        parse_weights("a BREAK b"),
        pieces(&[("a", 1.0), BRK, ("b", 1.0)])
    );
    assert_eq!(
        parse_weights("a BREAK BREAK b"),
        pieces(&[("a", 1.0), BRK, ("", 1.0), BRK, ("b", 1.0)])
    );
    // Only the whole upper-case word.
    assert_eq!(
        parse_weights("BREAKfast, BREAK"),
        pieces(&[("BREAKfast,", 1.0), BRK, ("", 1.0)])
    );
    assert_eq!(parse_weights("a break b"), pieces(&[("a break b", 1.0)]));
    let parsed = parse_weights("x\nBREAK\ny");
    assert_eq!(parsed, pieces(&[("x", 1.0), BRK, ("y", 1.0)]));
    assert!(is_break(&parsed[1]));
    assert_eq!((BREAK_TEXT, BREAK_WEIGHT), ("BREAK", -1.0));
}

#[test]
fn parse_weights_documented_deviations() {
    // BREAK inside brackets still breaks (A1111 would encode the word "break" at -1.1).
    assert_eq!(
        parse_weights("(a BREAK b)"),
        pieces(&[("a", 1.1), BRK, ("b", 1.1)])
    );
    // A weight that is not a number is text, and the `)` closes with x1.1 (A1111 raises).
    assert_eq!(parse_weights("(a:1.2.3)"), pieces(&[("a:1.2.3", 1.1)]));
    assert_eq!(parse_weights("(a:.)"), pieces(&[("a:.", 1.1)]));
}

// ---------------------------------------------------------------------------------------------
// tokenize_weighted (expected values from A1111's tokenize_line)

fn content(chunk: &Chunk, tok: &ClipTokenizer) -> (Vec<u32>, Vec<f32>) {
    assert_eq!(chunk.ids.len(), 77);
    assert_eq!(chunk.weights.len(), 77);
    assert_eq!(chunk.ids[0], tok.bos());
    assert_eq!(chunk.weights[0], 1.0);
    let eos = chunk.ids[1..]
        .iter()
        .position(|&id| id == tok.eos())
        .expect("EOS")
        + 1;
    assert!(chunk.ids[eos + 1..].iter().all(|&id| id == tok.pad()));
    assert!(chunk.weights[eos..].iter().all(|&w| w == 1.0));
    (chunk.ids[1..eos].to_vec(), chunk.weights[1..eos].to_vec())
}

fn words(word: &str, n: usize) -> String {
    vec![word; n].join(" ")
}

#[test]
fn short_prompts_give_one_chunk_equal_to_encode_padded() {
    let Some(parity) = parity_dir() else { return };
    let tok = ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sd", "tokenizer")).unwrap();
    for case in cases(&parity) {
        for prompt in [
            Some(case.prompt.as_str()),
            case.negative.as_deref(),
            Some(""),
        ]
        .into_iter()
        .flatten()
        {
            if tok.encode(prompt).len() > CHUNK_LEN {
                continue;
            }
            let weighted = tokenize_weighted(&tok, prompt);
            assert_eq!(weighted.chunks.len(), 1, "{prompt:?}");
            assert_eq!(
                weighted.chunks[0].ids,
                tok.encode_padded(prompt, 77),
                "{prompt:?}"
            );
            assert!(weighted.chunks[0].is_unweighted());
        }
    }
    // Empty prompt: one chunk BOS EOS PAD...; also the padding chunk.
    let empty = tokenize_weighted(&tok, "");
    assert_eq!(empty.chunks, vec![Chunk::empty(&tok)]);
}

#[test]
fn weights_follow_their_tokens() {
    let Some(tok) = sd_tokenizer() else { return };
    let weighted = tokenize_weighted(&tok, "a (red:1.5) [cat]");
    assert_eq!(weighted.chunks.len(), 1);
    let (ids, weights) = content(&weighted.chunks[0], &tok);
    assert_eq!(ids, [320, 521, 515]);
    assert_eq!(weights, [1.0, 1.5, (1.0 / 1.1) as f32]);
    // Pieces are tokenized separately: a weight boundary splits a word.
    let (split, _) = content(&tokenize_weighted(&tok, "(ca)t").chunks[0], &tok);
    assert_eq!(split, [tok.encode("ca"), tok.encode("t")].concat());
    assert_ne!(split, tok.encode("cat"));
}

#[test]
fn long_prompt_splits_into_chunks_of_75() {
    let Some(tok) = sd_tokenizer() else { return };
    // 80 single-token words, no comma: 75 + 5.
    let prompt = words("a", 80);
    let weighted = tokenize_weighted(&tok, &prompt);
    assert_eq!(weighted.chunks.len(), 2);
    assert_eq!(content(&weighted.chunks[0], &tok).0, vec![320; 75]);
    assert_eq!(content(&weighted.chunks[1], &tok).0, vec![320; 5]);
    // Exactly 75 tokens: one chunk; 76: two.
    assert_eq!(tokenize_weighted(&tok, &words("a", 75)).chunks.len(), 1);
    assert_eq!(tokenize_weighted(&tok, &words("a", 76)).chunks.len(), 2);
    // A comma too far back (74 tokens before the end) does not move anything.
    let weighted = tokenize_weighted(&tok, &format!("a, {}", words("a", 79)));
    assert_eq!(content(&weighted.chunks[0], &tok).0.len(), 75);
    assert_eq!(content(&weighted.chunks[1], &tok).0, vec![320; 6]);
}

#[test]
fn long_prompt_backtracks_to_the_last_comma() {
    let Some(tok) = sd_tokenizer() else { return };
    let comma = tok.token_id(",</w>").unwrap();
    // 70 x "a", a comma at position 70, then 10 emphasized cats: the chunk would end after 4
    // cats; they move to the next chunk with their weights.
    let prompt = format!("{}, ({})", words("a", 70), words("cat", 10));
    let weighted = tokenize_weighted(&tok, &prompt);
    assert_eq!(weighted.chunks.len(), 2);
    let (ids0, w0) = content(&weighted.chunks[0], &tok);
    let mut expected = vec![320; 70];
    expected.push(comma);
    assert_eq!(ids0, expected);
    assert!(w0.iter().all(|&w| w == 1.0));
    let (ids1, w1) = content(&weighted.chunks[1], &tok);
    assert_eq!(ids1, vec![515; 10]);
    assert_eq!(w1, vec![1.1f32; 10]);
    // Padding after a short chunk keeps weight 1.
    assert_eq!(weighted.chunks[0].weights[72..], [1.0; 5]);

    // The comma exactly 20 tokens from the end still counts; 21 does not.
    let at55 = format!("{}, {}", words("a", 55), words("cat", 25));
    let weighted = tokenize_weighted(&tok, &at55);
    assert_eq!(content(&weighted.chunks[0], &tok).0.len(), 56);
    assert_eq!(content(&weighted.chunks[1], &tok).0, vec![515; 25]);
    let at54 = format!("{}, {}", words("a", 54), words("cat", 26));
    let weighted = tokenize_weighted(&tok, &at54);
    assert_eq!(content(&weighted.chunks[0], &tok).0.len(), 75);
    assert_eq!(content(&weighted.chunks[1], &tok).0, vec![515; 6]);

    // A comma arriving when the chunk is full starts the next chunk (A1111 then forgets it).
    let full = format!("{}, {}", words("a", 75), words("cat", 3));
    let weighted = tokenize_weighted(&tok, &full);
    assert_eq!(content(&weighted.chunks[0], &tok).0, vec![320; 75]);
    assert_eq!(content(&weighted.chunks[1], &tok).0, [comma, 515, 515, 515]);
}

#[test]
fn fixture_long_prompt_chunks() {
    let Some(parity) = parity_dir() else { return };
    let tok = ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sd", "tokenizer")).unwrap();
    let case = cases(&parity)
        .into_iter()
        .find(|c| c.name == "sd-txt2img-pndm-long-prompt")
        .expect("long-prompt case");
    let all = tok.encode(&case.prompt);
    let comma = tok.token_id(",</w>").unwrap();
    let weighted = tokenize_weighted(&tok, &case.prompt);
    // 144 tokens, commas at 10, 17, 34, 41, 58, 65, 82, ..., 137. Chunk 1 is full after 75
    // tokens with its last comma at 65 (10 from the end): it keeps 66 tokens. Chunk 2 starts
    // at token 66 and is full at 141 with its last comma at 137: 72 tokens. 6 remain.
    assert_eq!(all.len(), 144);
    let lengths: Vec<usize> = weighted
        .chunks
        .iter()
        .map(|c| content(c, &tok).0.len())
        .collect();
    assert_eq!(lengths, [66, 72, 6]);
    let mut joined = Vec::new();
    for (i, chunk) in weighted.chunks.iter().enumerate() {
        let (ids, weights) = content(chunk, &tok);
        assert!(ids.len() <= CHUNK_LEN);
        assert!(weights.iter().all(|&w| w == 1.0));
        if i + 1 < weighted.chunks.len() && ids.len() < CHUNK_LEN {
            // Shortened only by the comma backtrack: it ends at a comma.
            assert_eq!(ids.last(), Some(&comma), "chunk {i}");
            assert!(CHUNK_LEN - ids.len() < 20, "chunk {i}");
        }
        joined.extend(ids);
    }
    assert_eq!(joined, all, "chunks hold every token in order");
}

#[test]
fn break_starts_a_new_chunk() {
    let Some(tok) = sd_tokenizer() else { return };
    let weighted = tokenize_weighted(&tok, "a cat BREAK a (dog)");
    assert_eq!(weighted.chunks.len(), 2);
    assert_eq!(
        content(&weighted.chunks[0], &tok),
        (vec![320, 515], vec![1.0, 1.0])
    );
    assert_eq!(
        content(&weighted.chunks[1], &tok),
        (vec![320, 519], vec![1.0, 1.1])
    );
    // A BREAK at the start or twice in a row gives an empty chunk, as in A1111; one at the end
    // does not add a chunk.
    let weighted = tokenize_weighted(&tok, "BREAK a BREAK BREAK cat BREAK");
    let contents: Vec<Vec<u32>> = weighted.chunks.iter().map(|c| content(c, &tok).0).collect();
    assert_eq!(contents, vec![vec![], vec![320], vec![], vec![515]]);
    assert_eq!(weighted.chunks[0], Chunk::empty(&tok));
    // BREAK resets the 75-token count.
    let weighted = tokenize_weighted(
        &tok,
        &format!("{} BREAK {}", words("a", 70), words("a", 70)),
    );
    assert_eq!(weighted.chunks.len(), 2);
}

#[test]
fn padding_chunks_to_match() {
    let Some(parity) = parity_dir() else { return };
    let tok = ClipTokenizer::from_dir(&tok_dir(&parity, "tiny-sdxl", "tokenizer_2")).unwrap();
    let mut negative: WeightedTokens = tokenize_weighted(&tok, "blurry");
    negative.pad_to(3, &tok);
    assert_eq!(negative.chunks.len(), 3);
    let empty = &negative.chunks[2];
    assert_eq!(&empty.ids[..3], &[613, 614, 0]);
    assert!(empty.ids[2..].iter().all(|&id| id == 0));
    assert!(empty.is_unweighted());
    negative.pad_to(1, &tok);
    assert_eq!(negative.chunks.len(), 3);
}
