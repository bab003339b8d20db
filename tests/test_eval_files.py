"""Evaluation files a person gets wrong (issue 26): every questions and predictions file is read as UTF-8,
or one `error:` line names the file, the byte offset and the line; a question id repeated as a key of a
JSON object is an error naming it; a syntax error is reported at its own line."""

from __future__ import annotations

import json

import pytest

from trust_helpers import run_deco

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUESTIONS = {str(200 + i): {"question": f"Q{i}?", "answer": "yes", "imageId": f"n{i}"} for i in range(3)}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_score_names_the_byte_that_is_not_utf8(tmp_path, capsys):
    data = tmp_path / "testdev_balanced_questions.json"
    data.write_text(json.dumps(QUESTIONS))
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(b'{"question_id": "200", "answer": "yes"}\n{"question_id": "201", "answer": "caf\xe9"}\n')
    code, _, err = run_deco(["score", "--benchmark", "gqa", "--preds", preds, "--data", data], capsys)
    assert code == 2
    assert _one_error_line(err) == (f"error: prediction file {preds} is not UTF-8 text: byte 0xe9 at byte offset 77 "
                                    "(line 2) cannot be decoded; save the file as UTF-8")

    preds.write_text('{"question_id": "200", "answer": "yes"}\n')
    data.write_bytes(json.dumps(QUESTIONS).encode().replace(b"Q1?", b"Q\xff?"))
    code, _, err = run_deco(["score", "--benchmark", "gqa", "--preds", preds, "--data", data], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith(f"error: gqa: {data} is not UTF-8 text: byte 0xff at byte offset ") and "(line 1)" in line


def test_eval_refuses_a_questions_file_that_is_not_utf8(saved_tiny_model, tmp_path, capsys):
    data = tmp_path / "testdev_balanced_questions.json"
    data.write_bytes(json.dumps(QUESTIONS, indent=1).encode().replace(b"Q2?", b"Q\xc3?"))
    code, _, err = run_deco(["eval", "--model", saved_tiny_model, "--benchmark", "gqa", "--data", data,
                             "--images", tmp_path, "--out", tmp_path / "p.jsonl"], capsys)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: gqa: {data} is not UTF-8 text: byte 0xc3 at byte offset ") and "(line 13)" in line
    assert "Traceback" not in err


def test_a_repeated_question_id_is_an_error_naming_it(tmp_path, capsys):
    text = json.dumps(QUESTIONS, indent=1)
    data = tmp_path / "testdev_balanced_questions.json"
    data.write_text(text[:-2] + ',\n "201": {"question": "again?", "answer": "no", "imageId": "n9"}\n}')
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"question_id": "200", "answer": "yes"}\n')
    code, _, err = run_deco(["score", "--benchmark", "gqa", "--preds", preds, "--data", data], capsys)
    assert code == 2
    assert _one_error_line(err).startswith(f"error: gqa: question id '201' appears twice in {data}")


def test_a_syntax_error_is_reported_at_its_own_line(tmp_path, capsys):
    data = tmp_path / "testdev_balanced_questions.json"
    lines = json.dumps(QUESTIONS, indent=1).splitlines()
    lines[8] = lines[8].replace("\"answer\":", "\"answer\"")  # line 9 loses its colon
    data.write_text("\n".join(lines))
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"question_id": "200", "answer": "yes"}\n')
    code, _, err = run_deco(["score", "--benchmark", "gqa", "--preds", preds, "--data", data], capsys)
    assert code == 2
    assert "at line 9 column" in _one_error_line(err)
