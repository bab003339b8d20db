"""`deco train`: set up a run (model, stage, data, accelerate, resume) and hand it to the loop."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState
from torch.utils.data import Dataset

from deco.config import Config, dump_config, load_config
from deco.data import DataCollator
from deco.errors import ConfigError, DecoError
from deco.model.vision import VisionTower
from deco.runlock import LOCK_NAME, locked
from deco.train.checks import check_train_config
from deco.train.loading.batches import BatchPlan
from deco.train.loading.loader import build_loader, loader_settings
from deco.train.report.diagnostics import DIAGNOSTICS_FILE, BlockDiagnostics
from deco.train.report.metrics import MetricsWriter
from deco.train.report.probe import PROBE_FILE, collapse_warning, measure, probe_images
from deco.train.report.progress import Reporter
from deco.train.report.runinfo import machine, versions
from deco.train.rundir.checkpoint import latest_checkpoint, remove_stale_temp, write_json
from deco.train.rundir.diskerrors import describe as describe_io_error
from deco.train.rundir.diskerrors import io_error
from deco.train.rundir.preflight import check_free_space, checkpoint_bytes, folder_bytes, prepare_run_dir
from deco.train.rundir.resume import (
    SKIPPED_FILE,
    ResumePlan,
    apply_lr_changes,
    change_event,
    change_lines,
    check_new_budget,
    parse_allow_change,
    plan_resume,
    record_provenance,
)
from deco.train.rundir.snapshot import load_optimizer, save_checkpoint
from deco.train.rundir.state import TrainState, restore_rng
from deco.train.rundir.stopping import StopRequest, stop_on_signals
from deco.train.setup import build_dataset, model_for_stage, save_final, total_steps_for
from deco.train.step import accel
from deco.train.step.compiled import compile_parts
from deco.train.step.freeze import describe_trainable, set_train_modes
from deco.train.step.loop import Loop
from deco.train.step.optim import build_optimizer, build_scheduler, optimizer_kind
from deco.train.step.wrapper import TrainingModel


def train_main(
    config_path: str | Path, overrides: list[str] | None = None, resume: bool | str = False,
    allow_change: str | list[str] | None = None,
) -> dict:
    """Train a model as CONFIG says (stage 1: projector only; stage 2: projector + LLM).

    Overrides are dotted `section.key=value` pairs (e.g. `train.max_steps=10`). `resume=True` continues
    the latest checkpoint in train.output_dir exactly (same losses as an uninterrupted run); a path
    continues from that checkpoint folder. Run on several processes with
    `accelerate launch --config_file configs/accelerate/<backend>.yaml -m deco.cli train CONFIG`.
    `allow_change` names settings that may differ from the resumed run (deco.train.rundir.resume.CHANGEABLE).
    """
    return run_training(load_config(config_path, overrides or []), resume=resume, allow_change=allow_change)


def run_training(
    config: Config,
    resume: bool | str | Path = False,
    *,
    vision_tower: VisionTower | None = None,
    dataset: Dataset | None = None,
    allow_change: str | list[str] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training job; returns the summary also written to `summary.json`.

    `vision_tower` and `dataset` let callers (the demo) pass an encoder and a dataset built in-process;
    a dataset must return samples as ConversationDataset does and may have `modality_lengths`.
    One writer per run: the main process holds `train.output_dir/.deco.lock` (deco.runlock) throughout.
    SIGTERM / SIGINT stop it after the current step with a checkpoint: TrainingStopped (deco.train.rundir.stopping).
    """
    world = accel.world_size()
    check_train_config(config, world)
    allowed = parse_allow_change(allow_change)
    main = PartialState().is_main_process
    reporter = Reporter(main, config.train.quiet)
    run_dir = Path(config.train.output_dir)
    # SIGTERM / SIGINT: finish the step, checkpoint, release the lock, raise TrainingStopped (deco.train.rundir.stopping).
    with stop_on_signals(announce=main) as stop:
        if not main:
            return _run(config, resume, vision_tower, dataset, allowed, reporter, world, stop)
        prepare_run_dir(run_dir)  # before anything is built: an unwritable folder fails in a second
        with locked(run_dir / LOCK_NAME, f"train.output_dir {run_dir}", "deco train", say=reporter.info):
            try:
                return _run(config, resume, vision_tower, dataset, allowed, reporter, world, stop)
            except Exception as exc:  # a disk failing part-way: one line naming the last good checkpoint
                problem = io_error(exc)
                if problem is None:
                    raise
                raise DecoError(describe_io_error(problem, run_dir, latest_checkpoint(run_dir))) from None


def _run(
    config: Config, resume: bool | str | Path, vision_tower: VisionTower | None, dataset: Dataset | None,
    allowed: tuple[str, ...], reporter: Reporter, world: int, stop: StopRequest,
) -> dict[str, Any]:
    train, run_dir = config.train, Path(config.train.output_dir)
    processes = PartialState()
    main = processes.is_main_process
    # The local main process reads the data file first and caches its summary and tokenized index
    # (deco.data.index_cache); the other ranks of the machine then map the cache instead of parsing and
    # tokenizing it again each (665K records: minutes and gigabytes per rank).
    with processes.local_main_process_first():
        resumed: ResumePlan = plan_resume(config, resume, allowed, reporter.info, world)
    checkpoint, saved = resumed.checkpoint, resumed.saved

    if main and checkpoint is not None:  # a resume knows its checkpoint size before building anything
        reporter.info(check_free_space(run_dir, folder_bytes(checkpoint)))
    model, counts = model_for_stage(config, vision_tower, checkpoint, write_base=main)
    if main and checkpoint is None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        projector = sum(p.numel() for p in model.projector.parameters())
        reporter.info(check_free_space(run_dir, checkpoint_bytes(trainable, projector)))
    for line in describe_trainable(counts, train.stage):
        reporter.info(line)
    if model.anyres is not None:  # the token count per image depends on its layout: say it up front
        for line in model.anyres.token_report():
            reporter.info(line)
    with processes.local_main_process_first():
        data = dataset if dataset is not None else build_dataset(config, model, resumed.records)
    resumed.records = None  # the parsed file is in the index now; free it before loader workers fork
    if getattr(data, "index_dir", None) is not None:
        how = "read from" if data.cache_hit else "cached in"
        reporter.info(f"tokenized index ({len(data)} samples) {how} {data.index_dir}")
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
    fresh = [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups]  # this config's values
    state = TrainState()
    if saved is not None:
        state = TrainState.from_dict(saved["state"])
        check_new_budget(state.step, total, checkpoint)
        scheduler.load_state_dict(saved["scheduler"])
    accelerator = accel.make_accelerator(train, plan.accum)
    set_train_modes(model, train)
    if train.compile:
        reporter.info(f"torch.compile: {', '.join(compile_parts(model))} (the first steps include compiling)")
    model, optimizer = accelerator.prepare(TrainingModel(model), optimizer)
    if saved is not None and not load_optimizer(accelerator, model, optimizer, checkpoint, saved):
        reporter.info("warning: this checkpoint has no optimizer state (DeepSpeed run); AdamW moments restart")
    if resumed.accepted:  # deliberate changes (--allow-change) apply from this step on
        apply_lr_changes(optimizer, scheduler, fresh)
        for line in change_lines(resumed.accepted, state.step):
            reporter.info(line)

    loading = loader_settings(config.data, accelerator.device, plan.accum)
    loader = build_loader(
        data, plan, accelerator.process_index, state.epoch, state.step_in_epoch, max(0, total - state.step),
        DataCollator.from_processor(accelerator.unwrap_model(model).deco.processor()), loading, train.seed,
    )
    reporter.info(f"{loading.describe()}; AdamW {optimizer_kind(optimizer)}")
    batches = iter(loader)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(run_dir)
        dump_config(config, run_dir / "config.yaml")
        write_json({**versions(), "machine": machine(), "world_size": world}, run_dir / "versions.json")
        record_provenance(run_dir, config, resumed, data, state.step)
    metrics = MetricsWriter(run_dir / "metrics.jsonl", resume_step=state.step if saved else None,
                            config=config) if main else None
    if metrics is not None and resumed.accepted:
        metrics.write(change_event(state.step, resumed.accepted, checkpoint))
    skipped = int(getattr(data, "num_skipped", 0))
    listed = f", listed in {SKIPPED_FILE}" if getattr(data, "bad_samples", None) else ""
    reporter.info(
        f"{len(data)} samples ({skipped} skipped{listed}), {plan.steps_per_epoch} steps/epoch, {total} steps, "
        f"global batch {train.global_batch_size} = {world} process(es) x {plan.accum} accumulation x "
        f"{train.per_device_batch_size} ({accelerator.distributed_type.value}, {accelerator.device}, "
        f"precision {train.precision})" + (f"; resuming at step {state.step} from {checkpoint}" if saved else "")
    )
    extra = {"world_size": world, "accum": plan.accum, "total_steps": total, "num_samples": len(data),
             "data_fingerprint": resumed.fingerprint}
    # Collapse probe at every checkpoint (deco.train.report.probe); one process without sharded weights only.
    probe = probe_images(data) if main and accelerator.distributed_type.value in ("NO", "MULTI_CPU", "MULTI_GPU") else None

    def save() -> Any:
        if main and not (run_dir / LOCK_NAME).is_file():  # deleted (or unmounted) under the running job
            raise FileNotFoundError(errno.ENOENT, "the run folder or its lock was removed while the run went on",
                                    str(run_dir))
        written = save_checkpoint(accelerator, model, optimizer, scheduler, state, config, extra)
        if probe is not None:
            result = measure(accelerator.unwrap_model(model).deco, probe)
            if main:  # its own file: metrics.jsonl keeps one record per logged step
                with open(run_dir / PROBE_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.step, **result}) + "\n")
            if (warning := collapse_warning(state.step, result)) is not None:
                reporter.info(warning)
        return written

    loop = Loop(
        accelerator, model, optimizer, scheduler, plan, batches, state, train, total, reporter, metrics, save=save,
        stop=stop,
    )
    if main and train.diagnostics_every > 0:
        deco_model = accelerator.unwrap_model(model).deco
        loop.diagnostics = BlockDiagnostics(deco_model.projector, deco_model.llm.get_input_embeddings(),
                                            run_dir / DIAGNOSTICS_FILE)
    if saved is not None:
        restore_rng(saved["rng"][min(accelerator.process_index, len(saved["rng"]) - 1)])
        # With changes accepted, the resumed step is saved again even when no step is left to run, so the
        # checkpoint records them (the next --resume compares against what this one used).
        loop.last_saved = -1 if resumed.accepted else state.step
    started = time.perf_counter()
    try:
        loop.run()
    finally:
        if metrics is not None:
            metrics.close()
        if loop.diagnostics is not None:
            loop.diagnostics.close()
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
