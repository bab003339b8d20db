"""Quiet third-party progress bars that are noise in deco's output; deco's own bars stay.

transformers draws a "Loading weights" bar for every model part it loads and a "Writing model shards"
bar for every part it saves, even a 40-tensor tiny one, which interleaves with eval/analyze/chat/demo
output. Download bars (huggingface_hub) are kept: a multi-GB download should show progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

QUIET_BARS = ("Loading weights", "Writing model shards")


def _hook(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if kwargs.get("desc") in QUIET_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def quiet_weight_loading() -> bool:
    """Install a transformers tqdm hook that disables its weight-loading bars; False if this version has none."""
    from transformers.utils import logging as hf_logging

    setter = getattr(hf_logging, "set_tqdm_hook", None)
    if setter is None:
        return False
    setter(_hook)
    return True
