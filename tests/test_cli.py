"""The `deco` command: help, the projector table, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from deco.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("projectors", "config", "info"):
        assert command in result.output


def test_projectors_json_has_reference_counts():
    result = runner.invoke(app, ["projectors", "--json", "--dv", "1024", "--dl", "4096", "--grid", "24x24",
                                 "--tokens", "144"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["deco"] == {**rows["deco"], "tokens": 144, "params": 20_979_712}
    assert rows["mlp"]["tokens"] == 576 and rows["cabstractor"]["params"] == 37_398_016
    assert all(isinstance(r["params"], int) for r in rows.values())


def test_projectors_table_renders():
    result = runner.invoke(app, ["projectors", "--dv", "64", "--dl", "128", "--grid", "12x12", "--tokens", "36"])
    assert result.exit_code == 0 and "dabstractor" in result.output


def test_bad_override_is_one_clear_line_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "deco.cli", "config", "configs/tiny.yaml", "train.lr=abc"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "'train.lr' must be float" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_info_builds_the_tiny_model():
    result = runner.invoke(app, ["info", "configs/tiny.yaml"])
    assert result.exit_code == 0, result.output
    assert "36 visual tokens" in result.output


def test_help_loads_neither_torch_nor_transformers():
    # Every command module is imported for `deco --help`; the feature packages export lazily so that
    # help (and typos) answer at once instead of after seconds of torch/transformers imports.
    import subprocess
    import sys

    code = "import sys, deco.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
