"""Stopping a run cleanly on SIGTERM or SIGINT: what SLURM, Kubernetes and spot instances send before
they kill a job, and what Ctrl-C sends.

The first signal only sets a flag: the loop finishes the optimizer step it is in, writes a checkpoint
(atomically, like every checkpoint), and raises TrainingStopped; the run lock is released on the way
out and `deco` (deco.cli) exits with the signal's status (128 + its number). `--resume` then continues
bit for bit, so nothing is lost beyond the step that was running. A second signal stops at once
(SystemExit): a checkpoint being written is dropped whole (deco.train.rundir.checkpoint.atomic_directory), so
the last one on disk stays usable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deco.errors import StoppedBySignal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class StopRequest:
    """Set by the signal handler; read by the loop after each optimizer step."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None


class TrainingStopped(StoppedBySignal):
    """The run stopped on a signal after writing a checkpoint; `status` is the exit status to use."""

    def __init__(self, signum: int, step: int, total: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.total, self.checkpoint = signum, step, total, checkpoint
        self.status = 128 + signum
        where = f"checkpoint written to {checkpoint}" if checkpoint else "checkpoint written"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step} of {total}: {where}, run lock released; "
            "continue with the same command and --resume"
        )

    def __reduce__(self) -> tuple[type, tuple[int, int, int, Path | None]]:
        # Rebuilt from its fields, not from the message: a run in a worker process (deco demo's jobs) hands it
        # to its parent by pickle, and the default (cls(message)) cannot call this __init__.
        return type(self), (self.signum, self.step, self.total, self.checkpoint)


def _write_line(text: str) -> None:
    # os.write, not print: safe inside a signal handler, even while the progress bar is drawing.
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode("utf-8", "replace"))


@contextlib.contextmanager
def stop_on_signals(announce: bool = True) -> Iterator[StopRequest]:
    """Within the block, SIGTERM / SIGINT request a clean stop (the first) or stop at once (the second).

    Outside the main thread signals cannot be handled: the request then never fires. `announce`: say
    (on the main process) that the signal was received.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if request.requested:
            if announce:
                _write_line(f"second {name}: stopping now; the step in progress is lost, the last checkpoint "
                            "on disk is intact")
            raise SystemExit(128 + signum)
        request.signum = signum
        if announce:
            _write_line(f"{name} received: finishing the current step, then writing a checkpoint "
                        f"(send {name} again to stop at once)")

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_stop_signals() -> None:
    """For loader workers: a signal sent to the whole process group (Ctrl-C, `scancel`, `kill -- -PGID`) must
    not kill them mid-step; the training process decides, and they end with it.

    SIGINT is ignored. SIGTERM is ignored unless the training process itself sends it: that is how
    multiprocessing ends its children when the training process exits (Process.terminate), and a worker
    deaf to it would make that exit wait forever. The sender is known only to sigwaitinfo, so SIGTERM is
    blocked and a thread waits for it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the training process's handler, inherited by fork
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait_for_parent() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
            pass
        # Unblocked in this thread only, the signal's default action ends the process, as it would have.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_parent, name="deco-sigterm-from-parent", daemon=True).start()
