"""VQAv2 / TextVQA / VizWiz scoring on tiny annotation files in the published formats."""

import json

import pytest

from deco.errors import DataError
from deco.eval import score


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _vqav2(tmp_path, annotations, questions=None):
    ann = tmp_path / "v2_mscoco_val2014_annotations.json"
    ann.write_text(json.dumps({"annotations": annotations}))
    if questions is not None:
        (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": questions}))
    return ann


def _ann(qid, answers, answer_type="other", question_type="what"):
    return {"question_id": qid, "image_id": 42, "answer_type": answer_type, "question_type": question_type,
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]}


def test_vqav2_hand_computed_scores_per_answer_type(tmp_path):
    ann = _vqav2(tmp_path, [
        _ann(1, ["2"] * 2 + ["3"] * 8, "number"),  # "Two." -> "2": 2 matches -> 0.6
        _ann(2, ["yes"] * 10, "yes/no"),  # "Yes" -> 1.0
        _ann(3, ["dog"] + ["cat"] * 9, "other"),  # "A dog." -> "dog": 1 match -> 0.3
    ])
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": 1, "answer": "Two."}, {"question_id": 2, "answer": "Yes"}, {"id": "3", "answer": "A dog."},
    ])
    r = score("vqav2", preds, tmp_path)  # a folder holding the published file name
    assert r["metrics"]["accuracy"] == pytest.approx(100 * (0.6 + 1.0 + 0.3) / 3, abs=1e-3)
    assert r["metrics"]["per_answer_type"] == {"number": 60.0, "other": 30.0, "yes/no": 100.0}
    assert r["main"] == {"metric": "accuracy", "value": r["metrics"]["accuracy"]}
    assert r["counts"]["missing"] == 0 and r["counts"]["extra"] == 0
    assert ann.exists()


def test_vqav2_human_answers_get_punctuation_processing_only_when_they_disagree(tmp_path):
    _vqav2(tmp_path, [
        _ann(1, ["hot-dog"] * 3 + ["hot dog"] + ["sausage"] * 6),  # disagree: "hot-dog" -> "hot dog", 4 matches
        _ann(2, ["hot-dog"] * 10),  # all equal: left as is, so "hot dog" never matches
    ])
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "hot dog"},
                                               {"question_id": 2, "answer": "hot dog"}])
    r = score("vqav2", preds, tmp_path)
    assert r["metrics"]["accuracy"] == pytest.approx(50.0)


def test_vqav2_reads_question_text_and_image_names_for_a_runner(tmp_path):
    from deco.eval import load_benchmark

    _vqav2(tmp_path, [_ann(7, ["yes"] * 10)], questions=[{"question_id": 7, "image_id": 42, "question": "Is it?"}])
    (s,) = load_benchmark("vqav2", tmp_path)
    assert (s.qid, s.question, s.image) == ("7", "Is it?", "COCO_val2014_000000000042.jpg")


def test_textvqa_normalises_both_sides(tmp_path):
    data = {"dataset_name": "textvqa", "data": [
        {"question_id": 10, "image_id": "abc", "question": "what brand?", "answers": ["Coca-Cola"] * 3 + ["pepsi"] * 7},
        {"question_id": 11, "image_id": "abd", "question": "what number?", "answers": ["5"] * 10},
    ]}
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 10, "answer": "coca cola"},
                                               {"question_id": 11, "answer": "five"}])
    r = score("textvqa", preds, tmp_path / "TextVQA_0.5.1_val.json")
    assert r["metrics"]["accuracy"] == pytest.approx(100 * (0.9 + 1.0) / 2)


def test_textvqa_accepts_llava_ids_image_id_plus_question(tmp_path):
    data = {"data": [{"question_id": 10, "image_id": "abc", "question": "What brand?", "answers": ["nike"] * 10},
                     {"question_id": 11, "image_id": "abc", "question": "What color?", "answers": ["red"] * 10}]}
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "abc", "prompt": "What color?\nReference OCR token: a, b\nAnswer the question using a "
                                         "single word or phrase.", "text": "red", "answer_id": "x", "model_id": "m"},
        {"question_id": "abc", "prompt": "What brand?\nAnswer the question using a single word or phrase.",
         "text": "adidas", "answer_id": "y", "model_id": "m"},
    ])
    r = score("textvqa", preds, tmp_path)
    assert r["metrics"]["accuracy"] == pytest.approx(50.0)
    assert r["counts"]["matched"] == 2


def test_vizwiz_unanswerable_is_an_ordinary_answer_reported_per_type(tmp_path):
    data = [
        {"image": "VizWiz_val_00000000.jpg", "question": "What is this?", "answer_type": "unanswerable",
         "answerable": 0, "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 6
         + [{"answer": "blurry", "answer_confidence": "maybe"}] * 4},
        {"image": "VizWiz_val_00000001.jpg", "question": "What color?", "answer_type": "other", "answerable": 1,
         "answers": [{"answer": "blue", "answer_confidence": "yes"}] * 10},
    ]
    (tmp_path / "val.json").write_text(json.dumps(data))
    preds = _write_jsonl(tmp_path / "p.jsonl", [
        {"question_id": "VizWiz_val_00000000.jpg", "answer": "Unanswerable."},
        {"question_id": 1, "text": "green", "prompt": "What color?", "answer_id": "a", "model_id": "m"},  # LLaVA index
    ])
    r = score("vizwiz", preds, tmp_path)
    assert r["metrics"]["per_answer_type"] == {"other": 0.0, "unanswerable": 100.0}
    assert r["metrics"]["accuracy"] == pytest.approx(50.0)


def test_vizwiz_split_without_answers_is_not_scored(tmp_path):
    """Submission files are checked in test_eval_splits.py; here: no score, and a half-answered file is refused."""
    (tmp_path / "val.json").write_text(json.dumps([{"image": "x.jpg", "question": "q?"}]))
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": "x.jpg", "answer": "a"}])
    r = score("vizwiz", preds, tmp_path)
    assert r["scored"] is False and r["main"] is None and r["counts"]["scored"] == 0
    (tmp_path / "val.json").write_text(json.dumps([{"image": "w.jpg", "question": "q?", "answers": [{"answer": "a"}]},
                                                   {"image": "x.jpg", "question": "q?"}]))
    with pytest.raises(DataError, match="mixes questions with and without answers: question 'x.jpg'"):
        score("vizwiz", preds, tmp_path)
