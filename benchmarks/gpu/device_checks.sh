#!/usr/bin/env bash
# The GPU checks of this repo, in one run on a lent GPU machine (the package from the checkout, no
# install: the machine has torch/transformers/accelerate already). Writes everything under $1.
#   bash benchmarks/gpu/device_checks.sh OUT_DIR
set -u
out=${1:?usage: device_checks.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
  'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)'; } \
  2>&1 | tee "$out/machine.txt"

# 1. GPU-only tests (CUDA vs CPU answers for every projector and the model; bf16 training).
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -25 | tee "$out/gpu_tests.txt"

# 2. The full LLaVA-1.5 shapes (CLIP-L/14-336 24 layers + Vicuna-7B 32 layers, random weights), bf16,
#    nothing extrapolated; falls back to a 4-layer proxy if the full model fails.
timeout 330 python3 -m deco bench --size 7b-proxy --proxy-layers 32 --device cuda --dtype bfloat16 \
  --tokens 576,144,64 --batch-size 4 --repeats 5 --warmup 2 --out "$out/7b-cuda" \
  --note "full LLaVA-1.5 shapes (32 LLM layers, 24 vision layers), random weights, bf16, batch 4" \
  2>&1 | tail -40 | tee "$out/bench_7b.txt"
if [ ! -f "$out/7b-cuda/bench.json" ]; then
  timeout 150 python3 -m deco bench --size 7b-proxy --proxy-layers 4 --device cuda --dtype bfloat16 \
    --tokens 576,144,64 --out "$out/7b-proxy4-cuda" 2>&1 | tail -20 | tee "$out/bench_7b_proxy4.txt"
fi
echo "done"
