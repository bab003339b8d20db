"""Questions per second of `deco eval` for MLP-576 vs DeCo-144 on the same tiny model, in one run.

Both models share one random-weight vision tower (CLIP architecture, 96 px, patch 4: a 24x24 = 576 patch
grid, LLaVA-1.5's geometry) and one 2-layer Llama of width 64 (configs/tiny.yaml's LLM); only the
projector differs: `mlp` keeps 576 visual tokens, `deco` pools them to 12x12 = 144. Weights do not change
the cost, so random ones time the same as trained ones. A synthetic GQA-style benchmark (simplified JSONL
+ PNG images) goes through the real runner (`deco.eval.runner.run_eval`: vicuna_v1 prompts, batched
greedy generation with the KV cache, a JSON line per question). Every question generates exactly
--new-tokens tokens (`min_new_tokens`), so both models do the same decoding work.

Measured per projector: batch size 1 and --batch-size, and --batch-size without the KV cache (to show
what the cache buys). Each number is the median of --repeats runs; every run is listed. Writes
benchmarks/results/eval_throughput.json with the machine and the load average around the run (other
processes sharing the CPU slow every configuration, so compare rows of one file, not across files).

    python benchmarks/eval_throughput.py [--questions 32] [--batch-size 8] [--new-tokens 16] [--repeats 3]
                                         [--threads N] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from deco.bench.machine import describe_machine
from deco.config import load_config
from deco.eval.generation import pick_device
from deco.eval.runner import EvalSettings, run_eval
from deco.model import build_model

VISION_96PX = ("vision.hf_config={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
               "num_attention_heads: 4, image_size: 96, patch_size: 4}")
PROJECTORS = {"mlp-576": ["projector.name=mlp"], "deco-144": ["projector.name=deco", "projector.options.grid=12x12"]}


def build(overrides: list[str]):
    """The tiny model with a 24x24 patch grid and the given projector; seed 0 for identical towers and LLM."""
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", [VISION_96PX, *overrides])).eval()


def write_benchmark(root: Path, n: int) -> tuple[Path, Path]:
    """n GQA-style questions over n generated 96 px scenes."""
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        im = Image.new("RGB", (96, 96), (255, 255, 255))
        ImageDraw.Draw(im).ellipse((8 + i % 40, 10, 50 + i % 40, 60), fill=(40 * i % 256, 90, 200))
        im.save(images / f"{i}.png")
        rows.append({"question_id": str(i), "question": f"What colour is the circle number {i}?",
                     "image": f"{i}.png", "answer": "blue"})
    data = root / "questions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data, images


def time_run(model, data: Path, images: Path, out: Path, batch: int, new_tokens: int, cache: bool,
             device: str) -> dict:
    """One full runner pass from an empty prediction file; the runner's own timing (generation batches)."""
    out.unlink(missing_ok=True)
    settings = EvalSettings(benchmark="gqa", data=data, images=images, out=out, batch_size=batch,
                            max_new_tokens=new_tokens, template="vicuna_v1")
    summary = run_eval(model, settings, device=device, log=lambda m: None,
                       generate_kwargs={"min_new_tokens": new_tokens, "use_cache": cache})
    assert summary["generated_tokens"] == summary["answered_now"] * new_tokens
    return {"seconds": summary["seconds"], "questions_per_second": summary["questions_per_second"],
            "tokens_per_second": summary["tokens_per_second"]}


def speedup(results: list[dict], batch: int, cache: bool) -> float:
    """DeCo-144's questions/s over MLP-576's at one configuration."""
    qps = {r["projector"]: r["questions_per_second"] for r in results
           if r["batch_size"] == batch and r["kv_cache"] == cache}
    return round(qps["deco-144"] / qps["mlp-576"], 2)


def main() -> None:
    """Parse arguments, time every (projector, batch size, cache) configuration, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--questions", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's). On a CPU shared with other jobs use 1: "
                        "oversubscribed intra-op threads made these tiny models ~30x slower here.")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_throughput.json")
    args = p.parse_args()
    device = str(pick_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [(1, True), (args.batch_size, True), (args.batch_size, False)]
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data, images = write_benchmark(Path(tmp), args.questions)
        models = {name: build(ov) for name, ov in PROJECTORS.items()}
        for model in models.values():  # warm-up: first-call allocations and thread pools
            time_run(model, data, images, Path(tmp) / "warm.jsonl", 2, 2, True, device)
        for batch, cache in configs:
            for name, model in models.items():
                runs = [time_run(model, data, images, Path(tmp) / "p.jsonl", batch, args.new_tokens, cache, device)
                        for _ in range(args.repeats)]
                qps = statistics.median(r["questions_per_second"] for r in runs)
                results.append({"projector": name, "visual_tokens": models[name].num_image_tokens,
                                "batch_size": batch, "kv_cache": cache, "questions_per_second": round(qps, 3),
                                "tokens_per_second": round(qps * args.new_tokens, 2),
                                "runs_questions_per_second": [round(r["questions_per_second"], 3) for r in runs]})
                listed = ", ".join(f"{r['questions_per_second']:.2f}" for r in runs)
                print(f"{name:9s} batch {batch:2d} cache {'on ' if cache else 'off'}: {qps:7.2f} questions/s "
                      f"(runs {listed})", flush=True)
    speedups = {f"batch {b}, cache {'on' if c else 'off'}": speedup(results, b, c) for b, c in configs}
    report = {
        "benchmark": "deco eval throughput, MLP-576 vs DeCo-144, tiny random-weight model",
        "command": "python benchmarks/eval_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None),
        "model": {"vision": "CLIP arch, width 32, 2 layers, 96 px, patch 4 (24x24 = 576 patches)",
                  "llm": "Llama, width 64, 2 layers, byte tokenizer (configs/tiny.yaml)",
                  "template": "vicuna_v1", "questions": args.questions, "new_tokens_per_question": args.new_tokens},
        "results": results,
        "deco_over_mlp_speedup": speedups,
        "machine": describe_machine(device),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "note": "Other processes may share this machine's CPU; the load average is recorded so runs can be "
                "judged. Configurations alternate projectors so both see the same load.",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"DeCo-144 / MLP-576 speed-up: {speedups}; written to {args.out}")


if __name__ == "__main__":
    main()
