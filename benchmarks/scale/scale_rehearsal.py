"""Scale rehearsal: LLaVA-665K-shaped data through the commands users run, timed and measured.

    python benchmarks/scale/scale_rehearsal.py --work /tmp/scale --records 100000 665000 [--steps 1000]

For each size it writes the synthetic data (benchmarks/scale/synthetic.py; nothing large goes into git)
and a BPE tokenizer (tokenizer.py), then records:
- load: `load_records` alone in a fresh process (seconds, peak RSS);
- check: `deco data check FILE --images DIR --workers 2` (wall seconds, its summary line with images/s);
- first start: `deco train` (the tiny model with this tokenizer, vicuna_v1, max_length 2048) from an empty
  data cache: seconds until step 1 is logged (parse + tokenize + first step), and the tokenizing time;
- second start: the same command into a new run folder: seconds until step 1 with the cached index;
- memory (--steps N, largest size): `torchrun --nproc_per_node 2 -m deco.cli train ... data.num_workers=2`
  for N steps, sampling every rank's and every loader worker's RSS, PSS and private (USS) memory from
  /proc/PID/smaps_rollup every few seconds: flat USS over the run means no copy-on-access growth.
Writes benchmarks/scale/scale-<cores>core-<date>.json with the machine and the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from synthetic import write_data, write_images  # noqa: E402
from tokenizer import train_tokenizer  # noqa: E402

from deco.bench.machine import describe_machine  # noqa: E402

STEP = re.compile(r"\b(\d+)/\d+\s+loss\b")  # "step 3/10 loss ..." (a log) or "train ━━ 3/10 loss ..." (a bar)


def overrides(work: Path, data: Path, out: Path, cache: Path, steps: int, extra: list[str]) -> list[str]:
    return [f"data.train_file={data}", f"data.image_folder={work}", f"llm.tokenizer={work / 'tokenizer'}",
            "data.template=vicuna_v1", "data.max_length=2048", f"data.cache_dir={cache}",
            f"train.output_dir={out}", f"train.max_steps={steps}", "train.save_every=100000",
            "train.global_batch_size=8", "train.per_device_batch_size=2", *extra]


def timed_lines(cmd: list[str], env: dict[str, str] | None = None, on_line=None,
                on_start=None) -> tuple[float, list[tuple[float, str]], int]:
    """Run cmd; (wall seconds, [(seconds since start, line)], rc), stdout and stderr merged."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if on_start is not None:
        on_start(proc)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - started, line.rstrip()))
        if on_line is not None:
            on_line(line)
    rc = proc.wait()
    return time.perf_counter() - started, lines, rc


def first_step_seconds(lines: list[tuple[float, str]]) -> float | None:
    return next((t for t, line in lines if STEP.search(line)), None)


def load_seconds(data: Path) -> dict:
    code = ("import resource, time\nfrom deco.data.records import load_records\nt = time.perf_counter()\n"
            f"n = len(load_records({str(data)!r}))\n"
            "print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"records": int(out[0]), "seconds": round(float(out[1]), 2), "peak_rss_gb": round(int(out[2]) / 2**20, 2)}


def data_check(work: Path, data: Path) -> dict:
    wall, lines, rc = timed_lines(["deco", "data", "check", str(data), "--images", str(work), "--workers", "2",
                                   "--report", str(work / "check.jsonl")])
    summary = next((line for _, line in lines if " records: " in line), lines[-1][1] if lines else "")
    return {"seconds": round(wall, 1), "rc": rc, "summary": summary}


def start(work: Path, data: Path, out: Path, cache: Path) -> dict:
    cmd = ["deco", "train", "configs/tiny.yaml",
           *overrides(work, data, out, cache, 1, ["data.num_workers=0", "train.log_every=1"])]
    wall, lines, rc = timed_lines(cmd)
    if rc:
        raise SystemExit("\n".join(line for _, line in lines[-20:]))
    index = next((t for t, line in lines if line.startswith("tokenized index")), None)
    return {"seconds_to_step_1": round(first_step_seconds(lines) or wall, 1), "wall": round(wall, 1),
            "seconds_to_index": round(index, 1) if index else None,
            "index_line": next((line for _, line in lines if line.startswith("tokenized index")), None),
            "command": " ".join(cmd)}


def smaps(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return {"rss_mb": kb.get("Rss", 0) // 1024, "pss_mb": kb.get("Pss", 0) // 1024,
            "uss_mb": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) // 1024}


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory_run(work: Path, data: Path, cache: Path, steps: int, every: float) -> dict:
    """2 ranks x 2 workers for `steps` steps; samples of every rank's and worker's memory, with the step."""
    out = work / "runs" / f"ddp-{data.stem}"
    cmd = ["torchrun", "--nproc_per_node", "2", "-m", "deco.cli", "train", "configs/tiny.yaml",
           *overrides(work, data, out, cache, steps, ["data.num_workers=2", "train.log_every=50"])]
    samples: list[dict] = []
    step = [0]
    done = threading.Event()
    holder: dict = {}

    def watch() -> None:
        while not done.wait(every):
            proc = holder.get("proc")
            if proc is None:
                continue
            row: dict = {"t": round(time.perf_counter() - holder["t0"], 1), "step": step[0], "ranks": [], "workers": []}
            for rank_pid in children(proc.pid):
                mem = smaps(rank_pid)
                if mem:
                    row["ranks"].append(mem)
                for worker_pid in children(rank_pid):
                    mem = smaps(worker_pid)
                    if mem:
                        row["workers"].append(mem)
            samples.append(row)

    def on_line(line: str) -> None:
        match = STEP.search(line)
        if match:
            step[0] = int(match.group(1))

    def on_start(proc: subprocess.Popen) -> None:
        holder["proc"], holder["t0"] = proc, time.perf_counter()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wall, lines, rc = timed_lines(cmd, env, on_line, on_start)
    done.set()
    if rc:
        raise SystemExit("\n".join(line for _, line in lines[-30:]))
    return summarize({"command": " ".join(cmd), "wall": round(wall, 1), "steps": steps, "samples": samples})


def summarize(memory: dict) -> dict:
    """First and last sample taken while the loader workers ran (training), and the extremes of each role.

    RSS counts every resident page a process maps, shared ones included: the cached index is mapped from
    disk by every rank and worker, so their RSS approaches its size as training touches it. PSS shares
    such pages out among the processes; USS (private) is what a process holds alone: copy-on-access
    growth would show there.
    """
    training = [row for row in memory["samples"] if row["workers"]]
    out = {k: v for k, v in memory.items() if k != "samples"}
    if training:
        out["first_training_sample"], out["last_training_sample"] = training[0], training[-1]
        for role in ("ranks", "workers"):
            for key in ("rss_mb", "pss_mb", "uss_mb"):
                out[f"max_{role[:-1]}_{key}"] = max(m[key] for row in training for m in row[role])
    out["samples"] = memory["samples"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/deco-scale"))
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 665_000])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the 2-rank memory run (0: skip it)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    write_images(args.work)
    train_tokenizer(args.work / "tokenizer")
    machine = describe_machine("cpu")
    result: dict = {"machine": machine, "date": date.today().isoformat(), "sizes": []}
    for n in args.records:
        data = args.work / f"synthetic-{n}.json"
        if not data.is_file():
            write_data(data, n)
        row: dict = {"records": n, "file_gb": round(data.stat().st_size / 1e9, 3)}
        row["load"] = load_seconds(data)
        print(n, "load", row["load"], flush=True)
        row["check"] = data_check(args.work, data)
        print(n, "check", row["check"], flush=True)
        cache = args.work / f"cache-{n}"
        subprocess.run(["rm", "-rf", str(cache), str(args.work / "runs")], check=True)
        row["first_start"] = start(args.work, data, args.work / "runs" / f"first-{n}", cache)
        print(n, "first start", row["first_start"], flush=True)
        row["second_start"] = start(args.work, data, args.work / "runs" / f"second-{n}", cache)
        print(n, "second start", row["second_start"], flush=True)
        row["index_mb"] = round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1)
        if args.steps and n == max(args.records):
            row["memory"] = memory_run(args.work, data, cache, args.steps, args.every)
            print(n, "memory", {k: v for k, v in row["memory"].items() if "sample" not in k}, flush=True)
        result["sizes"].append(row)
    cores = machine.get("logical_cores") or os.cpu_count()
    target = args.out or HERE / f"scale-{cores}core-{result['date']}.json"
    target.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("wrote", target)


if __name__ == "__main__":
    main()
