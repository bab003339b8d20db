"""`deco train`: set up a run (model, stage, data, accelerate, resume) and hand it to the loop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch.utils.data import DataLoader, Dataset

from deco.config import Config, dump_config, load_config
from deco.data import DataCollator
from deco.errors import ConfigError
from deco.model.vision import VisionTower
from deco.train import accel
from deco.train.batches import BatchPlan, StepBatchSampler
from deco.train.checkpoint import latest_checkpoint, remove_stale_temp, write_json
from deco.train.freeze import describe_trainable, set_train_modes
from deco.train.loop import Loop
from deco.train.metrics import MetricsWriter
from deco.train.optim import build_optimizer, build_scheduler
from deco.train.progress import Reporter
from deco.train.runinfo import machine, versions
from deco.train.setup import build_dataset, model_for_stage, resolve_resume, save_final, total_steps_for
from deco.train.snapshot import load_optimizer, read_resume, save_checkpoint
from deco.train.state import TrainState, restore_rng
from deco.train.wrapper import TrainingModel


def train_main(config_path: str | Path, overrides: list[str] | None = None, resume: bool | str = False) -> dict:
    """Train a model as CONFIG says (stage 1: projector only; stage 2: projector + LLM).

    Overrides are dotted `section.key=value` pairs (e.g. `train.max_steps=10`). `resume=True` continues
    the latest checkpoint in train.output_dir exactly (same losses as an uninterrupted run); a path
    continues from that checkpoint folder. Run on several processes with
    `accelerate launch --config_file configs/accelerate/<backend>.yaml -m deco.cli train CONFIG`.
    """
    return run_training(load_config(config_path, overrides or []), resume=resume)


def _check(config: Config, world: int) -> None:
    train = config.train
    if train.stage == 2 and not (train.stage1_checkpoint or config.model.load_from):
        raise ConfigError(
            "stage 2 starts from a stage-1 projector: set train.stage1_checkpoint to its file or checkpoint "
            "folder (or model.load_from to a saved model)"
        )
    if train.lora.enabled and train.stage != 2:
        raise ConfigError("train.lora.enabled applies to stage 2 (stage 1 does not train the LLM)")
    per_step = train.per_device_batch_size * world
    if train.per_device_batch_size <= 0 or train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by per_device_batch_size "
            f"({train.per_device_batch_size}) x processes ({world}) = {per_step}"
        )


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
    train, run_dir = config.train, Path(config.train.output_dir)
    world = accel.world_size()
    _check(config, world)
    main = PartialState().is_main_process
    reporter = Reporter(main, train.quiet)
    checkpoint = resolve_resume(resume, run_dir)
    saved = read_resume(checkpoint, config) if checkpoint is not None else None
    if saved is None and latest_checkpoint(run_dir) is not None:
        raise ConfigError(
            f"train.output_dir '{run_dir}' already holds checkpoints of a run: pass --resume to continue it, "
            "or choose another output_dir"
        )

    model, counts = model_for_stage(config, vision_tower, checkpoint)
    for line in describe_trainable(counts, train.stage):
        reporter.info(line)
    if model.anyres is not None:  # the token count per image depends on its layout: say it up front
        for line in model.anyres.token_report():
            reporter.info(line)
    data = dataset if dataset is not None else build_dataset(config, model)
    if saved is not None and saved.get("num_samples") not in (None, len(data)):
        raise ConfigError(
            f"cannot resume from {checkpoint}: the dataset had {saved['num_samples']} usable samples in that "
            f"run and has {len(data)} now, so the saved data position would point elsewhere"
        )
    modality = getattr(data, "modality_lengths", None)
    plan = BatchPlan(len(data), train.global_batch_size, train.per_device_batch_size, world, train.seed,
                     modality if config.data.group_by_modality_length else None)
    total = total_steps_for(config, plan)
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, total, train)
    state = TrainState()
    if saved is not None:
        state = TrainState.from_dict(saved["state"])
        scheduler.load_state_dict(saved["scheduler"])
    accelerator = accel.make_accelerator(train, plan.accum)
    set_train_modes(model, train)
    model, optimizer = accelerator.prepare(TrainingModel(model), optimizer)
    if saved is not None and not load_optimizer(accelerator, model, optimizer, checkpoint, saved):
        reporter.info("warning: this checkpoint has no optimizer state (DeepSpeed run); AdamW moments restart")

    loader = DataLoader(
        data,
        batch_sampler=StepBatchSampler(plan, accelerator.process_index, state.epoch, state.step_in_epoch,
                                       max(0, total - state.step)),
        collate_fn=DataCollator.from_processor(accelerator.unwrap_model(model).deco.processor()),
        num_workers=config.data.num_workers,
        # Its own generator: creating the iterator must not draw from the global RNG (exact resume).
        generator=torch.Generator().manual_seed(train.seed),
    )
    batches = iter(loader)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(run_dir)
        dump_config(config, run_dir / "config.yaml")
        write_json({**versions(), "machine": machine(), "world_size": world}, run_dir / "versions.json")
    metrics = MetricsWriter(run_dir / "metrics.jsonl", resume_step=state.step if saved else None) if main else None
    skipped = int(getattr(data, "num_skipped", 0))
    reporter.info(
        f"{len(data)} samples ({skipped} skipped), {plan.steps_per_epoch} steps/epoch, {total} steps, "
        f"global batch {train.global_batch_size} = {world} process(es) x {plan.accum} accumulation x "
        f"{train.per_device_batch_size} ({accelerator.distributed_type.value}, {accelerator.device}, "
        f"precision {train.precision})" + (f"; resuming at step {state.step} from {checkpoint}" if saved else "")
    )
    extra = {"world_size": world, "accum": plan.accum, "total_steps": total, "num_samples": len(data)}
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
    final = save_final(accelerator, model, config, vision_tower)
    summary = {
        "run_dir": str(run_dir),
        "steps": state.step,
        "total_steps": total,
        "samples_seen": state.samples_seen,
        "tokens_seen": state.tokens_seen,
        "skipped_steps": state.skipped_steps,
        "skipped_samples": skipped,
        "skipped_by_reason": {k: v for k, v in getattr(data, "skipped", {}).items() if v},
        "final_model": str(final) if final else None,
        "checkpoint": str(latest_checkpoint(run_dir)) if main else None,
        "train_seconds": seconds,
        "world_size": world,
        "accum": plan.accum,
        "backend": accelerator.distributed_type.value,
        "resumed_from": str(checkpoint) if checkpoint else None,
    }
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        reporter.info(f"done: {state.step} steps in {seconds:.1f} s; final model in {final}")
    return summary
