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
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console

from deco.demo.core.cache import Assets
from deco.demo.core.kind import SceneKind
from deco.demo.core.runner import eval_plan, run_job
from deco.demo.core.settings import DemoSettings
from deco.errors import DecoError, StoppedBySignal
from deco.train.report.progress import progress_bars

# Relative cost per step measured on the demo's default sizes (CPU seconds, 1 thread): start the
# expensive jobs first so the last job to finish is a short one.
_COST = {"mlp": 1.8, "qformer": 1.45, "dabstractor": 1.4, "cabstractor": 1.25, "deco": 1.0,
         "qformer_video": 1.75, "deco_spatial": 1.0, "deco_temporal": 1.0, "deco3d": 1.0, "pllava": 1.0}


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


def _log_stage(console: Console, label: str, before: str, now: str, began: float) -> None:
    """One log line: the stage a job finished (or that it started), with the seconds since the jobs began."""
    what = "done" if now == "done" else (f"{before} done, {now}" if before != "waiting" else f"started: {now}")
    console.print(f"  {label}: {what} ({time.perf_counter() - began:.0f} s)", highlight=False, markup=False)


def demo_jobs(settings: DemoSettings, seeds: list[int], runs_dir: Path) -> list[dict[str, Any]]:
    """The comparison's jobs: every projector at every seed, scored on the test split."""
    return [{"projector": p, "seed": s, "label": f"{p} (seed {s})", "run_root": str(runs_dir / f"seed{s}" / p)}
            for p in settings.projectors for s in seeds]


def sweep_jobs(settings: DemoSettings, seed: int, runs_dir: Path) -> list[dict[str, Any]]:
    """The sweep's jobs: every projector at every learning rate and warmup ratio (equal steps), scored on the
    validation split."""
    return [{"projector": p, "seed": seed, "lr": lr, "warmup": w, "split": "val", "label": f"{p} (lr {lr:g}, wu {w:g})",
             "run_root": str(runs_dir / "sweep" / p / f"lr{lr:g}-warmup{w:g}")}
            for p in settings.projectors for lr in settings.sweep.lrs for w in settings.sweep.warmups]


class DemoStopped(StoppedBySignal):
    """`deco demo` stopped on a signal (Ctrl-C, or a job's SIGTERM): not an error, and nothing to resume."""

    def __init__(self, signum: int, finished: int, total: int) -> None:
        self.status = 128 + signum
        super().__init__(f"deco demo stopped by {signal.Signals(signum).name} after {finished} of {total} jobs; it has "
                         "no --resume: run the same command again to start its jobs over (the cached assets are kept)")


def _end_jobs(pool: ProcessPoolExecutor, stop_file: Path) -> None:
    """Queued jobs never start and running ones end now: the demo stops with its parent's error or signal instead
    of finishing the queue first (a ProcessPoolExecutor leaving its `with` waits for every submitted job)."""
    stop_file.touch()  # a job handed to a worker already (not cancellable any more) sees it and does not start
    # No public way to end a running job before Python 3.14's terminate_workers(); the worker list is taken
    # before shutdown(), which forgets it. SIGKILL, not SIGTERM: a job in training turns SIGTERM into a clean
    # stop and its worker would then take the next queued job; a demo job is started over anyway.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(10)


def run_jobs(
    settings: DemoSettings,
    kind: SceneKind,
    assets: Assets,
    specs: list[dict[str, Any]],
    workers: int,
    keep_checkpoints: bool,
    console: Console,
    observe: Callable[[str, int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every job (`demo_jobs` or `sweep_jobs`) of the settings' `kind`; returns their results in the specs' order. `observe` hears
    each job's (label, units done, units in all, phase) at every poll, as its bar shows them."""
    order = sorted(range(len(specs)), key=lambda i: -_COST.get(specs[i]["projector"], 1.5))
    s1, s2 = settings.train.stage1_steps, settings.train.stage2_steps
    assets_dict = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(assets).items()}
    # The kind pickles by reference: a worker imports the kind's modules, the core does not.
    stop_dir = tempfile.TemporaryDirectory(prefix="deco-demo-")
    stop_file = Path(stop_dir.name) / "stop"
    jobs = [{**spec, "threads": 1, "settings": settings.to_dict(), "kind": kind, "keep_checkpoints": keep_checkpoints,
             "assets": assets_dict, "stop_file": str(stop_file)} for spec in specs]
    totals = [s1 + s2 + eval_plan(settings, assets, spec.get("split", "test"))[2] for spec in specs]
    results: dict[int, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
    with stop_dir, progress_bars("{task.description:<22}", "{task.fields[phase]:<10}", console) as bars, \
            ProcessPoolExecutor(workers, mp_context=context) as pool:
        tasks = {i: bars.add_task(specs[i]["label"], total=totals[i], phase="waiting", start=False) for i in order}
        futures: dict[Future, int] = {pool.submit(run_job, jobs[i]): i for i in order}
        started: set[int] = set()
        # Without a terminal (a log file, CI) the bars are off: one line per job and finished stage instead.
        plain, phases, began = not console.is_terminal, dict.fromkeys(order, "waiting"), time.perf_counter()
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for i in order:
                    done, phase = _job_done(Path(jobs[i]["run_root"]), s1, s2)
                    if phase != "waiting" and i not in started:
                        bars.start_task(tasks[i])
                        started.add(i)
                    bars.update(tasks[i], completed=done, phase=phase)
                    if plain and phase != phases[i] and i not in results:
                        _log_stage(console, specs[i]["label"], phases[i], phase, began)
                        phases[i] = phase
                    if observe is not None and i not in results:
                        observe(specs[i]["label"], done, totals[i], phase)
                for future in finished:
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except StoppedBySignal as exc:  # a job's training stopped on a signal (SIGTERM to the whole group)
                        raise DemoStopped(exc.status - 128, len(results), len(specs)) from None
                    except Exception as exc:
                        log = Path(jobs[i]["run_root"]) / "log.txt"
                        raise DecoError(f"demo job {specs[i]['label']} failed: {exc}; see {log}") from exc
                    bars.update(tasks[i], completed=totals[i], phase="done")
                    if plain and phases[i] != "done":  # the poll above may have seen the job's own "done" already
                        _log_stage(console, specs[i]["label"], phases[i], "done", began)
                        phases[i] = "done"
                    if observe is not None:
                        observe(specs[i]["label"], totals[i], totals[i], "done")
                    bars.stop_task(tasks[i])
        except BaseException as exc:  # a failed job, Ctrl-C, or a job stopped by a signal: end the others too
            _end_jobs(pool, stop_file)
            if isinstance(exc, KeyboardInterrupt):
                raise DemoStopped(signal.SIGINT, len(results), len(specs)) from None
            raise
    return [results[i] for i in range(len(specs))]
