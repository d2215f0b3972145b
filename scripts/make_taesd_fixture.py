#!/usr/bin/env python3
"""Write the TAESD parity fixture (crates/easel-diffusion/tests/fixtures/taesd/) with diffusers.

A small random-weight `AutoencoderTiny` (8 channels, decoder blocks [2, 1, 1, 1], so every
kind of layer and the Winograd and im2col convolution paths run) saved as a diffusers folder,
and cases of latents with diffusers' `AutoencoderTiny.decode` output for each:

    model/config.json, model/diffusion_pytorch_model.safetensors
    cases.safetensors: latents_<i> [N, 4, h, w] (f32), decoded_<i> [N, 3, 8h, 8w] (f32, in
                       diffusers' [-1, 1] convention, unclamped)
    README.md

Run (torch and diffusers 0.42.1, as in scripts/bench_vs_diffusers.py):

    /work/bench-venv/bin/python scripts/make_taesd_fixture.py
"""

import json
import pathlib

import diffusers
import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/easel-diffusion/tests/fixtures/taesd"


def main():
    torch.manual_seed(20261206)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(2, 1, 1, 1),
        latent_channels=4,
    ).eval()
    # Default init leaves many ReLUs dead on random inputs; widen the biases so every layer
    # carries signal.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)
    vae.save_pretrained(OUT / "model", safe_serialization=True)
    cases = {}
    shapes = [(1, 4, 5, 6), (2, 4, 8, 8), (1, 4, 24, 17)]
    for i, shape in enumerate(shapes):
        # Latents as SD's UNet sees them: roughly unit scale, some past the clamp's knee.
        z = torch.randn(shape) * 2.5
        with torch.no_grad():
            out = vae.decode(z).sample
        cases[f"latents_{i}"] = z.contiguous()
        cases[f"decoded_{i}"] = out.contiguous()
    save_file(cases, OUT / "cases.safetensors")
    (OUT / "README.md").write_text(
        "# TAESD parity fixture\n\n"
        f"Written by `scripts/make_taesd_fixture.py` with diffusers {diffusers.__version__} and "
        f"torch {torch.__version__}.\n\n"
        "- `model/`: a random-weight `AutoencoderTiny` folder (8 channels, decoder blocks "
        "[2, 1, 1, 1], biases drawn with std 0.2).\n"
        "- `cases.safetensors`: `latents_<i>` and `decoded_<i>`, the output of "
        "`AutoencoderTiny.decode(latents).sample` (f32, [-1, 1] convention, unclamped), for "
        f"shapes {json.dumps(shapes)}.\n\n"
        "Tolerance: Easel's decoder output `x` (in [0, 1]) must give `2x - 1` within 1e-4 of "
        "`decoded_<i>`, relative to its largest magnitude.\n"
    )


if __name__ == "__main__":
    main()
