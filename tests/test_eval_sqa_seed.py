"""ScienceQA-IMG and SEED-Bench: letter parsing, image subsets, per-group accuracy."""

import json
import re

import pytest

from deco.eval import score
from deco.eval.choices import extract_choice


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _llava_sqa_letter(text, options="ABCDE"):
    """LLaVA's eval_science_qa.py reading of a reply, re-stated for comparison."""
    if text in options:
        return text
    if len(text) >= 3 and text[0] in options and text[1:3] == ". ":
        return text[0]
    found = re.findall(r"The answer is ([A-Z]).", text)
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("reply", ["A", "C", "B. 5 cm", "The answer is B.", "E"])
def test_letters_agree_with_llava_on_the_replies_it_reads(reply):
    assert extract_choice(reply, 5) == _llava_sqa_letter(reply)


def _sqa(tmp_path):
    problems = {
        "1": {"question": "Which is a mammal?", "choices": ["cat", "trout"], "answer": 0, "image": "image.png",
              "hint": "", "subject": "natural science", "grade": "grade3", "split": "test"},
        "2": {"question": "Which word?", "choices": ["a", "b", "c"], "answer": 2, "image": "image.png",
              "hint": "A context.", "subject": "language science", "grade": "grade8", "split": "test"},
        "3": {"question": "Text only?", "choices": ["x", "y"], "answer": 1, "image": None,
              "hint": "", "subject": "social science", "grade": "grade5", "split": "test"},
        "4": {"question": "Train.", "choices": ["x", "y"], "answer": 1, "image": None,
              "hint": "", "subject": "social science", "grade": "grade5", "split": "train"},
    }
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    (tmp_path / "pid_splits.json").write_text(json.dumps({"train": ["4"], "val": [], "test": ["1", "2", "3"]}))
    return tmp_path


def test_scienceqa_img_run_is_not_charged_for_text_only_questions(tmp_path):
    _sqa(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "1", "text": "A", "prompt": "<image>\nWhich is a mammal?", "answer_id": "a", "model_id": "m"},
        {"question_id": "2", "answer": "The answer is B."},  # wrong: C is right
    ])
    r = score("scienceqa", preds, tmp_path)
    assert r["metrics"]["img_accuracy"] == 50.0 and r["metrics"]["img_questions"] == 2
    assert r["counts"]["questions"] == 2 and r["counts"]["missing"] == 0
    assert r["metrics"]["per_subject"] == {"language science": 0.0, "natural science": 100.0}
    assert r["metrics"]["per_grade"] == {"G1-6": 100.0, "G7-12": 0.0}
    assert r["notes"] and "SQA-IMG" in r["notes"][0]


def test_scienceqa_full_test_split_when_text_questions_are_answered(tmp_path):
    _sqa(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "1", "answer": "A"}, {"question_id": "2", "answer": "(C)"},
        {"question_id": "3", "answer": "I am not sure"},  # unparsed: wrong
    ])
    r = score("scienceqa", preds, tmp_path / "problems.json")
    m = r["metrics"]
    assert (m["img_accuracy"], m["questions"], m["unparsed"]) == (100.0, 3, 1)
    assert m["accuracy"] == pytest.approx(200 / 3, abs=1e-3)


def _seed(tmp_path):
    def q(qid, dim, answer, data_type="image"):
        return {"question_id": qid, "question": "Which?", "answer": answer, "choice_a": "w", "choice_b": "x",
                "choice_c": "y", "choice_d": "z", "data_id": f"{qid}.jpg", "data_type": data_type,
                "question_type_id": dim}

    data = {"question_type": {"Scene Understanding": 1, "Instance Identity": 2, "Action Recognition": 10},
            "questions": [q("101", 1, "A"), q("102", 1, "B"), q("103", 2, "C"), q("201", 10, "D", "video")]}
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(data))
    return tmp_path


def test_seed_image_accuracy_and_dimensions(tmp_path):
    _seed(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": 101, "answer": "A"}, {"question_id": 102, "answer": "C"}, {"question_id": 103, "answer": "C."},
    ])
    r = score("seed", preds, tmp_path)
    m = r["metrics"]
    assert m["image_accuracy"] == pytest.approx(200 / 3, abs=1e-3) and m["image_questions"] == 3
    assert m["per_dimension"] == {"Instance Identity": 100.0, "Scene Understanding": 50.0}
    assert "video_accuracy" not in m and r["counts"]["missing"] == 0


def test_seed_video_questions_count_once_any_is_answered(tmp_path):
    _seed(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 101, "answer": "A"}, {"question_id": 201, "answer": "D"}])
    r = score("seed", preds, tmp_path)
    m = r["metrics"]
    assert (m["video_accuracy"], m["image_accuracy"], m["accuracy"]) == (100.0, pytest.approx(100 / 3, abs=1e-3), 50.0)
    assert r["counts"]["missing"] == 2
