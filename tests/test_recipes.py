"""Named recipes resolve by name from anywhere (shipped as package data), `base:` included."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deco.cli import app
from deco.config import load_config
from deco.errors import ConfigError
from deco.recipe_index import find_recipe, list_recipes, recipe_names, recipes_dir, resolve_config_file


def test_every_spelling_of_a_name_finds_the_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    expected = recipes_dir() / "llava15-deco-144.yaml"
    for text in ("llava15-deco-144", "llava15-deco-144.yaml", "configs/llava15-deco-144.yaml"):
        assert resolve_config_file(text) == expected
    assert find_recipe("accelerate/ddp") == recipes_dir() / "accelerate" / "ddp.yaml"
    assert find_recipe("../pyproject") is None


def test_a_file_at_the_path_wins_over_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("base: tiny.yaml\ntrain:\n  lr: 0.123\n")
    # The local tiny.yaml names itself as base: a loop, so resolution must not silently take the recipe.
    with pytest.raises(ConfigError, match="loops back"):
        load_config("tiny.yaml")
    (tmp_path / "mine.yaml").write_text("train:\n  lr: 0.5\n")
    assert load_config("mine.yaml").train.lr == 0.5


def test_stage2_recipe_resolves_its_bases_by_name_outside_a_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config("llava15-deco-144-stage2")
    assert config.projector.name == "deco" and config.train.stage == 2 and config.train.lr == 2e-5


def test_user_file_may_name_a_shipped_recipe_as_base(tmp_path: Path) -> None:
    mine = tmp_path / "my-run.yaml"
    mine.write_text("base: llava15-qformer-144.yaml\ntrain:\n  max_steps: 7\n")
    config = load_config(mine)
    assert config.projector.name == "qformer" and config.train.max_steps == 7
    assert config.llm.pretrained == load_config("llava15-base").llm.pretrained


def test_unknown_name_is_a_clear_error_with_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config file not found: tinyy .*did you mean tiny"):
        load_config("tinyy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: no-such-recipe.yaml\n")
    with pytest.raises(ConfigError, match="no-such-recipe"):
        load_config(bad)


def test_clone_configs_folder_is_the_shipped_folder() -> None:
    clone = Path(__file__).resolve().parents[1] / "configs"
    assert clone.resolve() == recipes_dir()


def test_recipes_command_lists_every_recipe_with_a_description() -> None:
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = recipe_names()
    assert len(lines) == len(names) and {"tiny", "llava15-deco-144", "accelerate/ddp"} <= set(names)
    for line, (name, description) in zip(lines, list_recipes(), strict=True):
        assert line.split()[0] == name and description and len(description) <= 100
    path = CliRunner().invoke(app, ["recipes", "--path", "accelerate/fsdp"])
    assert path.output.strip() == str(recipes_dir() / "accelerate" / "fsdp.yaml")
