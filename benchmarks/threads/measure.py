"""Time `deco train` (tiny config, the bundled sample) with 1 thread and with torch's default, interleaved.

    python benchmarks/threads/measure.py OUT.json [--steps 200] [--rounds 2] [--label busy]

Each round runs both settings back to back (order alternating), so load changes hit both alike.
Torch's default is what it picks with no OMP_NUM_THREADS / DECO_THREADS set: one thread per core.
Records wall time, training time (from the run's summary.json), the final loss and the 1-minute
load average before each run. The record names the machine; a busy machine is one whose load
average exceeds its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_once(work: Path, threads: int | None, steps: int, tag: str) -> dict:
    """One training run; threads=None leaves torch's default (no thread variables set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DECO_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["DECO_THREADS"] = str(threads)
    else:
        env["DECO_THREADS"] = str(os.cpu_count())  # what torch picks by itself: one per core
    out = work / f"run-{tag}"
    cmd = [sys.executable, "-m", "deco.cli", "train", str(REPO / "configs/tiny.yaml"),
           f"data.train_file={work / 'sample/train.json'}", f"data.image_folder={work / 'sample/images'}",
           f"train.max_steps={steps}", f"train.save_every={steps}", f"train.output_dir={out}"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]  # step records; other lines are events
    return {"threads": threads or f"default ({os.cpu_count()})", "wall_s": round(wall, 2),
            "train_s": round(summary.get("train_seconds", summary.get("seconds", 0.0)), 2),
            "final_loss": losses[-1], "load_1min_before": round(load, 2)}



def main() -> None:
    """Run the interleaved rounds and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    from deco.sample import write_sample

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_sample(work / "sample")
        for r in range(args.rounds):
            order = (1, None) if r % 2 == 0 else (None, 1)
            for threads in order:
                runs.append(run_once(work, threads, args.steps, f"{r}-{threads}"))
                print(runs[-1], flush=True)
    from deco.train.report.runinfo import cpu_model

    record = {"label": args.label, "machine": {"cpu": cpu_model(),
                                               "cores": os.cpu_count(), "python": platform.python_version()},
              "command": "deco train configs/tiny.yaml (sample data), " + f"{args.steps} steps", "runs": runs,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
