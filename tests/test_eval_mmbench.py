"""MMBench: option-letter extraction and circular evaluation (TSV copies and LLaVA's round_id)."""

import csv
import json

import pytest

from deco.errors import DataError
from deco.eval import score
from deco.eval.choices import extract_choice

COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
           "l2-category", "comment", "split"]


def _row(index, options, answer, category):
    opts = dict(zip("ABCD", options + ["nan"] * (4 - len(options)), strict=True))
    return {"index": index, "question": "Which one?", "hint": "nan", **opts, "answer": answer,
            "category": category, "image": "aGVsbG8=", "source": "s", "l2-category": "l2", "comment": "nan",
            "split": "dev"}


def _tsv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return path


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A", "A"), ("b", "B"), ("C.", "C"), ("(B)", "B"), ("B)", "B"), ("[D]", "D"), ("B: dog", "B"),
        ("A. cat", "A"), ("The answer is C", "C"), ("The answer is (D).", "D"), ("Answer: B", "B"),
        ("I think it is B", "B"),
        ("Apple", None),  # letter inside a word
        ("CAB", None),
        ("A dog is in the picture", None),  # the article, not option A
        ("B or C", None),  # two letters: unclear
        ("E", None),  # not one of the 4 options
        ("", None),
    ],
)
def test_extract_choice_letters(reply, expected):
    assert extract_choice(reply, 4) == expected


def test_extract_choice_option_text():
    opts = ["red", "blue", "green", "red and blue"]
    assert extract_choice("Blue.", 4, opts) == "B"
    assert extract_choice("It is green", 4, opts) == "C"
    assert extract_choice("red and blue", 4, opts) == "D"  # exact text beats the shorter option inside it
    assert extract_choice("The flag is red and blue", 4, opts) == "D"  # "red" only occurs inside "red and blue"
    assert extract_choice("red or green", 4, opts) is None
    assert extract_choice("bluegreen", 4, opts) is None  # whole words only
    assert extract_choice("Apple", 4, ["apple pie", "Apple", "pear", "fig"]) == "B"


def _circular_tsv(tmp_path):
    # Question 0 (answer "cat") in 3 rotations; question 1 (answer "blue") in 2 rotations.
    return _tsv(tmp_path / "mmbench_dev_20230712.tsv", [
        _row(0, ["cat", "dog", "bird"], "A", "animals"),
        _row(1, ["red", "blue"], "B", "colours"),
        _row(1000000, ["dog", "bird", "cat"], "C", "animals"),
        _row(1000001, ["blue", "red"], "A", "colours"),
        _row(2000000, ["bird", "cat", "dog"], "B", "animals"),
    ])


def test_one_wrong_rotation_makes_the_question_wrong(tmp_path):
    tsv = _circular_tsv(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": 0, "answer": "A"},
        {"question_id": 1000000, "answer": "C."},
        {"question_id": 2000000, "answer": "The answer is B"},
        {"question_id": 1, "answer": "B"},
        {"question_id": 1000001, "answer": "B"},  # wrong rotation: question 1 fails
    ])
    r = score("mmbench", preds, tsv)
    m = r["metrics"]
    assert m["circular_accuracy"] == 50.0 and r["main"]["value"] == 50.0
    assert m["vanilla_accuracy"] == 100.0  # first copies (index < 1e6) were both right
    assert m["per_category"] == {"animals": 100.0, "colours": 0.0}
    assert (m["questions"], m["rows"]) == (2, 5)


def test_missing_rotation_counts_as_wrong(tmp_path):
    tsv = _circular_tsv(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": i, "answer": a} for i, a in [(0, "A"), (1000000, "C"), (1, "B"), (1000001, "A")]
    ])
    r = score("mmbench", preds, tsv)
    assert r["metrics"]["circular_accuracy"] == 50.0
    assert r["counts"]["missing"] == 1


def test_llava_single_pass_file_with_round_id_zero_is_matched_by_index(tmp_path):
    tsv = _circular_tsv(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": i, "round_id": 0, "prompt": "p", "text": a, "answer_id": "x", "model_id": "m"}
        for i, a in [(0, "A"), (1000000, "C"), (2000000, "B"), (1, "B"), (1000001, "A")]
    ])
    r = score("mmbench", preds, tsv)
    assert r["metrics"]["circular_accuracy"] == 100.0 and r["counts"]["missing"] == 0


def test_llava_all_rounds_rotate_the_options(tmp_path):
    tsv = _tsv(tmp_path / "mmbench_dev_20230712.tsv", [
        _row(0, ["cat", "dog", "bird"], "A", "animals"),
        _row(1, ["red", "blue"], "B", "colours"),
    ])

    def ans(qid, rnd, text):
        return {"question_id": qid, "round_id": rnd, "prompt": "p", "text": text, "answer_id": "x", "model_id": "m"}

    preds = _write_jsonl(tmp_path / "p.jsonl", [
        ans(0, 0, "A"),
        ans(0, 1, "cat"),  # round 1 options: dog, bird, cat -> the text reads as C, which is right
        ans(0, 2, "B"),  # round 2 options: bird, cat, dog
        ans(1, 0, "B"),
        ans(1, 1, "B"),  # round 1 options: blue, red -> the answer is A
    ])
    r = score("mmbench", preds, tsv)
    assert r["metrics"]["circular_accuracy"] == 50.0
    assert r["metrics"]["vanilla_accuracy"] == 100.0
    assert r["counts"]["questions"] == 5


def test_a_file_without_rotations_warns_that_circular_equals_single_pass(tmp_path):
    tsv = _tsv(tmp_path / "m.tsv", [_row(0, ["cat", "dog"], "A", "x"), _row(1, ["a", "b"], "B", "x")])
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "answer": "A"}, {"id": 1, "answer": "A"}])
    r = score("mmbench", preds, tsv)
    assert r["metrics"]["circular_accuracy"] == 50.0
    assert any("circular accuracy equals single-pass" in w for w in r["warnings"])


def test_not_an_mmbench_tsv(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("id\tquestion\tlabel\n1\tq\tyes\n")
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "answer": "A"}])
    with pytest.raises(DataError, match="missing.*'index'"):
        score("mmbench", preds, bad)


def test_test_split_without_answers_is_not_scored_and_a_mixed_file_is_refused(tmp_path):
    """Full submission checks are in test_eval_splits.py."""
    tsv = _tsv(tmp_path / "m.tsv", [_row(0, ["cat", "dog"], "nan", "x")])
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "answer": "A"}])
    r = score("mmbench", preds, tsv)
    assert r["scored"] is False and r["main"] is None and r["submission"]["rows"] == 1
    mixed = _tsv(tmp_path / "mixed.tsv", [_row(0, ["cat", "dog"], "A", "x"), _row(1, ["cat", "dog"], "nan", "x")])
    with pytest.raises(DataError, match="mixes questions with and without answers: question '1'"):
        score("mmbench", preds, mixed)
