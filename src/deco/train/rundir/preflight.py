"""Fail before the work: the run directory must be writable and the disk must hold a checkpoint.

Checked before the model is built (writability) and before the first step (free space against one
checkpoint's size), so a wrong or full disk costs seconds, not the time to load a 7B model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deco.errors import DecoError

# A checkpoint holds the trainable weights, the projector again, and AdamW's two moments, all float32.
_BYTES_PER_TRAINABLE = 4 * 3


def prepare_run_dir(run_dir: Path) -> None:
    """Create train.output_dir and write (then delete) a probe file in it; DecoError names what failed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DecoError(f"train.output_dir '{run_dir}' cannot be created: {exc.strerror or exc}") from None
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"deco")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise DecoError(f"train.output_dir '{run_dir}' is not writable: {exc.strerror or exc}") from None
    finally:
        probe.unlink(missing_ok=True)


def checkpoint_bytes(trainable: int, projector: int) -> int:
    """About how many bytes one checkpoint-N/ folder takes for these parameter counts."""
    return trainable * _BYTES_PER_TRAINABLE + projector * 4


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under a folder (an existing checkpoint: the size the next one will take)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def check_free_space(run_dir: Path, need: int) -> str:
    """Raise DecoError when the disk under run_dir has less than `need` bytes free; else a report line."""
    free = shutil.disk_usage(run_dir).free
    text = f"{_size(free)} free on the disk of {run_dir}, one checkpoint takes about {_size(need)}"
    if free < need:
        raise DecoError(f"not enough disk space: {text}; free some space or choose another train.output_dir")
    return text


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
