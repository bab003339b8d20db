"""The parts of a run that are built before the loop: model for the stage, dataset, step count, final save."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from deco.config import Config
from deco.data import ConversationDataset, Record
from deco.data.index_cache import resolve_cache_dir
from deco.errors import ConfigError
from deco.interop.lora import (
    apply_lora,
    has_lora,
    lora_files,
    mark_merged,
    merge_lora,
    merged_readme,
    run_base_llm,
    save_base_llm,
    write_lora_files,
)
from deco.model import DecoModel, build_model, load_projector_weights, save_model
from deco.model.llm import DTYPES
from deco.model.vision import VisionTower
from deco.train.loading.batches import BatchPlan
from deco.train.rundir.checkpoint import PROJECTOR_FILE, TRAINABLE_FILE, atomic_directory, latest_checkpoint
from deco.train.rundir.snapshot import load_trainable
from deco.train.rundir.state import seed_everything
from deco.train.step import accel
from deco.train.step.freeze import apply_stage, upcast_trainable


def resolve_resume(resume: bool | str | Path | None, run_dir: Path) -> Path | None:
    """False -> None; True -> the run dir's latest checkpoint (None if there is none yet); a path -> it."""
    if resume is False or resume is None:
        return None
    if resume is True:
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if not path.is_dir():
        raise ConfigError(f"resume checkpoint not found: {path}")
    return path


def stage1_projector_file(path: str) -> Path:
    """A stage-1 checkpoint by path: a projector safetensors file, a folder holding projector.safetensors
    (a checkpoint-N/ or final/ folder of a stage-1 run), or the stage-1 run's folder itself (its final/, as
    `deco eval` and `load_model` take a run folder). Nothing is read from the folder's name."""
    p = Path(path)
    file = p / PROJECTOR_FILE if p.is_dir() else p
    if p.is_dir() and not file.is_file() and (p / "final" / PROJECTOR_FILE).is_file():
        file = p / "final" / PROJECTOR_FILE
    if not file.is_file():
        hint = " (a run folder that has not finished has no final/: name one of its checkpoint-N/ folders)" \
            if p.is_dir() and any(p.glob("checkpoint-*")) else ""
        raise ConfigError(f"train.stage1_checkpoint: no projector weights at {file}{hint}")
    return file


def model_for_stage(
    config: Config, vision_tower: VisionTower | None = None, checkpoint: Path | None = None, write_base: bool = False
) -> tuple[DecoModel, dict[str, tuple[int, int]]]:
    """Build the model (seeded, so random-init parts agree across processes and on resume), load the
    stage-1 projector, freeze for the stage, and load a resumed checkpoint's trainable weights.

    Everything is loaded into the plain model, before accelerate wraps or shards it: a ZeRO-3 or FSDP
    parameter has no full tensor to load into (LLaVA's `size mismatch ... torch.Size([0])`).
    `write_base`: write a LoRA run's base LLM to its base_llm/ folder when needed (deco.interop.lora).
    """
    train = config.train
    seed_everything(train.seed)
    model = build_model(config, vision_tower)
    if train.stage1_checkpoint:
        load_projector_weights(model.projector, stage1_projector_file(train.stage1_checkpoint))
    elif checkpoint is None and getattr(model.projector.config, "blip2_checkpoint", None):
        # Fresh stage-1 run of a Q-Former initialised from BLIP-2 (a resume restores its own weights).
        from deco.interop.blip2 import init_qformer_from_blip2

        opts = model.projector.config
        init_qformer_from_blip2(
            model.projector, opts.blip2_checkpoint, opts.blip2_layers, allow_pickle=config.model.allow_pickle
        )
    counts = apply_stage(model, train)
    if write_base:  # main process: a LoRA run's base LLM, when nothing else holds it (its adapters name it)
        save_base_llm(model, config)
    if train.lora.enabled:
        # LoRA adapters on the LLM: its base weights freeze again, only the adapters train.
        apply_lora(model, train.lora, train.gradient_checkpointing)
        counts = model.component_parameters()
    upcast_trainable(model)
    if train.gradient_checkpointing:
        enable_checkpointing(model.llm)
    if checkpoint is not None:
        load_trainable(model, checkpoint / TRAINABLE_FILE)
    return model, counts


def enable_checkpointing(llm: Any) -> None:
    """HF activation (gradient) checkpointing on the LLM's layers, non-reentrant (inputs may be frozen)."""
    kwargs = {"use_reentrant": False}
    if hasattr(llm, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name is deprecated
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    llm.config.use_cache = False


def build_dataset(config: Config, model: DecoModel, records: Sequence[Record] | None = None) -> ConversationDataset:
    """The LLaVA-format dataset named by the data section, laid out for this model's projector.

    `records`: the data file's records when already read (run_training may, for the data fingerprint).
    Image checks follow data.check_images and data.allow_outside_image_folder. The tokenized index is
    cached in data.cache_dir (deco.data.index_cache): a later start, a resume or another rank maps it
    instead of tokenizing again.
    """
    data = config.data
    if data.train_file is None:
        raise ConfigError("data.train_file is not set: name a LLaVA-format JSON or JSONL file")
    if model.num_frames is not None:
        if model.anyres is not None:
            raise ConfigError("'vision.anyres.enabled': high-resolution tiles are for images, not videos")
        # A projector with a time axis: each `image` entry is a video (frame folder, .npy array,
        # GIF or video file).
        from deco.data.video_dataset import VideoConversationDataset

        return VideoConversationDataset(
            records if records is not None else data.train_file, data.image_folder, model.processor(), data.template, data.max_length,
            on_bad_sample=data.on_bad_sample, allow_multi_image=data.allow_multi_image,
            allow_outside_image_folder=data.allow_outside_image_folder,
        )
    return ConversationDataset(
        data.train_file, data.image_folder, model.processor(), data.template, data.max_length,
        on_bad_sample=data.on_bad_sample, check_images=data.check_images, allow_multi_image=data.allow_multi_image,
        allow_outside_image_folder=data.allow_outside_image_folder, cache_dir=resolve_cache_dir(data.cache_dir),
        loaded=records,
    )


def total_steps_for(config: Config, plan: BatchPlan) -> int:
    """train.max_steps if set, else ceil(epochs x full global batches per epoch)."""
    if config.train.max_steps is not None:
        if config.train.max_steps <= 0:
            raise ConfigError(f"train.max_steps must be positive, got {config.train.max_steps}")
        return config.train.max_steps
    if config.train.epochs <= 0:
        raise ConfigError(f"train.epochs must be positive, got {config.train.epochs}")
    return max(1, math.ceil(config.train.epochs * plan.steps_per_epoch))


def save_final(accelerator: Any, model: Any, config: Config, vision_tower: VisionTower | None) -> Path | None:
    """`final/`: a full save_model folder (load_model and eval read it); gathered first when sharded.

    Collective: every process calls it. Returns the folder on the main process.
    """
    target = Path(config.train.output_dir) / "final"
    unwrapped: DecoModel = accelerator.unwrap_model(model).deco
    if accel.is_sharded(accelerator):
        names = [n for n, p in unwrapped.named_parameters() if p.requires_grad]
        weights = accel.trainable_state(accelerator, model, names)
        if accelerator.is_main_process:
            # An unsharded copy (frozen parts rebuilt exactly as at the start) to hold the gathered weights.
            copy, _ = model_for_stage(config, vision_tower)
            copy.load_state_dict(weights, strict=False)
            unwrapped = copy
    if accelerator.is_main_process:
        base = run_base_llm(config)
        adapter = lora_files(unwrapped, base_model=base) if has_lora(unwrapped) else None
        merge_lora(unwrapped)
        if adapter is not None:
            mark_merged(unwrapped, base)
        unwrapped.to(DTYPES[config.model.dtype])  # float32 master weights back to the model's dtype
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # HF's "Writing model shards" bar, next to ours
        try:
            with atomic_directory(target) as tmp:
                save_model(unwrapped, tmp)
                if adapter is not None:  # the adapters in PEFT's format, as they were before the merge
                    write_lora_files(adapter, tmp)
                    (tmp / "README.md").write_text(merged_readme(base), encoding="utf-8")
        finally:
            if bars:
                hf_logging.enable_progress_bar()
    accelerator.wait_for_everyone()
    return target if accelerator.is_main_process else None
