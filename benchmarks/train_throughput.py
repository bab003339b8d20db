"""Training throughput and peak memory of MLP-576 vs DeCo-144 on one tiny model, and whether the data
loader keeps up. Writes benchmarks/results/train_throughput_<device>.json.

    python benchmarks/train_throughput.py                 # CPU, a couple of minutes on 2 cores
    python benchmarks/train_throughput.py --device cuda   # GPU: cuda max-allocated memory

Setup: configs/tiny.yaml at 96 px / patch 4, i.e. a 24x24 = 576-patch grid (LLaVA-1.5's geometry at
toy width). `mlp` passes all 576 visual tokens to the LLM, `deco` pools them to 12x12 = 144 first.
Both train through the real `deco train` path (run_training: data loader, collator, accelerate,
loss, optimizer, metrics) on the same synthetic LLaVA-format data, stage 1 (projector only) and
stage 2 (projector + LLM).

Measured, per (projector, stage), each in a fresh process:
- samples/s and tokens/s (non-padding tokens, visual placeholders included) from the wall-clock
  stamps of metrics.jsonl, after `--warmup` steps; data loading is inside the timed span.
- peak memory: on CUDA `torch.cuda.max_memory_allocated` over the run; on CPU the peak tensor bytes
  (deco.bench.memory.MemoryProbe, which watches tensor storages: tracemalloc cannot see torch's
  allocations) over a separate 2-step run, and the process's peak RSS (ru_maxrss, which includes
  Python, libraries and the model).
- data-loader throughput alone: the same dataset, sampler, collator and workers, without the model;
  reported as a multiple of the training consumption rate (above 1 = the loader is not the bottleneck).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["red", "green", "blue", "square", "circle", "triangle", "left", "right", "top", "bottom", "small",
         "large", "next", "to", "the", "a", "of", "and", "above", "below"]
# 96 px / patch 4 -> 24 x 24 = 576 patches (LLaVA-1.5's grid).
GRID_576 = ["vision.hf_config.image_size=96", "vision.hf_config.patch_size=4", "data.max_length=1024",
            "llm.hf_config.max_position_embeddings=2048"]
PROJECTORS = {"mlp-576": ["projector.name=mlp", "projector.options={}"],
              "deco-144": ["projector.name=deco", "projector.options={grid: 12x12}"]}


def write_data(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """n image-caption samples (captions of 12-30 words) as LLaVA JSON + PNGs."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        img = Image.new("RGB", (120, 100), tuple(rng.randrange(256) for _ in range(3)))
        ImageDraw.Draw(img).rectangle((rng.randrange(50), rng.randrange(40), 70 + rng.randrange(50), 60 + rng.randrange(40)),
                                      fill=tuple(rng.randrange(256) for _ in range(3)))
        img.save(images / f"{i}.png")
        caption = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the picture."}, {"from": "gpt", "value": caption}]})
    path = root / "train.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path, images


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One (projector, stage) in this process: throughput run, memory run, loader-only run."""
    import torch
    from torch.utils.data import DataLoader

    from deco.bench.memory import MemoryProbe
    from deco.config import load_config
    from deco.data import DataCollator
    from deco.model import build_model
    from deco.train import run_training
    from deco.train.loading.batches import BatchPlan, StepBatchSampler
    from deco.train.report.metrics import read_metrics
    from deco.train.setup import build_dataset

    out = Path(args.work) / f"{args.child}-stage{args.stage}"
    base = [f"data.train_file={args.data}/train.json", f"data.image_folder={args.data}/images",
            f"data.num_workers={args.workers}", f"train.global_batch_size={args.batch}",
            f"train.per_device_batch_size={args.batch}", "train.save_every=0", "train.quiet=true",
            f"train.stage={args.stage}", "train.precision=" + ("bf16" if args.device == "cuda" else "fp32"),
            *GRID_576, *PROJECTORS[args.child]]
    if args.stage == 2:
        base += ["train.lr=2e-5", f"train.stage1_checkpoint={args.stage1}"]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [*base, f"train.output_dir={out}",
                                                       f"train.max_steps={args.steps}"])
    probe = MemoryProbe(args.device) if args.device == "cuda" else None
    if probe:
        probe.__enter__()
    run_training(cfg)
    if probe:
        probe.__exit__(None, None, None)
    records = read_metrics(out / "metrics.jsonl")
    timed = records[args.warmup:]
    seconds = timed[-1]["time"] - records[args.warmup - 1]["time"]
    samples = len(timed) * args.batch
    tokens = sum(r["tokens_per_s"] * args.batch / r["samples_per_s"] for r in timed)
    result: dict[str, Any] = {
        "projector": args.child, "stage": args.stage, "steps_timed": len(timed),
        "samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds,
        "tokens_per_sample": tokens / samples, "seconds_per_step": seconds / len(timed),
        "final_loss": records[-1]["loss"], "torch_threads": torch.get_num_threads(),
        "load_average_after": os.getloadavg(),
    }
    if probe:
        result["peak_tensor_bytes"] = probe.peak
    else:
        mem_cfg = load_config(ROOT / "configs" / "tiny.yaml", [*base, f"train.output_dir={out}-mem", "train.max_steps=2"])
        with MemoryProbe("cpu") as mem:
            run_training(mem_cfg)
        result["peak_tensor_bytes"] = mem.peak
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # The loader alone: same dataset, batches, collator and workers; no model.
    torch.manual_seed(0)
    model = build_model(cfg)
    data = build_dataset(cfg, model)
    plan = BatchPlan(len(data), args.batch, args.batch, 1, cfg.train.seed)
    loader = DataLoader(data, batch_sampler=StepBatchSampler(plan, 0, 0, 0, args.steps),
                        collate_fn=DataCollator.from_processor(model.processor()), num_workers=args.workers)
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["sample_ids"])
    loader_sps = n / (time.perf_counter() - start)
    result["loader_samples_per_s"] = loader_sps
    result["loader_over_training"] = loader_sps / result["samples_per_s"]
    if args.stage == 1:
        result["stage1_projector"] = str(out / "final" / "projector.safetensors")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    parser.add_argument("--batch", type=int, default=8, help="global batch (one process, no accumulation)")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--stage1", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return

    from deco.bench.machine import describe_machine

    load_at_start = os.getloadavg()
    args.steps += args.warmup
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        write_data(Path(tmp) / "data", args.samples)
        for name in PROJECTORS:
            stage1 = None
            for stage in (1, 2):
                cmd = [sys.executable, __file__, "--child", name, "--stage", str(stage), "--data", f"{tmp}/data",
                       "--work", tmp, "--device", args.device, "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--batch", str(args.batch), "--workers", str(args.workers)]
                if stage1:
                    cmd += ["--stage1", stage1]
                print(f"{name} stage {stage} ...", file=sys.stderr, flush=True)
                env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
                if done.returncode != 0:
                    sys.exit(f"{name} stage {stage} failed:\n{done.stdout}\n{done.stderr}")
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                result = json.loads(line[len("RESULT "):])
                stage1 = result.pop("stage1_projector", stage1)
                runs.append(result)
                print(f"  {result['samples_per_s']:.1f} samples/s, {result['tokens_per_s']:.0f} tokens/s, "
                      f"peak tensors {result['peak_tensor_bytes'] / 2**20:.1f} MiB, loader "
                      f"{result['loader_over_training']:.1f}x training", file=sys.stderr, flush=True)
    by = {(r["projector"], r["stage"]): r for r in runs}
    speedup = {f"stage{s}": by[("deco-144", s)]["samples_per_s"] / by[("mlp-576", s)]["samples_per_s"] for s in (1, 2)}
    memory = {f"stage{s}": by[("deco-144", s)]["peak_tensor_bytes"] / by[("mlp-576", s)]["peak_tensor_bytes"]
              for s in (1, 2)}
    report = {
        "benchmark": "train_throughput",
        "command": " ".join([Path(sys.executable).name, "benchmarks/train_throughput.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": describe_machine(args.device),
        "load_average_at_start": load_at_start,
        "setup": {"config": "configs/tiny.yaml", "overrides": GRID_576, "projectors": PROJECTORS,
                  "global_batch": args.batch, "steps_timed": args.steps - args.warmup, "warmup_steps": args.warmup,
                  "samples": args.samples, "num_workers": args.workers, "threads": args.threads,
                  "precision": "bf16" if args.device == "cuda" else "fp32"},
        "runs": runs,
        "deco144_over_mlp576": {"samples_per_s": speedup, "peak_tensor_bytes": memory},
        "loader_min_multiple_of_training": min(r["loader_over_training"] for r in runs),
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"train_throughput_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"deco144_over_mlp576": report["deco144_over_mlp576"],
                      "loader_min_multiple_of_training": report["loader_min_multiple_of_training"]}, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
