"""train.report_to: accelerate's trackers get metrics.jsonl's records and the config, offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from deco.config import load_config
from deco.errors import ConfigError
from deco.train.report.metrics import MetricsWriter, read_metrics
from deco.train.report.tracking import flatten_config, series

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the run's TensorBoard event files, read back with TensorBoard's own reader."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folder = run_dir / "tensorboard"
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_config_flattens_to_scalars_every_tracker_accepts() -> None:
    flat = flatten_config(load_config("configs/tiny.yaml").to_dict())
    assert flat["train.lr"] == 1e-3 and flat["projector.name"] == "deco"
    assert flat["train.report_to"] == "[]" and flat["model.load_from"] == "None"
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())


def test_series_keeps_numbers_and_leaves_out_step_time_and_missing_values() -> None:
    got = series({"step": 3, "loss": float("nan"), "lr": 0.1, "grad_norm": None, "time": 5.0, "epoch": 0.5})
    assert set(got) == {"loss", "lr", "epoch"} and math.isnan(got["loss"])
    event = series({"step": 2, "event": "probe", "probe": {"cos": 0.25, "images": 8, "collapsed": False}})
    assert event == {"probe.cos": 0.25, "probe.images": 8.0}


def test_metrics_writer_sends_records_and_config_to_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    config = load_config("configs/tiny.yaml", ["train.report_to=[tensorboard]", f"train.output_dir={tmp_path}"])
    writer = MetricsWriter(tmp_path / "metrics.jsonl", config=config)
    for step in (1, 2, 3):
        writer.write({"step": step, "loss": 1.0 / step, "lr": 0.01 * step, "grad_norm": None, "time": 0.0})
    writer.close()
    scalars = tensorboard_scalars(tmp_path)
    assert scalars["loss"] == [(1, 1.0), (2, pytest.approx(0.5)), (3, pytest.approx(1 / 3))]
    assert [s for s, _ in scalars["lr"]] == [1, 2, 3] and "grad_norm" not in scalars and "time" not in scalars
    stored = [yaml.safe_load(p.read_text()) for p in (tmp_path / "tensorboard").rglob("hparams.yml")]
    assert stored and stored[0]["train.report_to"] == "['tensorboard']" and stored[0]["projector.name"] == "deco"


def test_training_run_logs_what_metrics_jsonl_logs(tmp_path: Path, llava_data) -> None:
    pytest.importorskip("tensorboard")
    from deco.train import run_training

    train_file, images = llava_data
    out = tmp_path / "run"
    run_training(load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.max_steps=2", "train.global_batch_size=2", "train.per_device_batch_size=2", "train.quiet=true",
        "train.report_to=[tensorboard]",
    ]))
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]  # step records, not events
    scalars = tensorboard_scalars(out)
    assert {k for k, v in records[0].items() if isinstance(v, int | float) and k not in ("step", "time")} \
        <= set(scalars)
    assert [s for s, _ in scalars["loss"]] == [r["step"] for r in records] == [1, 2]
    for (_, value), record in zip(scalars["loss"], records, strict=True):
        assert value == pytest.approx(record["loss"], rel=1e-6)  # TensorBoard stores float32


def test_wandb_runs_offline_into_the_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config("configs/tiny.yaml", ["train.report_to=[wandb]", f"train.output_dir={tmp_path}"])
    writer = MetricsWriter(tmp_path / "metrics.jsonl", config=config)
    writer.write({"step": 1, "loss": 2.0, "lr": 0.1, "time": 0.0})
    writer.close()
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    run_id = (tmp_path / "wandb" / "deco-run-id").read_text()
    assert runs[0].name.endswith(run_id)
    resumed = MetricsWriter(tmp_path / "metrics.jsonl", resume_step=1, config=config)  # a resume: same W&B run
    resumed.write({"step": 2, "loss": 1.5, "lr": 0.1, "time": 0.0})
    resumed.close()
    # wandb names a folder offline-run-<time>-<id>, adding "-1" when a resume falls in the same second.
    assert all(run_id in p.name for p in (tmp_path / "wandb").glob("offline-run-*"))


def test_unknown_tracker_is_a_clear_error(tmp_path: Path) -> None:
    config = load_config("configs/tiny.yaml", ["train.report_to=[tensorbored]"])
    with pytest.raises(ConfigError, match=r"train.report_to: unknown tracker\(s\) \['tensorbored'\]; valid: .*tensorboard"):
        MetricsWriter(tmp_path / "metrics.jsonl", config=config)
