"""AdamW with one parameter group per (component, decay or not), and the warmup + decay schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from deco.config import TrainSection
from deco.errors import ConfigError
from deco.model import DecoModel
from deco.train.step.freeze import COMPONENTS


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


OPTIMIZERS = ("auto", "fused", "foreach", "for_loop")


def fused_supported(params: list[torch.Tensor]) -> bool:
    """torch's fused AdamW runs on CUDA and CPU (and a few other backends) for floating-point tensors."""
    devices = {p.device.type for p in params}
    return bool(params) and devices <= {"cuda", "cpu", "xpu", "mps"} and all(p.is_floating_point() for p in params)


def adamw_kind(choice: str, params: list[torch.Tensor]) -> str:
    """The AdamW implementation train.optimizer names; `auto` is fused where torch has it, else foreach.

    Measured on a 2-core CPU (benchmarks/results/optimizer_cpu.json): fused 3.7-5x faster than foreach and
    the per-tensor loop; on GPUs fused is one kernel launch for all tensors.
    """
    if choice not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {list(OPTIMIZERS)}, got {choice!r}")
    if choice == "auto":
        return "fused" if fused_supported(params) else "foreach"
    if choice == "fused" and not fused_supported(params):
        raise ConfigError(
            f"train.optimizer=fused: torch has no fused AdamW for parameters on {sorted({p.device.type for p in params})}; "
            "use foreach or auto"
        )
    return choice


def adamw(groups: list[dict[str, Any]], lr: float, choice: str) -> torch.optim.AdamW:
    """AdamW (LLaVA: betas 0.9/0.999, eps 1e-8) over param groups, implemented as `choice` says."""
    params = [p for g in groups for p in g["params"]]
    kind = adamw_kind(choice, params)
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[kind]
    # A resumed run builds the same implementation from the same config, so it adds up identically.
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **flags)


def optimizer_kind(optimizer: Any) -> str:
    """fused / foreach / for_loop: what an AdamW (or accelerate's wrapper of one) runs."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    d = optimizer.defaults
    return "fused" if d.get("fused") else ("foreach" if d.get("foreach") else "for_loop")


def build_optimizer(model: DecoModel, train: TrainSection) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, fused / foreach / per-tensor as train.optimizer says."""
    groups = param_groups(model, train)
    if not groups:
        raise ConfigError(f"stage {train.stage} leaves no trainable parameters")
    return adamw(groups, train.lr, train.optimizer)


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
