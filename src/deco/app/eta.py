"""How long a demo run has left, from its real step counts and the speed measured while it runs.

The demo reports (stage, done, total, phase) for the asset pretrainings ("encoder", "lm") and for each
job (its stage-1 and stage-2 optimizer steps, then its evaluation batches). A phase's speed is measured
from its own steps (the first step seen starts the clock, so start-up time does not dilute it); a phase
not reached yet takes its speed from the previous run on this machine (the demo folder's results.json),
and without one it is left out and the estimate says so ("at least").
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

ASSET_STAGES = ("encoder", "lm")  # built side by side (deco.demo.images.assets), so the slower one counts
JOB_PHASES = ("stage 1", "stage 2", "evaluating")
TIMINGS = "app-timings.json"  # what `deco app` measured of the last run in a demo folder (training.py writes it)


@dataclass
class _Phase:
    """First and latest (time, units) seen in one phase of one stage."""

    t0: float
    n0: int
    t: float
    n: int

    def seconds_per_unit(self) -> float | None:
        return (self.t - self.t0) / (self.n - self.n0) if self.n > self.n0 and self.t > self.t0 else None


@dataclass
class History:
    """The previous run on this machine: seconds of each job phase (the slowest job's), of a whole job, of
    the report after the jobs, and of the run."""

    phase_s: dict[str, float] = field(default_factory=dict)
    job_s: float | None = None
    report_s: float | None = None
    total_s: float | None = None
    assets_built: list[str] | None = None


def read_history(demo_dir: str | Path) -> History:
    """The previous run's times from `<demo_dir>/results.json` (an empty History when there is none)."""
    try:
        payload = json.loads((Path(demo_dir) / "results.json").read_text(encoding="utf-8"))
        runs, wall = payload["runs"], payload["wall_seconds"]
        history = History(total_s=float(wall["total"]), assets_built=list(payload["assets"]["built"]))
        history.phase_s = {"stage 1": max(r["times"]["stage1"]["seconds"] for r in runs),
                           "stage 2": max(r["times"]["stage2"]["seconds"] for r in runs),
                           "evaluating": max(r["eval_seconds"] for r in runs)}
        history.job_s = max(r["job_seconds"] for r in runs)
        history.report_s = max(0.0, history.total_s - float(wall["assets"]) - history.job_s)
    except (OSError, ValueError, KeyError, TypeError):
        return History()
    # The report's time as the app measured it: the estimate above also holds the workers' start-up.
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        history.report_s = float(json.loads((Path(demo_dir) / TIMINGS).read_text(encoding="utf-8"))["report_s"])
    return history


@dataclass
class Estimate:
    """Seconds left (None before anything is measured), whether every remaining part was measured, and
    the fraction of the run's time already spent (for the bar)."""

    seconds: float | None
    complete: bool
    fraction: float | None


class StepClock:
    """Collects a run's step reports and estimates the time left."""

    def __init__(self, stage1_steps: int, stage2_steps: int, history: History | None = None) -> None:
        self.s1, self.s2 = stage1_steps, stage2_steps
        self.history = history or History()
        self.phases: dict[tuple[str, str], _Phase] = {}
        self.latest: dict[str, tuple[int, int, str]] = {}  # stage -> (done, total, phase)
        self.report_started: float | None = None

    def record(self, stage: str, done: int, total: int, phase: str, now: float) -> None:
        """One report from the demo (deco.demo.pipeline.Observer), timestamped by the caller."""
        if stage == "report":
            self.report_started = self.report_started or now
            return
        self.latest[stage] = (done, total, phase)
        units = self._units_in_phase(stage, done, phase)
        key = (stage, phase)
        seen = self.phases.get(key)
        if seen is None:
            self.phases[key] = _Phase(now, units, now, units)
        elif units > seen.n:
            seen.t, seen.n = now, units

    def _units_in_phase(self, stage: str, done: int, phase: str) -> int:
        if stage in ASSET_STAGES:
            return done
        return done - {"stage 1": 0, "stage 2": self.s1, "evaluating": self.s1 + self.s2}.get(phase, 0)

    def _speed(self, stage: str, phase: str) -> float | None:
        seen = self.phases.get((stage, phase))
        measured = seen.seconds_per_unit() if seen else None
        if measured is not None:
            return measured
        # Jobs run side by side with the same steps: another job's speed in this phase is the next best thing.
        others = [p.seconds_per_unit() for (s, ph), p in self.phases.items()
                  if ph == phase and s != stage and s not in ASSET_STAGES]
        return max((o for o in others if o is not None), default=None)

    def _job_left(self, stage: str, done: int, total: int, phase: str) -> tuple[float, bool]:
        if phase == "done" or done >= total:
            return 0.0, True
        sizes = {"stage 1": self.s1, "stage 2": self.s2, "evaluating": total - self.s1 - self.s2}
        starts = {"stage 1": 0, "stage 2": self.s1, "evaluating": self.s1 + self.s2}
        current = phase if phase in sizes else "stage 1"
        seconds, complete = 0.0, True
        for name in JOB_PHASES[JOB_PHASES.index(current):]:
            left = sizes[name] - max(0, done - starts[name]) if name == current else sizes[name]
            left = max(0, left)
            speed = self._speed(stage, name)
            if speed is not None:
                seconds += left * speed
            elif name in self.history.phase_s and sizes[name] > 0:
                seconds += self.history.phase_s[name] * left / sizes[name]
            else:
                complete = False
        return seconds, complete

    def _assets_left(self) -> tuple[float, bool, bool]:
        lefts, complete, measured = [], True, False
        for stage in ASSET_STAGES:
            if stage in self.latest:
                done, total, _ = self.latest[stage]
                speed = self._speed(stage, "")
                if speed is not None:
                    lefts.append((total - done) * speed)
                    measured = True
                elif done < total:
                    complete = False
        return max(lefts, default=0.0), complete, measured

    def estimate(self, now: float, started: float) -> Estimate:
        """Seconds left from the latest reports; parts measured neither now nor last time are left out."""
        h = self.history
        if self.report_started is not None:
            if h.report_s is None:
                return Estimate(None, False, None)
            seconds, complete = max(0.0, h.report_s - (now - self.report_started)), True
        else:
            jobs = {s: v for s, v in self.latest.items() if s not in ASSET_STAGES}
            if jobs:
                lefts = [self._job_left(s, *v) for s, v in jobs.items()]
                seconds = max(left for left, _ in lefts)
                complete = all(c for _, c in lefts)
                measured = any(p.seconds_per_unit() for p in self.phases.values()) or bool(h.phase_s)
            else:  # still building the assets: the jobs are known only from last time
                seconds, complete, measured = self._assets_left()
                if h.job_s is not None:
                    seconds += h.job_s
                    measured = True
                else:
                    complete = False
            if not measured:
                return Estimate(None, False, None)
            if h.report_s is not None:
                seconds += h.report_s
            else:
                complete = False
        elapsed = now - started
        return Estimate(seconds, complete, elapsed / (elapsed + seconds) if elapsed + seconds > 0 else None)


def clock_text(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def describe(stage_latest: dict[str, tuple[int, int, str]]) -> list[str]:
    """One line per stage: 'encoder pretraining: 120 / 300 steps', 'deco (seed 0), stage 2: 140 / 400 steps'."""
    names = {"encoder": "encoder pretraining", "lm": "LM pretraining (text)"}
    return [f"{names.get(stage, stage)}{', ' + phase if phase else ''}: {done} / {total}"
            for stage, (done, total, phase) in stage_latest.items()]
