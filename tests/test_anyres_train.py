"""`deco train` with AnyRes on: a real tiny run, its token report, the saved model, exact resume, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from deco.cli import app
from deco.config import load_config
from deco.errors import ConfigError
from deco.model import load_model
from deco.train import run_training
from deco.train.report.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Sizes that give every default layout at 48 px tiles, so batches mix layouts.
SIZES = [(150, 50), (50, 150), (100, 100), (40, 30), (96, 40), (44, 100), (90, 95), (120, 44)]
WORDS = ["red", "green", "blue", "wide", "tall", "square", "small", "big"]


def write_data(root):
    (root / "images").mkdir(parents=True)
    records = []
    for i, size in enumerate(SIZES):
        Image.new("RGB", size, (30 * i, 255 - 30 * i, 120)).save(root / "images" / f"im{i}.png")
        records.append({"id": f"im{i}", "image": f"im{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe."},
            {"from": "gpt", "value": " ".join(WORDS[i:] + WORDS[:i][: i % 3])}]})
    records.append({"id": "text", "conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "hello"}]})
    (root / "train.json").write_text(json.dumps(records))
    return root


def overrides(data, out, *extra):
    return ["vision.anyres.enabled=true", "projector.options={grid: 3x3}", "train.lr=1e-2",
            f"data.train_file={data / 'train.json'}", f"data.image_folder={data / 'images'}",
            f"train.output_dir={out}", "train.max_steps=4", "train.save_every=2", "train.keep_last=2",
            "train.quiet=true", *extra]


@pytest.fixture(scope="module")
def anyres_run(tmp_path_factory):
    """One 4-step AnyRes run (global batch 4 = 2 accumulation x 2), shared by the tests below."""
    root = tmp_path_factory.mktemp("anyres")
    data, out = write_data(root / "data"), root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_training(load_config("configs/tiny.yaml", overrides(data, out)))
    finally:
        torch.set_num_threads(threads)
    return data, out, summary


def test_anyres_training_runs_and_the_loss_moves(anyres_run):
    _, out, summary = anyres_run
    assert summary["steps"] == 4 and summary["skipped_samples"] == 0
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert len(set(losses)) == 4 and losses[-1] < losses[0]
    assert load_config(out / "config.yaml").vision.anyres.enabled


def test_the_saved_model_reloads_with_anyres_and_the_trained_projector(anyres_run):
    _, out, _ = anyres_run
    final = load_model(out / "final")
    assert final.anyres is not None and final.anyres.layouts == ((1, 2), (2, 1), (2, 2), (1, 3), (3, 1))
    trained = load_file(str(out / "checkpoint-4" / "projector.safetensors"))
    assert all(torch.equal(v, trained[k]) for k, v in final.projector.state_dict().items())
    batch = final.processor()("<image> hi", images=[Image.new("RGB", (100, 100))])
    assert batch["image_layouts"] == [(2, 2)] and final(**batch).logits.isfinite().all()


def test_resume_from_the_middle_gives_the_same_losses(anyres_run, tmp_path):
    data, out, _ = anyres_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    for name in ("checkpoint-4", "final"):
        shutil.rmtree(resumed / name)
    summary = run_training(load_config("configs/tiny.yaml", overrides(data, resumed)), resume=True)
    assert summary["resumed_from"] == str(resumed / "checkpoint-2") and summary["steps"] == 4
    got, want = read_metrics(resumed / "metrics.jsonl"), read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert [r["loss"] for r in got] == [r["loss"] for r in want]  # bit for bit
    a = load_file(str(resumed / "checkpoint-4" / "trainable.safetensors"))
    b = load_file(str(out / "checkpoint-4" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    with pytest.raises(ConfigError, match=r"  vision\.anyres\.max_tiles: 4 -> 5"):  # the tiling is part of what must match
        run_training(load_config("configs/tiny.yaml", overrides(data, resumed, "vision.anyres.max_tiles=5")),
                     resume=True)


def test_deco_train_cli_with_an_anyres_yaml_reports_the_token_counts(anyres_run, tmp_path):
    data, _, _ = anyres_run
    config = tmp_path / "hires.yaml"
    config.write_text(
        f"base: {Path('configs/tiny.yaml').resolve()}\n"
        "vision:\n  anyres: {enabled: true, layouts: [1x2, 2x1, 2x2], max_tiles: 4}\n"
        "projector:\n  options: {grid: 3x3}\n"
        f"data: {{train_file: {data / 'train.json'}, image_folder: {data / 'images'}, max_length: 512}}\n"
        f"train: {{output_dir: {tmp_path / 'cli'}, max_steps: 1, quiet: true}}\n"
    )
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    assert "AnyRes: layout 2x2 -> 51 tokens per image (5 views x 9 + 6 newline)" in result.output
    assert "AnyRes: max 51 tokens per image (layout 2x2, max_tiles=4, 48 px tiles)" in result.output
    assert load_model(tmp_path / "cli" / "final").anyres.layouts == ((1, 2), (2, 1), (2, 2))


def test_a_video_model_with_anyres_is_a_config_error(anyres_run, tmp_path):
    data, _, _ = anyres_run
    video = ["projector.name=deco3d", "projector.options={target: 2x3x3, num_frames: 4}"]
    with pytest.raises(ConfigError, match="'vision.anyres.enabled'.*videos"):  # at config time
        load_config("configs/tiny.yaml", [*overrides(data, tmp_path / "v"), *video])
    config = load_config("configs/tiny.yaml", [*overrides(data, tmp_path / "v")[1:], *video])
    config.vision.anyres.enabled = True  # set in code, past validation: the model build still refuses
    with pytest.raises(ConfigError, match="'vision.anyres.enabled'.*videos"):
        run_training(config)
