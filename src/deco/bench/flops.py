"""FLOPs of a callable, split into vision tower / projector / LLM with torch.utils.flop_counter."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from deco.train.step.wrapper import PREFIX, TrainingModel

COMPONENTS = ("vision_tower", "projector", "llm")
# One transformer layer of the vision stack (HF CLIP/SigLIP encoder) or of the LLM (Llama/Qwen2 decoder).
_LAYER_PATTERNS = {
    "vision_tower": re.compile(r"\.encoder\.layers\.(\d+)$"),
    "llm": re.compile(r"(?:^|\.)model\.layers\.(\d+)$"),
}


def _cpu_flash(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward(grad_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                        **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# torch's FLOP table covers the CUDA attention kernels but not the CPU flash kernel that sdpa picks
# on CPU, so without these the LLM's attention would count as zero there. Same formulas as torch's
# (full S x S score matrix, causal masking not discounted).
_CUSTOM = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def component_roots(model: Any) -> dict[str, tuple[str, ...]]:
    """Names FlopCounterMode gives each component of a DecoModel.

    Its module tracker names modules from the outermost module that ran: 'DecoModel.llm' when
    the whole model's forward ran, 'LlamaForCausalLM' when the LLM was called on its own (as in
    generation, which calls embed() and the LLM separately), 'TrainingModel.deco.llm' in deco train's step.
    """
    top = type(model).__name__
    trained = f"{TrainingModel.__name__}.{PREFIX}"
    return {c: (f"{top}.{c}", f"{trained}{c}", type(getattr(model, c)).__name__) for c in COMPONENTS}


def split_counts(counts: dict[str, dict[Any, int]], roots: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """FlopCounterMode.get_flop_counts() -> {component: flops, total, per_layer: {component: mean}}.

    Backward FLOPs are attributed to the module whose forward produced them, so a training step
    splits the same way as a forward. Operators without a FLOP formula (elementwise ops, the
    optimizer update) count as zero, as in every matmul-based FLOP count.
    """
    out: dict[str, Any] = {"total": sum(counts.get("Global", {}).values())}
    per_layer: dict[str, float | None] = {}
    for component in COMPONENTS:
        names = roots.get(component, ())
        # A module's count includes its children, so only the component's own entries are summed.
        out[component] = sum(sum(ops.values()) for key, ops in counts.items() if key in names)
        pattern = _LAYER_PATTERNS.get(component)
        if pattern is None:
            continue
        layers: dict[str, int] = {}
        for key, ops in counts.items():
            match = pattern.search(key)
            if match and any(key.startswith(n + ".") for n in names):
                layers[match.group(1)] = layers.get(match.group(1), 0) + sum(ops.values())
        per_layer[component] = sum(layers.values()) / len(layers) if layers else None
    out["per_layer"] = per_layer
    return out


class FlopRecorder:
    """Counts FLOPs of named phases: `with rec.phase('train_stage1'): ...`; results in `rec.flops`."""

    def __init__(self, roots: dict[str, tuple[str, ...]] | None = None) -> None:
        self.roots = roots or {}
        self.flops: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count FLOPs of everything run inside the block under `name`."""
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
            yield
        self.flops[name] = split_counts(counter.get_flop_counts(), self.roots)


def count_flops(fn: Callable[[], Any], model: Any = None) -> dict[str, Any]:
    """FLOPs of one call of `fn`, split by the components of `model` (a DecoModel) if given."""
    rec = FlopRecorder(component_roots(model) if model is not None else None)
    with rec.phase("call"):
        fn()
    return rec.flops["call"]
