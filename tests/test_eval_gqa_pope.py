"""GQA exact match and POPE's first-sentence yes/no rule with its per-split metrics."""

import json

import pytest

from deco.eval import score
from deco.eval.pope import parse_yes_no


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gqa_exact_match_after_lowercase_and_trailing_period(tmp_path):
    questions = {
        "201": {"question": "Is it red?", "answer": "yes", "imageId": "n1",
                "types": {"structural": "verify", "semantic": "attr"}},
        "202": {"question": "Which side?", "answer": "left", "imageId": "n2",
                "types": {"structural": "query", "semantic": "rel"}},
        "203": {"question": "What is it?", "answer": "table", "imageId": "n3",
                "types": {"structural": "query", "semantic": "obj"}},
    }
    (tmp_path / "testdev_balanced_questions.json").write_text(json.dumps(questions))
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "201", "text": "Yes.", "prompt": "Is it red?", "answer_id": "a", "model_id": "m"},
        {"question_id": "202", "answer": "Left"},
        {"question_id": "203", "answer": "the table"},  # GQA removes no articles
    ])
    r = score("gqa", preds, tmp_path)
    assert r["metrics"]["accuracy"] == pytest.approx(200 / 3, abs=1e-3)
    assert r["metrics"]["per_structural"] == {"query": 50.0, "verify": 100.0}
    assert r["metrics"]["per_semantic"] == {"attr": 100.0, "obj": 0.0, "rel": 100.0}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "yes"),
        ("No", "no"),
        ("no.", "no"),
        ("No, there is not a dog.", "no"),
        ("Yes, it is not clearly visible.", "no"),  # "not" in the first sentence wins, as in LLaVA
        ("Yes, there is a dog. No cat though.", "yes"),  # only the first sentence counts
        ("There is no dog in the image", "no"),
        ("I see a cat", "yes"),  # neither word: yes
        ("Nope", "yes"),  # not one of the words No/not/no
        ("NO", "yes"),  # case-sensitive words, as the official script
    ],
)
def test_pope_reply_rule(reply, expected):
    assert parse_yes_no(reply) == expected


def _pope_folder(tmp_path):
    random = [
        {"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"},
        {"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "label": "yes"},
        {"question_id": 3, "image": "b.jpg", "text": "Is there a car in the image?", "label": "no"},
        {"question_id": 4, "image": "b.jpg", "text": "Is there a bus in the image?", "label": "no"},
    ]
    popular = [
        {"question_id": 1, "image": "c.jpg", "text": "Is there a dog in the image?", "label": "yes"},
        {"question_id": 2, "image": "c.jpg", "text": "Is there a tie in the image?", "label": "no"},
    ]
    _write_jsonl(tmp_path / "coco_pope_random.json", random)
    _write_jsonl(tmp_path / "coco_pope_popular.json", popular)
    return tmp_path


def test_pope_metrics_per_split_and_mean(tmp_path):
    _pope_folder(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "random/1", "answer": "Yes, there is a dog."},  # TP
        {"question_id": "random/2", "answer": "No, there is not a cat."},  # FN
        {"question_id": "random/3", "answer": "Yes, it is not there."},  # TN (read as no)
        {"question_id": "random/4", "answer": "There is a bus. No wait."},  # FP (first sentence: yes)
        {"question_id": "popular/1", "answer": "yes"},  # TP
        {"question_id": "popular/2", "answer": "no"},  # TN
    ])
    r = score("pope", preds, tmp_path)
    rnd, pop = r["metrics"]["per_split"]["random"], r["metrics"]["per_split"]["popular"]
    assert (rnd["TP"], rnd["FN"], rnd["TN"], rnd["FP"]) == (1, 1, 1, 1)
    assert rnd["accuracy"] == rnd["precision"] == rnd["recall"] == rnd["f1"] == rnd["yes_ratio"] == 50.0
    assert (pop["accuracy"], pop["f1"], pop["yes_ratio"]) == (100.0, 100.0, 50.0)
    assert r["metrics"]["f1_mean"] == 75.0 and r["main"]["value"] == 75.0
    assert list(r["metrics"]["per_split"]) == ["random", "popular"]


def test_pope_empty_and_missing_replies_are_not_read_as_yes(tmp_path):
    _pope_folder(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "random/1", "answer": ""},  # the official rule would say "yes" (a TP)
        {"question_id": "random/2", "answer": "yes"},
        {"question_id": "random/3", "answer": "no"},
        # random/4 missing
        {"question_id": "popular/1", "answer": "yes"},
        {"question_id": "popular/2", "answer": "no"},
    ])
    r = score("pope", preds, tmp_path)
    rnd = r["metrics"]["per_split"]["random"]
    assert (rnd["TP"], rnd["TN"], rnd["unanswered"]) == (1, 1, 2)
    assert rnd["accuracy"] == 50.0 and rnd["recall"] == 50.0 and rnd["precision"] == 100.0
    assert r["counts"]["empty"] == 1 and r["counts"]["missing"] == 1


def test_pope_accepts_llava_question_ids_through_its_question_file(tmp_path):
    _pope_folder(tmp_path)
    _write_jsonl(tmp_path / "llava_pope_test.jsonl", [
        {"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "category": "random"},
        {"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "category": "random"},
        {"question_id": 3, "image": "b.jpg", "text": "Is there a car in the image?", "category": "random"},
        {"question_id": 4, "image": "b.jpg", "text": "Is there a bus in the image?", "category": "random"},
        {"question_id": 5, "image": "c.jpg", "text": "Is there a dog in the image?", "category": "popular"},
        {"question_id": 6, "image": "c.jpg", "text": "Is there a tie in the image?", "category": "popular"},
    ])
    answers = ["Yes", "Yes", "No", "No", "Yes", "Yes"]
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": i + 1, "prompt": "q", "text": a, "answer_id": str(i), "model_id": "m", "metadata": {}}
        for i, a in enumerate(answers)
    ])
    r = score("pope", preds, tmp_path)
    assert r["counts"]["matched"] == 6
    assert r["metrics"]["per_split"]["random"]["accuracy"] == 100.0
    assert r["metrics"]["per_split"]["popular"]["FP"] == 1


def test_pope_single_split_file_accepts_bare_ids(tmp_path):
    _pope_folder(tmp_path)
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": i, "answer": "yes"} for i in (1, 2, 3, 4)])
    r = score("pope", preds, tmp_path / "coco_pope_random.json")
    assert r["metrics"]["per_split"]["random"]["yes_ratio"] == 100.0
    assert r["metrics"]["accuracy_mean"] == 50.0
