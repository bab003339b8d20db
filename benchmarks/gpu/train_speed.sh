#!/usr/bin/env bash
# Issue 15's GPU checks in one command (under 8 minutes on one H200; every part has its own timeout, and
# a part that fails or lacks a package is recorded and skipped). Package used from the checkout's src/.
#   bash benchmarks/gpu/train_speed.sh OUT_DIR
# 1. deco bench at the full LLaVA-1.5-7B shapes (random weights), bf16 autocast with float32 master
#    weights, per-device batch 16 x 2 accumulation, activation checkpointing in stage 2 (the recipe), fused
#    AdamW, deco train's step and loader: MFU of MLP-576's stage-2 step, DeCo-144 step ratio vs FLOP
#    ratio, TTFT ratio vs prefill FLOP ratio -> OUT/summary.json (goals: MFU >= 0.50, ratios <= 1.10).
# 2. QLoRA stage 2 (4-bit LLM, bitsandbytes) for 6 steps on the tiny config.
# 3. DeepSpeed ZeRO-2 and ZeRO-3 on one GPU: stage-2 losses vs plain training, and resume from step 4.
set -u
out=${1:?usage: train_speed.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
  'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)'
  python3 -c 'import bitsandbytes as b; print("bitsandbytes", b.__version__)' 2>/dev/null || echo "bitsandbytes: not installed"
  python3 -c 'import deepspeed as d; print("deepspeed", d.__version__)' 2>/dev/null || echo "deepspeed: not installed"
  nproc; } 2>&1 | tee "$out/machine.txt"

# 1. 7B shapes (32 LLM + 24 vision layers), MLP-576 vs DeCo-144.
timeout 300 python3 -m deco bench --size 7b-proxy --proxy-layers 32 --device cuda --dtype bfloat16 \
  --projectors mlp,deco --tokens 144 --batch-size 16 --accum 2 --grad-checkpointing --repeats 3 --warmup 1 \
  --peer-repeats 2 --out "$out/7b" --note "issue 15: deco train's step at the recipe's per-device batch" \
  2>&1 | tail -30 | tee "$out/bench_7b.txt"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
path = out / "7b" / "bench.json"
if not path.exists():
    json.dump({"bench": "did not finish (see bench_7b.txt)"}, open(out / "summary.json", "w"), indent=1)
    sys.exit(0)
d = json.load(open(path))
v = {x["projector"]: x for x in d["variants"]}
mlp, deco = v["mlp"], v["deco"]
PEAK = 989e12  # H200 (H100 SXM class) dense bf16 tensor-core peak, FLOP/s
def t(x, k): return x["time_s"][k]["median"]
def f(x, k): return x["flops"][k]["total"]
counted = f(mlp, "train_stage2") / t(mlp, "train_stage2")
# The FLOP counter sees the checkpointed LLM layers' recomputed forward too (hardware FLOPs); model FLOPs
# leave it out: the LLM part counts 3 units (fwd + 2 bwd) of the 4 executed.
llm = mlp["flops"]["train_stage2"]["llm"]
model_flops = f(mlp, "train_stage2") - llm / 4
s = {
  "mlp576_stage2_step_s": t(mlp, "train_stage2"),
  "hfu_counted": counted / PEAK,
  "mfu_recompute_excluded": model_flops / t(mlp, "train_stage2") / PEAK, "mfu_goal_min": 0.50,
  "deco144_step_ratio_stage2": t(deco, "train_stage2") / t(mlp, "train_stage2"),
  "flop_ratio_stage2": f(deco, "train_stage2") / f(mlp, "train_stage2"),
  "ttft_ratio": t(deco, "prefill") / t(mlp, "prefill"),
  "prefill_flop_ratio": f(deco, "prefill") / f(mlp, "prefill"),
  "data_wait": {x["key"]: x.get("data_wait_fraction") for x in d["variants"]},
  "loader": d.get("loader"), "train_step": d["settings"].get("train_step"),
}
s["step_over_flop_ratio"] = s["deco144_step_ratio_stage2"] / s["flop_ratio_stage2"]
s["ttft_over_prefill_flop_ratio"] = s["ttft_ratio"] / s["prefill_flop_ratio"]
s["goals_met"] = {"mfu>=0.50": s["mfu_recompute_excluded"] >= 0.5, "step<=1.10xflops": s["step_over_flop_ratio"] <= 1.1,
                  "ttft<=1.10xprefill_flops": s["ttft_over_prefill_flop_ratio"] <= 1.1}
json.dump(s, open(out / "summary.json", "w"), indent=1)
print(json.dumps(s, indent=1))
PY

# Tiny data and a stage-1 projector for parts 2 and 3.
work=$(mktemp -d)
python3 -m deco.data.toy "$work/toy" --images 32 >/dev/null
data=("data.train_file=$work/toy/train.json" "data.image_folder=$work/toy/images")
timeout 100 python3 -m deco train configs/tiny.yaml "${data[@]}" train.max_steps=4 train.quiet=true \
  "train.output_dir=$work/stage1" > "$out/stage1.log" 2>&1
s2=(configs/tiny.yaml "${data[@]}" "train.stage1_checkpoint=$work/stage1/final" train.stage=2 train.max_steps=8
    train.save_every=4 train.keep_last=2 train.quiet=true train.precision=bf16 model.dtype=bfloat16)

# 2. QLoRA stage 2: the LLM in 4 bit, LoRA adapters trained.
timeout 150 python3 -m deco train "${s2[@]}" train.lora.enabled=true train.lora.quantize_4bit=true \
  train.lora.rank=8 train.lora.alpha=16 "train.output_dir=$work/qlora" > "$out/qlora.log" 2>&1
echo "qlora exit $?" | tee -a "$out/qlora.log"

# 3. Plain vs DeepSpeed ZeRO-2 / ZeRO-3 (one process), and each resumed from its step-4 checkpoint.
timeout 120 python3 -m deco train "${s2[@]}" "train.output_dir=$work/plain" > "$out/plain.log" 2>&1
for z in 2 3; do
  launch=(accelerate launch --config_file "configs/accelerate/deepspeed_zero$z.yaml" --num_processes 1 -m deco.cli train)
  timeout 150 "${launch[@]}" "${s2[@]}" "train.output_dir=$work/zero$z" > "$out/zero$z.log" 2>&1
  timeout 150 "${launch[@]}" "${s2[@]}" "train.output_dir=$work/zero${z}_resumed" \
    --resume-from "$work/zero$z/checkpoint-4" > "$out/zero${z}_resumed.log" 2>&1
done
python3 - "$work" "$out" <<'PY'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
def losses(name):
    p = work / name / "metrics.jsonl"
    return {r["step"]: r["loss"] for r in map(json.loads, p.read_text().splitlines()) if "loss" in r} if p.exists() else {}
runs = {n: losses(n) for n in ("plain", "qlora", "zero2", "zero2_resumed", "zero3", "zero3_resumed")}
for step in range(1, 9):
    print(step, *(f"{runs[n].get(step, float('nan')):.6f}" for n in runs))
json.dump({"losses": runs, "final_saved": {n: (work / n / "final").is_dir() for n in runs}},
          open(out / "zero_qlora.json", "w"), indent=1)
PY
tail -n 2 "$out"/*.log
echo done
