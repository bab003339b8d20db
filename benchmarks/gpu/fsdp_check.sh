#!/usr/bin/env bash
# Training on one GPU three ways (plain, accelerate + FSDP2, FSDP2 resumed from its step-4 checkpoint) on
# the tiny config in stage 2 (projector + LLM trained, so FSDP shards real weights), bf16, 8 steps.
# Prints the losses side by side; writes OUT/fsdp_check.json.
#   bash benchmarks/gpu/fsdp_check.sh OUT_DIR
set -u
out=${1:?usage: fsdp_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
work=$(mktemp -d)
python3 -m deco.data.toy "$work/toy" >/dev/null
data=("data.train_file=$work/toy/train.json" "data.image_folder=$work/toy/images")
timeout 100 python3 -m deco train configs/tiny.yaml "${data[@]}" train.max_steps=4 train.quiet=true \
  "train.output_dir=$work/stage1" > "$out/stage1.log" 2>&1
args=(configs/tiny.yaml "${data[@]}" "train.stage1_checkpoint=$work/stage1/final"
      train.stage=2 train.max_steps=8 train.save_every=4 train.keep_last=2 train.quiet=true train.precision=bf16)
launch=(accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 -m deco.cli train)
timeout 150 python3 -m deco train "${args[@]}" "train.output_dir=$work/plain" > "$out/plain.log" 2>&1
timeout 150 "${launch[@]}" "${args[@]}" "train.output_dir=$work/fsdp" > "$out/fsdp.log" 2>&1
timeout 150 "${launch[@]}" "${args[@]}" "train.output_dir=$work/fsdp_resumed" \
  --resume-from "$work/fsdp/checkpoint-4" > "$out/fsdp_resumed.log" 2>&1
python3 - "$work" "$out" <<'PY'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
def losses(name):
    p = work / name / "metrics.jsonl"
    return {r["step"]: r["loss"] for r in map(json.loads, p.read_text().splitlines())} if p.exists() else {}
runs = {name: losses(name) for name in ("plain", "fsdp", "fsdp_resumed")}
final = {name: (work / name / "final" / "config.json").exists() or (work / name / "final").is_dir() for name in runs}
for step in range(1, 9):
    print(step, *(f"{runs[n].get(step, float('nan')):.6f}" for n in runs))
json.dump({"losses": runs, "final_saved": final}, open(out / "fsdp_check.json", "w"), indent=1)
PY
tail -n 3 "$out"/*.log
