"""FLOPs of a callable, split into vision tower / projector / LLM with torch.utils.flop_counter."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

COMPONENTS = ("vision_tower", "projector", "llm")
# Module paths of one transformer layer inside a component (HF CLIP/SigLIP encoder, Llama/Qwen2 decoder).
_LAYER_PATTERNS = {
    "vision_tower": re.compile(r"\.vision_tower\.model\.(?:vision_model\.)?encoder\.layers\.(\d+)$"),
    "llm": re.compile(r"\.llm\.model\.layers\.(\d+)$"),
}


def split_counts(counts: dict[str, dict[Any, int]]) -> dict[str, Any]:
    """FlopCounterMode.get_flop_counts() -> {component: flops, total, per_layer: {component: mean}}.

    Module keys look like 'DecoModel.llm.model.layers.0'; the first part is the top module's class.
    Backward FLOPs are attributed to the module whose forward produced them, so a training step
    splits the same way as a forward. Operators without a FLOP formula (elementwise ops, the
    optimizer update) count as zero, as in every matmul-based FLOP count.
    """
    out: dict[str, Any] = {"total": sum(counts.get("Global", {}).values())}
    for component in COMPONENTS:
        out[component] = sum(
            sum(ops.values()) for key, ops in counts.items() if key.split(".", 1)[-1] == component
        )
    per_layer: dict[str, float | None] = {}
    for component, pattern in _LAYER_PATTERNS.items():
        layers = [sum(ops.values()) for key, ops in counts.items() if pattern.search(key)]
        per_layer[component] = sum(layers) / len(layers) if layers else None
    out["per_layer"] = per_layer
    return out


class FlopRecorder:
    """Counts FLOPs of named phases: `with rec.phase('train_stage1'): ...`; results in `rec.flops`."""

    def __init__(self) -> None:
        self.flops: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count FLOPs of everything run inside the block under `name`."""
        with FlopCounterMode(display=False) as counter:
            yield
        self.flops[name] = split_counts(counter.get_flop_counts())


def count_flops(fn: Callable[[], Any]) -> dict[str, Any]:
    """FLOPs of one call of `fn`, split by component."""
    rec = FlopRecorder()
    with rec.phase("call"):
        fn()
    return rec.flops["call"]
