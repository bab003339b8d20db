"""What a person sees during training: a rich progress bar (loss, lr, ETA), or plain lines when quiet."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bars(label: str, fields: str, console: Console) -> Progress:
    """deco's rich bars: label, bar, n/total, per-task `fields` text, elapsed, ETA (training and the demo).
    Off when the console is not a terminal: a bar in a log file is drawn once, at its end."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(fields), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not console.is_terminal)


class Reporter:
    """Prints on the main process only. `quiet`, or output that is not a terminal (a log file, a pipe, a
    launcher collecting ranks' output): no bar, one plain line per logged step. A bar in a log is only
    redrawn at its end, so a log showed nothing for the whole run."""

    def __init__(self, enabled: bool, quiet: bool) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.enabled, self.quiet = enabled, quiet or not self.console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None

    def info(self, message: str) -> None:
        """A setup or summary line."""
        if not self.enabled:
            return
        if self.quiet:
            print(message, file=sys.stderr, flush=True)
        else:
            self.console.print(message, markup=False, soft_wrap=True)  # whole lines in logs, never wrapped

    def start(self, total: int, done: int) -> None:
        """Open the bar at `done` of `total` optimizer steps (a resumed run starts part-way)."""
        if not self.enabled or self.quiet:
            return
        self._progress = progress_bars("[bold]train", "loss {task.fields[loss]}  lr {task.fields[lr]}", self.console)
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=done, loss="-", lr="-")

    def step(self, record: dict[str, Any], total: int) -> None:
        """Advance to a logged step's record."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.update(
                self._task, completed=record["step"], loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}"
            )
        elif self.quiet:
            norm = record.get("grad_norm")
            print(
                f"step {record['step']}/{total} loss {record['loss']:.4f} lr {record['lr']:.3e} "
                f"grad_norm {norm if norm is None else f'{norm:.3f}'} "
                f"{record['samples_per_s']:.1f} samples/s {record['tokens_per_s']:.0f} tokens/s",
                file=sys.stderr, flush=True,
            )

    def close(self) -> None:
        """Stop the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
