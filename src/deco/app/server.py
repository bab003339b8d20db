"""Building and serving the app: which models, which address, what limits."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from deco.app.inputs import MAX_UPLOAD_MB
from deco.app.sources import DEFAULT_DEMO_DIR, demo_models, explicit_models

LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger(__name__)


def build_app(models: list[str] | None = None, demo_dir: str | Path = DEFAULT_DEMO_DIR,
              max_upload_mb: float = MAX_UPLOAD_MB, reduce: str | None = None, run: Any = None) -> Any:
    """The Gradio Blocks for --model paths (at most two), else for the models `deco demo` left in demo_dir;
    `reduce` (NAME:TOKENS) puts a training-free token reducer in every model; `run`: the server's training
    run, a deco.app.training.DemoRun (tests pass one with a fake runner)."""
    # Gradio reports usage and checks for new versions over the network unless told not to.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from deco.app.handlers import Controller
    from deco.app.page import build_page

    demo_dir = Path(demo_dir)
    choices = explicit_models(models) if models else demo_models(demo_dir)
    return build_page(Controller(choices, demo_dir, bool(models), max_upload_mb, run, reduce))


def serve(page: Any, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = MAX_UPLOAD_MB,
          block: bool = True) -> Any:
    """Queue the page's events and start its server; `block=False` returns once it is listening."""
    if host not in LOOPBACK:
        log.warning("serving on %s: anyone who can reach this machine can use the page and its models", host)
    from deco.app.page import CSS, upload_guard

    page.queue(default_concurrency_limit=1, max_size=64)
    # One limit everywhere: the page's label, the browser-side guard (which shows the server's message in the
    # status line before anything is sent) and Gradio's refusal of larger files all use max_upload_mb, in
    # decimal megabytes as inputs.check_upload counts them.
    return page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                       max_file_size=int(max_upload_mb * 1e6), show_error=True, css=CSS,
                       js=upload_guard(max_upload_mb))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
