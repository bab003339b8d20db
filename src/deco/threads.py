"""One rule for how many CPU threads torch uses, shared by every command.

Order: a command's `--threads N`, else `DECO_THREADS`, else `OMP_NUM_THREADS`, else the default.
The default is 1 thread: on the busy 2-core VM this project is measured on, training the tiny config
ran 6-24x faster with one thread than with torch's default of one per core (identical losses), because
OpenMP threads spin waiting for each other on the small ops these models run (benchmarks/threads/;
an idle machine was not available to measure). A large model on an idle many-core machine likely gains
from more threads: set `DECO_THREADS` (or `--threads` where a command has it) there.
"""

from __future__ import annotations

import os
import sys

from deco.errors import ConfigError

DEFAULT_THREADS = 1
ENV_VARS = ("DECO_THREADS", "OMP_NUM_THREADS")


def _positive(text: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{source} must be a whole number of threads >= 1, got {text!r}")
    return value


def thread_count(requested: int | None = None) -> tuple[int, str]:
    """The thread count the rule gives, and where it came from (`--threads`, an env var, or `default`)."""
    if requested is not None:
        return _positive(str(requested), "--threads"), "--threads"
    for name in ENV_VARS:
        text = os.environ.get(name, "").strip()
        if text:
            return _positive(text, name), name
    return DEFAULT_THREADS, "default"


def export_thread_env() -> int:
    """Set OMP_NUM_THREADS to the rule's count before torch is imported, so torch and worker processes follow it."""
    count, _ = thread_count()
    os.environ["OMP_NUM_THREADS"] = str(count)
    if "torch" in sys.modules:  # imported already (e.g. main() called in-process): the variable is read too late
        sys.modules["torch"].set_num_threads(count)
    return count

