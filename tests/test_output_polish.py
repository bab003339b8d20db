"""Output a newcomer reads: config errors, the projector table, deco info's trainable counts, quiet loads."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from deco.cli import app
from deco.config import load_config
from deco.errors import ConfigError

runner = CliRunner()


def test_key_typo_gets_did_you_mean_and_one_source_label():
    with pytest.raises(ConfigError) as info:
        load_config("configs/tiny.yaml", ["train.max_steps=3", "train.lrr=1e-3", "train.seed=1", "data.max_length=64"])
    message = str(info.value)
    assert "did you mean 'train.lr'?" in message
    assert message.count("+ overrides") == 1 and message.startswith("configs/tiny.yaml + overrides:")


def test_section_typo_gets_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(None, ["trian.lr=1"])


def test_projector_descriptions_keep_square_brackets():
    result = runner.invoke(app, ["projectors", "--dv", "32", "--dl", "64", "--grid", "12x12"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "[patches; latents]" in result.output


@pytest.mark.parametrize(("overrides", "llm_trainable"), [([], False), (["train.stage=2"], True)])
def test_info_counts_what_the_stage_trains(overrides, llm_trainable):
    from deco.model import build_model
    from deco.train.step.freeze import apply_stage

    config = load_config("configs/tiny.yaml", overrides)
    expected = apply_stage(build_model(config), config.train)
    result = runner.invoke(app, ["info", "configs/tiny.yaml", *overrides], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    llm_row = next(line for line in result.output.splitlines() if "│ llm" in line)
    total, trainable = expected["llm"]
    assert f"{trainable:,}" in llm_row.split("│")[3]
    assert (trainable == total) == llm_trainable


def test_transformers_weight_bars_are_quiet():
    from transformers.utils import logging as hf_logging

    import deco.model  # noqa: F401 - installs the hook

    bar = hf_logging.tqdm(range(3), desc="Loading weights")
    assert bar.disable
    other = hf_logging.tqdm(range(3), desc="Downloading")
    assert not other.disable


def test_bench_tables_keep_config_names_and_brackets_at_80_columns():
    import io

    from rich.console import Console

    from deco.bench.report import _rich

    header = ["config", *(f"a long column header {i} ×" for i in range(8))]
    rows = [[name, *(f"{i * 1.5:.2f} ± 0.{i}" for i in range(8))] for name in ("deco@144", "deco@64", "qformer@144")]
    out = io.StringIO()
    Console(file=out, width=80).print(_rich("Against mlp@576 [measured]", header, rows, tuple(range(9))))
    text = out.getvalue()
    assert "[measured]" in text and "…" not in text
    for name in ("deco@144", "deco@64", "qformer@144"):
        assert f"│ {name}" in text


def test_help_paragraphs_are_unwrapped_for_the_terminal():
    from deco.cli import unwrap_help

    text = """First line
    goes on.

    A second paragraph wrapped
    for the source file.
    - a list item
    - another
    """
    assert unwrap_help(text) == ("First line goes on.\n\nA second paragraph wrapped for the source file.\n"
                                 "- a list item\n- another")


def test_every_command_help_breaks_only_between_paragraphs():
    result = runner.invoke(app, ["sample", "--help"], env={"COLUMNS": "200"})
    assert "Files: OUT/images/*.jpg, OUT/train.json, OUT/gqa/testdev_balanced_questions.json and" in result.output
    from deco.cli import app as deco_app

    for info in deco_app.registered_commands:
        for paragraph in (info.help or "").split("\n\n"):
            for line in paragraph.split("\n")[1:]:
                assert line.startswith(("-", "*", " ")), (info.name, paragraph)


def test_tables_written_to_a_log_are_not_wrapped_mid_word():
    """Piped (a file, a CI log) the console is wide: rich's default 80 columns split rows and headers."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "deco", "projectors", "--tokens", "144"], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert any("LLaVA linear map on every patch; no compression" in line for line in out.splitlines())
    narrow = subprocess.run([sys.executable, "-m", "deco", "projectors"], capture_output=True, text=True,
                            env={**env, "COLUMNS": "70"}, check=True).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 70  # COLUMNS still wins when set
