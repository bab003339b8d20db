"""`--reduce` in deco eval (every reducer, the tiny model) and deco chat; bench's reducer rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deco.cli import app
from deco.config import load_config
from deco.errors import ConfigError, DataError
from deco.model import build_model, save_model
from test_eval_runner import write_gqa

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def mlp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny.yaml with the per-patch mlp projector (144 tokens), saved."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mlp") / "model"
    save_model(build_model(load_config("configs/tiny.yaml", ["projector.name=mlp", "projector.options={}"])), path)
    return path


@pytest.mark.parametrize("spec", ["random:16", "pool:16", "divprune:16", "visionzip:16", "vispruner:16", "fastv:16"])
def test_eval_reduce_answers_and_scores_with_every_reducer(mlp_model, tmp_path, spec):
    data, images = write_gqa(tmp_path, 3)
    out = tmp_path / "preds.jsonl"
    args = ["eval", "--model", str(mlp_model), "--benchmark", "gqa", "--data", str(data), "--images", str(images),
            "--out", str(out), "--max-new-tokens", "3", "--batch-size", "2", "--template", "plain",
            "--reduce", spec]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "3 answered" in res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3
    # the same file under another reducer (or none) is another run: it must not be resumed
    res = CliRunner().invoke(app, args[:-1] + ["none"])
    assert isinstance(res.exception, DataError) and f"reduce='{spec}'" in str(res.exception)


def test_bad_reduce_is_one_error_line_before_the_model_loads(mlp_model, tmp_path):
    data, images = write_gqa(tmp_path, 1)
    res = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "nowhere"), "--benchmark", "gqa", "--data",
                                   str(data), "--images", str(images), "--out", str(tmp_path / "p.jsonl"),
                                   "--reduce", "visonzip:64"])
    assert isinstance(res.exception, ConfigError) and "Did you mean 'visionzip'" in str(res.exception)
    res = CliRunner().invoke(app, ["chat", "--model", str(mlp_model), "--prompt", "hi", "--reduce", "pool:15"])
    assert isinstance(res.exception, ConfigError) and "perfect square" in str(res.exception)


def test_chat_answers_with_a_reducer(mlp_model, tmp_path):
    from PIL import Image

    Image.new("RGB", (48, 48), (200, 10, 10)).save(tmp_path / "red.png")
    res = CliRunner().invoke(app, ["chat", "--model", str(mlp_model), "--image", str(tmp_path / "red.png"),
                                   "--prompt", "colour?", "--max-new-tokens", "3", "--reduce", "visionzip:16"])
    assert res.exit_code == 0, res.output


def test_analyze_with_a_reducer_maps_and_measures_the_kept_tokens(mlp_model, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (48, 48), (80 * i, 30, 200)).save(folder / f"{i}.png")
    res = CliRunner().invoke(app, ["analyze", "--model", str(mlp_model), "--metrics", "--images", str(folder),
                                   "--out", str(tmp_path / "m"), "--reduce", "random:16"])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "m" / "metrics.json").read_text())
    row = row[0] if isinstance(row, list) else row["rows"][0]
    assert row["tokens"] == 16 and row["model"] == "model+random:16"
    assert row["effective_patches_per_token"] == pytest.approx(1.0)  # a kept mlp token is one patch
    res = CliRunner().invoke(app, ["analyze", "--model", str(mlp_model), "--image", str(folder / "0.png"),
                                   "--question", "colour?", "--max-new-tokens", "2", "--out", str(tmp_path / "e"),
                                   "--reduce", "pool:16"])
    assert res.exit_code == 0, res.output


def test_app_models_load_with_the_reducer(saved_tiny_model):
    from deco.app.engine import Engine
    from deco.app.sources import ModelChoice

    engine = Engine(ModelChoice("tiny", saved_tiny_model, reduce="pool:9"))
    assert "projector `deco`, 9 visual tokens per image (reduced by `pool:9`)" in engine.describe()
    assert engine.load().processor().num_image_tokens == 9
