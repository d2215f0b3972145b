#!/usr/bin/env python3
"""Side-by-side CPU benchmark: Easel's diffusion engine against Hugging Face diffusers.

What it measures
----------------
For one model family, the same architecture with random weights, f32, on the CPU, in both
engines:

* model load (Easel: memory-mapped safetensors; diffusers: ``from_pretrained``),
* text encode of one prompt, timed the second time (Sana: Gemma-2-2B over the complex human
  instruction + 300 tokens, as the pipelines do it; SD 1.5: CLIP over a batch of 2 x 77 ids),
* the first denoiser step (it also reads the weights that loading mapped; the diffusers
  side reports it for SD 1.5),
* one denoiser step with guidance, mean of ``--steps`` after one warm-up step (Sana: the
  transformer on a batch of 3, CFG + PAG, PAG on ``transformer_blocks.8`` through diffusers'
  own PAG attention processors; SD 1.5: the UNet on a batch of 2, CFG),
* VAE decode of one latent,
* peak RSS of the measuring process (Easel's process also wrote the weights first; that
  phase's peak is the "while writing" row, and the diffusers writer is its own process),
* writing the random weights (a side number: different code on each side).

SD 1.5 (``--family sd15``): diffusers writes one random-weight folder in the diffusers layout
(``torch.manual_seed(0)``, each component's ``save_pretrained``); then, for each of
``--sizes`` (default 256,512), ``easel bench diffusion --model FOLDER`` and a diffusers process
time those same files, and one table per size prints both, their ratios, and the resident
memory after load, after the steps and after the decode. Then (``--txt2img-steps``, default
20) each engine makes one whole txt2img image from that folder (the tokenizer, PNDM scheduler
and ``model_index.json`` of Easel's tiny SD model are added to it), prompt and seed the same:
``easel generate`` against a diffusers ``StableDiffusionPipeline`` process; the table gives
both processes' wall times and peak RSS and the pixel difference of the two images.

Sana: the Easel side is ``easel bench diffusion --family sana --size S --steps N`` (its table
is parsed).
The diffusers side builds the components from their configs with ``torch.manual_seed(0)``,
writes them as a diffusers folder in a temporary directory (one process), then loads and times
them in a second process. The three runs (easel, diffusers write, diffusers measure) are
separate processes, one after the other, so each peak RSS is that process's own: never run two
of these benchmarks at once.

Sana: transformer = Sana 600M-512px (28 layers, 36 x 32 heads, cross 16 x 72, caption 2304);
text encoder = ``Gemma2Model(Gemma2Config())`` (gemma-2-2b), written bf16 and loaded f32 as
the released repos and Easel do; VAE = the released dc-ae-f32c32-sana-1.0 config (EfficientViT
blocks in the last three stages, ``interpolate`` upsampling, ``Conv`` downsampling, scaling
0.41407), as the Easel bench builds it (``sana_dcae_f32c32``), not ``AutoencoderDC()``'s
defaults. The
tokenizer on both sides is a tiny byte-fallback BPE (400 merges learned from the instruction,
ported from Easel's ``tokenizer_json::write_tiny``), so both encode the same number of tokens;
tokenizing is not what is measured.

Precision (SD 1.5): ``--precisions f32,bf16`` measures each size once per precision. Easel
gets ``--precision bf16`` (convolution and linear weights in bf16, products in bf16 with f32
sums: AMX or AVX-512 BF16 where the CPU has them); diffusers runs the same f32 weights under
``torch.autocast("cpu", dtype=torch.bfloat16)``, PyTorch's own bf16 path. The whole txt2img
images of a bf16 run are compared with the same engine's f32 image (PSNR, dB, over 8-bit RGB),
so the table shows what each engine's bf16 costs in fidelity, not only what it saves in time.

``--report OUT.json`` prints the table of a saved run again. ``--tiny`` runs the families'
tiny architectures (a quick check of the script, not a comparison: Sana's tiny folder is
written by ``easel models make-tiny --family sana`` and loaded by diffusers as is).

How to run
----------
    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /work/bench-venv/bin/pip install diffusers transformers accelerate safetensors
    cargo build --release -p easel
    /work/bench-venv/bin/python scripts/bench_vs_diffusers.py --family sd15 --steps 3 \\
        --threads 2 --easel target/release/easel --json /tmp/sd15-bench.json
    /work/bench-venv/bin/python scripts/bench_vs_diffusers.py --family sana --size 512 \\
        --steps 2 --threads 2 --easel target/release/easel --json /tmp/sana-bench.json

(Where download.pytorch.org is out of reach, ``pip install torch`` from PyPI works too.)

The full Sana architecture needs about 17 GB of free memory per process (the script waits for
``--min-available-gb`` before each heavy process) and about 10 GB of temporary disk
(``--tmp``). Times depend on what else runs on the machine: the load average before and after
each process is printed and stored in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a cyberpunk cat with a neon sign"
SANA_MAX_SEQUENCE_LENGTH = 300
SANA_PAG_LAYER = "transformer_blocks.8"

# Sana 600M-512px's transformer (Efficient-Large-Model/Sana_600M_512px_diffusers), as
# `sana_600m_512()` in crates/easel-diffusion/src/bench.rs serialises it.
SANA_600M_512 = {
    "in_channels": 32, "out_channels": 32, "num_attention_heads": 36, "attention_head_dim": 32,
    "num_layers": 28, "num_cross_attention_heads": 16, "cross_attention_head_dim": 72,
    "cross_attention_dim": 1152, "caption_channels": 2304, "mlp_ratio": 2.5, "dropout": 0.0,
    "attention_bias": False, "sample_size": 16, "patch_size": 1,
    "norm_elementwise_affine": False, "norm_eps": 1e-6, "interpolation_scale": None,
    "guidance_embeds": False, "guidance_embeds_scale": 0.1, "qk_norm": None,
    "timestep_scale": 1.0,
}

# mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers vae/config.json (as in
# crates/easel-diffusion/tests/sana_dcae.rs), as the Easel bench builds it.
DCAE_RELEASED = {
    "attention_head_dim": 32, "decoder_act_fns": "silu",
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock",
                            "EfficientViTBlock", "EfficientViTBlock"],
    "decoder_layers_per_block": [3, 3, 3, 3, 3, 3], "decoder_norm_types": "rms_norm",
    "decoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "downsample_block_type": "Conv",
    "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "encoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock",
                            "EfficientViTBlock", "EfficientViTBlock"],
    "encoder_layers_per_block": [2, 2, 2, 3, 3, 3],
    "encoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "in_channels": 3, "latent_channels": 32, "scaling_factor": 0.41407,
    "upsample_block_type": "interpolate",
}

# Sana's scheduler_config.json (Easel's `sana::default_scheduler()`); not timed.
SANA_SCHEDULER = {
    "algorithm_type": "dpmsolver++", "beta_end": 0.02, "beta_schedule": "linear",
    "beta_start": 0.0001, "final_sigmas_type": "zero", "flow_shift": 3.0,
    "lower_order_final": True, "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction", "solver_order": 2, "solver_type": "midpoint",
    "timestep_spacing": "linspace", "use_flow_sigmas": True,
}


def sd15_configs(tiny: bool) -> tuple[dict, dict, dict]:
    """UNet, VAE and CLIP text configs of `configs()` in crates/easel-diffusion/src/bench.rs,
    spelled out for diffusers' / transformers' constructors."""
    if tiny:
        unet = {"block_out_channels": [32, 64],
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "cross_attention_dim": 32, "attention_head_dim": 8, "layers_per_block": 1}
        vae_blocks, vae_layers, vae_groups = [16, 32], 1, 8
        # The vocabulary covers the tiny SD tokenizer's 1,103 ids (the whole txt2img run).
        clip = {"vocab_size": 1200, "hidden_size": 32, "intermediate_size": 37,
                "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "quick_gelu"}
    else:
        # runwayml/stable-diffusion-v1-5 unet/config.json (the fields that matter).
        unet = {"block_out_channels": [320, 640, 1280, 1280],
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                     "CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                   "CrossAttnUpBlock2D"],
                "cross_attention_dim": 768, "attention_head_dim": 8, "layers_per_block": 2}
        vae_blocks, vae_layers, vae_groups = [128, 256, 512, 512], 2, 32
        clip = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "quick_gelu"}
    vae = {"block_out_channels": vae_blocks, "layers_per_block": vae_layers,
           "norm_num_groups": vae_groups, "latent_channels": 4,
           "down_block_types": ["DownEncoderBlock2D"] * len(vae_blocks),
           "up_block_types": ["UpDecoderBlock2D"] * len(vae_blocks)}
    return unet, vae, clip


# ---------------------------------------------------------------------------------------------
# The tiny tokenizer (a port of `tokenizer_json::write_tiny`).

TINY_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def learn_merges(corpus: list[str], base: list[str], n: int) -> list[tuple[str, str]]:
    """`learn_merges` of crates/easel-diffusion/src/tokenizer_json.rs: up to `n` byte-pair
    merges, each round the most frequent adjacent pair, ties to the smallest pair."""
    allowed = set(base)
    counts: dict[tuple[str, ...], int] = {}
    for text in corpus:
        word: list[str] = []

        def flush() -> None:
            if len(word) > 1:
                counts[tuple(word)] = counts.get(tuple(word), 0) + 1
            word.clear()

        for c in text.replace(" ", "\u2581"):
            if c not in allowed or c in "\n\t":
                flush()
                continue
            if c == "\u2581":
                flush()
            word.append(c)
        flush()
    words = [(list(w), c) for w, c in sorted(counts.items())]
    merges: list[tuple[str, str]] = []
    while len(merges) < n:
        pairs: dict[tuple[str, str], int] = {}
        for w, c in words:
            for p in zip(w, w[1:]):
                pairs[p] = pairs.get(p, 0) + c
        if not pairs:
            break
        best = max(pairs.values())
        a, b = min(p for p, c in pairs.items() if c == best)
        for i, (w, c) in enumerate(words):
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = (out, c)
        merges.append((a, b))
    return merges


def write_tiny_tokenizer(directory: Path, corpus: list[str], merges: int) -> int:
    """`tokenizer_json::write_tiny`: a Gemma-style byte-fallback BPE in `directory`."""
    tokens = list(TINY_SPECIALS) + [f"<0x{b:02X}>" for b in range(256)]
    base = ["\u2581", "\n", "\t"] + [chr(c) for c in range(0x21, 0x7F)]
    tokens += base
    learned = learn_merges(corpus, base, merges)
    for a, b in learned:
        if a + b not in tokens:
            tokens.append(a + b)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(TINY_SPECIALS)]
    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
            "byte_fallback": True, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [[a, b] for a, b in learned],
        },
    }
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>",
              "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
              "mask_token": "<mask>", "padding_side": "left", "model_max_length": 1e30,
              "tokenizer_class": "GemmaTokenizer"}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return len(tokens)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the processes.

def peak_rss_mb() -> float:
    """This process's peak RSS (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def available_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0 / 1024.0
    except OSError:
        pass
    return float("nan")


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def torch_setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.set_grad_enabled(False)
    return torch


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ["torch", "diffusers", "transformers", "accelerate", "safetensors", "tokenizers"]:
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a version string is all we want
            out[name] = None
    return out


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def sana_instruction() -> list[str]:
    """The complex human instruction diffusers' Sana pipelines pass by default."""
    import inspect

    from diffusers import SanaPAGPipeline

    return list(inspect.signature(SanaPAGPipeline.__call__)
                .parameters["complex_human_instruction"].default)


# ---------------------------------------------------------------------------------------------
# Sana, diffusers side.

def sana_write(folder: Path, args) -> dict:
    """Write the random-weight Sana folder (a `SanaPAGPipeline.save_pretrained` folder)."""
    if args.tiny:
        subprocess.run([args.easel, "models", "make-tiny", str(folder), "--family", "sana",
                        "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
        # Easel writes `query_pre_attn_scalar` as a float (24.0); transformers 5's strict
        # config validation wants an int.
        path = folder / "text_encoder" / "config.json"
        cfg = json.loads(path.read_text())
        scalar = cfg.get("query_pre_attn_scalar")
        if isinstance(scalar, float) and scalar.is_integer():
            cfg["query_pre_attn_scalar"] = int(scalar)
            path.write_text(json.dumps(cfg, indent=2) + "\n")
        return {"written_by": "easel models make-tiny --family sana --seed 0 "
                              "(query_pre_attn_scalar made an int)"}
    torch = torch_setup(args.threads)
    from diffusers import (AutoencoderDC, DPMSolverMultistepScheduler, SanaPAGPipeline,
                           SanaTransformer2DModel)
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizerFast

    torch.manual_seed(0)
    tok_dir = folder.parent / "tiny-tokenizer"
    write_tiny_tokenizer(tok_dir, sana_instruction(), 400)
    tokenizer = GemmaTokenizerFast.from_pretrained(tok_dir)
    # The text encoder is built and written in bf16 (as the released repos ship it and as the
    # Easel bench writes it), and loaded as f32.
    torch.set_default_dtype(torch.bfloat16)
    text_encoder = Gemma2Model(Gemma2Config())
    torch.set_default_dtype(torch.float32)
    transformer = SanaTransformer2DModel(**SANA_600M_512)
    vae = AutoencoderDC(**DCAE_RELEASED)  # = the Easel bench's sana_dcae_f32c32()
    scheduler = DPMSolverMultistepScheduler(**SANA_SCHEDULER)
    pipe = SanaPAGPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                           transformer=transformer, scheduler=scheduler,
                           pag_applied_layers=[SANA_PAG_LAYER])
    pipe.save_pretrained(folder, safe_serialization=True)
    return {"written_by": "torch.manual_seed(0); constructors; SanaPAGPipeline.save_pretrained",
            "text_encoder_dtype_on_disk": "bfloat16"}


def sana_measure(folder: Path, args) -> dict:
    torch = torch_setup(args.threads)
    from diffusers import AutoencoderDC, SanaPAGPipeline

    r: dict = {"versions": versions(), "threads": torch.get_num_threads()}
    r["rss_before_load_mb"] = peak_rss_mb()
    pag_layer = SANA_PAG_LAYER
    if args.tiny:
        layers = json.loads((folder / "transformer" / "config.json").read_text())["num_layers"]
        pag_layer = SANA_PAG_LAYER if layers > 8 else f"transformer_blocks.{layers // 2}"
    t = time.perf_counter()
    pipe = SanaPAGPipeline.from_pretrained(folder, dtype=torch.float32,
                                           pag_applied_layers=[pag_layer])
    r["load_s"] = time.perf_counter() - t
    r["params"] = [count(pipe.transformer), count(pipe.vae), count(pipe.text_encoder)]
    r["text_encoder_attn"] = getattr(pipe.text_encoder.config, "_attn_implementation", None)
    r["pag_applied_layers"] = list(pipe.pag_applied_layers)
    instruction = sana_instruction()
    r["instruction_tokens"] = len(pipe.tokenizer.encode("\n".join(instruction)))
    r["text_tokens"] = r["instruction_tokens"] + SANA_MAX_SEQUENCE_LENGTH - 2

    # Text encode: one prompt (no negative), with the instruction, as the pipeline's call does;
    # timed the second time, as Easel's.
    pipe.encode_prompt(
        PROMPT, do_classifier_free_guidance=False, max_sequence_length=SANA_MAX_SEQUENCE_LENGTH,
        complex_human_instruction=instruction)
    t = time.perf_counter()
    embeds, mask, _, _ = pipe.encode_prompt(
        PROMPT, do_classifier_free_guidance=False, max_sequence_length=SANA_MAX_SEQUENCE_LENGTH,
        complex_human_instruction=instruction)
    r["encode_s"] = time.perf_counter() - t

    # One transformer step with CFG + PAG: batch 3 (negative, positive, perturbed), the PAG
    # processors installed as `SanaPAGPipeline.__call__` installs them.
    original = pipe.transformer.attn_processors
    pipe._set_pag_attn_processor(pag_applied_layers=pipe.pag_applied_layers,
                                 do_classifier_free_guidance=True)
    lat = args.size // pipe.vae_scale_factor
    c = pipe.transformer.config.in_channels
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, c, lat, lat, generator=g)
    timestep = torch.full((3,), 999.0)
    embeds3, mask3 = embeds.repeat(3, 1, 1), mask.repeat(3, 1)

    def step():
        return pipe.transformer(x, encoder_hidden_states=embeds3, encoder_attention_mask=mask3,
                                timestep=timestep, return_dict=False)[0]

    t = time.perf_counter()
    step()  # warm-up
    r["warmup_step_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    r["step_s"] = (time.perf_counter() - t) / max(args.steps, 1)
    pipe.transformer.set_attn_processor(original)

    # VAE decode of one latent (scaled as the pipeline scales it, image mapped to [0, 1]).
    z = torch.randn(1, c, lat, lat, generator=g)
    t = time.perf_counter()
    image = pipe.vae.decode(z / pipe.vae.config.scaling_factor, return_dict=False)[0]
    (image * 0.5 + 0.5).clamp(0, 1)
    r["decode_s"] = time.perf_counter() - t
    r["rss_peak_mb"] = peak_rss_mb()

    if args.pipeline_call:
        # The whole call: prompt + negative encoded, `steps` steps with CFG + PAG, decode.
        t = time.perf_counter()
        pipe(PROMPT, height=args.size, width=args.size, num_inference_steps=args.steps,
             guidance_scale=4.5, pag_scale=2.0, generator=torch.Generator().manual_seed(0),
             output_type="np", use_resolution_binning=False)
        r["pipeline_call_s"] = time.perf_counter() - t

    return r


# ---------------------------------------------------------------------------------------------
# SD 1.5, diffusers side (the Easel side: `easel bench diffusion --family sd15`).

def sd15_write(folder: Path, args) -> dict:
    torch = torch_setup(args.threads)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, clip_cfg = sd15_configs(args.tiny)
    torch.manual_seed(0)
    UNet2DConditionModel(**unet_cfg).save_pretrained(folder / "unet")
    AutoencoderKL(**vae_cfg).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(**clip_cfg)).save_pretrained(folder / "text_encoder")
    return {"written_by": "torch.manual_seed(0); constructors; save_pretrained per component"}


def autocast(torch, precision: str):
    """PyTorch's own reduced precision on the CPU: bf16 autocast, or nothing for f32."""
    import contextlib

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sd15_measure(folder: Path, args) -> dict:
    torch = torch_setup(args.threads)
    with autocast(torch, args.precision):
        return sd15_measure_in(torch, folder, args)


def sd15_measure_in(torch, folder: Path, args) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    r: dict = {"versions": versions(), "threads": torch.get_num_threads(),
               "precision": args.precision}
    r["rss_before_load_mb"] = peak_rss_mb()
    t = time.perf_counter()
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder",
                                                 dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(folder / "vae", dtype=torch.float32)
    r["load_s"] = time.perf_counter() - t
    r["rss_after_load_mb"] = rss_mb()
    r["params"] = [count(unet), count(vae), count(text_encoder)]
    # As the Easel bench: the text model on a batch of 2 x 77 ids (prompt and negative).
    ids = torch.ones(2, 77, dtype=torch.long)
    text_encoder(ids)  # the first call, untimed, as Easel's
    t = time.perf_counter()
    ctx = text_encoder(ids)[0]
    r["encode_s"] = time.perf_counter() - t
    lat = args.size // 8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, lat, lat, generator=g)
    t = time.perf_counter()
    unet(x, 999.0, encoder_hidden_states=ctx)  # warm-up
    r["first_step_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(args.steps):
        unet(x, 999.0 - i, encoder_hidden_states=ctx)
    r["step_s"] = (time.perf_counter() - t) / max(args.steps, 1)
    r["rss_after_steps_mb"] = rss_mb()
    z = torch.randn(1, 4, lat, lat, generator=g)
    t = time.perf_counter()
    vae.decode(z)
    r["decode_s"] = time.perf_counter() - t
    r["rss_after_decode_mb"] = rss_mb()
    r["rss_peak_mb"] = peak_rss_mb()
    # The tiny autoencoder (TAESD, released configuration, random weights) on the same
    # latents, after a warm-up, as `easel bench diffusion` times it.
    from diffusers import AutoencoderTiny
    taesd = AutoencoderTiny().eval()
    taesd.decode(z)
    t = time.perf_counter()
    taesd.decode(z)
    r["tiny_vae_decode_s"] = time.perf_counter() - t
    return r


TXT2IMG_PROMPT = "a photo of a cat"


def sd15_txt2img(folder: Path, args) -> dict:
    """A whole diffusers txt2img run in this process: load the pipeline from the folder, one
    image of --size with --txt2img-steps steps, guidance 7.5, seed 0; saved to --image-out."""
    torch = torch_setup(args.threads)
    from diffusers import StableDiffusionPipeline

    t = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
                                                   dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - t
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    with autocast(torch, args.precision):
        image = pipe(TXT2IMG_PROMPT, num_inference_steps=args.txt2img_steps,
                     guidance_scale=7.5, height=args.size, width=args.size,
                     generator=g).images[0]
    run = time.perf_counter() - t
    image.save(args.image_out)
    return {"load_s": load, "pipe_call_s": run, "rss_peak_mb": peak_rss_mb()}


def pixel_difference(a: Path, b: Path) -> dict:
    """Largest and mean absolute difference of two 8-bit RGB images, in 1/255 steps."""
    from PIL import Image

    x = Image.open(a).convert("RGB").tobytes()
    y = Image.open(b).convert("RGB").tobytes()
    if len(x) != len(y):
        return {"error": f"sizes differ: {len(x)} vs {len(y)} bytes"}
    diffs = [abs(p - q) for p, q in zip(x, y)]
    mse = sum(d * d for d in diffs) / len(diffs)
    psnr = 10 * math.log10(255 * 255 / mse) if mse else float("inf")
    return {"max": max(diffs), "mean": sum(diffs) / len(diffs), "psnr_db": psnr}


def make_pipeline_folder(args, env: dict, folder: Path, tmp: Path) -> None:
    """Turn the components diffusers wrote into a whole pipeline folder: the tokenizer, the
    scheduler (SD 1.5's PNDM) and model_index.json of Easel's tiny SD model (its tokenizer is
    a small byte-level BPE; tokenizing is not what is measured, and both engines read the
    same files)."""
    tiny = tmp / "tiny-sd"
    subprocess.run([args.easel, "models", "make-tiny", str(tiny), "--family", "sd15"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    for part in ["tokenizer", "scheduler"]:
        shutil.copytree(tiny / part, folder / part)
    shutil.copy(tiny / "model_index.json", folder / "model_index.json")


def sd15_whole_runs(args, env: dict, folder: Path, tmp: Path, size: int) -> dict:
    """`easel generate` and a diffusers pipeline process, each a whole txt2img run of one
    image from the same folder and seed; their wall times and the pixel difference."""
    steps = args.txt2img_steps
    out: dict = {"steps": steps, "prompt": TXT2IMG_PROMPT}
    png = lambda engine, p: tmp / f"{engine}-{size}-{p}.png"  # noqa: E731
    e_png, d_png = png("easel", args.precision), png("diffusers", args.precision)
    if not args.skip_easel:
        warm_page_cache(folder)
        cmd = [args.easel, "generate", "--model", str(folder), "--steps", str(steps),
               "--guidance", "7.5", "--seed", "0", "--width", str(size), "--height",
               str(size), "--data-dir", str(tmp / "easel-data"), "-o", str(e_png),
               "--precision", args.precision, TXT2IMG_PROMPT]
        _, wall, rss, _ = run_child(cmd, env, "easel generate")
        out["easel"] = {"wall_s": wall, "peak_rss_mb": rss}
    if not args.skip_diffusers:
        warm_page_cache(folder)
        cmd = [args.python, os.path.abspath(__file__), "--family", "sd15", "--size", str(size),
               "--threads", str(args.threads), "--txt2img-steps", str(steps), "--folder",
               str(folder), "--child", "txt2img", "--child-out", str(tmp / "txt2img.json"),
               "--image-out", str(d_png), "--precision", args.precision]
        _, wall, rss, _ = run_child(cmd, env, "diffusers txt2img")
        out["diffusers"] = json.loads((tmp / "txt2img.json").read_text()) | {
            "wall_s": wall, "peak_rss_mb": rss}
    if e_png.exists() and d_png.exists():
        try:
            out["pixel_difference"] = pixel_difference(e_png, d_png)
        except ImportError:
            out["pixel_difference"] = {"error": "PIL is not installed"}
    if args.precision != "f32":
        # Each engine's reduced-precision image against its own f32 image of the same run.
        for engine in ["easel", "diffusers"]:
            a, b = png(engine, args.precision), png(engine, "f32")
            if a.exists() and b.exists():
                out.setdefault(engine, {})["vs_f32"] = pixel_difference(a, b)
    return out


FAMILIES = {
    # family: (diffusers writer, diffusers measurer, step label, full-size memory need in GB)
    "sana": (sana_write, sana_measure, "transformer step, CFG + PAG (batch 3), s", 18.0),
    "sd15": (sd15_write, sd15_measure, "UNet step, CFG (batch 2), s", 8.0),
}


# ---------------------------------------------------------------------------------------------
# The Easel side.

EASEL_ROWS = {
    "parameters (denoiser / VAE / text encoder, M)": "params_m",
    "random weights written, s": "write_s",
    "model load, s": "load_s",
    "text encode (one prompt, warm), s": "encode_s",
    "first step (warm-up), s": "first_step_s",
    "VAE decode (1 image), s": "decode_s",
    "TAESD decode (1 image), s": "tiny_vae_decode_s",
    "peak RSS before load, MB": "rss_before_load_mb",
    "RSS after load, MB": "rss_after_load_mb",
    "RSS after the steps, MB": "rss_after_steps_mb",
    "RSS after decode, MB": "rss_after_decode_mb",
    "peak RSS, MB": "rss_peak_mb",
}


def parse_easel(stdout: str) -> dict:
    """The table `easel bench diffusion` prints (crates/easel/src/bench_diffusion.rs)."""
    r: dict = {}
    for line in stdout.splitlines():
        m = re.match(r"easel bench diffusion \((.*)\)$", line.strip())
        if m:
            r["header"] = m.group(1)
            t = re.search(r"(\d+) threads", line)
            r["threads"] = int(t.group(1)) if t else None
            r["build"] = "debug" if "debug build" in line else "release"
            continue
        for label, key in EASEL_ROWS.items():
            if line.startswith(label):
                value = line[len(label):].strip()
                r[key] = value if key == "params_m" else float(value)
                break
        else:
            m = re.match(r"^(.* step .*), s\s+([0-9.]+)$", line)
            if m:
                r["step_label"], r["step_s"] = m.group(1), float(m.group(2))
    if "params_m" in r:
        r["params_m"] = [float(v) for v in r["params_m"].split("/")]
    missing = [k for k in ["load_s", "encode_s", "step_s", "decode_s", "rss_peak_mb"] if k not in r]
    if missing:
        raise SystemExit(f"could not parse {missing} from easel's output:\n{stdout}")
    return r


# ---------------------------------------------------------------------------------------------
# The driver.

def wait_for_memory(need_gb: float, wait_minutes: float, what: str) -> None:
    deadline = time.time() + wait_minutes * 60
    while True:
        have = available_gb()
        if not need_gb or have >= need_gb:
            print(f"[{what}] {have:.1f} GB available (need {need_gb:.0f})", flush=True)
            return
        if time.time() >= deadline:
            raise SystemExit(f"[{what}] only {have:.1f} GB available, {need_gb:.0f} GB needed; "
                             f"gave up after {wait_minutes:g} min")
        print(f"[{what}] {have:.1f} GB available, waiting for {need_gb:.0f} GB ...", flush=True)
        time.sleep(30)


def run_child(cmd: list[str], env: dict, what: str) -> tuple[str, float, float, dict]:
    """Run one process; echo its output; return (stdout, wall s, peak RSS MB from wait4, load)."""
    print(f"[{what}] $ {' '.join(cmd)}", flush=True)
    before = loadavg()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    lines = []
    assert p.stdout is not None
    for line in p.stdout:
        lines.append(line)
        print(f"  {line}", end="", flush=True)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"[{what}] exited with {p.returncode}")
    return "".join(lines), wall, usage.ru_maxrss / 1024.0, {"before": before, "after": loadavg()}


def child_main(args) -> None:
    write, measure, _, _ = FAMILIES[args.family]
    folder = Path(args.folder)
    if args.child == "txt2img":
        result = sd15_txt2img(folder, args)
        result["process_peak_rss_mb"] = peak_rss_mb()
        Path(args.child_out).write_text(json.dumps(result))
        return
    result = write(folder, args) if args.child == "write" else measure(folder, args)
    result["process_peak_rss_mb"] = peak_rss_mb()
    Path(args.child_out).write_text(json.dumps(result))


def fmt(v, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sana")
    ap.add_argument("--size", type=int, default=None,
                    help="image side in pixels (default: Sana 512, SD 1.5 256, as easel's)")
    ap.add_argument("--sizes", default=None,
                    help="SD 1.5: comma-separated sides measured on the one folder "
                         "(default 256,512; --size N means just N)")
    ap.add_argument("--steps", type=int, default=2, help="denoiser steps timed after a warm-up")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch.set_num_threads / RAYON_NUM_THREADS (and OMP/MKL) for both")
    ap.add_argument("--easel", default="target/release/easel", help="the easel binary")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with torch + diffusers for the diffusers processes")
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny architectures (checks the script; not a comparison)")
    ap.add_argument("--precisions", default="f32",
                    help="SD 1.5: comma-separated, of f32 and bf16 (each size once per "
                         "precision; bf16 runs after f32 so its images are compared)")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--txt2img-steps", type=int, default=20,
                    help="SD 1.5: steps of the whole txt2img run in each engine (0: skip it)")
    ap.add_argument("--pipeline-call", action="store_true",
                    help="diffusers only: also time a whole pipe(...) call of --steps steps")
    ap.add_argument("--skip-easel", action="store_true", help="run the diffusers side only")
    ap.add_argument("--skip-diffusers", action="store_true", help="run the easel side only")
    ap.add_argument("--min-available-gb", type=float, default=None,
                    help="wait for this much MemAvailable before each heavy process "
                         "(default: Sana 18, SD 1.5 8, 0 with --tiny)")
    ap.add_argument("--wait-minutes", type=float, default=15.0)
    ap.add_argument("--tmp", default=None, help="folder for the diffusers weights")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--report", metavar="IN",
                    help="print the table of a JSON written by --json; run nothing")
    ap.add_argument("--child", choices=["write", "measure", "txt2img"], help=argparse.SUPPRESS)
    ap.add_argument("--image-out", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.size_given = args.size is not None
    if args.size is None:
        args.size = 512 if args.family == "sana" else 256
    if args.child:
        child_main(args)
        return
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        for run in saved.get("runs", [saved]):
            table(run)
        return

    need = FAMILIES[args.family][3]
    if args.min_available_gb is not None:
        need = args.min_available_gb
    elif args.tiny:
        need = 0
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TQDM_DISABLE="1")
    result: dict = {
        "family": args.family, "size": args.size, "steps": args.steps, "threads": args.threads,
        "tiny": args.tiny, "easel_binary": args.easel,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                 "mem_available_gb_at_start": round(available_gb(), 1)},
    }
    shown = args.sizes or (str(args.size) if args.size_given or args.family != "sd15"
                           else "256,512")
    print(f"bench_vs_diffusers: {args.family}{' (tiny)' if args.tiny else ''}, "
          f"sizes {shown}, {args.steps} steps, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average {loadavg()}", flush=True)

    if args.family == "sd15":
        sd15_same_folder(args, env, need, result)
        return

    easel: dict = {}
    if not args.skip_easel:
        wait_for_memory(need, args.wait_minutes, "easel")
        cmd = [args.easel, "bench", "diffusion", "--family", args.family, "--size",
               str(args.size), "--steps", str(args.steps)] + (["--tiny"] if args.tiny else [])
        out, wall, rss, load = run_child(cmd, env, "easel")
        easel = parse_easel(out) | {"wall_s": wall, "wait4_peak_rss_mb": rss, "loadavg": load,
                                    "stdout": out}
    result["easel"] = easel

    diff: dict = {}
    if not args.skip_diffusers:
        tmp = Path(tempfile.mkdtemp(prefix="bench-vs-diffusers-", dir=args.tmp))
        try:
            folder = tmp / "model"
            common = [args.python, os.path.abspath(__file__), "--family", args.family,
                      "--size", str(args.size), "--steps", str(args.steps),
                      "--threads", str(args.threads), "--easel", args.easel,
                      "--folder", str(folder)] + (["--tiny"] if args.tiny else []) \
                + (["--pipeline-call"] if args.pipeline_call else [])
            wait_for_memory(need, args.wait_minutes, "diffusers write")
            _, wall, rss, load = run_child(common + ["--child", "write", "--child-out",
                                                     str(tmp / "write.json")], env,
                                           "diffusers write")
            write = json.loads((tmp / "write.json").read_text())
            diff["write"] = write | {"wall_s": wall, "peak_rss_mb": rss, "loadavg": load}
            wait_for_memory(need, args.wait_minutes, "diffusers measure")
            _, wall, rss, load = run_child(common + ["--child", "measure", "--child-out",
                                                     str(tmp / "measure.json")], env,
                                           "diffusers measure")
            diff |= json.loads((tmp / "measure.json").read_text())
            diff |= {"wall_s": wall, "wait4_peak_rss_mb": rss, "loadavg": load}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["diffusers"] = diff

    result["rows"] = table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


def warm_page_cache(folder: Path) -> None:
    """Flush the written files to disk and read them once just before each measuring
    process, so that both engines load from a warm page cache (some machines reclaim idle
    page cache within a minute) and neither pays for the other's writeback."""
    os.sync()
    for f in sorted(folder.rglob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(64 << 20):
                pass


def sd15_same_folder(args, env: dict, need: float, result: dict) -> None:
    """SD 1.5: diffusers writes one random-weight folder (diffusers layout); then, per size,
    `easel bench diffusion --model FOLDER` and diffusers' measuring process time those same
    files. One table per size; with --json, one JSON holding every size."""
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else \
        ([args.size] if args.size_given else [256, 512])
    tmp = Path(tempfile.mkdtemp(prefix="bench-vs-diffusers-", dir=args.tmp))
    runs = []
    try:
        folder = tmp / "model"
        common = [args.python, os.path.abspath(__file__), "--family", args.family,
                  "--steps", str(args.steps), "--threads", str(args.threads),
                  "--easel", args.easel, "--folder", str(folder)] + \
            (["--tiny"] if args.tiny else [])
        wait_for_memory(need, args.wait_minutes, "diffusers write")
        _, wall, rss, load = run_child(common + ["--child", "write", "--child-out",
                                                 str(tmp / "write.json")], env,
                                       "diffusers write")
        write = json.loads((tmp / "write.json").read_text())
        write |= {"wall_s": wall, "peak_rss_mb": rss, "loadavg": load}
        if args.txt2img_steps:
            make_pipeline_folder(args, env, folder, tmp)
        precisions = [p.strip() for p in args.precisions.split(",")]
        bad = [p for p in precisions if p not in ("f32", "bf16")]
        if bad:
            raise SystemExit(f"--precisions: unknown {bad}: use f32 and/or bf16")
        precisions.sort(key=lambda p: p != "f32")
        for size, precision in [(s, p) for s in sizes for p in precisions]:
            args.precision = precision
            common_p = common + ["--precision", precision]
            run = dict(result, size=size, precision=precision,
                       model_folder="written once by diffusers, measured by both")
            easel: dict = {}
            if not args.skip_easel:
                wait_for_memory(need, args.wait_minutes, "easel")
                warm_page_cache(folder)
                cmd = [args.easel, "bench", "diffusion", "--family", "sd15", "--size",
                       str(size), "--steps", str(args.steps), "--model", str(folder),
                       "--precision", precision]
                out, wall, rss, load = run_child(cmd, env, "easel")
                easel = parse_easel(out) | {"wall_s": wall, "wait4_peak_rss_mb": rss,
                                            "loadavg": load, "stdout": out}
            diff: dict = {"write": write}
            if not args.skip_diffusers:
                wait_for_memory(need, args.wait_minutes, "diffusers measure")
                warm_page_cache(folder)
                _, wall, rss, load = run_child(
                    common_p + ["--size", str(size), "--child", "measure", "--child-out",
                              str(tmp / "measure.json")], env, "diffusers measure")
                diff |= json.loads((tmp / "measure.json").read_text())
                diff |= {"wall_s": wall, "wait4_peak_rss_mb": rss, "loadavg": load}
            run["easel"], run["diffusers"] = easel, diff
            if args.txt2img_steps:
                run["txt2img"] = sd15_whole_runs(args, env, folder, tmp, size)
            run["rows"] = table(run)
            runs.append(run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=2) + "\n")
        print(f"wrote {args.json}")


def table(result: dict) -> list[dict]:
    """Print the side-by-side table of a run (also `--report` of a saved JSON); return its rows."""
    easel, diff = result.get("easel", {}), result.get("diffusers", {})
    write = diff.get("write", {})
    family, steps = result["family"], result["steps"]
    tiny = " tiny" if result.get("tiny") else ""
    rows = []

    def row(name, e, d, digits, ratio=True):
        rows.append({"measure": name, "easel": e, "diffusers": d,
                     "ratio": (e / d) if ratio and isinstance(e, float) and
                     isinstance(d, float) and d else None, "digits": digits})

    ep = easel.get("params_m")
    dp = [p / 1e6 for p in diff["params"]] if "params" in diff else None
    row("parameters, M (denoiser / VAE / text)",
        " / ".join(f"{v:.0f}" for v in ep) if ep else None,
        " / ".join(f"{v:.0f}" for v in dp) if dp else None, 0, ratio=False)
    if not result.get("model_folder"):
        row("random weights written, s (diffusers: whole process)", easel.get("write_s"),
            write.get("wall_s"), 1)
        row("peak RSS while writing, MB", easel.get("rss_before_load_mb"),
            write.get("peak_rss_mb"), 0)
    row("model load, s", easel.get("load_s"), diff.get("load_s"), 3)
    row("text encode (one prompt, warm), s", easel.get("encode_s"), diff.get("encode_s"), 3)
    if "first_step_s" in easel or "first_step_s" in diff:
        row("first denoiser step (warm-up), s", easel.get("first_step_s"),
            diff.get("first_step_s"), 3)
    row(FAMILIES[family][2], easel.get("step_s"), diff.get("step_s"), 3)
    row("VAE decode (1 image), s", easel.get("decode_s"), diff.get("decode_s"), 3)
    if "tiny_vae_decode_s" in easel or "tiny_vae_decode_s" in diff:
        row("TAESD decode (1 image), s", easel.get("tiny_vae_decode_s"),
            diff.get("tiny_vae_decode_s"), 3)
    for key, name in [("rss_after_load_mb", "RSS after load, MB"),
                      ("rss_after_steps_mb", "RSS after the steps, MB"),
                      ("rss_after_decode_mb", "RSS after decode, MB")]:
        if key in easel or key in diff:
            row(name, easel.get(key), diff.get(key), 0)
    row("peak RSS, MB", easel.get("rss_peak_mb"), diff.get("rss_peak_mb"), 0)
    whole = result.get("txt2img", {})
    if whole:
        we, wd = whole.get("easel", {}), whole.get("diffusers", {})
        row(f"whole txt2img process, {whole['steps']} steps, s", we.get("wall_s"),
            wd.get("wall_s"), 1)
        row("whole txt2img process: peak RSS, MB", we.get("peak_rss_mb"),
            wd.get("peak_rss_mb"), 0)
        px = whole.get("pixel_difference", {})
        if "max" in px:
            row("whole txt2img: pixel difference, max / mean (of 255)",
                f"{px['max']} / {px['mean']:.2f}", "", 0, ratio=False)
        ve, vd = we.get("vs_f32", {}), wd.get("vs_f32", {})
        if "psnr_db" in ve or "psnr_db" in vd:
            cell = lambda v: (f"{v['psnr_db']:.1f} dB, max {v['max']}"  # noqa: E731
                              if "psnr_db" in v else None)
            row(f"whole txt2img: {result.get('precision')} image vs own f32 (PSNR)",
                cell(ve), cell(vd), 0, ratio=False)
    if "released_vae_decode_s" in diff:
        row("VAE decode, released dc-ae-f32c32 config, s", None,
            diff["released_vae_decode_s"], 3, ratio=False)
    if "pipeline_call_s" in diff:
        row(f"whole pipe() call, {steps} steps, s", None, diff["pipeline_call_s"], 3,
            ratio=False)

    print()
    print(f"Easel vs diffusers: {family}{tiny} architecture, random weights, "
          f"{result.get('precision', 'f32')}, CPU, "
          f"{result['size']}x{result['size']}, {result['threads']} threads, "
          f"steps timed: {steps} (after 1 warm-up)")
    if result.get("model_folder"):
        print(f"model folder: {result['model_folder']}")
    if diff.get("versions"):
        print("versions: " + ", ".join(f"{k} {v}" for k, v in diff["versions"].items()))
    if easel:
        print(f"easel: {easel.get('header')}; {result.get('easel_binary')}")
    if "text_tokens" in diff:
        print(f"text encoder tokens: {diff['text_tokens']} ({diff['instruction_tokens']} "
              f"instruction + {SANA_MAX_SEQUENCE_LENGTH} - 2); PAG on "
              f"{diff.get('pag_applied_layers')}; Gemma-2 attention: "
              f"{diff.get('text_encoder_attn')}")
    cells = [(r["measure"], fmt(r["easel"], r["digits"]), fmt(r["diffusers"], r["digits"]),
              f"{r['ratio']:.2f}" if r["ratio"] is not None else "-") for r in rows]
    w = [max(len(c[i]) for c in cells + [("measure", "easel", "diffusers",
                                          "easel/diffusers")]) + 2 for i in range(4)]
    print(f"{'measure':<{w[0]}}{'easel':>{w[1]}}{'diffusers':>{w[2]}}{'easel/diffusers':>{w[3]}}")
    for c in cells:
        print(f"{c[0]:<{w[0]}}{c[1]:>{w[1]}}{c[2]:>{w[2]}}{c[3]:>{w[3]}}")
    print("load average (1/5/15 min) before/after: easel "
          f"{easel.get('loadavg')}, diffusers {diff.get('loadavg')}")
    return [{k: v for k, v in r.items() if k != "digits"} for r in rows]

if __name__ == "__main__":
    main()
