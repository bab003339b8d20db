"""`deco eval` end to end on a small local benchmark: generate, write, resume, score, and bad input."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deco.config import load_config
from deco.errors import ConfigError, DataError
from deco.eval.runner import EvalSettings, resolve_model_dir, run_eval
from deco.model import build_model, save_model

N_QUESTIONS = 5

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _tiny_model(seed: int):
    torch.manual_seed(seed)
    return build_model(load_config("configs/tiny.yaml", []))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training-run-like folder: RUN/config.yaml (eval.template: plain) + RUN/final/ (a saved tiny model)."""
    run = tmp_path_factory.mktemp("run")
    save_model(_tiny_model(0), run / "final")
    (run / "config.yaml").write_text("eval:\n  template: plain\n  batch_size: 2\n", encoding="utf-8")
    return run


def write_gqa(root: Path, n: int = N_QUESTIONS) -> tuple[Path, Path]:
    """A GQA-style benchmark in the simplified JSONL form with one generated PNG per question."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (30 + 4 * i, 40), (50 * i % 256, 120, 200)).save(images / f"img{i}.png")
        rows.append({"question_id": f"q{i}", "question": f"What colour is shape {i}?" + " Look." * i, "image": f"img{i}.png",
                     "answer": "blue"})
    data = root / "gqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data, images


def settings(root: Path, data: Path, images: Path | None, **kw) -> EvalSettings:
    kw.setdefault("max_new_tokens", 3)
    kw.setdefault("batch_size", 2)
    kw.setdefault("template", "plain")  # the shortest prompts; tests of prompt text ask for vicuna_v1
    return EvalSettings(benchmark=kw.pop("benchmark", "gqa"), data=data, images=images,
                        out=kw.pop("out", root / "preds.jsonl"), **kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_run_writes_one_line_per_question_and_scores(tmp_path, model_dir, asked):
    data, images = write_gqa(tmp_path)
    summary = run_eval(model_dir, settings(tmp_path, data, images, template="vicuna_v1"), log=lambda m: None)
    rows = lines(tmp_path / "preds.jsonl")
    assert [r["question_id"] for r in rows] == [f"q{i}" for i in range(N_QUESTIONS)]
    for r in rows:
        assert r["benchmark"] == "gqa" and r["template"] == "vicuna_v1" and r["max_new_tokens"] == 3
        assert 1 <= r["tokens"] <= 3 and r["seconds"] > 0 and r["batch_size"] in (1, 2)
        assert r["seconds"] == pytest.approx(r["batch_seconds"] / r["batch_size"])
        assert r["prompt"].startswith("A chat between") and r["prompt"].endswith(" ASSISTANT:")
        assert "USER: <image>\nWhat colour is shape" in r["prompt"]
        assert r["prompt"].count("Answer the question using a single word or phrase.") == 1
        assert isinstance(r["answer"], str)
    assert summary["answered_now"] == N_QUESTIONS and summary["questions_per_second"] > 0
    assert summary["model"].endswith("final")  # a run directory resolves to its final/ model
    assert summary["score"]["counts"] == {"questions": N_QUESTIONS, "scored": N_QUESTIONS, "predictions": N_QUESTIONS,
                                          "matched": N_QUESTIONS, "missing": 0, "extra": 0,
                                          "empty": sum(r["answer"] == "" for r in rows)}
    assert len(asked) == N_QUESTIONS


def test_batched_answers_equal_one_by_one(tmp_path, model_dir):
    """Left padding and the KV cache must not change greedy answers."""
    data, images = write_gqa(tmp_path)
    for name, bs in (("one.jsonl", 1), ("four.jsonl", 4)):
        run_eval(model_dir, settings(tmp_path, data, images, batch_size=bs, out=tmp_path / name, limit=4,
                                     max_new_tokens=4, template="vicuna_v1"), log=lambda m: None)
    one, four = lines(tmp_path / "one.jsonl"), lines(tmp_path / "four.jsonl")
    assert [r["answer"] for r in one] == [r["answer"] for r in four]


def test_resume_does_not_redo_answered_ids(tmp_path, model_dir, asked):
    data, images = write_gqa(tmp_path)
    first = run_eval(model_dir, settings(tmp_path, data, images, limit=2, template="vicuna_v1"), log=lambda m: None)
    assert first["score"]["counts"]["scored"] == 2 and first["score"]["missing_policy"] == "skip"
    before = (tmp_path / "preds.jsonl").read_text(encoding="utf-8")
    asked.clear()
    second = run_eval(model_dir, settings(tmp_path, data, images, template="vicuna_v1"), log=lambda m: None)
    after = (tmp_path / "preds.jsonl").read_text(encoding="utf-8")
    assert after.startswith(before)  # old lines untouched
    assert [r["question_id"] for r in lines(tmp_path / "preds.jsonl")] == [f"q{i}" for i in range(N_QUESTIONS)]
    assert second["answered_before"] == 2 and second["answered_now"] == 3
    assert not any("shape 0?" in p or "shape 1?" in p for p in asked) and len(asked) == 3
    asked.clear()
    third = run_eval(model_dir, settings(tmp_path, data, images, template="vicuna_v1"), log=lambda m: None)
    assert third["answered_now"] == 0 and asked == []


def test_truncated_last_line_is_dropped_and_redone(tmp_path, model_dir):
    data, images = write_gqa(tmp_path)
    out = tmp_path / "preds.jsonl"
    run_eval(model_dir, settings(tmp_path, data, images, limit=3), log=lambda m: None)
    text = out.read_text(encoding="utf-8")
    out.write_text(text[: len(text) - 40], encoding="utf-8")  # a crash in the middle of line 3
    messages: list[str] = []
    summary = run_eval(model_dir, settings(tmp_path, data, images), log=messages.append)
    assert any("dropping the truncated last line 3" in m for m in messages)
    assert summary["answered_before"] == 2 and summary["answered_now"] == 3
    assert [r["question_id"] for r in lines(out)] == [f"q{i}" for i in range(N_QUESTIONS)]


def test_last_line_without_newline_is_kept(tmp_path, model_dir):
    data, images = write_gqa(tmp_path)
    out = tmp_path / "preds.jsonl"
    run_eval(model_dir, settings(tmp_path, data, images, limit=2), log=lambda m: None)
    out.write_text(out.read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")
    summary = run_eval(model_dir, settings(tmp_path, data, images), log=lambda m: None)
    assert summary["answered_before"] == 2
    assert len(lines(out)) == N_QUESTIONS


def test_preds_of_another_run_are_refused(tmp_path, model_dir):
    data, images = write_gqa(tmp_path)
    run_eval(model_dir, settings(tmp_path, data, images, limit=1), log=lambda m: None)
    with pytest.raises(DataError, match="another run: template='plain'.*this run has template='vicuna_v1'"):
        run_eval(model_dir, settings(tmp_path, data, images, template="vicuna_v1"), log=lambda m: None)
    with pytest.raises(DataError, match="max_new_tokens=3"):
        run_eval(model_dir, settings(tmp_path, data, images, max_new_tokens=5), log=lambda m: None)
    with pytest.raises(DataError, match="another run: model_id="):
        run_eval(_tiny_model(1), settings(tmp_path, data, images), log=lambda m: None)
    # The same ids under another benchmark name (VQAv2 reads the same simplified JSONL).
    with pytest.raises(DataError, match="another run: benchmark='gqa'"):
        run_eval(model_dir, settings(tmp_path, data, images, benchmark="vqav2"), log=lambda m: None)


def test_bad_prediction_files_are_refused(tmp_path, model_dir):
    data, images = write_gqa(tmp_path)
    out = tmp_path / "preds.jsonl"
    run_eval(model_dir, settings(tmp_path, data, images, limit=2), log=lambda m: None)
    good = out.read_text(encoding="utf-8").splitlines()
    row = json.loads(good[0])

    def attempt(text: str, match: str) -> None:
        out.write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=match):
            run_eval(model_dir, settings(tmp_path, data, images), log=lambda m: None)

    attempt(good[0] + "\n{not json\n" + good[1] + "\n", "line 2: not valid JSON")
    attempt(good[0] + "\n" + good[0] + "\n", "question 'q0' is answered twice")
    attempt(json.dumps({**row, "question_id": "zz9"}) + "\n", "line 1: question 'zz9' is not in the gqa annotations")
    llava = {"question_id": "q0", "prompt": "x", "text": "blue", "answer_id": "a", "model_id": "m", "metadata": {}}
    attempt(json.dumps(llava) + "\n", "line 1: not a deco eval prediction")
    attempt(json.dumps({k: v for k, v in row.items() if k != "model_id"}) + "\n", "has no model_id: it was not written")


def test_missing_files_are_clear_errors(tmp_path, model_dir):
    data, images = write_gqa(tmp_path)
    with pytest.raises(DataError, match="annotation file .*nope.jsonl does not exist"):
        run_eval(model_dir, settings(tmp_path, tmp_path / "nope.jsonl", images), log=lambda m: None)
    (images / "img3.png").unlink()
    # The image check runs before the model loads: a model path that does not exist is never reached.
    with pytest.raises(DataError, match=r"image file for question q3 not found: .*img3.png \(1 of 5"):
        run_eval(tmp_path / "no-model", settings(tmp_path, data, images), log=lambda m: None)
    with pytest.raises(ConfigError, match="pass --images"):
        run_eval(model_dir, settings(tmp_path, data, None), log=lambda m: None)
    (images / "img2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="gqa: question q2: .*img2.png"):
        run_eval(model_dir, settings(tmp_path, data, images, limit=3, batch_size=1), log=lambda m: None)
    assert [r["question_id"] for r in lines(tmp_path / "preds.jsonl")] == ["q0", "q1"]  # flushed before the error


def test_resolve_model_dir(tmp_path, model_dir):
    assert resolve_model_dir(model_dir) == model_dir / "final"
    assert resolve_model_dir(model_dir / "final") == model_dir / "final"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="without a finished model"):
        resolve_model_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match="not a saved deco model"):
        resolve_model_dir(tmp_path)
    with pytest.raises(ConfigError, match="unknown benchmark 'gqa2'. Did you mean 'gqa'"):
        EvalSettings(benchmark="gqa2", data=tmp_path, out=tmp_path / "p.jsonl")


def _b64_png(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGBA", (20, 24), colour + (255,)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_mmbench_tsv_with_embedded_images_and_rotations(tmp_path, model_dir, asked):
    header = ["index", "question", "hint", "A", "B", "C", "answer", "category", "image"]
    rows = [[str(i + k * 1_000_000), "Which colour?", "Look closely." if i == 0 else "nan",
             *(["red", "green", "blue"][k:] + ["red", "green", "blue"][:k]), "ABC"[(i - k) % 3], "colour",
             _b64_png((40 * i, 10, 10))] for i in range(2) for k in range(3)]
    tsv = tmp_path / "mmbench_dev_20230712.tsv"
    tsv.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    summary = run_eval(model_dir, settings(tmp_path, tmp_path, None, benchmark="mmbench", batch_size=6,
                                           template="vicuna_v1", max_new_tokens=1), log=lambda m: None)
    assert summary["answered_now"] == 6 and summary["score"]["metrics"]["questions"] == 2
    assert summary["score"]["metrics"]["rows"] == 6
    assert asked[0].endswith("USER: <image>\nLook closely.\nWhich colour?\nA. red\nB. green\nC. blue\n"
                             "Answer with the option's letter from the given choices directly. ASSISTANT:")
    assert "USER: <image>\nWhich colour?\nA. green\nB. blue\nC. red\n" in asked[4]  # rotated copy, no hint


def test_scienceqa_mixes_image_and_text_only_questions(tmp_path, model_dir, asked):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), "red").save(images / "a.png")
    rows = [{"question_id": "1", "question": "Which is hot?", "choices": ["sun", "ice"], "answer": 0,
             "image": "a.png", "hint": "Think."},
            {"question_id": "2", "question": "Which is cold?", "choices": ["sun", "ice"], "answer": "B"}]
    data = tmp_path / "sqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = run_eval(model_dir, settings(tmp_path, data, images, benchmark="scienceqa", template="vicuna_v1"),
                       log=lambda m: None)
    assert summary["answered_now"] == 2 and summary["score"] is not None
    assert "USER: <image>\nContext: Think.\nWhich is hot?\nA. sun\nB. ice\nAnswer with the option's letter" in asked[0]
    assert "<image>" not in asked[1] and "USER: Which is cold?\nA. sun\nB. ice\n" in asked[1]


def test_cli_eval_uses_the_run_config_and_prints_metrics(tmp_path, model_dir):
    from deco.cli import app

    data, images = write_gqa(tmp_path)
    out = tmp_path / "cli.jsonl"
    args = ["eval", "--model", str(model_dir), "--benchmark", "gqa", "--data", str(data), "--images", str(images),
            "--out", str(out), "--max-new-tokens", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "gqa: accuracy = " in result.output and "5 scored of 5 questions" in result.output
    rows = lines(out)
    assert {r["template"] for r in rows} == {"plain"}  # RUN/config.yaml eval.template
    assert {r["batch_size"] for r in rows} == {2, 1}  # RUN/config.yaml eval.batch_size = 2
    assert all(r["prompt"] == "<image>" for r in rows)


def test_seed_video_questions_are_left_out_with_a_note(tmp_path, model_dir):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), "blue").save(images / "s.png")
    rows = [{"question_id": "i1", "question": "Colour?", "choices": ["red", "blue", "green", "pink"], "answer": "B",
             "data_type": "image", "image": "s.png"},
            {"question_id": "v1", "question": "Action?", "choices": ["run", "sit", "jump", "walk"], "answer": "A",
             "data_type": "video", "image": "clip.mp4"}]
    data = tmp_path / "seed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = run_eval(model_dir, settings(tmp_path, data, images, benchmark="seed"), log=lambda m: None)
    assert summary["answered_now"] == 1 and summary["notes"] == [
        "left out 1 SEED video questions (SEED-Image is what LLaVA-1.5 reports)"]
    assert [r["question_id"] for r in lines(tmp_path / "preds.jsonl")] == ["i1"]
    assert summary["score"]["counts"]["scored"] == 1  # the scorer keeps SEED-Image only, too
