"""VQAv2, TextVQA and VizWiz: readers for their published annotations, and the official VQA accuracy.

Accuracy per question = mean over leaving out each of the (10) human answers of
min(#remaining humans who gave the predicted answer / 3, 1), reported x100 overall and per answer type
(and per question type for VQAv2), the per-type numbers being means of the per-question scores as in
the current official evaluator.

Normalisation, as each benchmark's published numbers were produced by LLaVA:
- VQAv2, VizWiz: the prediction goes through LLaVA's EvalAI processor and then the official evaluator's
  normalisation (punctuation, number words -> digits, articles, contractions, lowercase). Human answers
  get the official evaluator's punctuation step only, and only when they disagree (its own rule).
- TextVQA: prediction and human answers both go through the EvalAI processor (TextVQA's evaluator).
VizWiz's "unanswerable" is an ordinary answer string; its questions are reported under the answer type
"unanswerable".
"""

from __future__ import annotations

import re
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import (
    Sample,
    read_json,
    read_json_or_lines,
    read_jsonl,
    require_keys,
    resolve_file,
    unique_qids,
    wrong_format,
)
from deco.eval.metrics import by_group, mean_percent
from deco.eval.normalize import normalize_evalai, normalize_vqa, process_punctuation, vqa_accuracy
from deco.eval.predictions import Prediction

VQAV2_FILE = "v2_mscoco_val2014_annotations.json"
VQAV2_SOURCE = "https://visualqa.org/download.html (Annotations and Questions, val2014)"
TEXTVQA_FILE = "TextVQA_0.5.1_val.json"
TEXTVQA_SOURCE = "https://textvqa.org/dataset (TextVQA 0.5.1 val)"
VIZWIZ_FILE = "val.json"
VIZWIZ_SOURCE = "https://vizwiz.org/tasks-and-datasets/vqa/ (Annotations.zip)"


# ---------------------------------------------------------------- readers


def load_vqav2(path: str | Path) -> list[Sample]:
    """Read VQAv2 annotations (v2_mscoco_<split>_annotations.json, questions file beside it optional)."""
    p = resolve_file(path, [VQAV2_FILE], "vqav2", VQAV2_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "vqav2")
    obj = read_json_or_lines(p, "vqav2")
    if not (isinstance(obj, dict) and isinstance(obj.get("annotations"), list)):
        raise wrong_format("vqav2", p, "an object with an 'annotations' list (v2_mscoco_val2014_annotations.json)", obj)
    m = re.fullmatch(r"v2_mscoco_(\w+?)_annotations\.json", p.name)
    split = m.group(1) if m else None
    questions = _vqav2_questions(p, split)
    samples = []
    for i, a in enumerate(obj["annotations"]):
        require_keys(a, ("question_id", "answers"), "vqav2", p, f"annotation {i}")
        answers = tuple(str(x["answer"]) for x in a["answers"] if isinstance(x, dict) and "answer" in x)
        if not answers:
            raise DataError(f"vqav2: {p} annotation {i} (question {a['question_id']}) has no human answers")
        image_id = a.get("image_id")
        image = f"COCO_{split}_{int(image_id):012d}.jpg" if split and image_id is not None else None
        samples.append(Sample(
            qid=str(a["question_id"]), question=questions.get(str(a["question_id"]), ""), image=image,
            answers=answers, meta={"answer_type": a.get("answer_type"), "question_type": a.get("question_type")},
        ))
    return unique_qids(samples, "vqav2", p)


def _vqav2_questions(annotations: Path, split: str | None) -> dict[str, str]:
    """Question texts from the questions file beside the annotations, if it is there (not needed to score)."""
    if split is None:
        return {}
    q = annotations.with_name(f"v2_OpenEnded_mscoco_{split}_questions.json")
    if not q.is_file():
        return {}
    obj = read_json(q, "vqav2")
    if not (isinstance(obj, dict) and isinstance(obj.get("questions"), list)):
        raise wrong_format("vqav2", q, "an object with a 'questions' list", obj)
    return {str(x["question_id"]): str(x.get("question", "")) for x in obj["questions"] if "question_id" in x}


def load_textvqa(path: str | Path) -> list[Sample]:
    """Read TextVQA_0.5.1_val.json (ten answers per question)."""
    p = resolve_file(path, [TEXTVQA_FILE], "textvqa", TEXTVQA_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "textvqa")
    obj = read_json_or_lines(p, "textvqa")
    if not (isinstance(obj, dict) and isinstance(obj.get("data"), list)):
        raise wrong_format("textvqa", p, "an object with a 'data' list (TextVQA_0.5.1_val.json)", obj)
    samples = []
    for i, d in enumerate(obj["data"]):
        require_keys(d, ("question_id", "question", "image_id"), "textvqa", p, f"entry {i}")
        if not d.get("answers"):
            raise DataError(f"textvqa: {p} entry {i} has no 'answers' (the test split has none; score on val)")
        question = str(d["question"])
        samples.append(Sample(
            qid=str(d["question_id"]), question=question, image=f"{d['image_id']}.jpg",
            answers=tuple(str(a) for a in d["answers"]), meta={"answer_type": d.get("answer_type")},
            # LLaVA's TextVQA files use the image id as question_id and tell questions apart by their text.
            aliases=(f"{d['image_id']}|{question.lower()}",),
        ))
    return unique_qids(samples, "textvqa", p)


def load_vizwiz(path: str | Path) -> list[Sample]:
    """Read VizWiz val.json; a question's id is its image file name (one question per image)."""
    p = resolve_file(path, [VIZWIZ_FILE], "vizwiz", VIZWIZ_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "vizwiz")
    obj = read_json_or_lines(p, "vizwiz")
    if not (isinstance(obj, list) and obj and isinstance(obj[0], dict) and "image" in obj[0]):
        raise wrong_format("vizwiz", p, "a list of objects with 'image', 'question' and 'answers' (val.json)", obj)
    samples = []
    for i, d in enumerate(obj):
        require_keys(d, ("image", "question"), "vizwiz", p, f"entry {i}")
        answers = tuple(str(a["answer"]) for a in d.get("answers") or () if isinstance(a, dict) and "answer" in a)
        if not answers:
            raise DataError(f"vizwiz: {p} entry {i} has no answers (the test split has none; score on val)")
        image = str(d["image"])
        samples.append(Sample(
            qid=image, question=str(d["question"]), image=image, answers=answers,
            meta={"answer_type": d.get("answer_type"), "answerable": d.get("answerable")},
            # LLaVA numbers VizWiz questions by their position in the file; the stem is also accepted.
            aliases=(str(i), image.rsplit(".", 1)[0]),
        ))
    return unique_qids(samples, "vizwiz", p)


def load_simple_vqa(p: Path, benchmark: str) -> list[Sample]:
    """Read the simplified JSONL form: {question_id, question, image?, answers: [...] or answer, answer_type?}."""
    samples = []
    for i, row in enumerate(read_jsonl(p, benchmark)):
        require_keys(row, ("question_id", "question"), benchmark, p, f"line {i + 1}")
        if isinstance(row.get("answers"), list) and row["answers"]:
            answers = tuple(str(a["answer"] if isinstance(a, dict) else a) for a in row["answers"])
        elif isinstance(row.get("answer"), str):
            # One reference answer counts as if all ten humans had given it: right or wrong, 1 or 0.
            answers = (row["answer"],) * 10
        else:
            raise DataError(f"{benchmark}: {p} line {i + 1} needs 'answers' (a list) or 'answer' (a string)")
        samples.append(Sample(
            qid=str(row["question_id"]), question=str(row["question"]), image=row.get("image"), answers=answers,
            meta={"answer_type": row.get("answer_type"), "question_type": row.get("question_type")},
        ))
    return unique_qids(samples, benchmark, p)


def textvqa_alt_keys(pred: Prediction) -> list[str]:
    """LLaVA's TextVQA key: its question_id is the image id, plus the question read back from the prompt."""
    if not pred.prompt:
        return []
    question = question_from_textvqa_prompt(pred.prompt)
    return [f"{pred.qid}|{question.lower()}"] if question else []


def question_from_textvqa_prompt(prompt: str) -> str | None:
    """The question inside a LLaVA TextVQA prompt (its layouts with or without OCR tokens)."""
    if prompt.startswith("OCR tokens: "):
        m = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        return m.group(1) if m else None
    lines = prompt.split("\n")
    if "Reference OCR token: " in prompt and len(lines) == 3:
        return lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    return lines[0]


# ---------------------------------------------------------------- scoring


def score_vqa(pairs: list[tuple[Sample, str | None]], textvqa: bool = False) -> dict:
    """Official VQA accuracy (x100) overall and per answer / question type."""
    scores = []
    for sample, answer in pairs:
        if answer is None:
            scores.append(0.0)
            continue
        if textvqa:
            pred = normalize_evalai(answer)
            gts = [normalize_evalai(a) for a in sample.answers]
        else:
            pred = normalize_vqa(normalize_evalai(answer))
            gts = list(sample.answers)
            if len(set(gts)) > 1:
                gts = [process_punctuation(a) for a in gts]
        scores.append(vqa_accuracy(pred, gts))
    metrics: dict = {"accuracy": mean_percent(scores)}
    for key in ("answer_type", "question_type"):
        groups = by_group((s.meta.get(key), v) for (s, _), v in zip(pairs, scores, strict=True))
        if groups:
            metrics[f"per_{key}"] = groups
    return metrics
