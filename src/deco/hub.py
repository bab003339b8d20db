"""Hugging Face Hub access that fails at once, in one line, when there is no network.

Without a network, every Hub lookup by transformers retries for tens of seconds before saying that it
could not connect, in a paragraph. Here the Hub is probed once per process (a TCP connection to its
host, a few seconds at most; `HF_HUB_OFFLINE=1` skips the probe), and when it cannot be reached every
load by Hub id asks for local files only, which resolves from the cache at once or fails at once; the
failure is then one line saying what to do.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_PROBE_SECONDS = 3.0


def _offline_by_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hub's host accepts a connection (probed once; False under HF_HUB_OFFLINE)."""
    if _offline_by_env():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:  # in a thread: name resolution itself can hang without a network
        try:
            socket.create_connection((host, port), timeout=_PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_SECONDS + 0.5)
    return bool(result and result[0])


def is_local(name: str | Path) -> bool:
    """A folder or file on this machine (not a Hub id)."""
    return Path(name).expanduser().exists()


def hub_kwargs(name: str | Path) -> dict[str, Any]:
    """Extra from_pretrained arguments for `name`: local files only when it is a Hub id and the Hub cannot
    be reached (so a cached copy loads at once and a missing one fails at once)."""
    if is_local(name) or hub_reachable():
        return {}
    return {"local_files_only": True}


def load_failure(what: str, name: str | Path, exc: BaseException) -> str:
    """The one line for a failed load of `what` from `name`."""
    if not is_local(name) and not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if _offline_by_env() else "the Hugging Face Hub cannot be reached"
        return (f"cannot load {what} from '{name}': it is not in the local Hugging Face cache and {why}; "
                f"download it where there is a network (`hf download {name}`) and copy the cache, or name a "
                "local folder")
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"cannot load {what} from '{name}': {first}"
