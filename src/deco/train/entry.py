"""`deco train`: set up a run (model, stage, data, accelerate, resume) and hand it to the loop."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from deco.config import Config, dump_config, load_config
from deco.data import ConversationDataset, DataCollator
from deco.errors import ConfigError
from deco.model import DecoModel, build_model, load_projector_weights, save_model
from deco.model.vision import VisionTower
from deco.train import accel
from deco.train.batches import BatchPlan, StepBatchSampler
from deco.train.checkpoint import (
    PROJECTOR_FILE,
    TRAINABLE_FILE,
    atomic_directory,
    latest_checkpoint,
    remove_stale_temp,
    write_json,
)
from deco.train.freeze import apply_stage, describe_trainable, set_train_modes
from deco.train.loop import Loop
from deco.train.metrics import MetricsWriter
from deco.train.optim import build_optimizer, build_scheduler
from deco.train.progress import Reporter
from deco.train.runinfo import machine, versions
from deco.train.snapshot import load_optimizer, load_trainable, read_resume, save_checkpoint
from deco.train.state import TrainState, restore_rng, seed_everything


def train_main(config_path: str | Path, overrides: list[str] | None = None, resume: bool | str = False) -> dict:
    """Train a model as CONFIG says (stage 1: projector only; stage 2: projector + LLM).

    Overrides are dotted `section.key=value` pairs (e.g. `train.max_steps=10`). `--resume` continues
    the latest checkpoint in train.output_dir exactly (same losses as an uninterrupted run);
    `--resume PATH` continues from that checkpoint folder. Run on several processes with
    `accelerate launch --config_file configs/accelerate/<backend>.yaml -m deco.cli train CONFIG`.
    """
    return run_training(load_config(config_path, overrides or []), resume=resume)


def resolve_resume(resume: bool | str | Path, run_dir: Path) -> Path | None:
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
    """A stage-1 checkpoint by path: a projector safetensors file, or a folder holding projector.safetensors
    (a checkpoint-N/ or final/ folder of a stage-1 run)."""
    p = Path(path)
    file = p / PROJECTOR_FILE if p.is_dir() else p
    if not file.is_file():
        raise ConfigError(f"train.stage1_checkpoint: no projector weights at {file}")
    return file


def build_dataset(config: Config, model: DecoModel) -> ConversationDataset:
    """The LLaVA-format dataset named by the data section, laid out for this model's projector."""
    data = config.data
    if data.train_file is None:
        raise ConfigError("data.train_file is not set: name a LLaVA-format JSON or JSONL file")
    return ConversationDataset(
        data.train_file, data.image_folder, model.processor(), data.template, data.max_length,
        on_bad_sample=data.on_bad_sample, check_images=True, allow_multi_image=data.allow_multi_image,
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


def run_training(
    config: Config,
    resume: bool | str | Path = False,
    *,
    vision_tower: VisionTower | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training job; returns the summary also written to `summary.json`.

    `vision_tower` and `dataset` let callers (the demo) pass an encoder and a dataset built in-process;
    a dataset must return samples as ConversationDataset does and may have `modality_lengths`.
    """
    train = config.train
    if train.stage == 2 and not (train.stage1_checkpoint or config.model.load_from):
        raise ConfigError(
            "stage 2 starts from a stage-1 projector: set train.stage1_checkpoint to its file or checkpoint "
            "folder (or model.load_from to a saved model)"
        )
    world = accel.world_size()
    per_step = train.per_device_batch_size * world
    if train.per_device_batch_size <= 0 or train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by per_device_batch_size "
            f"({train.per_device_batch_size}) x processes ({world}) = {per_step}"
        )
    accelerator = accel.make_accelerator(train, train.global_batch_size // per_step)
    main = accelerator.is_main_process
    reporter = Reporter(main, train.quiet)
    run_dir = Path(train.output_dir)
    checkpoint = resolve_resume(resume, run_dir)
    saved = read_resume(checkpoint, config) if checkpoint is not None else None
    if saved is None and latest_checkpoint(run_dir) is not None:
        raise ConfigError(
            f"train.output_dir '{run_dir}' already holds checkpoints of a run: pass --resume to continue it, "
            "or choose another output_dir"
        )

    # Model: seeded so random-init parts (tiny test models) are the same in every process and on resume.
    seed_everything(train.seed)
    model = build_model(config, vision_tower)
    if train.stage1_checkpoint:
        load_projector_weights(model.projector, stage1_projector_file(train.stage1_checkpoint))
    counts = apply_stage(model, train)
    for line in describe_trainable(counts, train.stage):
        reporter.info(line)
    if train.gradient_checkpointing:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.llm.config.use_cache = False
    if checkpoint is not None:
        # Weights go in before accelerate wraps or shards the model (a ZeRO-3 parameter is empty there).
        load_trainable(model, checkpoint / TRAINABLE_FILE)

    data = dataset if dataset is not None else build_dataset(config, model)
    lengths = getattr(data, "modality_lengths", None) if config.data.group_by_modality_length else None
    plan = BatchPlan(len(data), train.global_batch_size, train.per_device_batch_size, world, train.seed, lengths)
    total = total_steps_for(config, plan)
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, total, train)
    state = TrainState()
    if saved is not None:
        state = TrainState.from_dict(saved["state"])
        scheduler.load_state_dict(saved["scheduler"])
    set_train_modes(model, train)
    model, optimizer = accelerator.prepare(model, optimizer)
    if saved is not None and not load_optimizer(accelerator, model, optimizer, checkpoint, saved):
        reporter.info("warning: this checkpoint has no optimizer state (DeepSpeed run); AdamW moments restart")

    collator = DataCollator.from_processor(accelerator.unwrap_model(model).processor())
    sampler = StepBatchSampler(plan, accelerator.process_index, state.epoch, state.step_in_epoch,
                               max(0, total - state.step))
    loader = DataLoader(
        data, batch_sampler=sampler, collate_fn=collator, num_workers=config.data.num_workers,
        persistent_workers=False, generator=torch.Generator().manual_seed(train.seed),
    )
    batches = iter(loader)

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(run_dir)
        dump_config(config, run_dir / "config.yaml")
        write_json({**versions(), "machine": machine(), "world_size": world}, run_dir / "versions.json")
    metrics = MetricsWriter(run_dir / "metrics.jsonl", resume_step=state.step if saved else None) if main else None
    skipped = getattr(data, "num_skipped", 0)
    reporter.info(
        f"{len(data)} samples ({skipped} skipped), {plan.steps_per_epoch} steps/epoch, {total} steps, "
        f"global batch {train.global_batch_size} = {world} process(es) x {plan.accum} accumulation x "
        f"{train.per_device_batch_size}" + (f"; resuming at step {state.step} from {checkpoint}" if saved else "")
    )
    extra = {"world_size": world, "accum": plan.accum, "total_steps": total}
    loop = Loop(
        accelerator, model, optimizer, scheduler, plan, batches, state, train, total, reporter, metrics,
        save=lambda: save_checkpoint(accelerator, model, optimizer, scheduler, state, config, extra),
    )
    if saved is not None:
        restore_rng(saved["rng"][min(accelerator.process_index, len(saved["rng"]) - 1)])
        loop.last_saved = state.step
    started = time.perf_counter()
    try:
        loop.run()
    finally:
        if metrics is not None:
            metrics.close()
    seconds = time.perf_counter() - started
    final = _save_final(accelerator, model, config, vision_tower)
    summary = {
        "run_dir": str(run_dir),
        "steps": state.step,
        "total_steps": total,
        "samples_seen": state.samples_seen,
        "tokens_seen": state.tokens_seen,
        "skipped_steps": state.skipped_steps,
        "skipped_samples": skipped,
        "skipped_by_reason": dict(getattr(data, "skipped", {})),
        "final_model": str(final) if final else None,
        "checkpoint": str(latest_checkpoint(run_dir)) if main else None,
        "train_seconds": seconds,
        "world_size": world,
        "accum": plan.accum,
        "resumed_from": str(checkpoint) if checkpoint else None,
    }
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    return summary


def _save_final(accelerator: Any, model: Any, config: Config, vision_tower: VisionTower | None) -> Path | None:
    """`final/`: a full save_model folder (load_model / eval read it); gathered first when sharded."""
    target = Path(config.train.output_dir) / "final"
    unwrapped: DecoModel = accelerator.unwrap_model(model)
    if accel.is_sharded(accelerator):
        names = [n for n, p in unwrapped.named_parameters() if p.requires_grad]
        weights = accel.trainable_state(accelerator, model, names)
        if not accelerator.is_main_process:
            accelerator.wait_for_everyone()
            return None
        seed_everything(config.train.seed)
        unwrapped = build_model(config, vision_tower)  # an unsharded copy to hold the gathered weights
        if config.train.stage1_checkpoint:
            load_projector_weights(unwrapped.projector, stage1_projector_file(config.train.stage1_checkpoint))
        unwrapped.load_state_dict(weights, strict=False)
    if accelerator.is_main_process:
        with atomic_directory(target) as tmp:
            save_model(unwrapped, tmp)
    accelerator.wait_for_everyone()
    return target if accelerator.is_main_process else None
