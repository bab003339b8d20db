"""The server's one demo training run (the quick DeCo and Q-Former pair), through the demo's own entry point.

The run belongs to the server, not to the tab that pressed Train: it lives on a server thread, holds the
one-run lock until the demo really ends (closing the tab does not release it), and every tab reads the same
progress. `deco.demo.pipeline.run_demo` does the work exactly as `deco demo --quick` would and reports
its real step counts; `deco.app.eta` turns them into the time left.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deco.app.eta import TIMINGS, Estimate, StepClock, read_history
from deco.errors import DecoError

Observer = Callable[[str, int, int, str], None]
# (demo folder, console, observer): runs the demo and returns when it ends; tests pass a fake one.
Runner = Callable[[Path, Any, Observer], Any]


def run_quick_demo(out: Path, console: Any, observe: Observer) -> Any:
    """`deco demo --quick --out <out>`, reporting its steps to `observe`."""
    from deco.demo.pipeline import DemoOptions, run_demo

    return run_demo(DemoOptions(quick=True, out=out), console=console, observe=observe)


def quick_steps() -> tuple[int, int]:
    """(stage-1, stage-2) optimizer steps of `deco demo --quick`."""
    from deco.demo.pipeline import DemoOptions, resolve_settings

    train = resolve_settings(DemoOptions(quick=True)).train
    return train.stage1_steps, train.stage2_steps


class _Lines(io.TextIOBase):
    """A text sink for rich's Console that remembers the last non-empty line."""

    def __init__(self) -> None:
        self.last = "starting"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            self.last = lines[-1][:200]
        return len(text)


@dataclass
class RunView:
    """What every tab shows of the run: state, the latest step counts, the time left, the last console line."""

    state: str  # "idle", "running", "done", "failed"
    elapsed_s: float = 0.0
    stage: str = ""
    steps: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    estimate: Estimate | None = None
    line: str = ""
    error: str | None = None
    seconds: float | None = None  # of the finished run


class DemoRun:
    """At most one demo run per server; `start` from any tab, `view` from every tab."""

    def __init__(self, out: str | Path, runner: Runner = run_quick_demo,
                 steps: Callable[[], tuple[int, int]] = quick_steps,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = Path(out)
        self._runner, self._steps, self._now = runner, steps, clock
        self._lock = threading.Lock()  # guards the fields below; the run itself holds `_busy`
        self._busy = False
        self._thread: threading.Thread | None = None
        self._view = RunView("idle")
        self._started = 0.0
        self._stage = StepClock(0, 0)
        self._sink = _Lines()
        self.finished = 0  # runs ended (done or failed): tabs compare it to know when to look for new models

    @property
    def running(self) -> bool:
        """Whether a run is in progress (in any tab)."""
        with self._lock:
            return self._busy

    def start(self) -> bool:
        """Start a run; False (and nothing started) while one is in progress."""
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            self._started = self._now()
            self._sink = _Lines()
            self._view = RunView("running", stage="starting")
            self._thread = threading.Thread(target=self._work, name="deco-app-demo-run", daemon=True)
            self._thread.start()
        return True

    def _observe(self, stage: str, done: int, total: int, phase: str) -> None:
        with self._lock:
            self._stage.record(stage, done, total, phase, self._now())

    def _work(self) -> None:
        from rich.console import Console

        error: str | None = None
        try:
            history = read_history(self.out)  # before the run replaces results.json
            with self._lock:
                self._stage = StepClock(*self._steps(), history)
            self._runner(self.out, Console(file=self._sink, width=150), self._observe)
            self._write_timings()
        except BaseException as exc:  # shown on the page; the server keeps serving
            error = str(exc) if isinstance(exc, DecoError) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            seconds = self._now() - self._started
            self._view = RunView("failed" if error else "done", seconds, line=self._sink.last,
                                 error=f"the demo run failed: {error}" if error else None, seconds=seconds)
            self.finished += 1
            self._busy = False

    def _write_timings(self) -> None:
        """The report phase's seconds, measured here, for the next run's estimate (deco.app.eta.read_history)."""
        import json

        with self._lock:
            report = self._stage.report_started
            timings = {"total_s": round(self._now() - self._started, 1),
                       "report_s": None if report is None else round(self._now() - report, 1)}
        if timings["report_s"] is not None and self.out.is_dir():
            (self.out / TIMINGS).write_text(json.dumps(timings), encoding="utf-8")

    def view(self) -> RunView:
        """The run as every tab sees it now."""
        with self._lock:
            if not self._busy:
                return self._view
            now = self._now()
            clock = self._stage
            if clock.report_started is not None:
                stage = "writing the report (relevance metrics, plots)"
            elif any(s not in ("encoder", "lm") for s in clock.latest):
                stage = "training and evaluating the two models"
            else:
                stage = "building the demo's assets (dataset, encoder, LM)"
            return RunView("running", now - self._started, stage, dict(clock.latest),
                           clock.estimate(now, self._started), self._sink.last)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (tests); True if none is running afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running
