"""The accelerate side: one Accelerator for CPU, 1 GPU, DDP, FSDP and DeepSpeed, and the few places
where those backends differ (gathering weights and optimizer state for a checkpoint, loading it back).

Launch with `accelerate launch --config_file configs/accelerate/<backend>.yaml -m deco.cli train ...`
or `torchrun`; this module reads whatever the launcher set up.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType

from deco.config import TrainSection
from deco.errors import ConfigError
from deco.train.step.wrapper import PREFIX

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def _force_cpu() -> bool:
    # accelerate only sets up multi-process CPU (gloo) when told to use the CPU; under torchrun on a
    # machine without a GPU nothing else would, and every process would train alone.
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def world_size() -> int:
    """Number of processes the launcher started (1 without a launcher)."""
    return PartialState(cpu=_force_cpu()).num_processes


def make_accelerator(train: TrainSection, accum: int) -> Accelerator:
    """An Accelerator for this run's precision and accumulation; DeepSpeed gets its batch sizes here."""
    state = PartialState(cpu=_force_cpu())
    if train.precision == "fp16" and state.device.type == "cpu":
        raise ConfigError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
    if state.num_processes == 1:
        # accelerate keeps one global state per process; a second run in the same process (tests, the
        # demo's several projectors) may use another precision or accumulation.
        AcceleratorState._reset_state()
        GradientState._reset_state()
    accelerator = Accelerator(
        cpu=_force_cpu(),
        mixed_precision=MIXED_PRECISION[train.precision],
        gradient_accumulation_steps=accum,
        step_scheduler_with_optimizer=False,
    )
    if is_deepspeed(accelerator):
        if train.on_nonfinite == "skip":
            raise ConfigError(
                "train.on_nonfinite=skip is not available with DeepSpeed (its engine steps inside backward); "
                "use on_nonfinite=error"
            )
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        # We hand accelerate no DataLoader, so it cannot fill these "auto" values itself.
        ds["train_micro_batch_size_per_gpu"] = train.per_device_batch_size
        ds["gradient_accumulation_steps"] = accum
        ds["train_batch_size"] = train.global_batch_size
        ds["gradient_clipping"] = train.max_grad_norm if train.max_grad_norm > 0 else 0.0
    return accelerator


def is_deepspeed(accelerator: Accelerator) -> bool:
    """True under DeepSpeed (ZeRO-2/3)."""
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def is_sharded(accelerator: Accelerator) -> bool:
    """True when parameters are split across processes (FSDP, DeepSpeed)."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _inner_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def trainable_state(accelerator: Accelerator, model: Any, names: list[str]) -> dict[str, torch.Tensor]:
    """Full (gathered) trainable weights by DecoModel name; collective, call on every process.

    `model` is the prepared TrainingModel; on non-main processes of a sharded run the result may be empty.
    """
    if is_sharded(accelerator):
        if is_deepspeed(accelerator):
            full = accelerator.get_state_dict(model)
        else:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: full[PREFIX + k] for k in names if PREFIX + k in full}
    params = dict(accelerator.unwrap_model(model).deco.named_parameters())
    return {k: params[k].detach() for k in names}


def optimizer_state(accelerator: Accelerator, model: Any, optimizer: Any) -> dict[str, Any] | None:
    """AdamW state keyed by parameter name (full, gathered); None under DeepSpeed, whose engine keeps it."""
    if is_deepspeed(accelerator):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    sharded = accelerator.distributed_type == DistributedType.FSDP
    return get_optimizer_state_dict(
        model, _inner_optimizer(optimizer), options=StateDictOptions(full_state_dict=True, cpu_offload=sharded)
    )


def load_optimizer_state(accelerator: Accelerator, model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Inverse of optimizer_state (every process passes the full state)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model, _inner_optimizer(optimizer), optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


def grad_norm_of(accelerator: Accelerator, model: Any, max_norm: float) -> torch.Tensor | None:
    """Clip the gradients (max_norm <= 0: measure only) and return the global norm before clipping, as a
    tensor on the device (the caller reads it with the step's other figures, in one host sync).

    DeepSpeed clips inside its own step and may not report a norm (None).
    """
    limit = max_norm if max_norm > 0 else float("inf")
    norm = accelerator.clip_grad_norm_(model.parameters(), limit)
    if norm is None:
        return None
    return norm if isinstance(norm, torch.Tensor) else torch.tensor(float(norm))
