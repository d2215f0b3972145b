"""PyTorch's scaled_dot_product_attention on the shapes of the engine's `attention_shapes`
example (SD 1.5's UNet, batch 2, 8 heads): `python scripts/attention_torch.py [REPEATS]`,
threads from `--threads` (default 2). Each figure is the best of REPEATS runs, in ms."""
import argparse
import time

import torch

SHAPES = [
    ("256² self 32²", 1024, 1024, 320),
    ("256² self 16²", 256, 256, 640),
    ("256² cross 32²", 1024, 77, 320),
    ("512² self 64²", 4096, 4096, 320),
    ("512² self 32²", 1024, 1024, 640),
    ("512² self 16²", 256, 256, 1280),
    ("512² cross 64²", 4096, 77, 320),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("repeats", nargs="?", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    print(f"shape | ms (torch {torch.__version__}, {a.dtype}, {a.threads} threads)")
    for what, n, m, dim in SHAPES:
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
