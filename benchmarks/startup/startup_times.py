"""Time how long each `deco` command takes from launch to exit (min of N runs), against the goals.

python benchmarks/startup/startup_times.py [--runs 5] [--baseline-src DIR] [--out FILE]

Every command runs as `python -m deco ...` in a fresh interpreter with PYTHONPATH=src (this checkout),
so the time is what a user waits: interpreter start, imports, the work, exit. `--baseline-src` names
another tree's src/ (e.g. `git archive <commit> src | tar -x -C /tmp/base`) timed in the same loop,
interleaved run by run, so both see the same machine load. The minimum of the runs is reported: on a
shared machine the other runs measure the neighbours. Writes JSON (default
benchmarks/startup/startup-<cores>core-<date>.json) naming the machine, and prints min / goal ratios.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

# name -> (arguments, expected exit code, goal in seconds on 2 idle cores or None); issue 25 item 6.
COMMANDS: dict[str, tuple[list[str], int, float | None]] = {
    "help": (["--help"], 0, 1.0),
    "config": (["config", "tiny"], 0, 1.5),
    "config_typo": (["config", "tiny", "train.lrr=1"], 2, 1.5),
    "train_typo": (["train", "tiny", "train.lrr=1"], 2, 1.5),
    "train_bad_value": (["train", "tiny", "projector.options.grid=0"], 2, 1.5),
    "info": (["info", "tiny"], 0, 4.0),
    "data_check_10k": (["data", "check", "train.json", "--images", "images", "--workers", "1"], 0, None),
}


def write_data(root: Path, records: int = 10_000, images: int = 100) -> None:
    """A LLaVA-format train.json of `records` records over `images` small PNGs (startup, not decoding)."""
    (root / "images").mkdir()
    for i in range(images):
        Image.new("RGB", (16, 16), (i, 255 - i, 128)).save(root / "images" / f"{i:03d}.png")
    rows = [{"id": str(i), "image": f"{i % images:03d}.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Green."}]}
        for i in range(records)]
    (root / "train.json").write_text(json.dumps(rows), encoding="utf-8")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """Where the numbers come from (versions read from metadata: importing torch here would cost seconds)."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": importlib.metadata.version("torch"),
        "transformers": importlib.metadata.version("transformers"),
    }


def time_once(src: Path, args: list[str], expected: int, cwd: Path) -> float:
    """Seconds from launch to exit of `python -m deco ARGS` with `src` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deco", *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(f"deco {' '.join(args)} ({src}) exited {proc.returncode}, expected {expected}:\n"
                         f"{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None, help="Another tree's src/ timed alongside.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this": SRC} | ({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})
    times: dict[str, dict[str, list[float]]] = {tree: {name: [] for name in COMMANDS} for tree in trees}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_data(work)
        for _ in range(args.runs):
            for name, (cmd, expected, _goal) in COMMANDS.items():
                for tree, src in trees.items():
                    times[tree][name].append(time_once(src, cmd, expected, work))
    results = {}
    for name, (cmd, _expected, goal) in COMMANDS.items():
        row: dict[str, object] = {"command": "deco " + " ".join(cmd), "goal_s": goal}
        for tree in trees:
            best = min(times[tree][name])
            row[tree] = {"min_s": round(best, 3), "runs_s": [round(t, 3) for t in times[tree][name]],
                         "min_over_goal": round(best / goal, 2) if goal else None}
        results[name] = row
    record = {
        "what": "deco command wall time, launch to exit, min of runs (benchmarks/startup/startup_times.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "runs": args.runs,
        "trees": {tree: str(src) for tree, src in trees.items()},
        "data_check_input": "10,000 records over 100 16x16 PNGs, 1 worker",
        "results": results,
    }
    cores = record["machine"]["usable_cores"]
    out = args.out or HERE / f"startup-{cores}core-{datetime.now().strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    header = f"{'command':16s} {'goal':>6s}" + "".join(f" {tree + ' min':>14s} {'/goal':>6s}" for tree in trees)
    print(header)
    for name, row in results.items():
        goal = row["goal_s"]
        line = f"{name:16s} {goal if goal else '-':>6}"
        for tree in trees:
            cell = row[tree]
            ratio = cell["min_over_goal"]
            line += f" {cell['min_s']:>13.2f}s {ratio if ratio is not None else '-':>6}"
        print(line)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
