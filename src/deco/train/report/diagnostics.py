"""Per-block training diagnostics of the projector: gradient norms, weight and activation scales.

`train.diagnostics_every: N` (0 = off) writes one record every N optimizer steps to the run directory's
diagnostics.jsonl: for each block of the projector (its children, and the children of its containers:
`stage1.0`, `readout.2`, `layers.1`, ...; loose parameters such as `pos_emb` on their own) the gradient
norm of its parameters before clipping, their RMS, and the RMS of its output on that step's batch; the
RMS of the projector's output tokens beside the RMS of the LM's input embeddings (what the visual
tokens must sit next to). This is the evidence a baseline that does not learn is diagnosed with: a block
whose gradient vanishes, an activation scale far from the text embeddings', a weight that never moves.

It only reads: hooks record output scales during the step's forward, gradients are read after backward
and before clipping, and nothing in the trajectory changes (resume accepts a change of the setting).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

DIAGNOSTICS_FILE = "diagnostics.jsonl"


def projector_blocks(projector: nn.Module) -> dict[str, nn.Module]:
    """The blocks reported: children of the projector, with containers (Sequential, ModuleList) opened
    one level, so a RegNet stage reports each block and an MLP each layer."""
    blocks: dict[str, nn.Module] = {}
    for name, child in projector.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            for sub, grandchild in child.named_children():
                blocks[f"{name}.{sub}"] = grandchild
        else:
            blocks[name] = child
    return blocks


def _rms(tensors: Iterator[torch.Tensor]) -> float | None:
    total, count = 0.0, 0
    for t in tensors:
        total += float(t.detach().float().pow(2).sum())
        count += t.numel()
    return math.sqrt(total / count) if count else None


def _norm(tensors: Iterator[torch.Tensor]) -> float | None:
    squares = [float(t.detach().float().pow(2).sum()) for t in tensors]
    return math.sqrt(sum(squares)) if squares else None


class BlockDiagnostics:
    """Hooks on a projector's blocks; `record(step)` returns and writes one diagnostics record."""

    def __init__(self, projector: nn.Module, embeddings: nn.Module | None, path: Path | None) -> None:
        self.projector = projector
        self.embeddings = embeddings
        self.path = path
        self.blocks = projector_blocks(projector)
        self.loose = {n: p for n, p in projector.named_parameters(recurse=False)}
        self.outputs: dict[str, float] = {}
        self.active = False
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in self.blocks.items()]
        self.handles.append(projector.register_forward_hook(self._hook("<output>")))

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if self.active and isinstance(output, torch.Tensor) and name not in self.outputs:
                self.outputs[name] = _rms(iter([output])) or 0.0  # first micro-batch of the step

        return hook

    def start(self) -> None:
        """Capture output scales during the coming forward pass(es)."""
        self.outputs = {}
        self.active = True

    def record(self, step: int) -> dict[str, Any]:
        """Read the captured scales and the current gradients (call after backward, before clipping)."""
        self.active = False
        blocks = {}
        for name, module in {**self.blocks, **self.loose}.items():
            params = [module] if isinstance(module, nn.Parameter) else list(module.parameters())
            trainable = [p for p in params if p.requires_grad]
            grads = [p.grad for p in trainable if p.grad is not None]
            blocks[name] = {"grad_norm": _norm(iter(grads)), "param_rms": _rms(iter(trainable)),
                            "out_rms": self.outputs.get(name)}
        record: dict[str, Any] = {"step": step, "blocks": blocks, "projector_out_rms": self.outputs.get("<output>")}
        if self.embeddings is not None and getattr(self.embeddings, "weight", None) is not None:
            record["llm_embed_rms"] = _rms(iter([self.embeddings.weight]))
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        return record

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def read_diagnostics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's diagnostics.jsonl (empty when the run logged none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
