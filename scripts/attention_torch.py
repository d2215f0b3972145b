"""PyTorch's scaled_dot_product_attention on the shapes of the engine's `attention_shapes`
example (SD 1.5's UNet, batch 2, 8 heads): `python scripts/attention_torch.py [REPEATS]`,
threads from `--threads` (default 2). Each figure is the best of REPEATS runs, in ms."""
import argparse
import json
import pathlib
import time

import torch

# The shapes the Rust example times (SD 1.5's UNet attention, batch 2, 8 heads).
SHAPES = json.loads((pathlib.Path(__file__).parent / "attention_shapes.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("repeats", nargs="?", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    print(f"shape | ms (torch {torch.__version__}, {a.dtype}, {a.threads} threads)")
    for shape in SHAPES:
        what, n, m, dim = shape["what"], shape["tokens"], shape["keys"], shape["channels"]
        heads, d = 8, dim // 8
        # diffusers' AttnProcessor2_0: [B, tokens, heads·d] viewed as [B, heads, tokens, d].
        q = torch.randn(2, n, heads, d).transpose(1, 2).to(dtype)
        k = torch.randn(2, m, heads, d).transpose(1, 2).to(dtype)
        v = torch.randn(2, m, heads, d).transpose(1, 2).to(dtype)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(a.repeats):
                t = time.perf_counter()
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
                best = min(best, time.perf_counter() - t)
        print(f"{what} | {best * 1e3:.1f}")


if __name__ == "__main__":
    main()
