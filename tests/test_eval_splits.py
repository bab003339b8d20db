"""Test splits without answers (submission files instead of scores) and TextVQA prompts with OCR tokens."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from deco.errors import ConfigError, DataError
from deco.eval import load_benchmark, score
from deco.eval.choices import extract_choice
from deco.eval.normalize import normalize_evalai
from deco.eval.prompts import SHORT_ANSWER, question_text
from deco.eval.runner import EvalSettings, run_eval

QUIET = {"log": lambda m: None}

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _settings(data: Path, out: Path, images: Path | None, benchmark: str, **kw) -> EvalSettings:
    kw.setdefault("max_new_tokens", 3)
    kw.setdefault("batch_size", 2)
    kw.setdefault("template", "vicuna_v1")
    return EvalSettings(benchmark=benchmark, data=data, out=out, images=images, **kw)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (24 + 4 * i, 20), (60 * i % 256, 90, 160)).save(folder / name)
    return folder


# ------------------------------------------------------------------ VQAv2 test-dev


def _vqav2_testdev(root: Path, ids: list[int]) -> Path:
    questions = [{"question_id": q, "image_id": 1000 + q, "question": f"how many things in picture {q}?"} for q in ids]
    path = root / "v2_OpenEnded_mscoco_test-dev2015_questions.json"
    path.write_text(json.dumps({"data_subtype": "test-dev2015", "questions": questions}), encoding="utf-8")
    return path


def test_vqav2_testdev_questions_file_reads_without_answers(tmp_path):
    _vqav2_testdev(tmp_path, [5, 9])
    a, b = load_benchmark("vqav2", tmp_path)  # the folder: found by its published name
    assert (a.qid, a.answers, a.image) == ("5", (), "COCO_test2015_000000001005.jpg")  # test-dev images are test2015
    assert b.question == "how many things in picture 9?"


def test_vqav2_testdev_run_writes_evalai_submission_with_every_question_once(tmp_path, saved_tiny_model):
    ids = [262144, 262145, 393216, 7]
    data = _vqav2_testdev(tmp_path, ids)
    images = _images(tmp_path / "test2015", [f"COCO_test2015_{1000 + q:012d}.jpg" for q in ids])
    out = tmp_path / "vqav2.preds.jsonl"
    summary = run_eval(saved_tiny_model, _settings(data, out, images, "vqav2"), **QUIET)
    result = summary["score"]
    assert result["scored"] is False and result["main"] is None and summary["has_answers"] is False
    assert "no answers" in result["notes"][0]
    sub = tmp_path / "vqav2.preds.submission.json"
    assert summary["submission"] == str(sub) and result["submission"]["rows"] == len(ids)
    entries = json.loads(sub.read_text())
    assert [e["question_id"] for e in entries] == ids  # ints, every id once, in the questions file's order
    replies = {r["question_id"]: r["answer"] for r in _lines(out)}
    assert [e["answer"] for e in entries] == [normalize_evalai(replies[str(q)]) for q in ids]


def test_vqav2_submission_answers_go_through_the_evalai_processor(tmp_path):
    data = _vqav2_testdev(tmp_path, [1, 2, 3, 4])
    preds = _jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "Two dogs."},
                                          {"question_id": 2, "answer": "Yes"},
                                          {"question_id": 3, "answer": "The man's hat, isn't it?"}])
    result = score("vqav2", preds, data)
    entries = json.loads(Path(result["submission"]["path"]).read_text())
    assert entries == [{"question_id": 1, "answer": "2 dogs"}, {"question_id": 2, "answer": "yes"},
                       {"question_id": 3, "answer": "man 's hat isn't it"},
                       {"question_id": 4, "answer": ""}]  # missing: an empty answer, as LLaVA's converter
    assert result["counts"]["missing"] == 1 and "written with an empty answer" in result["warnings"][0]
    skipped = score("vqav2", preds, data, missing="skip", submission=tmp_path / "sub" / "skip.json")
    assert [e["question_id"] for e in json.loads((tmp_path / "sub" / "skip.json").read_text())] == [1, 2, 3]
    assert "partial" in skipped["warnings"][0]
    with pytest.raises(DataError, match="1 of 4 questions have no prediction.*'4'"):
        score("vqav2", preds, data, missing="error")


def test_val_questions_file_uses_its_annotations_beside_it(tmp_path):
    q = {"questions": [{"question_id": 1, "image_id": 3, "question": "Is it?"}]}
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(q))
    ann = {"annotations": [{"question_id": 1, "image_id": 3, "answers": [{"answer": "yes"}] * 10}]}
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(ann))
    preds = _jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "Yes."}])
    result = score("vqav2", preds, tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json")
    assert result["scored"] is True and result["main"]["value"] == 100.0


# ------------------------------------------------------------------ VizWiz test


def test_vizwiz_test_split_submission_lists_images_in_file_order(tmp_path, saved_tiny_model):
    names = ["VizWiz_test_00000000.jpg", "VizWiz_test_00000001.jpg", "VizWiz_test_00000002.jpg"]
    (tmp_path / "test.json").write_text(json.dumps([{"image": n, "question": f"What is item {i}?"}
                                                    for i, n in enumerate(names)]))
    images = _images(tmp_path / "test", names)
    out = tmp_path / "vizwiz.jsonl"
    summary = run_eval(saved_tiny_model, _settings(tmp_path, out, images, "vizwiz", batch_size=3), **QUIET)
    entries = json.loads(Path(summary["submission"]).read_text())
    replies = {r["question_id"]: r["answer"] for r in _lines(out)}
    assert [e["image"] for e in entries] == names
    assert [e["answer"] for e in entries] == [normalize_evalai(replies[n]) for n in names]
    # LLaVA's answer files (question_id = position in the file) give the same table.
    llava = _jsonl(tmp_path / "llava.jsonl", [{"question_id": i, "prompt": "p", "text": t, "answer_id": "x",
                                               "model_id": "m"} for i, t in enumerate(["Unanswerable.", "Red", "A CUP"])])
    result = score("vizwiz", llava, tmp_path / "test.json", submission=tmp_path / "upload.json")
    assert json.loads((tmp_path / "upload.json").read_text()) == [
        {"image": names[0], "answer": "unanswerable"}, {"image": names[1], "answer": "red"},
        {"image": names[2], "answer": "cup"}]
    assert result["counts"]["matched"] == 3


# ------------------------------------------------------------------ MMBench test


MMB_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "category", "image", "source", "l2-category",
              "comment", "split"]


def _b64_png(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (20, 24), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _mmbench_test(root: Path, n: int) -> Path:
    rows = [[str(i), f"Which colour is {i}?", "nan", "red", "green", "blue", "pink", "colour",
             _b64_png((50 * i, 20, 20)), "src", "perception", "nan", "test"] for i in range(n)]
    path = root / "mmbench_test_20230712.tsv"
    path.write_text("\n".join("\t".join(r) for r in [MMB_HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_mmbench_test_tsv_run_writes_a_prediction_table(tmp_path, saved_tiny_model):
    data = _mmbench_test(tmp_path, 3)
    out = tmp_path / "mmb.jsonl"
    summary = run_eval(saved_tiny_model, _settings(data, out, None, "mmbench", max_new_tokens=1), **QUIET)
    sub = tmp_path / "mmb.submission.tsv"
    assert summary["submission"] == str(sub) and summary["score"]["submission"]["format"] == "tsv"
    with open(sub, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    # LLaVA's layout: hint/category/source/image/comment/l2-category dropped, prediction after the options.
    assert header == ["index", "question", "A", "B", "C", "D", "prediction", "split"]
    rows = _read_tsv(sub)
    assert [r["index"] for r in rows] == ["0", "1", "2"] and rows[1]["question"] == "Which colour is 1?"
    replies = {r["question_id"]: r["answer"] for r in _lines(out)}
    options = ("red", "green", "blue", "pink")
    for r in rows:  # the letter read from the reply, else the reply itself
        assert r["prediction"] == (extract_choice(replies[r["index"]], 4, options) or replies[r["index"]].strip())


def test_mmbench_prediction_column_holds_the_letter_read_from_the_reply(tmp_path):
    data = _mmbench_test(tmp_path, 4)
    preds = _jsonl(tmp_path / "p.jsonl", [{"question_id": 0, "answer": "B"},
                                          {"question_id": 1, "answer": "The answer is (C)."},
                                          {"question_id": 2, "answer": "pink"},  # the option's text
                                          {"question_id": 3, "answer": "no idea"}])
    result = score("mmbench", preds, data)
    assert result["scored"] is False and result["counts"]["matched"] == 4
    rows = _read_tsv(Path(result["submission"]["path"]))
    assert [r["prediction"] for r in rows] == ["B", "C", "D", "no idea"]
    xlsx = tmp_path / "upload.xlsx"
    if importlib.util.find_spec("openpyxl") is None:  # .xlsx needs openpyxl: without it, a clear error
        with pytest.raises(ConfigError, match="needs openpyxl.*or name a .tsv file"):
            score("mmbench", preds, data, submission=xlsx)
    else:
        assert score("mmbench", preds, data, submission=xlsx)["submission"]["format"] == "xlsx"


def test_llava_all_rounds_predictions_keep_round_zero_for_the_table(tmp_path):
    data = _mmbench_test(tmp_path, 2)
    rows = [{"question_id": i, "round_id": r, "prompt": "p", "text": "ABCD"[(r + i) % 4], "answer_id": "x",
             "model_id": "m"} for i in range(2) for r in range(4)]
    result = score("mmbench", _jsonl(tmp_path / "p.jsonl", rows), data)
    assert [r["prediction"] for r in _read_tsv(Path(result["submission"]["path"]))] == ["A", "B"]
    assert any("rotated rounds" in n for n in result["notes"])


# ------------------------------------------------------------------ the mixed-file rule


def test_a_file_mixing_answered_and_unanswered_questions_is_refused_before_the_model_loads(tmp_path):
    data = _jsonl(tmp_path / "vqa.jsonl", [{"question_id": "a", "question": "q?", "answer": "yes"},
                                           {"question_id": "b", "question": "r?"},
                                           {"question_id": "c", "question": "s?"}])
    msg = r"mixes questions with and without answers: question 'b' \(first of 2\) has none while 1 have some"
    with pytest.raises(DataError, match=msg):
        run_eval(tmp_path / "no-model-here", _settings(data, tmp_path / "o.jsonl", None, "vqav2"), **QUIET)
    with pytest.raises(DataError, match=msg):
        score("vqav2", _jsonl(tmp_path / "p.jsonl", [{"question_id": "a", "answer": "yes"}]), data)
    textvqa = {"data": [{"question_id": 1, "image_id": "i", "question": "q?", "answers": ["x"] * 10},
                        {"question_id": 2, "image_id": "j", "question": "r?"}]}
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(textvqa))
    with pytest.raises(DataError, match="question '2'"):
        load_benchmark("textvqa", tmp_path)


def test_benchmarks_with_public_answers_have_no_submission_format(tmp_path):
    from deco.eval.submission import write_submission

    with pytest.raises(ConfigError, match="gqa has no submission format.*vqav2, textvqa, vizwiz, mmbench"):
        write_submission("gqa", [], tmp_path / "x.json")


def test_cli_score_on_a_test_split_prints_where_the_submission_is(tmp_path):
    from deco.cli import app

    data = _vqav2_testdev(tmp_path, [1, 2])
    preds = _jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "one"}, {"question_id": 2, "answer": "No"}])
    res = CliRunner().invoke(app, ["score", "--benchmark", "vqav2", "--preds", str(preds), "--data", str(data),
                                   "--submission", str(tmp_path / "up.json"), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "vqav2: not scored (the split has no answers)" in res.output and str(tmp_path / "up.json") in res.output
    assert json.loads((tmp_path / "up.json").read_text()) == [{"question_id": 1, "answer": "1"},
                                                              {"question_id": 2, "answer": "no"}]
    assert json.loads((tmp_path / "r.json").read_text())["scored"] is False


# ------------------------------------------------------------------ TextVQA with OCR tokens


def _textvqa(root: Path, with_tokens: bool) -> Path:
    entries = [{"question_id": 31, "image_id": "img31", "question": "what does the sign say?",
                "answers": ["stop"] * 10, "set_name": "val"},
               {"question_id": 32, "image_id": "img32", "question": "what brand is this?",
                "answers": ["nike"] * 10, "set_name": "val"}]
    if with_tokens:
        entries[0]["ocr_tokens"] = ["STOP", "Main St"]
        entries[1]["ocr_tokens"] = []
    path = root / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps({"dataset_name": "textvqa", "data": entries}), encoding="utf-8")
    return path


def test_textvqa_ocr_tokens_from_the_annotations_make_llavas_prompt(tmp_path):
    a, b = load_benchmark("textvqa", _textvqa(tmp_path, with_tokens=True))
    assert question_text("textvqa", a) == f"What does the sign say?\nReference OCR token: STOP, Main St\n{SHORT_ANSWER}"
    assert question_text("textvqa", b) == f"What brand is this?\n{SHORT_ANSWER}"  # no tokens: no OCR line
    assert question_text("textvqa", a, ocr=False) == f"What does the sign say?\n{SHORT_ANSWER}"


def test_textvqa_rosetta_ocr_file_beside_the_annotations(tmp_path):
    _textvqa(tmp_path, with_tokens=False)
    (tmp_path / "TextVQA_Rosetta_OCR_v0.2_val.json").write_text(json.dumps({"data": [
        {"image_id": "img32", "ocr_tokens": ["NIKE", "just", "do"], "ocr_info": []}]}))
    a, b = load_benchmark("textvqa", tmp_path)
    assert a.meta.get("ocr_tokens") is None and b.meta["ocr_tokens"] == ["NIKE", "just", "do"]
    assert question_text("textvqa", b).split("\n")[1] == "Reference OCR token: NIKE, just, do"
    (tmp_path / "TextVQA_Rosetta_OCR_v0.2_val.json").write_text(json.dumps({"data": [{"image_id": "img32"}]}))
    with pytest.raises(DataError, match="Rosetta_OCR_v0.2_val.json entry 0 has no 'ocr_tokens'"):
        load_benchmark("textvqa", tmp_path)


def test_textvqa_run_asks_with_ocr_by_default_and_refuses_to_resume_with_it_off(tmp_path, saved_tiny_model, asked):
    data = _textvqa(tmp_path, with_tokens=True)
    images = _images(tmp_path / "train_images", ["img31.jpg", "img32.jpg"])
    out = tmp_path / "tv.jsonl"
    summary = run_eval(saved_tiny_model, _settings(data, out, images, "textvqa"), **QUIET)
    assert summary["score"]["scored"] is True and summary["notes"] == []
    assert "USER: <image>\nWhat does the sign say?\nReference OCR token: STOP, Main St\n" + SHORT_ANSWER in asked[0]
    assert "Reference OCR token" not in asked[1]
    assert {r["ocr"] for r in _lines(out)} == {True}
    # The same file with OCR off is another run: refused rather than mixed.
    with pytest.raises(DataError, match="belongs to another run: ocr=True"):
        run_eval(saved_tiny_model, _settings(data, out, images, "textvqa", ocr=False), **QUIET)
    asked.clear()
    off = run_eval(saved_tiny_model, _settings(data, tmp_path / "off.jsonl", images, "textvqa", ocr=False), **QUIET)
    assert not any("Reference OCR token" in p for p in asked) and "ocr off" in off["notes"][0]


def test_textvqa_without_any_tokens_says_the_prompts_differ_from_llavas(tmp_path, saved_tiny_model):
    data = _textvqa(tmp_path, with_tokens=False)
    images = _images(tmp_path / "train_images", ["img31.jpg", "img32.jpg"])
    summary = run_eval(saved_tiny_model, _settings(data, tmp_path / "tv.jsonl", images, "textvqa", limit=1), **QUIET)
    assert "TextVQA_Rosetta_OCR_v0.2_val.json" in summary["notes"][0]


def test_textvqa_test_split_gives_an_evalai_submission(tmp_path):
    entries = [{"question_id": 40, "image_id": "t40", "question": "what number?", "set_name": "test"},
               {"question_id": 41, "image_id": "t41", "question": "what word?", "set_name": "test"}]
    (tmp_path / "TextVQA_0.5.1_test.json").write_text(json.dumps({"data": entries}))
    preds = _jsonl(tmp_path / "p.jsonl", [{"question_id": 40, "answer": "Five"}, {"question_id": 41, "answer": "Exit"}])
    result = score("textvqa", preds, tmp_path)
    assert json.loads(Path(result["submission"]["path"]).read_text()) == [{"question_id": 40, "answer": "5"},
                                                                         {"question_id": 41, "answer": "exit"}]


def test_cli_takes_ocr_and_submission_from_the_config_eval_section(tmp_path, saved_tiny_model, asked):
    from deco.cli import app

    data = _textvqa(tmp_path, with_tokens=True)
    images = _images(tmp_path / "train_images", ["img31.jpg", "img32.jpg"])
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"eval: {{benchmark: textvqa, data: {data}, images: {images}, ocr: false, template: vicuna_v1}}\n")
    result = CliRunner().invoke(app, ["eval", "--model", str(saved_tiny_model), "--out", str(tmp_path / "p.jsonl"),
                                      "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert asked and not any("Reference OCR token" in p for p in asked)
    assert {r["ocr"] for r in _lines(tmp_path / "p.jsonl")} == {False}
