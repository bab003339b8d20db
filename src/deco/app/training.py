"""Training the quick demo pair (DeCo and Q-Former) from the page, through the demo's own entry point.

`deco.demo.core.pipeline.run_demo` does the work exactly as `deco demo --quick` would; this only runs it on a
worker thread and turns its console lines and the elapsed time into a progress report for the page.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deco.errors import DecoError

# `deco demo --quick` measured 129 s on an idle 2-core VM (README); the bar runs against this estimate
# and stops short of full until the run really ends.
QUICK_SECONDS = 150.0
_training = threading.Lock()  # one demo run per server: two would overwrite each other's folder


@dataclass
class TrainingStatus:
    """A progress report: fraction done (estimated), the latest line the demo printed, and whether it ended."""

    fraction: float
    message: str
    done: bool = False
    error: str | None = None


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


def job_phases(out: Path) -> str:
    """'deco: stage2, qformer: eval' from the progress files the demo's workers write (empty if none yet)."""
    import json

    phases = []
    for file in sorted(Path(out).glob("runs/seed*/*/progress.json")):
        try:
            phases.append(f"{file.parent.name}: {json.loads(file.read_text(encoding='utf-8'))['phase']}")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a worker is replacing the file right now; the next poll reads it
    return ", ".join(phases)


def train_quick_pair(out: str | Path, poll_s: float = 0.5) -> Iterator[TrainingStatus]:
    """Run `deco demo --quick` into `out`, yielding progress reports until it ends."""
    from rich.console import Console

    from deco.demo.core.pipeline import DemoOptions, run_demo

    if not _training.acquire(blocking=False):
        yield TrainingStatus(0.0, "", True, "a demo run started from this page is still training; wait for it")
        return
    try:
        sink = _Lines()
        outcome: dict[str, BaseException | None] = {"error": None}

        def work() -> None:
            try:
                run_demo(DemoOptions(quick=True, out=Path(out)), console=Console(file=sink, width=150))
            except BaseException as exc:  # shown on the page; the server keeps serving
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="deco-app-demo", daemon=True)
        start = time.perf_counter()
        worker.start()
        while worker.is_alive():
            worker.join(poll_s)
            elapsed = time.perf_counter() - start
            phases = job_phases(Path(out))
            yield TrainingStatus(min(elapsed / QUICK_SECONDS, 0.97), f"{elapsed:.0f} s: {phases or sink.last}")
        error = outcome["error"]
        if error is not None:
            detail = str(error) if isinstance(error, DecoError) else f"{type(error).__name__}: {error}"
            yield TrainingStatus(1.0, sink.last, True, f"the demo run failed: {detail}")
        else:
            yield TrainingStatus(1.0, f"trained in {time.perf_counter() - start:.0f} s", True)
    finally:
        _training.release()
