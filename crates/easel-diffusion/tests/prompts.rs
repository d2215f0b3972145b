//! `PromptMode::Weighted`: A1111-style emphasis and 75-token chunks in the pipeline's text
//! encoding, on the parity fixtures' tiny SD and SDXL models.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs, max_diff, parity_dir};
use easel_diffusion::prompt::{tokenize_weighted, Chunk};
use easel_diffusion::rng::TorchRng;
use easel_diffusion::sd::pipeline::{apply_emphasis, Pipeline, PromptMode, Request, Run};
use easel_diffusion::sd::unet::AddedCond;
use easel_diffusion::tokenizer::ClipTokenizer;

/// A prompt of `n` tokens (one per word) without commas, so chunking never backtracks.
fn words(n: usize) -> String {
    let vocab = [
        "a", "red", "cat", "on", "the", "green", "grass", "with", "blue", "ball",
    ];
    (0..n)
        .map(|i| vocab[i % vocab.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

struct Model {
    pipe: Pipeline,
    tok: ClipTokenizer,
    tok2: Option<ClipTokenizer>,
}

fn load(name: &str) -> Option<Model> {
    let dir = parity_dir()?.join("models").join(name);
    let pipe = Pipeline::from_diffusers_dir(&dir, &[], DType::F32, &Device::Cpu).unwrap();
    let tok = ClipTokenizer::from_dir(&dir.join("tokenizer")).unwrap();
    let tok2 = dir
        .join("tokenizer_2")
        .is_dir()
        .then(|| ClipTokenizer::from_dir(&dir.join("tokenizer_2")).unwrap());
    Some(Model { pipe, tok, tok2 })
}

fn request<'a>(prompt: &'a str, negative: Option<&'a str>) -> Request<'a> {
    Request {
        prompt,
        negative_prompt: negative,
        width: 64,
        height: 64,
        steps: 2,
        guidance: 7.5,
        scheduler: None,
        init_image: None,
        mask: None,
        strength: 1.0,
        prompt_mode: PromptMode::Weighted,
        tiny_vae: None,
    }
}

fn generate(pipe: &Pipeline, req: &Request) -> Run {
    pipe.run(req, &mut TorchRng::new(7), &mut |_, _, _| true)
        .unwrap()
        .expect("not canceled")
}

fn assert_finite(t: &Tensor, what: &str) {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "{what}: not finite");
}

fn mean(t: &Tensor) -> f32 {
    t.mean_all().unwrap().to_scalar::<f32>().unwrap()
}

/// Rows `[from, from + len)` of the sequence axis of `[1, T, D]`.
fn rows(t: &Tensor, from: usize, len: usize) -> Tensor {
    t.narrow(1, from, len).unwrap()
}

#[test]
fn plain_short_prompts_encode_exactly_as_diffusers() {
    let exactly_75 = words(75);
    let prompts = [
        "a red cat",
        "",
        "a photo of a dog on the green grass",
        "blurry, low quality, ugly",
        // `!` is SDXL's second pad token: both paths read it as id 0 there.
        "a red cat! on the grass!!",
        exactly_75.as_str(),
    ];
    for name in ["tiny-sd", "tiny-sdxl"] {
        let Some(m) = load(name) else { return };
        assert_eq!(m.tok.encode(&exactly_75).len(), 75);
        for prompt in prompts {
            let d = m.pipe.encode_prompt(prompt, PromptMode::Diffusers).unwrap();
            let w = m.pipe.encode_prompt(prompt, PromptMode::Weighted).unwrap();
            assert_eq!(w.ids, d.ids, "{name} {prompt:?}: ids");
            assert_eq!(w.embeds.dims(), d.embeds.dims(), "{name} {prompt:?}");
            assert_eq!(max_diff(&w.embeds, &d.embeds), 0.0, "{name} {prompt:?}");
            match (&w.pooled, &d.pooled) {
                (Some(a), Some(b)) => assert_eq!(max_diff(a, b), 0.0, "{name} {prompt:?}"),
                (None, None) => {}
                _ => panic!("{name} {prompt:?}: pooled in one mode only"),
            }
        }
        // Through `run` too, with guidance (the negative prompt encoded alongside).
        let mut req = request("a red cat", Some("blurry"));
        req.steps = 1;
        let w = generate(&m.pipe, &req);
        req.prompt_mode = PromptMode::Diffusers;
        let d = generate(&m.pipe, &req);
        assert_eq!(w.input_ids, d.input_ids);
        assert_eq!(w.negative_input_ids, d.negative_input_ids);
        assert_eq!(max_diff(&w.prompt_embeds, &d.prompt_embeds), 0.0);
        let (wn, dn) = (
            w.negative_prompt_embeds.unwrap(),
            d.negative_prompt_embeds.unwrap(),
        );
        assert_eq!(max_diff(&wn, &dn), 0.0);
        assert_eq!(max_diff(&w.image, &d.image), 0.0, "{name}: image");
    }
}

#[test]
fn a_100_token_prompt_is_two_chunks_and_generates() {
    let Some(m) = load("tiny-sd") else { return };
    let prompt = words(100);
    assert_eq!(m.tok.encode(&prompt).len(), 100);
    let run = generate(&m.pipe, &request(&prompt, Some("blurry, low quality")));
    assert_eq!(run.prompt_embeds.dims(), [1, 154, 32]);
    assert_eq!(
        run.negative_prompt_embeds.as_ref().unwrap().dims(),
        [1, 154, 32]
    );
    assert_eq!(run.input_ids.len(), 154);
    assert_eq!(run.negative_input_ids.as_ref().unwrap().len(), 154);
    let chunks = tokenize_weighted(&m.tok, &prompt).chunks;
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        run.input_ids,
        [&chunks[0].ids[..], &chunks[1].ids[..]].concat()
    );
    // The second chunk: BOS, the 25 tokens after the first 75, EOS, padding.
    let all = m.tok.encode(&prompt);
    assert_eq!(chunks[1].ids[0], m.tok.bos());
    assert_eq!(&chunks[1].ids[1..26], &all[75..]);
    assert_eq!(chunks[1].ids[26], m.tok.eos());
    assert_eq!(run.image.dims(), [1, 3, 64, 64]);
    assert_finite(&run.image, "image");
    assert_finite(&run.final_latents, "latents");

    // The first chunk is diffusers' truncated prompt (same 77 ids, same embeddings; the two
    // chunks go through CLIP as one batch, hence a tolerance).
    let d = m
        .pipe
        .encode_prompt(&prompt, PromptMode::Diffusers)
        .unwrap();
    assert_eq!(&run.input_ids[..77], &d.ids[..]);
    assert!(max_diff(&rows(&run.prompt_embeds, 0, 77), &d.embeds) < 1e-5);
    // The second chunk is its own CLIP input: it encodes as its text alone does.
    let second = m
        .pipe
        .encode_prompt(&tail_words(100, 75), PromptMode::Weighted)
        .unwrap();
    assert_eq!(&run.input_ids[77..], &second.ids[..]);
    assert!(max_diff(&rows(&run.prompt_embeds, 77, 77), &second.embeds) < 1e-5);
}

/// The words of `words(n)` from the `skip`-th on.
fn tail_words(n: usize, skip: usize) -> String {
    words(n).split(' ').skip(skip).collect::<Vec<_>>().join(" ")
}

#[test]
fn emphasis_weights_exactly_its_tokens_and_keeps_the_mean() {
    for name in ["tiny-sd", "tiny-sdxl"] {
        let Some(m) = load(name) else { return };
        for (text, weighted, positions) in [
            ("a (red:1.5) cat on the grass", 1.5f32, vec![2]),
            ("a red (cat on:0.7) the grass", 0.7, vec![3, 4]),
            ("a red cat on ((the)) grass", 1.21, vec![5]),
        ] {
            let plain = "a red cat on the grass";
            // Tokens: the same ids as the plain prompt, the weight at exactly those positions.
            let chunk = &tokenize_weighted(&m.tok, text).chunks[0];
            assert_eq!(chunk.ids, tokenize_weighted(&m.tok, plain).chunks[0].ids);
            for (i, &w) in chunk.weights.iter().enumerate() {
                let want = if positions.contains(&i) {
                    weighted
                } else {
                    1.0
                };
                assert!((w - want).abs() < 1e-6, "{text}: weight {i} = {w}");
            }
            if let Some(tok2) = &m.tok2 {
                assert_eq!(
                    tokenize_weighted(tok2, text).chunks[0].weights,
                    chunk.weights
                );
            }

            let z0 = m.pipe.encode_prompt(plain, PromptMode::Weighted).unwrap();
            let z1 = m.pipe.encode_prompt(text, PromptMode::Weighted).unwrap();
            assert_eq!(z1.ids, z0.ids);
            // SDXL: pooled comes from the unweighted encoder output.
            if let (Some(a), Some(b)) = (&z1.pooled, &z0.pooled) {
                assert_eq!(max_diff(a, b), 0.0);
            }
            // Emphasis is per encoder (A1111 applies it inside each one): SDXL's context is
            // [CLIP-L (32) | OpenCLIP (48)].
            let sdxl = m.tok2.is_some();
            let parts: Vec<(usize, usize)> = if sdxl {
                vec![(0, 32), (32, 48)]
            } else {
                vec![(0, 32)]
            };
            assert_eq!(
                z1.embeds.dim(2).unwrap(),
                parts.iter().map(|p| p.1).sum::<usize>()
            );
            let w = Tensor::new(&chunk.weights[..], &Device::Cpu)
                .unwrap()
                .reshape((1, 77, 1))
                .unwrap();
            for (from, len) in parts {
                let a = z0.embeds.narrow(2, from, len).unwrap();
                let b = z1.embeds.narrow(2, from, len).unwrap();
                // Before the rescale: z·w differs from z at exactly the weighted positions.
                let before = a.broadcast_mul(&w).unwrap();
                for i in 0..77 {
                    let d = max_diff(&rows(&before, i, 1), &rows(&a, i, 1));
                    assert_eq!(d > 0.0, positions.contains(&i), "{name} {text}: row {i}");
                }
                // After: that, times one factor for the whole chunk, which brings the mean
                // back to the unweighted mean.
                let (m0, m1) = (mean(&a), mean(&before));
                let magnitude = mean(&a.abs().unwrap());
                let scale = if sdxl {
                    // Penultimate states (no final norm): a real mean, A1111's rescale.
                    assert!(m0.abs() > 1e-3 * magnitude && m1.abs() > 1e-3 * magnitude);
                    m0 / m1
                } else {
                    // tiny-sd's final layer norm has zero bias, so every position's mean is
                    // 0 and both means are rounding noise: the rescale is skipped.
                    assert!(m0.abs() < 1e-6 * magnitude, "{name}: mean {m0}");
                    1.0
                };
                let want = (before * f64::from(scale)).unwrap();
                let d = max_diff(&b, &want) / max_abs(&want);
                assert!(d < 1e-5, "{name} {text}: {d}");
                let m2 = mean(&b);
                assert!(
                    (m0 - m2).abs() <= 1e-5 * magnitude,
                    "{name} {text}: {m0} {m2}"
                );
                if sdxl {
                    assert!((scale - 1.0).abs() > 1e-4, "{name} {text}: scale {scale}");
                    assert!(
                        (m0 - m2).abs() <= 1e-4 * m0.abs(),
                        "{name} {text}: {m0} {m2}"
                    );
                }
            }
        }
    }
}

#[test]
fn apply_emphasis_rescales_to_the_original_mean() {
    let dev = Device::Cpu;
    let z = (Tensor::randn(0f32, 1f32, (77, 8), &dev).unwrap() + 0.3).unwrap();
    // Unit weights: untouched.
    let out = apply_emphasis(&z, &[1.0; 77]).unwrap();
    assert_eq!(max_diff(&out, &z), 0.0);
    // Otherwise z · w · mean(z) / mean(z · w).
    let mut w = [1.0f32; 77];
    w[3] = 2.0;
    w[4] = 0.5;
    let weights = Tensor::new(&w[..], &dev).unwrap().unsqueeze(1).unwrap();
    let out = apply_emphasis(&z, &w).unwrap();
    assert_eq!(out.dims(), z.dims());
    let before = z.broadcast_mul(&weights).unwrap();
    let want = (&before * f64::from(mean(&z) / mean(&before))).unwrap();
    assert!(max_diff(&out, &want) < 1e-5);
    assert!((mean(&out) - mean(&z)).abs() < 1e-5);
    // Rows with mean 0 (a bias-free final layer norm): the means are noise, no rescale.
    let centered = z.broadcast_sub(&z.mean_keepdim(1).unwrap()).unwrap();
    let out = apply_emphasis(&centered, &w).unwrap();
    let before = centered.broadcast_mul(&weights).unwrap();
    assert_eq!(max_diff(&out, &before), 0.0);
}

#[test]
fn the_shorter_of_prompt_and_negative_prompt_is_padded_with_empty_chunks() {
    for name in ["tiny-sd", "tiny-sdxl"] {
        let Some(m) = load(name) else { return };
        let long = words(160);
        let empty = m.pipe.encode_prompt("", PromptMode::Weighted).unwrap();
        let short = m
            .pipe
            .encode_prompt("blurry", PromptMode::Weighted)
            .unwrap();
        let empty_ids = Chunk::empty(&m.tok).ids;
        for negative_is_long in [false, true] {
            let (p, n) = if negative_is_long {
                ("blurry", long.as_str())
            } else {
                (long.as_str(), "blurry")
            };
            let (pos, neg) = m
                .pipe
                .encode_prompts(p, Some(n), PromptMode::Weighted)
                .unwrap();
            let neg = neg.unwrap();
            let (padded, full) = if negative_is_long {
                (&pos, &neg)
            } else {
                (&neg, &pos)
            };
            assert_eq!(full.ids.len(), 3 * 77, "{name}: three chunks");
            assert_eq!(padded.ids.len(), 3 * 77);
            assert_eq!(padded.embeds.dims(), full.embeds.dims());
            assert_eq!(&padded.ids[..77], &short.ids[..]);
            assert!(max_diff(&rows(&padded.embeds, 0, 77), &short.embeds) < 1e-5);
            for k in 1..3 {
                assert_eq!(&padded.ids[77 * k..77 * (k + 1)], &empty_ids[..]);
                let d = max_diff(&rows(&padded.embeds, 77 * k, 77), &empty.embeds);
                assert!(d < 1e-5, "{name}: padding chunk {k}: {d}");
            }
            if let (Some(a), Some(b)) = (&padded.pooled, &short.pooled) {
                assert!(max_diff(a, b) < 1e-5);
            }
        }
        // And through `run`: both halves of the guidance batch have 231 positions.
        let mut req = request("blurry", Some(&long));
        req.steps = 1;
        let run = generate(&m.pipe, &req);
        assert_eq!(run.input_ids.len(), 231);
        assert_eq!(run.negative_input_ids.as_ref().unwrap().len(), 231);
        assert_eq!(run.prompt_embeds.dim(1).unwrap(), 231);
        assert_finite(&run.image, "image");
    }
}

#[test]
fn break_starts_a_new_chunk() {
    for name in ["tiny-sd", "tiny-sdxl"] {
        let Some(m) = load(name) else { return };
        let e = m
            .pipe
            .encode_prompt("a red cat BREAK a blue dog", PromptMode::Weighted)
            .unwrap();
        let first = m
            .pipe
            .encode_prompt("a red cat", PromptMode::Weighted)
            .unwrap();
        let second = m
            .pipe
            .encode_prompt("a blue dog", PromptMode::Weighted)
            .unwrap();
        assert_eq!(e.ids.len(), 154);
        assert_eq!(e.ids, [&first.ids[..], &second.ids[..]].concat());
        assert!(max_diff(&rows(&e.embeds, 0, 77), &first.embeds) < 1e-5);
        assert!(max_diff(&rows(&e.embeds, 77, 77), &second.embeds) < 1e-5);
        // Pooled (SDXL): the first chunk's.
        if let (Some(a), Some(b)) = (&e.pooled, &first.pooled) {
            assert!(max_diff(a, b) < 1e-5);
        }
        // In diffusers mode BREAK is just a word.
        let d = m
            .pipe
            .encode_prompt("a red cat BREAK a blue dog", PromptMode::Diffusers)
            .unwrap();
        assert_eq!(d.ids.len(), 77);
    }
}

#[test]
fn unet_cross_attention_takes_any_context_length() {
    for name in ["tiny-sd", "tiny-sdxl"] {
        let Some(m) = load(name) else { return };
        let dev = Device::Cpu;
        let unet = &m.pipe.unet;
        let dim = unet.config.cross_attention_dim;
        let ch = unet.config.in_channels;
        let x = Tensor::randn(0f32, 1f32, (2, ch, 8, 8), &dev).unwrap();
        let c77 = Tensor::randn(0f32, 1f32, (2, 77, dim), &dev).unwrap();
        let sdxl = m.pipe.has_second_encoder();
        let pooled = Tensor::randn(0f32, 1f32, (2, 40), &dev).unwrap();
        let ids = Tensor::new(&[[64f32, 64., 0., 0., 64., 64.]], &dev)
            .unwrap()
            .repeat((2, 1))
            .unwrap();
        let run = |ctx: &Tensor| {
            let added = sdxl.then_some(AddedCond {
                text_embeds: &pooled,
                time_ids: &ids,
            });
            unet.forward(&x, 500.0, ctx, added).unwrap()
        };
        let base = run(&c77);
        for n in [2, 3] {
            let ctx = Tensor::cat(&vec![&c77; n], 1).unwrap();
            assert_eq!(ctx.dim(1).unwrap(), 77 * n);
            let out = run(&ctx);
            assert_eq!(out.dims(), base.dims());
            assert_finite(&out, "unet output");
            // Attending over the same keys repeated n times is attending over them once.
            let d = max_diff(&out, &base) / max_abs(&base);
            assert!(d < 1e-4, "{name}: context {}: {d}", 77 * n);
            // And other content in the extra chunks does change the output.
            let other = Tensor::randn(0f32, 1f32, (2, 77 * (n - 1), dim), &dev).unwrap();
            let out = run(&Tensor::cat(&[&c77, &other], 1).unwrap());
            assert!(max_diff(&out, &base) > 1e-4);
        }
    }
}

#[test]
fn sdxl_takes_a_long_prompt() {
    let Some(m) = load("tiny-sdxl") else { return };
    let prompt = words(100);
    let tok2 = m.tok2.as_ref().unwrap();
    assert_eq!(tokenize_weighted(tok2, &prompt).chunks.len(), 2);
    let run = generate(&m.pipe, &request(&prompt, Some("blurry, (ugly:1.3)")));
    assert_eq!(run.prompt_embeds.dims(), [1, 154, 80]);
    assert_eq!(
        run.negative_prompt_embeds.as_ref().unwrap().dims(),
        [1, 154, 80]
    );
    assert_eq!(run.input_ids.len(), 154);
    assert_eq!(run.image.dims(), [1, 3, 64, 64]);
    assert_finite(&run.image, "image");

    // Both encoders chunk alike; the pooled output is the first chunk's of encoder 2, which
    // is diffusers' truncated prompt.
    let w = m.pipe.encode_prompt(&prompt, PromptMode::Weighted).unwrap();
    let d = m
        .pipe
        .encode_prompt(&prompt, PromptMode::Diffusers)
        .unwrap();
    assert_eq!(w.pooled.as_ref().unwrap().dims(), [1, 40]);
    assert!(max_diff(w.pooled.as_ref().unwrap(), d.pooled.as_ref().unwrap()) < 1e-5);
    assert!(max_diff(&rows(&w.embeds, 0, 77), &d.embeds) < 1e-5);

    // No negative prompt: force_zeros_for_empty_prompt gives zeros shaped like the prompt.
    let run = generate(&m.pipe, &request(&prompt, None));
    let neg = run.negative_prompt_embeds.unwrap();
    assert_eq!(neg.dims(), [1, 154, 80]);
    assert_eq!(max_abs(&neg), 0.0);
    assert!(run.negative_input_ids.is_none());
    assert_finite(&run.image, "image");
}
