"""Cross-field checks of a training config that need no model: run before torch loads, and again with
the real process count when the run starts (deco.train.entry)."""

from __future__ import annotations

from deco.config import Config
from deco.errors import ConfigError


def check_train_config(config: Config, world: int = 1) -> None:
    """ConfigError naming the key when the train section cannot run on `world` processes."""
    train = config.train
    if train.stage == 2 and not (train.stage1_checkpoint or config.model.load_from):
        raise ConfigError(
            "stage 2 starts from a stage-1 projector: set train.stage1_checkpoint to its file or checkpoint "
            "folder (or model.load_from to a saved model)"
        )
    if train.lora.enabled and train.stage != 2:
        raise ConfigError("train.lora.enabled applies to stage 2 (stage 1 does not train the LLM)")
    if train.diagnostics_every < 0:
        raise ConfigError(f"train.diagnostics_every must be >= 0 (0 = off), got {train.diagnostics_every}")
    per_step = train.per_device_batch_size * world
    if train.per_device_batch_size <= 0 or train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by per_device_batch_size "
            f"({train.per_device_batch_size}) x processes ({world}) = {per_step}"
        )
