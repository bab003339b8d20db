"""Checkpoint folders on disk: written atomically, found by their contents, pruned to the last K.

Layout of `checkpoint-{step}/`:
    trainable.safetensors   every trainable parameter, by its DecoModel name (projector.*, llm.*, ...)
    projector.safetensors   the projector's state dict (what a stage-2 run's stage1_checkpoint names)
    optimizer.safetensors   AdamW moments, keyed `{parameter name}::{exp_avg|exp_avg_sq|step}`
    train_state.json        step, data position, scheduler, optimizer param groups, RNG per rank, config

A checkpoint is built in a hidden temp folder, every file fsynced, then renamed into place, so a kill
during a save leaves the previous checkpoint as the latest, never a half-written one. Nothing is
pickled (safetensors + JSON only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from deco.errors import ConfigError, DecoError
from deco.train.rundir.diskerrors import io_error

PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
STATE_FILE = "train_state.json"
TRAINABLE_FILE = "trainable.safetensors"
PROJECTOR_FILE = "projector.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_SEP = "::"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temp folder next to `target`; on success fsync it and rename it to `target`."""
    target = Path(target)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync_path(file)
        _fsync_path(tmp)
        old = None
        if target.exists():  # re-saving a step (a resumed run): swap, then drop the old copy
            old = target.parent / f"{TMP_PREFIX}old-{target.name}-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_path(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temp(run_dir: Path) -> None:
    """Delete temp folders that a killed save left behind."""
    for path in Path(run_dir).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The train_state.json of a checkpoint folder, with a clear error when it is not one."""
    file = Path(checkpoint) / STATE_FILE
    if not file.is_file():
        raise ConfigError(f"'{checkpoint}' is not a training checkpoint: {STATE_FILE} is missing")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: unreadable train state ({exc})") from None


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in a run dir, oldest first.

    The step comes from the folder's train_state.json, not from its name.
    """
    found = []
    for path in Path(run_dir).glob(f"{PREFIX}*"):
        if path.is_dir() and (path / STATE_FILE).is_file():
            with contextlib.suppress(ConfigError, KeyError, TypeError):
                found.append((int(read_state(path)["state"]["step"]), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run dir, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (keep_last <= 0 keeps all); returns the deleted."""
    found = list_checkpoints(run_dir)
    if keep_last <= 0 or len(found) <= keep_last:
        return []
    doomed = [path for _, path in found[:-keep_last]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating tensors holding NaN or inf."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors with every tensor contiguous and unshared; refuses NaN/inf weights."""
    bad = nonfinite_tensors(tensors)
    if bad:
        raise DecoError(f"refusing to write non-finite weights to {path}: {bad[:5]}")
    try:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))
    except Exception as exc:  # safetensors wraps a full disk in its own error type: an OSError naming the file
        problem = io_error(exc, path)
        if problem is None or problem is exc:
            raise
        raise problem from None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file with an error naming it when it is missing or corrupt."""
    if not Path(path).is_file():
        raise ConfigError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from None


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A name-keyed optimizer state dict -> (tensors for safetensors, JSON-friendly rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}{_SEP}{key}"] = value
            else:
                scalars.setdefault(name, {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_optimizer_state."""
    state: dict[str, dict[str, Any]] = {}
    for flat, value in tensors.items():
        name, key = flat.rsplit(_SEP, 1)
        state.setdefault(name, {})[key] = value
    for name, entry in meta.get("scalars", {}).items():
        state.setdefault(name, {}).update(entry)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def write_json(data: Any, path: Path) -> None:
    """JSON with a trailing newline."""
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
