"""Measure `deco demo` wall time on this machine and record it as JSON (with the machine named).

    python benchmarks/demo/record.py --mode default   # or quick; --fresh rebuilds the cache first

Writes benchmarks/demo/<mode>-<cpu-count>core-<date>.json: the command, the machine (CPU model,
cores), the load average before and after (other work on the machine slows every number here), the
wall time of the whole run and of the asset build, each job's CPU seconds (single-threaded jobs: on
an otherwise idle machine a job's wall time is close to its CPU time), and the accuracies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from deco.demo.pipeline import DemoOptions, run_demo


def main() -> None:
    """Run the demo once and write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["default", "quick"], default="default")
    parser.add_argument("--fresh", action="store_true", help="start from an empty cache (first-run time)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deco-demo-bench-"))
    cache = args.cache_dir
    load_before = os.getloadavg()
    start = time.perf_counter()
    payload = run_demo(DemoOptions(quick=args.mode == "quick", out=work / "out", cache_dir=cache, no_cache=args.fresh))
    wall = time.perf_counter() - start
    record = {
        "command": "deco demo" + (" --quick" if args.mode == "quick" else ""),
        "date": datetime.date.today().isoformat(),
        "machine": payload["machine"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "fresh_cache": args.fresh,
        "assets_built": payload["assets"]["built"],
        "wall_seconds": round(wall, 1),
        "asset_seconds": payload["wall_seconds"]["assets"],
        "workers": payload["workers"],
        "jobs": [{"projector": r["projector"], "seed": r["seed"], "job_seconds": r["job_seconds"],
                  "job_cpu_seconds": r["job_cpu_seconds"], "eval_seconds": r["eval_seconds"],
                  "stage1_train_seconds": r["times"]["stage1"]["train_seconds"],
                  "stage2_train_seconds": r["times"]["stage2"]["train_seconds"]} for r in payload["runs"]],
        "encoder_pretrain_seconds": payload["assets"]["encoder"].get("seconds"),
        "accuracy": {n: {"overall": s["final"]["overall"]["mean"], "spatial": s["final"]["spatial"]["mean"],
                         "families": {f: v["mean"] for f, v in s["final"]["families"].items()}}
                     for n, s in payload["projectors"].items()},
        "majority_baseline": payload["majority_baseline"],
        "note": args.note,
    }
    cores = payload["machine"]["cores"]
    out = Path(__file__).parent / f"{args.mode}-{cores}core-{record['date']}.json"
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    # The run's own report and figures, next to the record (the README shows them).
    for name in ("results.md", "accuracy_by_family.png", "learning_curves.png", "loss_curves.png"):
        shutil.copy(work / "out" / name, out.with_name(f"{out.stem}-{name}"))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
