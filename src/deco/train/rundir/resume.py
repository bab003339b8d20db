"""Resume continues the recorded run or refuses: every setting that shapes the trajectory is compared.

A resumed run is the saved run, step for step, unless the person says otherwise: each differing
setting is listed (old -> new), and the run stops. Settings that can sensibly change part-way (the
learning-rate recipe, step budget, clipping, precision, the data's content) may be changed on purpose
with `--allow-change key1,key2`; the change applies from the resumed step on and is recorded as an
event in metrics.jsonl and in the run's `config_history.jsonl`, so the run directory never claims a
value that was not used. Model, stage, seed and global batch never change within a run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deco.config import Config
from deco.data.index_cache import records_summary, resolve_cache_dir
from deco.data.records import Record
from deco.errors import ConfigError
from deco.train.rundir.checkpoint import latest_checkpoint
from deco.train.rundir.fingerprint import MANIFEST_FILE, data_fingerprint, describe_change, write_manifest
from deco.train.rundir.snapshot import read_resume
from deco.train.setup import resolve_resume

HISTORY_FILE = "config_history.jsonl"
SKIPPED_FILE = "skipped_samples.jsonl"
DATA_KEY = "data"  # the data fingerprint, as an --allow-change key

WORLD_KEY = "world_size"  # processes, as an --allow-change key: with the micro-batch size, how a batch is split

# Settings that do not change what the run computes (where it writes, how often it logs, memory-saving
# recomputation, loader workers, safety checks, how images are fingerprinted). How the global batch is
# split into micro-batches is NOT among them: the same batch summed in another order differs in the last
# bits (about 1e-6 in the loss), so the run stops being bitwise reproducible.
NOT_TRAJECTORY = (
    "train.output_dir", "train.log_every", "train.diagnostics_every", "train.save_every", "train.keep_last", "train.quiet",
    "train.gradient_checkpointing", "train.report_to", "train.tracker_project",
    "data.num_workers", "data.prefetch_thread", "data.cache_dir", "data.check_images", "data.allow_outside_image_folder",
    "data.fingerprint",  # a change of method shows as a data change (deco.train.rundir.fingerprint.describe_change)
    # Paths: the data is compared by content (the fingerprint), not by where it lies.
    "data.train_file", "data.image_folder",
    "model.allow_pickle",
)
# Settings that may be changed on purpose part-way (--allow-change), applied from the resumed step.
CHANGEABLE = (
    "train.lr", "train.projector_lr", "train.weight_decay", "train.warmup_ratio", "train.lr_schedule",
    "train.max_steps", "train.epochs", "train.max_grad_norm", "train.on_nonfinite", "train.precision",
    "train.optimizer", "train.per_device_batch_size", WORLD_KEY, "train.compile", DATA_KEY,
)
_SECTIONS = ("model", "vision", "projector", "llm", "data", "train")


def parse_allow_change(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'train.lr,train.max_steps' (or a list) -> checked keys; unknown or unchangeable keys are errors."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    keys = tuple(k.strip() for k in items if k.strip())
    bad = [k for k in keys if k not in CHANGEABLE]
    if bad:
        raise ConfigError(
            f"--allow-change {','.join(bad)}: only these settings may change part-way through a run: "
            f"{', '.join(CHANGEABLE)} (model, stage, seed, global batch and the rest need a new train.output_dir)"
        )
    return keys


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_TRAJECTORY)


def _free_form(key: str) -> bool:
    """Keys inside free-form dicts (HF configs, projector options), where a missing entry means a change."""
    return ".hf_config." in key or ".options." in key


def trajectory_changes(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, value now)} for every trajectory setting that differs.

    Settings the saved run did not record (fields added to deco since) are not compared.
    """
    old = _flatten({s: saved[s] for s in _SECTIONS if s in saved}, "", {})
    new = _flatten({s: now.get(s) for s in _SECTIONS if s in saved}, "", {})
    changes = {}
    for key in sorted(set(old) | set(new)):
        if _ignored(key) or (key not in old or key not in new) and not _free_form(key):
            continue
        if old.get(key) != new.get(key):
            changes[key] = (old.get(key), new.get(key))
    return changes


def refuse_or_accept(
    changes: dict[str, tuple[Any, Any]], allowed: Iterable[str], checkpoint: Path, step: int
) -> dict[str, tuple[Any, Any]]:
    """Raise ConfigError listing every change not in `allowed` (one line each); return the accepted ones."""
    allowed = set(allowed)
    refused = {k: v for k, v in changes.items() if k not in allowed}
    if refused:
        # The data fingerprint's entry carries one sentence saying what changed (as `new`).
        lines = [f"  {key}: {new}" if key == DATA_KEY else f"  {key}: {_show(old)} -> {_show(new)}"
                 for key, (old, new) in refused.items()]
        fixable = [k for k in refused if k in CHANGEABLE]
        fixed = [k for k in refused if k not in CHANGEABLE]
        advice = []
        if fixable:
            advice.append(f"to apply {'it' if len(fixable) == 1 else 'them'} from step {step} on purpose, pass "
                          f"--allow-change {','.join(fixable)}")
        if fixed:
            advice.append(f"{', '.join(fixed)} cannot change within a run: start a new train.output_dir")
        advice.append("to continue the run as recorded, drop the new values")
        raise ConfigError(
            f"cannot resume from {checkpoint}: {len(refused)} setting(s) differ from the recorded run (old -> new):\n"
            + "\n".join(lines) + "\n" + "; ".join(advice)
        )
    return {k: v for k, v in changes.items() if k in allowed}


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def check_new_budget(step: int, total: int, checkpoint: Path) -> None:
    """A changed step budget cannot end before the step the run has already reached."""
    if total < step:
        raise ConfigError(
            f"cannot resume from {checkpoint} at step {step}: the run now has {total} steps in all "
            "(train.max_steps / train.epochs), fewer than it has already trained"
        )


def apply_lr_changes(optimizer: Any, scheduler: Any, fresh: list[tuple[float, float]]) -> None:
    """After loading a checkpoint's optimizer and scheduler state, put this config's base lrs and weight
    decay back (the loaded state holds the old ones) and set each group's lr for the resumed step under
    this config's schedule (warm-up, shape and length are the fresh scheduler's own)."""
    if len(fresh) != len(optimizer.param_groups):
        raise ConfigError("the optimizer's parameter groups differ from the checkpoint's; cannot apply lr changes")
    scheduler.base_lrs = [base for base, _ in fresh]
    factors = [fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
    for group, (base, decay), factor in zip(optimizer.param_groups, fresh, factors, strict=True):
        group["initial_lr"] = base
        group["weight_decay"] = decay
        group["lr"] = base * factor
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def change_event(step: int, changes: dict[str, tuple[Any, Any]], checkpoint: Path) -> dict[str, Any]:
    """The metrics.jsonl / history record of a deliberate change at a resume."""
    return {
        "step": step,
        "event": "config_change",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_from": str(checkpoint),
        "changes": {key: {"old": old, "new": new} for key, (old, new) in changes.items()},
    }


def append_history(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record to the run's config_history.jsonl (its start, every resume, every change)."""
    with open(run_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@dataclass
class ResumePlan:
    """What run_training needs to know before building anything: where it resumes (if it does), the
    changes accepted there, and the training data's records and fingerprint."""

    checkpoint: Path | None = None
    saved: dict[str, Any] | None = None
    accepted: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    records: list[Record] | None = None
    fingerprint: dict[str, Any] | None = None
    manifest: list[str] | None = None

    @property
    def step(self) -> int:
        """The resumed step (0 for a new run)."""
        return int(self.saved["state"]["step"]) if self.saved else 0


def plan_resume(config: Config, resume: bool | str | Path | None, allowed: Sequence[str],
                say: Callable[[str], Any], world: int = 1) -> ResumePlan:
    """Find the checkpoint, compare every trajectory setting and the data fingerprint with it, and
    refuse (ConfigError, one line per setting) unless each change is allowed. Cheap: runs before the
    model is built."""
    run_dir = Path(config.train.output_dir)
    plan = ResumePlan(checkpoint=resolve_resume(resume, run_dir))
    if resume is True and plan.checkpoint is None:
        say(f"--resume: no checkpoint in {run_dir} to resume from; starting a new run at step 0")
    data = config.data
    if data.train_file is not None:
        # The file's hash, record count and images: from the data cache when this file was read before
        # (then its records are not parsed at all: the cached tokenized index serves the dataset).
        summary, plan.records = records_summary(data.train_file, data.allow_multi_image,
                                                resolve_cache_dir(data.cache_dir))
        plan.fingerprint, plan.manifest = data_fingerprint(data.train_file, summary, data.image_folder,
                                                           data.fingerprint)
    if plan.checkpoint is None:
        if latest_checkpoint(run_dir) is not None:
            raise ConfigError(
                f"train.output_dir '{run_dir}' already holds checkpoints of a run: pass --resume to continue it, "
                "or choose another output_dir"
            )
        return plan
    plan.saved = read_resume(plan.checkpoint)
    changes = trajectory_changes(plan.saved.get("config", {}), config.to_dict())
    if plan.saved.get(WORLD_KEY) not in (None, world):  # processes: with the micro-batch, how a batch is split
        changes[WORLD_KEY] = (plan.saved[WORLD_KEY], world)
    old = plan.saved.get("data_fingerprint")
    if old is not None and plan.fingerprint is not None:
        what = describe_change(old, plan.fingerprint, run_dir / MANIFEST_FILE, plan.manifest or [])
        if what:
            changes[DATA_KEY] = (old, what)
    plan.accepted = refuse_or_accept(changes, allowed, plan.checkpoint, plan.step)
    if DATA_KEY in plan.accepted:  # recorded as old and new fingerprints, with what changed
        plan.accepted[DATA_KEY] = (old, {**(plan.fingerprint or {}), "what": changes[DATA_KEY][1]})
    return plan


def change_lines(accepted: dict[str, tuple[Any, Any]], step: int) -> list[str]:
    """One line per deliberate change, for the log."""
    out = []
    for key, (old, new) in accepted.items():
        what = new.get("what") if key == DATA_KEY and isinstance(new, dict) else f"{_show(old)} -> {_show(new)}"
        out.append(f"changed from step {step} on (--allow-change): {key}: {what}")
    return out


def record_provenance(run_dir: Path, config: Config, plan: ResumePlan, data: Any, step: int) -> None:
    """Main process, before step 1: the config history entry of this start or resume, the data manifest,
    and the skipped samples (id, source, reason) when any were skipped."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if plan.saved is None:
        append_history(run_dir, {"step": 0, "event": "start", "time": now, "config": config.to_dict(),
                                 "data_fingerprint": plan.fingerprint})
    else:
        entry: dict[str, Any] = {"step": step, "event": "resume", "time": now, "resumed_from": str(plan.checkpoint)}
        if plan.accepted and plan.checkpoint is not None:
            entry["changes"] = change_event(step, plan.accepted, plan.checkpoint)["changes"]
        append_history(run_dir, entry)
    if plan.manifest is not None and (plan.saved is None or DATA_KEY in plan.accepted
                                      or not (run_dir / MANIFEST_FILE).is_file()):
        write_manifest(plan.manifest, run_dir / MANIFEST_FILE)
    bad = getattr(data, "bad_samples", None)
    skipped = run_dir / SKIPPED_FILE
    if bad:
        skipped.write_text("".join(json.dumps(b) + "\n" for b in bad), encoding="utf-8")
    else:
        skipped.unlink(missing_ok=True)
