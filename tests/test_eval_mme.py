"""MME: the 4-character yes/no rule, acc and acc+ per subtask, totals, both folder layouts, LLaVA ids."""

import json

import pytest

from deco.errors import DataError
from deco.eval import load_benchmark, score
from deco.eval.mme import parse_yes_no

SUFFIX = "\nAnswer the question using a single word or phrase."


def _mme_root(tmp_path):
    root = tmp_path / "MME_Benchmark_release_version"
    # Layout 1: images/ and questions_answers_YN/.
    task = root / "code_reasoning"
    (task / "images").mkdir(parents=True)
    (task / "questions_answers_YN").mkdir()
    (task / "images" / "c.png").write_bytes(b"")
    (task / "questions_answers_YN" / "c.txt").write_text(
        "Is a python code shown in the picture? Please answer yes or no.\tYes\n"
        "Is a c++ code shown in the picture? Please answer yes or no.\tNo\n")
    # Layout 2: images and .txt side by side.
    task = root / "existence"
    task.mkdir()
    for stem in ("a", "b"):
        (task / f"{stem}.jpg").write_bytes(b"")
        (task / f"{stem}.txt").write_text(
            "Is there a dog in this image? Please answer yes or no.\tYes\n"
            "Is there a cat in this image? Please answer yes or no.\tNo\n")
    return root


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Yes", "yes"), ("no", "no"), ("Yes, there is.", "yes"), ("No.", "no"), ("not sure", "no"),
     ("I think yes", "other"), ("", "other"), ("The answer is no", "other")],
)
def test_mme_reply_rule(reply, expected):
    assert parse_yes_no(reply) == expected


def test_mme_reader_handles_both_layouts(tmp_path):
    samples = load_benchmark("mme", _mme_root(tmp_path))
    assert len(samples) == 6
    by_id = {s.qid: s for s in samples}
    assert by_id["code_reasoning/c#1"].answers == ("no",)
    assert by_id["code_reasoning/c#0"].image == "code_reasoning/images/c.png"
    assert by_id["existence/b#0"].image == "existence/b.jpg"


def test_mme_acc_plus_needs_both_questions_of_an_image(tmp_path):
    root = _mme_root(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "existence/a#0", "answer": "Yes"},
        {"question_id": "existence/a#1", "answer": "No"},  # image a: both right
        {"question_id": "existence/b#0", "answer": "No"},  # wrong
        {"question_id": "existence/b#1", "answer": "no"},  # right, but image b fails acc+
        {"question_id": "code_reasoning/c#0", "answer": "Yes, it is"},
        {"question_id": "code_reasoning/c#1", "answer": "I think so"},  # "other": wrong
    ])
    r = score("mme", preds, root)
    ex, code = r["metrics"]["subtasks"]["existence"], r["metrics"]["subtasks"]["code_reasoning"]
    assert (ex["acc"], ex["acc_plus"], ex["score"]) == (75.0, 50.0, 125.0)
    assert (code["acc"], code["acc_plus"], code["score"], code["other"]) == (50.0, 0.0, 50.0, 1)
    assert r["metrics"]["perception"] == 125.0 and r["metrics"]["cognition"] == 50.0
    assert r["main"] == {"metric": "perception", "value": 125.0}
    assert any("1 of 10 subtasks" in w for w in r["warnings"])


def test_mme_llava_answer_file_shares_ids_between_the_two_questions(tmp_path):
    root = _mme_root(tmp_path)
    rows = []
    for stem in ("a", "b"):
        rows.append({"question_id": f"existence/{stem}.jpg", "text": "Yes", "answer_id": "x", "model_id": "m",
                     "prompt": "Is there a dog in this image? Please answer yes or no." + SUFFIX})
        rows.append({"question_id": f"existence/{stem}.jpg", "text": "No", "answer_id": "y", "model_id": "m",
                     # LLaVA sometimes drops the yes/no instruction; matching ignores it.
                     "prompt": "Is there a cat in this image?" + SUFFIX})
    rows.append({"question_id": "code_reasoning/c.png", "text": "Yes", "answer_id": "z", "model_id": "m",
                 "prompt": "Is a python code shown in the picture? Please answer yes or no."})
    r = score("mme", _write_jsonl(tmp_path / "p.jsonl", rows), root)
    assert r["counts"]["matched"] == 5 and r["counts"]["missing"] == 1
    assert r["metrics"]["subtasks"]["existence"]["score"] == 200.0
    assert r["metrics"]["subtasks"]["code_reasoning"]["acc"] == 50.0


def test_mme_malformed_answer_line_names_the_file(tmp_path):
    root = _mme_root(tmp_path)
    (root / "existence" / "a.txt").write_text("Is there a dog?\tMaybe\n")
    with pytest.raises(DataError, match=r"a\.txt line 1"):
        load_benchmark("mme", root)


def test_mme_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="MME_Benchmark_release_version"):
        load_benchmark("mme", tmp_path / "nowhere")
