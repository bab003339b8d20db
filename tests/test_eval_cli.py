"""`deco score` wiring: options reach `score`, the summary is printed, the JSON written."""

import json

import typer
from typer.testing import CliRunner

from deco.eval.cli import register


def _app():
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command so typer keeps "score" as a subcommand name
    def noop() -> None:
        """Nothing."""

    return app


def test_score_command_prints_summary_and_writes_json(tmp_path):
    ann = tmp_path / "testdev_balanced_questions.json"
    ann.write_text(json.dumps({"1": {"question": "q?", "answer": "yes"}, "2": {"question": "r?", "answer": "no"}}))
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"question_id": "1", "answer": "Yes."}\n')
    out = tmp_path / "r.json"
    res = CliRunner().invoke(_app(), ["score", "--benchmark", "gqa", "--preds", str(preds), "--data", str(tmp_path),
                                      "--out", str(out), "--missing", "skip"])
    assert res.exit_code == 0, res.output
    assert "gqa: accuracy = 100.00" in res.output
    assert json.loads(out.read_text())["counts"]["missing"] == 1
