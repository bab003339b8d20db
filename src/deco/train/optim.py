"""AdamW with one parameter group per (component, decay or not), and the warmup + decay schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from deco.config import TrainSection
from deco.errors import ConfigError
from deco.model import DecoModel
from deco.train.freeze import COMPONENTS


def component_lr(component: str, train: TrainSection) -> float:
    """Projector lr may differ from the rest (train.projector_lr); everything else uses train.lr."""
    if component == "projector" and train.projector_lr is not None:
        return train.projector_lr
    return train.lr


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases and norm weights get no weight decay (HF Trainer's rule; they are the 1-D tensors here)."""
    return param.ndim < 2 or name.endswith(".bias")


def param_groups(model: DecoModel, train: TrainSection) -> list[dict[str, Any]]:
    """Trainable parameters grouped as `{component}` (decayed) and `{component}.no_decay`."""
    groups: list[dict[str, Any]] = []
    for component in COMPONENTS:
        decay, plain = [], []
        for name, param in getattr(model, component).named_parameters():
            if param.requires_grad:
                (plain if no_decay(name, param) else decay).append(param)
        lr = component_lr(component, train)
        if decay:
            groups.append({"name": component, "params": decay, "lr": lr, "weight_decay": train.weight_decay})
        if plain:
            groups.append({"name": f"{component}.no_decay", "params": plain, "lr": lr, "weight_decay": 0.0})
    return groups


def build_optimizer(model: DecoModel, train: TrainSection) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (LLaVA: betas 0.9/0.999, eps 1e-8)."""
    groups = param_groups(model, train)
    if not groups:
        raise ConfigError(f"stage {train.stage} leaves no trainable parameters")
    # foreach=False: one kernel path on every device, so resumed and uninterrupted runs add up identically.
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """HF's rule: ceil(ratio * total)."""
    return math.ceil(warmup_ratio * total_steps)


def lr_factor(step: int, total_steps: int, warmup: int, kind: str) -> float:
    """Multiplier of the base lr for optimizer step `step` (0-based), as HF's schedules define it."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))
    raise ValueError(f"unknown lr schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, train: TrainSection) -> LambdaLR:
    """Per-step LambdaLR; stepped once per optimizer step by the loop (never by accelerate, which
    would step it once per process)."""
    warmup = warmup_steps(total_steps, train.warmup_ratio)
    kind = train.lr_schedule

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup, kind)

    return LambdaLR(optimizer, factor)
