"""Bad input never yields a silently wrong score: clear errors, or counts in the report."""

import json

import pytest

from deco.errors import ConfigError, DataError
from deco.eval import read_predictions, score, summarize


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def gqa(tmp_path):
    questions = {str(i): {"question": f"q{i}?", "answer": "yes", "imageId": f"n{i}"} for i in range(1, 5)}
    path = tmp_path / "testdev_balanced_questions.json"
    path.write_text(json.dumps(questions))
    return path


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"question_id": 1, "answer": "yes"}\n\n{"question_id": 2, "answer": "y\n')
    with pytest.raises(DataError, match=r"p\.jsonl line 3: not valid JSON"):
        read_predictions(p)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('["a", "b"]', "expected a JSON object"),
        ('{"answer": "yes"}', "no id"),
        ('{"question_id": 1}', "no answer"),
        ('{"question_id": 1, "answer": null}', "must be a string"),
        ('{"question_id": null, "answer": "a"}', "non-empty string or an integer"),
        ('{"question_id": 1, "id": 2, "answer": "a"}', "differ"),
        ('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?"}', "question file"),
        ('{"question_id": 1, "answer": "A", "round_id": "one"}', "round_id"),
    ],
)
def test_invalid_prediction_lines(tmp_path, line, message):
    p = tmp_path / "p.jsonl"
    p.write_text('{"question_id": 9, "answer": "ok"}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as e:
        read_predictions(p)
    assert "line 2" in str(e.value)


def test_numbers_as_answers_are_kept_as_text(tmp_path):
    p = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": 3}])
    assert read_predictions(p)[0].answer == "3"


def test_duplicate_predictions_for_one_question(tmp_path, gqa):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "yes"}, {"id": "1", "answer": "no"}])
    with pytest.raises(DataError, match="lines 1 and 2 both answer question '1'"):
        score("gqa", preds, gqa)


def test_missing_predictions_policies(tmp_path, gqa):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "yes"}])
    wrong = score("gqa", preds, gqa)
    assert wrong["metrics"]["accuracy"] == 50.0 and wrong["counts"]["missing"] == 2
    assert any("2 of 4 questions have no prediction (scored as wrong)" in w for w in wrong["warnings"])
    skip = score("gqa", preds, gqa, missing="skip")
    assert skip["metrics"]["accuracy"] == 100.0 and skip["counts"]["scored"] == 2
    with pytest.raises(DataError, match="2 of 4 questions have no prediction"):
        score("gqa", preds, gqa, missing="error")
    with pytest.raises(DataError, match="unknown missing-prediction policy"):
        score("gqa", preds, gqa, missing="ignore")


def test_extra_ids_are_counted_and_ignored(tmp_path, gqa):
    rows = [{"question_id": i, "answer": "yes"} for i in (1, 2, 3, 4)] + [{"question_id": 99, "answer": "no"}]
    r = score("gqa", _write_jsonl(tmp_path / "p.jsonl", rows), gqa)
    assert r["metrics"]["accuracy"] == 100.0
    assert r["counts"]["extra"] == 1 and r["counts"]["predictions"] == 5
    assert any("'99'" in w for w in r["warnings"])


def test_no_matching_id_at_all_is_an_error(tmp_path, gqa):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": "random/1", "answer": "yes"}])
    with pytest.raises(DataError, match="none of the 1 predictions matches"):
        score("gqa", preds, gqa)


def test_empty_answers_are_counted_and_wrong(tmp_path, gqa):
    rows = [{"question_id": i, "answer": "yes"} for i in (1, 2, 3)] + [{"question_id": 4, "answer": "  "}]
    r = score("gqa", _write_jsonl(tmp_path / "p.jsonl", rows), gqa)
    assert r["metrics"]["accuracy"] == 75.0 and r["counts"]["empty"] == 1


def test_annotation_file_of_another_benchmark(tmp_path, gqa):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "yes"}])
    with pytest.raises(DataError, match=r"not a vqav2 annotation file.*looks like a GQA questions file"):
        score("vqav2", preds, gqa)
    pope = _write_jsonl(tmp_path / "coco_pope_random.json", [{"question_id": 1, "image": "a.jpg", "text": "q",
                                                              "label": "yes"}])
    with pytest.raises(DataError, match="looks like POPE labels"):
        score("gqa", preds, pope)
    tsv = tmp_path / "mmbench_dev_20230712.tsv"
    tsv.write_text("index\tquestion\tA\tB\tanswer\n0\tq\ta\tb\tA\n")
    with pytest.raises(DataError, match="an MMBench file"):
        score("seed", preds, tsv)


def test_missing_annotation_file_names_the_expected_file(tmp_path):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "yes"}])
    with pytest.raises(DataError, match=r"testdev_balanced_questions\.json.*stanford"):
        score("gqa", preds, tmp_path)
    with pytest.raises(DataError, match=r"coco_pope_random\.json.*POPE"):
        score("pope", preds, tmp_path)
    with pytest.raises(DataError, match=r"problems\.json"):
        score("scienceqa", preds, tmp_path / "missing_dir")


def test_unknown_benchmark_name_suggests_the_close_one(tmp_path, gqa):
    with pytest.raises(ConfigError, match="Did you mean 'vqav2'"):
        score("vqa2", tmp_path / "p.jsonl", gqa)


def test_result_json_written_and_summary(tmp_path, gqa):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": i, "answer": "Yes."} for i in (1, 2, 3)])
    out = tmp_path / "out" / "gqa.json"
    r = score("gqa", preds, gqa, out_path=out)
    assert json.loads(out.read_text()) == r
    text = summarize(r)
    assert "gqa: accuracy = 75.00" in text and "1 missing" in text


def test_simplified_jsonl_scores_a_synthetic_benchmark(tmp_path):
    ann = _write_jsonl(tmp_path / "synthetic.jsonl", [
        {"question_id": "s1", "image": "0.png", "question": "What colour is the circle?", "answer": "red"},
        {"question_id": "s2", "image": "0.png", "question": "Where is the square?", "answer": "left"},
    ])
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": "s1", "answer": "Red"}, {"id": "s2", "answer": "right"}])
    assert score("gqa", preds, ann)["metrics"]["accuracy"] == 50.0
    assert score("vqav2", preds, ann)["metrics"]["accuracy"] == 50.0
