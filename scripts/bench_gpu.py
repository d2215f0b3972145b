#!/usr/bin/env python3
"""Side-by-side GPU benchmark: Easel's CUDA build against diffusers fp16 on the same card.

What it measures
----------------
For SD 1.5 at 512x512 and SDXL at 1024x1024 (``--cases``), with random weights:

* diffusers writes one folder per model (``torch.manual_seed(0)``; each component's
  ``save_pretrained``, weights in fp16): the UNet and VAE configs of the released models
  (``runwayml/stable-diffusion-v1-5``, ``stabilityai/stable-diffusion-xl-base-1.0``; the text
  encoder is CLIP ViT-L in both, SDXL's second encoder is not written: its context and pooled
  embedding are random tensors of their shapes on both sides);
* diffusers, in its own process: the UNet and text encoder in fp16 on the GPU (SDPA attention,
  as its pipelines run), one UNet step with classifier-free guidance (batch 2) after a warm-up,
  mean of ``--steps``; the VAE decode of one latent in fp32 (what Easel decodes in) and, as a
  side number, fp16; load and text-encode times;
* Easel: ``easel bench diffusion --device cuda --precision f16 --model FOLDER`` (UNet and CLIP
  f16, VAE f32; SDXL's second text encoder is neither loaded nor timed on either side), once
  per ``--easel`` binary given (e.g. one built with ``cudnn``, one without);
* for each process, the GPU memory in use at its peak (``nvidia-smi``, sampled every 50 ms,
  less what was in use before it started).

One table per case prints both engines, the ratio Easel / diffusers, and UNet iterations per
second (one "it" is one guided UNet step, as diffusers' progress bar counts).

SD 1.5 also makes whole txt2img images (``--txt2img-steps``, default 20; the tokenizer,
scheduler and ``model_index.json`` of Easel's tiny SD model are added to the folder, as
``bench_vs_diffusers.py`` does): ``easel generate`` at f32 and at Easel's precision, a
diffusers ``StableDiffusionPipeline`` at fp32 and fp16, same prompt and seed (the noise drawn
on the CPU in both), and prints the pixel differences: Easel's f32 image against diffusers'
(the GPU path's correctness) and each engine's reduced precision against its own f32 image
(diffusers' fp16 pipeline decodes in fp16, Easel's f16 in f32). Both engines' fp32 runs
without TF32 (PyTorch's default for convolutions on CUDA).

How to run
----------
On a machine with an NVIDIA GPU, PyTorch and diffusers (``pip install diffusers``), and an
``easel`` built with ``--features cuda`` (``scripts/build_cuda.sh`` builds one on any x86-64
Linux machine; a second one with ``cuda,cudnn`` compares cuDNN's convolutions)::

    python3 scripts/bench_gpu.py --easel .gpu/easel.xz --json /tmp/gpu-bench.json

The CUDA 13 libraries the binary loads (cuBLAS, cuRAND, NVRTC, cuDNN, the runtime) are looked
up among the ``nvidia`` packages of this Python and added to ``LD_LIBRARY_PATH``: a PyTorch
built for CUDA 13 (and a driver for CUDA 13, R580 or newer) is required.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


@functools.cache
def cpu_bench():
    """scripts/bench_vs_diffusers.py, for its SD 1.5 configs and its parser of Easel's table."""
    spec = importlib.util.spec_from_file_location("bench_vs_diffusers", HERE / "bench_vs_diffusers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sdxl_configs() -> tuple[dict, dict, dict]:
    """stabilityai/stable-diffusion-xl-base-1.0's UNet and VAE configs (the fields that
    matter), and its first text encoder (CLIP ViT-L)."""
    unet = {
        "block_out_channels": [320, 640, 1280],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20],
        "transformer_layers_per_block": [1, 2, 10],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
        "layers_per_block": 2,
        "sample_size": 128,
    }
    _, vae, clip = cpu_bench().sd15_configs(False)
    vae = dict(vae, scaling_factor=0.13025, force_upcast=True)
    return unet, vae, clip


def configs(family: str) -> tuple[dict, dict, dict]:
    return cpu_bench().sd15_configs(False) if family == "sd15" else sdxl_configs()


def write(folder: Path, family: str, device: str) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, clip_cfg = configs(family)
    torch.manual_seed(0)
    with torch.device(device):
        parts = [
            ("unet", UNet2DConditionModel(**unet_cfg)),
            ("vae", AutoencoderKL(**vae_cfg)),
            ("text_encoder", CLIPTextModel(CLIPTextConfig(**clip_cfg))),
        ]
    # Written beside the folder and renamed into place: a folder that exists is whole.
    part = folder.with_name(folder.name + ".part")
    for name, model in parts:
        model.half().save_pretrained(part / name)
    part.rename(folder)


def measure(folder: Path, size: int, steps: int, device: str) -> dict:
    """diffusers' side, in this process (a child of the driver). On `cpu` (a check of the
    script, not a measurement) in f32."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    cuda = device == "cuda"
    half = torch.float16 if cuda else torch.float32
    no_tf32(torch)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    import diffusers
    r: dict = {"torch": torch.__version__, "diffusers": diffusers.__version__,
               "gpu": torch.cuda.get_device_name() if cuda else "CPU"}
    # The CUDA context first, as Easel opens its device before its timed load.
    torch.zeros(1, device=device)
    sync()
    t = time.perf_counter()
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=half).to(device)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", dtype=half).to(device)
    vae = AutoencoderKL.from_pretrained(folder / "vae", dtype=torch.float32).to(device)
    sync()
    r["load_s"] = time.perf_counter() - t
    with torch.no_grad():
        ids = torch.ones(2, 77, dtype=torch.long, device=device)
        te(ids)
        sync()
        t = time.perf_counter()
        ctx = te(ids)[0]
        sync()
        r["encode_s"] = time.perf_counter() - t
        cfg = unet.config
        g = torch.Generator(device).manual_seed(0)
        if ctx.shape[-1] != cfg.cross_attention_dim:
            ctx = torch.randn(2, 77, cfg.cross_attention_dim, generator=g, device=device,
                              dtype=half)
        added = None
        if cfg.addition_embed_type is not None:
            pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            added = {
                "text_embeds": torch.randn(2, pooled, generator=g, device=device, dtype=half),
                "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device=device,
                                         dtype=half),
            }
        lat = size // 8
        x = torch.randn(2, 4, lat, lat, generator=g, device=device, dtype=half)
        t = time.perf_counter()
        unet(x, 999.0, encoder_hidden_states=ctx, added_cond_kwargs=added)
        sync()
        r["first_step_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(steps):
            unet(x, 999.0 - i, encoder_hidden_states=ctx, added_cond_kwargs=added)
        sync()
        r["step_s"] = (time.perf_counter() - t) / max(steps, 1)
        z = torch.randn(1, 4, lat, lat, generator=g, device=device)

        def decode_s(z) -> float:
            """One decode, timed after a warm-up one."""
            vae.decode(z)
            sync()
            t = time.perf_counter()
            vae.decode(z)
            sync()
            return time.perf_counter() - t

        r["decode_s"] = decode_s(z)
        vae.to(half)
        r["decode_fp16_s"] = decode_s(z.to(half))
    if cuda:
        r["torch_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return r


def no_tf32(torch) -> None:
    """fp32 in full: PyTorch runs fp32 convolutions on CUDA in TF32 by default, Easel's
    f32 does not."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def txt2img(folder: Path, size: int, steps: int, device: str, dtype: str, image_out: Path) -> dict:
    """diffusers' whole txt2img run (a child of the driver): the pipeline at `dtype` on
    `device` (fp16: its VAE decodes in fp16 too, as diffusers' SD 1.x pipelines do), the
    seed's noise drawn on the CPU as Easel draws it; saved to `image_out`."""
    import torch
    from diffusers import StableDiffusionPipeline

    no_tf32(torch)
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None,
        dtype=torch.float16 if dtype == "fp16" else torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    prompt = cpu_bench().TXT2IMG_PROMPT
    run = lambda: pipe(prompt, num_inference_steps=steps, guidance_scale=7.5,  # noqa: E731
                       height=size, width=size,
                       generator=torch.Generator().manual_seed(0)).images[0]
    run()  # warm-up: kernels picked and compiled
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    image = run()
    if device == "cuda":
        torch.cuda.synchronize()
    call = time.perf_counter() - t
    image.save(image_out)
    return {"call_s": call}


class GpuMemory:
    """The most GPU memory in use (MiB, `nvidia-smi`) while the block runs, less what was in
    use when it began."""

    def __init__(self, device: str) -> None:
        self.on = device == "cuda"
        self.peak = 0.0
        self.base = self.read() if self.on else 0.0
        self.stop = threading.Event()

    @staticmethod
    def read() -> float:
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", gpu],
            capture_output=True, text=True, check=True).stdout
        return float(out.split()[0])

    def __enter__(self):
        def poll():
            while self.on and not self.stop.is_set():
                self.peak = max(self.peak, self.read())
                time.sleep(0.05)
        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def used(self) -> float:
        return max(self.peak - self.base, 0.0)


def cuda_library_path() -> str:
    """The folders of the CUDA libraries among this Python's `nvidia` packages, then the
    driver's usual folders, then what LD_LIBRARY_PATH held."""
    dirs: list[str] = []
    try:
        import nvidia
        for root in nvidia.__path__:
            for base, _, files in os.walk(root):
                if any(f.startswith("lib") and ".so" in f for f in files) and base not in dirs:
                    dirs.append(base)
    except ImportError:
        pass
    dirs += [d for d in ["/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"] if os.path.isdir(d)]
    old = os.environ.get("LD_LIBRARY_PATH")
    return ":".join(dirs + ([old] if old else []))


def unpacked(binary: str) -> str:
    """`binary`, or for `NAME.xz` (what scripts/build_cuda.sh writes) the program unpacked
    into the temporary folder."""
    if not binary.endswith(".xz"):
        return binary
    import lzma
    import shutil
    out = Path(tempfile.mkdtemp()) / Path(binary).stem
    with lzma.open(binary) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    out.chmod(0o755)
    return str(out)


def run_case(args, family: str, size: int) -> dict:
    folder = Path(args.tmp) / family
    if not folder.is_dir():
        t = time.perf_counter()
        child = [sys.executable, __file__, "--child", "write", "--family", family, "--folder",
                 str(folder), "--device", args.device]
        subprocess.run(child, check=True)
        print(f"{family}: random weights written in {time.perf_counter() - t:.1f} s", flush=True)
    result: dict = {"family": family, "size": size, "steps": args.steps}

    cmd = [sys.executable, __file__, "--child", "measure", "--folder", str(folder),
           "--size", str(size), "--steps", str(args.steps), "--device", args.device]
    with GpuMemory(args.device) as mem:
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"the diffusers side failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    result["diffusers"] = json.loads(p.stdout.strip().splitlines()[-1])
    result["diffusers"]["gpu_peak_mb"] = mem.used

    env = dict(os.environ, LD_LIBRARY_PATH=cuda_library_path())
    precision = args.precision or ("f16" if args.device == "cuda" else "f32")
    result["precision"] = precision
    result["easel"] = {}
    for name, binary in zip(args.names, args.easel):
        cmd = [binary, "bench", "diffusion", "--device", args.device, "--precision", precision,
               "--model", str(folder), "--size", str(size), "--steps", str(args.steps)]
        with GpuMemory(args.device) as mem:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        e = cpu_bench().parse_easel(p.stdout)
        e["gpu_peak_mb"] = mem.used
        e["stdout"] = p.stdout
        result["easel"][name] = e
    if family == "sd15" and args.txt2img_steps > 0:
        result["txt2img"] = whole_runs(args, folder, size, env)
    return result


def whole_runs(args, folder: Path, size: int, env: dict) -> dict:
    """SD 1.5 only: one whole txt2img image per engine and precision from the same folder
    and seed (`easel generate`; a diffusers pipeline, timed on its second call), and the
    pixel differences: each engine's reduced precision against its own f32 image, and the
    two engines' f32 images against each other."""
    import types

    bench = cpu_bench()
    tmp = Path(args.tmp)
    if not (folder / "model_index.json").exists():
        bench.make_pipeline_folder(types.SimpleNamespace(easel=args.easel[0]), env, folder, tmp)
    steps, out = args.txt2img_steps, {"steps": args.txt2img_steps}
    narrow = {"cuda": "fp16", "cpu": "fp32"}[args.device]
    for dtype in sorted({"fp32", narrow}):
        png = tmp / f"diffusers-{size}-{dtype}.png"
        cmd = [sys.executable, __file__, "--child", "txt2img", "--folder", str(folder), "--size",
               str(size), "--steps", str(steps), "--device", args.device, "--dtype", dtype,
               "--image-out", str(png)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"diffusers txt2img failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        out[f"diffusers {dtype}"] = json.loads(p.stdout.strip().splitlines()[-1])
    precision = args.precision or ("f16" if args.device == "cuda" else "f32")
    for i, binary in enumerate(args.easel):
        for prec in sorted({"f32", precision}):
            png = tmp / f"easel{i + 1}-{size}-{prec}.png"
            cmd = [binary, "generate", "--model", str(folder), "--steps", str(steps),
                   "--guidance", "7.5", "--seed", "0", "--width", str(size), "--height",
                   str(size), "--data-dir", str(tmp / "easel-data"), "-o", str(png),
                   "--device", args.device, "--precision", prec, "--force",
                   bench.TXT2IMG_PROMPT]
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
            out[f"easel {i + 1} {prec}"] = {"process_s": time.perf_counter() - t}
    diff = lambda a, b: bench.pixel_difference(tmp / a, tmp / b)  # noqa: E731
    out["easel f32 vs diffusers fp32"] = diff(f"easel1-{size}-f32.png", f"diffusers-{size}-fp32.png")
    if narrow != "fp32":
        out[f"diffusers {narrow} vs fp32"] = diff(f"diffusers-{size}-{narrow}.png",
                                                  f"diffusers-{size}-fp32.png")
    for i in range(len(args.easel)):
        if precision != "f32":
            out[f"easel {i + 1} {precision} vs f32"] = diff(f"easel{i + 1}-{size}-{precision}.png",
                                                          f"easel{i + 1}-{size}-f32.png")
    return out


ROWS = [
    ("UNet iterations per second (CFG, batch 2)", "its", 2),
    ("UNet step with CFG (batch 2), s", "step_s", 4),
    ("first step (warm-up), s", "first_step_s", 3),
    ("VAE decode f32 (1 image), s", "decode_s", 4),
    ("model load, s", "load_s", 2),
    ("text encode (batch 2), s", "encode_s", 4),
    ("GPU memory at peak, MiB", "gpu_peak_mb", 0),
]


def print_case(r: dict) -> None:
    d = r["diffusers"]
    easels = list(r["easel"].items())
    for side in [d] + [e for _, e in easels]:
        side["its"] = 1.0 / side["step_s"]
    print(f"\n{r['family']} {r['size']}x{r['size']}, {r['steps']} timed steps, {d['gpu']}, "
          f"torch {d['torch']}, diffusers {d['diffusers']} (UNet and CLIP "
          f"{'fp16' if d['gpu'] != 'CPU' else 'f32'}; VAE f32), "
          f"Easel --precision {r['precision']}")
    for i, (binary, _) in enumerate(easels):
        print(f"  easel {i + 1}: {binary}")
    head = "".join(f"{f'easel {i + 1}':>10} {'ratio':>7}" for i in range(len(easels)))
    print(f"{'measure':<44} {'diffusers':>10} {head}")
    for label, key, digits in ROWS:
        b = d.get(key)
        cells = ""
        for _, e in easels:
            a = e.get(key)
            ratio = f"{a / b:.2f}" if a and b else "-"
            cells += f"{a:>10.{digits}f} {ratio:>7}"
        print(f"{label:<44} {b:>10.{digits}f} {cells}")
    print(f"{'diffusers VAE decode in fp16, s':<44} {d['decode_fp16_s']:>10.4f}")
    whole = r.get("txt2img")
    if whole:
        print(f"whole txt2img, {whole['steps']} steps (diffusers: the pipeline's second call; "
              f"Easel: the `generate` process, load included):")
        for key, v in whole.items():
            if key == "steps":
                continue
            if "psnr_db" in v:
                print(f"  {key}: PSNR {v['psnr_db']:.1f} dB, max {v['max']}/255, "
                      f"mean {v['mean']:.2f}/255")
            else:
                cells = (f"{k} {x:.2f}" if isinstance(x, float) else f"{k} {x}"
                         for k, x in v.items())
                print(f"  {key}: {', '.join(cells)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--easel", action="append",
                    help="an easel binary, or NAME.xz (repeat to compare builds; default "
                         ".gpu/easel.xz)")
    ap.add_argument("--cases", default="sd15:512,sdxl:1024",
                    help="family:size pairs (sd15, sdxl)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precision", choices=["f16", "bf16", "f32"],
                    help="Easel's (default: f16 on cuda, f32 on cpu)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a quick check of the script itself, both engines in f32")
    ap.add_argument("--tmp", default="/tmp/easel-gpu-bench")
    ap.add_argument("--txt2img-steps", type=int, default=20,
                    help="SD 1.5: whole txt2img images of each engine and precision "
                         "(0: none)")
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--image-out", help=argparse.SUPPRESS)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--child", choices=["write", "measure", "txt2img"], help=argparse.SUPPRESS)
    ap.add_argument("--family", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "write":
        write(Path(args.folder), args.family, args.device)
        return
    if args.child == "measure":
        print(json.dumps(measure(Path(args.folder), args.size, args.steps, args.device)))
        return
    if args.child == "txt2img":
        print(json.dumps(txt2img(Path(args.folder), args.size, args.steps, args.device,
                                 args.dtype, Path(args.image_out))))
        return
    args.names = args.easel or [".gpu/easel.xz"]
    args.easel = [unpacked(b) for b in args.names]
    if args.device == "cuda":
        import torch
        cuda = torch.version.cuda or ""
        if not cuda.startswith("13"):
            raise SystemExit(f"this PyTorch is built for CUDA {cuda or 'none'}: the Easel binary "
                             "needs CUDA 13's libraries (and a driver for CUDA 13)")
    cases = []
    for case in args.cases.split(","):
        family, _, size = case.partition(":")
        if family not in ("sd15", "sdxl") or not size.isdigit():
            raise SystemExit(f"--cases: `{case}`: expected sd15:SIZE or sdxl:SIZE")
        cases.append((family, int(size)))
    results = []
    for family, size in cases:
        r = run_case(args, family, size)
        print_case(r)
        results.append(r)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
