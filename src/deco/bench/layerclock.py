"""Per-layer time and memory of a stack of identical transformer layers, via hooks.

Used to extrapolate a truncated model (a few Llama-7B-shaped layers) to the full depth: every
layer of such a stack has the same shapes, so the measured mean per layer times the missing layer
count is what the full model adds. Forward time comes from module pre/post hooks; backward time
from gradient hooks on each layer's output (its backward starts) and input (its backward ends).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves


def vision_layers(tower: nn.Module) -> nn.ModuleList:
    """The encoder layers of an HF CLIP/SigLIP tower (5.x has no `vision_model` level; 4.x had one)."""
    model = tower.model
    inner = getattr(model, "vision_model", model)
    return inner.encoder.layers


def llm_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder layers of an HF causal LM (Llama, Qwen2: `model.layers`)."""
    return llm.model.layers


def _first_tensor(value: Any) -> torch.Tensor | None:
    return next((t for t in tree_leaves(value) if isinstance(t, torch.Tensor)), None)


class LayerClock:
    """Mean seconds per layer for one call: `with clock.measure() as got: ...; got['seconds']`."""

    def __init__(self, layers: Sequence[nn.Module], device: torch.device | str) -> None:
        self.layers = list(layers)
        self.cuda = torch.device(device).type == "cuda"
        self._stamps: dict[tuple[str, int], Any] = {}

    def _stamp(self, key: tuple[str, int]) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._stamps[key] = event
        else:
            self._stamps[key] = time.perf_counter()

    def _elapsed(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000.0 if self.cuda else end - start

    def _hooks(self, index: int) -> list[Any]:
        def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = _first_tensor(args) if args else kwargs.get("hidden_states")
            if hidden is not None and hidden.requires_grad and torch.is_grad_enabled():
                # Fires once the gradient w.r.t. this layer's input is complete: backward done.
                hidden.register_hook(lambda g: self._stamp(("b1", index)))
            self._stamp(("f0", index))

        def post(module: nn.Module, args: tuple, output: Any) -> None:
            self._stamp(("f1", index))
            out = _first_tensor(output)
            if out is not None and out.requires_grad:
                out.register_hook(lambda g: self._stamp(("b0", index)))

        layer = self.layers[index]
        return [layer.register_forward_pre_hook(pre, with_kwargs=True), layer.register_forward_hook(post)]

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        """Attach hooks for the block; afterwards the dict holds 'seconds' (mean per layer)."""
        self._stamps = {}
        handles = [h for i in range(len(self.layers)) for h in self._hooks(i)]
        got: dict[str, float] = {}
        try:
            yield got
        finally:
            for handle in handles:
                handle.remove()
        if self.cuda:
            torch.cuda.synchronize()
        total = 0.0
        for i in range(len(self.layers)):
            for a, b in (("f0", "f1"), ("b0", "b1")):
                if (a, i) in self._stamps and (b, i) in self._stamps:
                    total += self._elapsed(self._stamps[(a, i)], self._stamps[(b, i)])
        # The mean over the layers that ran: a vision pass stops at the deepest layer it takes.
        ran = sum(("f0", i) in self._stamps for i in range(len(self.layers)))
        got["seconds"] = total / max(ran, 1)


class LayerMemory:
    """Mean bytes each layer leaves allocated after its forward (activations saved for backward)."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.layers = list(layers)

    @contextlib.contextmanager
    def measure(self, probe: Any) -> Iterator[dict[str, float]]:
        """Hooks read `probe.current()` before and after each layer; result in got['bytes']."""
        before: dict[int, int] = {}
        deltas: list[int] = []
        handles = []
        for i, layer in enumerate(self.layers):
            handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: before.__setitem__(i, probe.current())))
            handles.append(layer.register_forward_hook(lambda m, a, o, i=i: deltas.append(probe.current() - before[i])))
        got: dict[str, float] = {}
        try:
            yield got
        finally:
            for handle in handles:
                handle.remove()
        got["bytes"] = sum(deltas) / len(deltas) if deltas else 0.0
