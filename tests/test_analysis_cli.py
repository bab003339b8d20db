"""`deco analyze` end to end on saved tiny models: files written, errors for bad input, table helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from deco.analysis.compare import compare_projectors, markdown_table, write_table
from deco.analysis.loading import resolve_model_dir
from deco.cli import app
from deco.config import load_config
from deco.errors import ConfigError, DataError
from deco.model import build_model, save_model

runner = CliRunner()
QFORMER = "{hidden_size: 32, num_attention_heads: 4, intermediate_size: 64, num_queries: 9}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis")
    paths = {}
    for name, options in (("deco", "{grid: 3x3}"), ("qformer", QFORMER)):
        torch.manual_seed(0)
        model = build_model(load_config("configs/tiny.yaml", [f"projector.name={name}", f"projector.options={options}"]))
        paths[name] = save_model(model, root / "runs" / name / "final")  # a run directory's final model
    images = root / "images"
    images.mkdir()
    for i in range(3):
        pixels = np.zeros((40, 56, 3), dtype=np.uint8)
        pixels[5 + 8 * i : 20 + 8 * i, 10:30] = (255, 60 * i, 0)
        Image.fromarray(pixels).save(images / f"scene{i}.png")
    paths["images"] = images
    return paths


def test_explains_an_answer_and_writes_maps_and_figures(saved: dict[str, Path], tmp_path: Path) -> None:
    run_dir = saved["deco"].parent
    result = runner.invoke(app, ["analyze", "--model", str(run_dir), "--image", str(saved["images"] / "scene1.png"),
                                 "--question", "What colour is the square?", "--answer", "red", "--template", "none",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "explanation.json").read_text())
    assert summary["query_to_patch"]["route"] == "exact" and summary["answer"] == "red"
    assert [w["text"] for w in summary["words"]] == ["red"]
    maps = load_file(str(tmp_path / "maps.safetensors"))
    assert maps["query_to_patch"].shape == (9, 144) and maps["text_to_patch"].shape == (3, 144)
    torch.testing.assert_close(maps["text_to_patch"].sum(-1), torch.ones(3))
    for figure in ("query_to_patch.png", "text_to_patch.png", "text_to_query.png"):
        with Image.open(tmp_path / figure) as png:
            assert png.format == "PNG" and png.width > 300


def test_metrics_table_compares_models(saved: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", "--metrics", "--images", str(saved["images"]), "--model",
                                 str(saved["deco"]), "--model", str(saved["qformer"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["projector"] for r in rows] == ["deco", "qformer"]
    assert [r["route"] for r in rows] == ["exact", "attention"]
    assert rows[0]["grid_order_spearman"] == pytest.approx(1.0) and rows[1]["grid_order_spearman"] is None
    assert all(r["images"] == 3 and 0 <= r["coverage"] <= 1 for r in rows)
    assert "| deco" in (tmp_path / "metrics.md").read_text()
    assert (tmp_path / "metrics.png").stat().st_size > 0


def test_compare_projectors_labels_models_and_writes_tables(saved: dict[str, Path], tmp_path: Path) -> None:
    images = sorted(saved["images"].iterdir())[:2]
    rows = compare_projectors({"a": saved["deco"], "b": saved["deco"]}, images)
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[0]["within_mean_cos"] == pytest.approx(rows[1]["within_mean_cos"])
    json_path, md_path = write_table(rows, tmp_path)
    assert json.loads(json_path.read_text())[0]["tokens"] == 9
    assert markdown_table(rows).count("\n| ") == 2


def test_bad_input_is_reported_clearly(saved: dict[str, Path], tmp_path: Path) -> None:
    image = str(saved["images"] / "scene0.png")
    empty = runner.invoke(app, ["analyze", "--model", str(saved["deco"]), "--image", image, "--question", " ",
                                "--out", str(tmp_path)])
    assert isinstance(empty.exception, DataError) and "question is empty" in str(empty.exception)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    unreadable = runner.invoke(app, ["analyze", "--model", str(saved["deco"]), "--image", str(broken),
                                     "--question", "Why?", "--out", str(tmp_path)])
    assert isinstance(unreadable.exception, DataError) and "broken.jpg" in str(unreadable.exception)
    no_map = runner.invoke(app, ["analyze", "--model", str(saved["qformer"]), "--image", image, "--question",
                                 "Why?", "--route", "exact", "--out", str(tmp_path)])
    assert isinstance(no_map.exception, ConfigError) and "no exact Query-to-Patch map" in str(no_map.exception)
    no_images = runner.invoke(app, ["analyze", "--metrics", "--model", str(saved["deco"]), "--out", str(tmp_path)])
    assert isinstance(no_images.exception, ConfigError) and "--images" in str(no_images.exception)


def test_run_directory_resolution(saved: dict[str, Path], tmp_path: Path) -> None:
    assert resolve_model_dir(saved["deco"].parent) == saved["deco"]
    assert resolve_model_dir(saved["deco"]) == saved["deco"]
    (tmp_path / "checkpoint-10").mkdir()
    with pytest.raises(ConfigError, match="without a final model"):
        resolve_model_dir(tmp_path)
