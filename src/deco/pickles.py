"""Unpickling only with the caller's consent: one guard around every weight load deco does.

A pickle file can run code when loaded. HF's loaders pick their weight file from the folder itself: a
`config.json` of the folder can swallow the `use_safetensors=True` deco passes (its own
`"use_safetensors": false` key takes the keyword argument) or name a pickle as `transformers_weights`.
So deco does not rely on the arguments it passes reaching the loader: while `pickle_policy(allow)` is
active, every `torch.load` goes through here. Without the caller's `--allow-pickle` (or `allow_pickle=True`)
it is refused; with it, one line names the file, and it is read weights-only (tensors and plain
containers, never code). A refused or failed unpickle is one ConfigError line.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from deco.errors import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_HINT = (
    "pickle files can run arbitrary code when loaded, so deco refuses them by default; for files you "
    "trust, pass --allow-pickle (or set model.allow_pickle=true), or convert them to safetensors"
)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _name(file: Any) -> str:
    return os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file)


def pickle_reason(text: str) -> str:
    """The one informative line of torch's long weights_only message (e.g. 'Unsupported global: ...')."""
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(". Please")[0]
    first = re.sub(r"\x1b\[[0-9;]*m", "", text.strip().splitlines()[0]) if text.strip() else ""
    return first or "unreadable pickle"


@contextlib.contextmanager
def pickle_policy(allow: bool, say: Callable[[str], Any] | None = None) -> Iterator[None]:
    """Within the block, `torch.load` unpickles only when `allow` (the caller's decision), weights-only,
    after saying which file (through `say`, else stderr). Nested blocks keep the outermost decision."""
    if getattr(torch.load, "_deco_guard", False):  # an outer block decided already
        yield
        return
    real, problems = torch.load, []  # problems: the ConfigError raised inside, should a loader rewrap it

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        name = _name(file)
        if not allow:
            problems.append(ConfigError(f"refused to unpickle '{name}': {PICKLE_HINT}"))
            raise problems[-1]
        (say or _stderr)(f"unpickling '{name}' (--allow-pickle: plain tensors only)")
        kwargs["weights_only"] = True
        try:
            return real(file, *args, **kwargs)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            problems.append(ConfigError(
                f"refused to unpickle weights from '{name}': {pickle_reason(str(exc))}; only plain tensors are "
                "unpickled, even with --allow-pickle (convert the weights to safetensors)"))
            raise problems[-1] from None

    guarded._deco_guard = True  # type: ignore[attr-defined]
    torch.load = guarded
    try:
        yield
    except Exception:
        if problems:  # HF or PEFT may have wrapped it in their own error: the deco line is the one to show
            raise problems[0] from None
        raise
    finally:
        torch.load = real
