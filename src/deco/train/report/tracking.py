"""Experiment trackers (`train.report_to: [tensorboard, wandb, ...]`) through accelerate's tracker classes.

They receive what metrics.jsonl receives (same names, same steps) and the resolved config. Nothing
here needs a network: TensorBoard writes event files under `{output_dir}/tensorboard/`, and W&B runs
in offline mode under `{output_dir}/wandb/` unless WANDB_MODE is set (`WANDB_MODE=online` to stream;
`wandb sync {output_dir}/wandb/offline-run-*` uploads an offline run later); a resumed deco run continues
its W&B run (same id) and drops the TensorBoard steps it logs again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from deco.errors import ConfigError

# metrics.jsonl fields that are not series to plot: the step is the x axis, `time` a wall-clock stamp.
NOT_SERIES = ("step", "time")
WANDB_ID_FILE = "deco-run-id"


def tracker_names() -> list[str]:
    """Tracker names accelerate knows (valid values of train.report_to)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def flatten_config(data: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested config -> dotted keys with scalar values (what TensorBoard's hparams and W&B's config take)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:  # None, lists, empty dicts: their text, so every setting is visible in the tracker
            out[name] = str(value)
    return out


def _kwargs(name: str, run_dir: Path, resume_step: int | None) -> dict[str, Any]:
    if name == "tensorboard" and resume_step is not None:
        # A resumed run re-logs the steps after its checkpoint: drop what the killed run wrote past it.
        return {"purge_step": resume_step + 1}
    if name == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # no network unless the user asks for it
        # One W&B run per deco run: a resume continues the run id the first start wrote down.
        id_file = run_dir / "wandb" / WANDB_ID_FILE
        if resume_step is None or not id_file.is_file():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(uuid.uuid4().hex[:12], encoding="utf-8")
        run_id = id_file.read_text(encoding="utf-8").strip()
        return {"dir": str(run_dir), "name": run_dir.name, "id": run_id, "resume": "allow"}
    return {}


def start_trackers(
    names: list[str], run_dir: Path, project: str, config: dict[str, Any], resume_step: int | None = None
) -> list[Any]:
    """Start each named accelerate tracker for a run and store the config in it."""
    from accelerate import PartialState
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    PartialState()  # accelerate's tracker logging needs its state (a training run has it already)
    unknown = [n for n in names if n not in LOGGER_TYPE_TO_CLASS]
    if unknown:
        raise ConfigError(f"train.report_to: unknown tracker(s) {unknown}; valid: {', '.join(tracker_names())}")
    trackers = []
    for name in dict.fromkeys(names):
        cls = LOGGER_TYPE_TO_CLASS[name]
        kwargs = _kwargs(name, run_dir, resume_step)
        # TensorBoard: {run_dir}/tensorboard; trackers without a folder take the project as their run name.
        tracker = cls(name, str(run_dir), **kwargs) if cls.requires_logging_directory else cls(project, **kwargs)
        try:
            tracker.start()
        except ImportError as exc:
            raise ConfigError(
                f"train.report_to: '{name}' needs its package ({exc.name or exc}); pip install "
                f"'deco-vlm[track]' (TensorBoard and W&B) or the tracker's own package"
            ) from None
        tracker.store_init_configuration(flatten_config(config))
        trackers.append(tracker)
    return trackers


def series(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The plottable values of a metrics record: numbers, nested ones as `outer.inner` (event records
    such as probes); strings, flags and a missing grad norm are left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if not prefix and key in NOT_SERIES:
            continue
        if isinstance(value, dict):
            out.update(series(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def log_record(trackers: list[Any], record: dict[str, Any]) -> None:
    """Send one metrics.jsonl record to every tracker, at its step."""
    values = series(record)
    if not values:
        return
    for tracker in trackers:
        tracker.log(values, step=int(record["step"]))


def finish_trackers(trackers: list[Any]) -> None:
    """Flush and close every tracker (TensorBoard writes its last events; W&B finishes the run)."""
    for tracker in trackers:
        tracker.finish()
