"""Saving a running training job to a checkpoint folder and putting it back (resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from deco.config import Config
from deco.errors import ConfigError, DecoError
from deco.interop.lora import save_run_adapter
from deco.model import DecoModel
from deco.train.rundir.checkpoint import (
    OPTIMIZER_FILE,
    PROJECTOR_FILE,
    STATE_FILE,
    TRAINABLE_FILE,
    atomic_directory,
    flatten_optimizer_state,
    load_tensors,
    nonfinite_tensors,
    prune_checkpoints,
    read_state,
    save_tensors,
    unflatten_optimizer_state,
    write_json,
)
from deco.train.rundir.state import STATE_VERSION, TrainState, capture_rng
from deco.train.step import accel

STATE_FORMAT = "deco-train-state"


def trainable_names(model: DecoModel) -> list[str]:
    """Names of the trainable parameters (what a checkpoint holds)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def save_checkpoint(
    accelerator: Accelerator,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: TrainState,
    config: Config,
    extra: dict[str, Any],
) -> Path | None:
    """Write `checkpoint-{step}/` atomically and prune to train.keep_last; collective (all processes).

    Refuses (DecoError) to write non-finite weights. Returns the folder on the main process.
    """
    unwrapped: DecoModel = accelerator.unwrap_model(model).deco
    names = trainable_names(unwrapped)
    weights = accel.trainable_state(accelerator, model, names)
    optim = accel.optimizer_state(accelerator, model, optimizer)
    rng = gather_object([capture_rng()])
    target = None
    # Only the main process holds the gathered weights; every process must agree to stop.
    bad = [nonfinite_tensors(weights) if accelerator.is_main_process else []]
    broadcast_object_list(bad)
    if bad[0]:
        raise DecoError(f"step {state.step}: non-finite weights, checkpoint not written: {bad[0][:5]}")
    if accelerator.is_main_process:
        run_dir = Path(config.train.output_dir)
        target = run_dir / f"checkpoint-{state.step}"
        with atomic_directory(target) as tmp:
            save_tensors(weights, tmp / TRAINABLE_FILE)
            save_tensors(_projector_state(unwrapped, weights), tmp / PROJECTOR_FILE)
            save_run_adapter(unwrapped, tmp, config, weights)  # LoRA runs: PEFT's adapter files too
            optim_meta = None
            if optim is not None:
                tensors, optim_meta = flatten_optimizer_state(optim)
                save_tensors(tensors, tmp / OPTIMIZER_FILE)
            write_json(
                {
                    "format": STATE_FORMAT,
                    "version": STATE_VERSION,
                    "state": state.to_dict(),
                    "scheduler": scheduler.state_dict(),
                    "optimizer": optim_meta,
                    "rng": rng,
                    "config": config.to_dict(),
                    **extra,
                },
                tmp / STATE_FILE,
            )
        prune_checkpoints(run_dir, config.train.keep_last)
    accelerator.wait_for_everyone()
    return target


def _projector_state(model: DecoModel, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The projector's full state dict: gathered trainable tensors, plus buffers (never sharded)."""
    buffers = dict(model.projector.named_buffers())
    out = {}
    for key in model.projector.state_dict():
        full = f"projector.{key}"
        out[key] = weights[full] if full in weights else buffers[key]
    return out


def load_trainable(model: DecoModel, path: Path) -> None:
    """Copy a checkpoint's trainable tensors into the (unwrapped, unsharded) model, checking names/shapes."""
    tensors = load_tensors(path)
    own = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(tensors)) if tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {items[:5]}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if items]
        raise ConfigError(f"{path} does not fit this model's trainable parameters: " + "; ".join(parts))
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(tensors[name])


def read_resume(checkpoint: Path) -> dict[str, Any]:
    """Read a checkpoint's train_state.json (the settings are compared by deco.train.rundir.resume)."""
    saved = read_state(checkpoint)
    if saved.get("format") != STATE_FORMAT:
        raise ConfigError(f"{checkpoint / STATE_FILE}: format is {saved.get('format')!r}, expected {STATE_FORMAT!r}")
    return saved


def load_optimizer(accelerator: Accelerator, model: Any, optimizer: Any, checkpoint: Path, saved: dict[str, Any]) -> bool:
    """Restore AdamW moments after prepare; False when the checkpoint has none (DeepSpeed runs)."""
    if saved.get("optimizer") is None or accel.is_deepspeed(accelerator):
        return False
    tensors = load_tensors(checkpoint / OPTIMIZER_FILE)
    accel.load_optimizer_state(accelerator, model, optimizer, unflatten_optimizer_state(tensors, saved["optimizer"]))
    return True
