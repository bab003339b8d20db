"""Runs the demo's jobs (one per projector and seed) in worker processes, a progress bar per job.

Small models use a CPU core badly when two threads share one op, so each job runs single-threaded
and by default each core runs its own job (two at once on two cores). Single-threaded jobs also give
the same numbers however many run at once. Jobs start longest first. A job's bar counts
its stage-1 and stage-2 optimizer steps (read from the trainer's metrics.jsonl) and its evaluation
batches, so the ETA covers the whole job.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console

from deco.demo.cache import Assets
from deco.demo.runner import eval_plan, run_job
from deco.demo.settings import DemoSettings
from deco.errors import DecoError
from deco.train.progress import progress_bars

# Relative cost per step measured on the demo's default sizes (CPU seconds, 1 thread): start the
# expensive jobs first so the last job to finish is a short one.
_COST = {"mlp": 1.8, "qformer": 1.45, "dabstractor": 1.4, "cabstractor": 1.25, "deco": 1.0}


def default_workers(jobs: int) -> int:
    """One job per CPU core this process may use, at most the number of jobs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, jobs))


def _line_count(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _job_done(root: Path, s1: int, s2: int) -> tuple[int, str]:
    """Units done and the phase label, from the files a worker writes."""
    phase, evaluated = "waiting", 0
    try:
        info = json.loads((root / "progress.json").read_text(encoding="utf-8"))
        phase, evaluated = info["phase"], int(info["done"])
    except (OSError, ValueError, KeyError):
        pass
    done1 = min(s1, _line_count(root / "stage1" / "metrics.jsonl")) if phase != "waiting" else 0
    done2 = min(s2, _line_count(root / "stage2" / "metrics.jsonl")) if phase in ("stage2", "eval", "done") else 0
    label = {"stage1": "stage 1", "stage2": "stage 2", "eval": "evaluating", "done": "done"}.get(phase, phase)
    return done1 + done2 + (evaluated if phase == "eval" else 0), label


def run_jobs(
    settings: DemoSettings,
    assets: Assets,
    seeds: list[int],
    runs_dir: Path,
    workers: int,
    keep_checkpoints: bool,
    console: Console,
) -> list[dict[str, Any]]:
    """Train and evaluate every (projector, seed); returns their results in projector, seed order."""
    order = sorted(((p, s) for p in settings.projectors for s in seeds), key=lambda j: -_COST.get(j[0], 1.5))
    s1, s2 = settings.train.stage1_steps, settings.train.stage2_steps
    eval_units = eval_plan(settings, assets)[2]
    total = s1 + s2 + eval_units
    jobs = {
        (p, s): {
            "projector": p, "seed": s, "run_root": str(runs_dir / f"seed{s}" / p), "threads": 1,
            "settings": settings.to_dict(), "keep_checkpoints": keep_checkpoints,
            "assets": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(assets).items()},
        }
        for p, s in order
    }
    results: dict[tuple[str, int], dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
    with progress_bars("{task.description:<22}", "{task.fields[phase]:<10}", console) as bars, ProcessPoolExecutor(workers, mp_context=context) as pool:
        tasks = {key: bars.add_task(f"{key[0]} (seed {key[1]})", total=total, phase="waiting", start=False)
                 for key in order}
        futures: dict[Future, tuple[str, int]] = {pool.submit(run_job, jobs[key]): key for key in order}
        started: set[tuple[str, int]] = set()
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for key in order:
                root = Path(jobs[key]["run_root"])
                done, phase = _job_done(root, s1, s2)
                if phase != "waiting" and key not in started:
                    bars.start_task(tasks[key])
                    started.add(key)
                bars.update(tasks[key], completed=done, phase=phase)
            for future in finished:
                key = futures[future]
                try:
                    results[key] = future.result()
                except Exception as exc:
                    log = Path(jobs[key]["run_root"]) / "log.txt"
                    raise DecoError(f"demo job {key[0]} (seed {key[1]}) failed: {exc}; see {log}") from exc
                bars.update(tasks[key], completed=total, phase="done")
                bars.stop_task(tasks[key])
    return [results[(p, s)] for p in settings.projectors for s in seeds]

