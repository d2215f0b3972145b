#!/usr/bin/env bash
# Build a CUDA `easel` binary on a machine without a GPU or a CUDA install, to run on one
# that has them (the GPU benchmark, scripts/bench_gpu.py).
#
#   scripts/build_cuda.sh [OUT_DIR] [FEATURES]     (defaults: .gpu, cuda)
#
# What it needs and does:
# * CUDA's compiler from PyPI (`nvidia-cuda-nvcc` 13.0 and the headers it compiles with), in
#   a venv under $EASEL_CUDA_VENV (default /tmp/easel-cuda-venv): candle's kernels are
#   compiled to PTX for compute capability $CUDA_COMPUTE_CAP (default 90: H100/H200).
# * Link-time stand-ins for the CUDA libraries the binary loads at run time (driver, cuBLAS,
#   cuBLASLt, cuRAND, NVRTC, cuDNN): shared objects with the real libraries' sonames that
#   export the function names cudarc declares, and nothing else. The binary records only the
#   sonames; the GPU machine's own libraries answer at run time (its driver, and CUDA 13's
#   libraries, e.g. those of its PyTorch install: see scripts/bench_gpu.py).
# * `cargo build --release -p easel --features $FEATURES` (target/cuda/release/easel), then a
#   stripped, xz-compressed copy at OUT_DIR/easel.xz (OUT_DIR relative to where the script is
#   run): about 16 MB, where the binary is about 100 MB (candle's kernels are PTX text);
#   scripts/bench_gpu.py takes either.
#
# `cudnn` (cuDNN's convolutions) is not among the defaults: candle 0.11 runs f16 convolutions
# there with f16 sums, where PyTorch sums in f32; build it too (`.gpu-cudnn cuda,cudnn`) to
# compare. Nor is `flash-attn`: candle-flash-attn's build clones CUTLASS from GitHub and
# compiles 53 kernels (hours on two cores); where the network allows it, add it.
# The binary needs an NVIDIA driver for CUDA 13 (R580 or newer).
set -euo pipefail

out=$(realpath -m "${1:-.gpu}")
features=${2:-cuda}
venv=${EASEL_CUDA_VENV:-/tmp/easel-cuda-venv}
cap=${CUDA_COMPUTE_CAP:-90}
root=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q 'nvidia-cuda-nvcc==13.0.*' 'nvidia-cuda-runtime==13.0.*' \
    'nvidia-cuda-cccl==13.0.*' 'nvidia-cuda-crt==13.0.*' 'nvidia-nvvm==13.0.*'
cuda=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
"$cuda/bin/nvcc" --version | tail -1

# The stand-ins: every `pub unsafe fn` of a cudarc library binding, as an empty function.
cudarc=$(cd "$root" && cargo metadata --format-version 1 --features "$(echo "$features" | sed 's,[^,]*,easel/&,g')" \
    | "$venv/bin/python" -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(p["manifest_path"].rsplit("/", 1)[0]); break')
[ -n "$cudarc" ] || { echo "cudarc is not in the dependency graph" >&2; exit 1; }
stubs=$root/target/cuda-link-stubs
mkdir -p "$stubs"
for spec in driver:cuda:libcuda.so.1 cublas:cublas:libcublas.so.13 \
    cublaslt:cublasLt:libcublasLt.so.13 curand:curand:libcurand.so.10 \
    nvrtc:nvrtc:libnvrtc.so.13 cudnn:cudnn:libcudnn.so.9; do
    IFS=: read -r module lib soname <<<"$spec"
    sed -n 's/^pub unsafe fn \([A-Za-z0-9_]*\)(.*/void \1(void) {}/p' \
        "$cudarc/src/$module/sys/mod.rs" | sort -u >"$stubs/$lib.c"
    gcc -shared -fPIC -Wl,-soname,"$soname" -o "$stubs/lib$lib.so" "$stubs/$lib.c"
done
# candle-flash-attn links the CUDA runtime by its unversioned name.
ln -sf "$cuda/lib/libcudart.so.13" "$stubs/libcudart.so"

cd "$root"
PATH=$cuda/bin:$PATH CUDA_ROOT=$cuda CUDA_PATH=$cuda CUDA_COMPUTE_CAP=$cap \
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-L native=$stubs" \
    cargo build --release -p easel --features "$features" --target-dir target/cuda
mkdir -p "$out"
strip -o "$out/easel" target/cuda/release/easel
xz -9 -T0 -f "$out/easel"
echo "$out/easel.xz: $(du -h "$out/easel.xz" | cut -f1), features $features, sm_$cap"
readelf -d target/cuda/release/easel | grep NEEDED
