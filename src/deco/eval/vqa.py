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

Test splits without public answers (a VQAv2 questions file such as v2_OpenEnded_mscoco_test-dev2015_questions.json,
TextVQA_0.5.1_test.json, VizWiz test.json, simplified JSONL without answers) are read with empty `answers`:
`score` then writes the EvalAI submission file (`deco.eval.submission`) instead of a score. A file mixing
questions with and without answers is an error (`annotations.check_answers`).

TextVQA OCR tokens: LLaVA-1.5's prompts add the Rosetta OCR tokens of the image (its
llava_textvqa_val_v051_ocr.jsonl; the tokens come from TextVQA's TextVQA_Rosetta_OCR_v0.2_<split>.json, as
LLaVA's author says in haotian-liu/LLaVA#976). They are read into `meta["ocr_tokens"]` from an entry's own
`ocr_tokens` list when it has one, else from the Rosetta file beside the annotations (same split); with
neither, the key is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import (
    Sample,
    check_answers,
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
# Test splits: questions only (EvalAI holds the answers); test-dev is what LLaVA-1.5 reports.
VQAV2_TEST_FILES = ("v2_OpenEnded_mscoco_test-dev2015_questions.json", "v2_OpenEnded_mscoco_test2015_questions.json")
TEXTVQA_FILE = "TextVQA_0.5.1_val.json"
TEXTVQA_TEST_FILE = "TextVQA_0.5.1_test.json"
TEXTVQA_SOURCE = "https://textvqa.org/dataset (TextVQA 0.5.1 val)"
ROSETTA_OCR_FILE = "TextVQA_Rosetta_OCR_v0.2_{split}.json"
VIZWIZ_FILE = "val.json"
VIZWIZ_TEST_FILE = "test.json"
VIZWIZ_SOURCE = "https://vizwiz.org/tasks-and-datasets/vqa/ (Annotations.zip)"


# ---------------------------------------------------------------- readers


def load_vqav2(path: str | Path) -> list[Sample]:
    """Read VQAv2 annotations (v2_mscoco_<split>_annotations.json, questions file beside it optional), or a
    questions file alone (test-dev / test: no answers; a val questions file uses its annotations beside it)."""
    p = resolve_file(path, [VQAV2_FILE, *VQAV2_TEST_FILES], "vqav2", VQAV2_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "vqav2")
    obj = read_json_or_lines(p, "vqav2")
    if isinstance(obj, dict) and isinstance(obj.get("questions"), list) and "annotations" not in obj:
        return _vqav2_questions_only(p, obj)
    if not (isinstance(obj, dict) and isinstance(obj.get("annotations"), list)):
        raise wrong_format("vqav2", p, "an object with an 'annotations' list (v2_mscoco_val2014_annotations.json) "
                           "or a questions file (v2_OpenEnded_mscoco_test-dev2015_questions.json)", obj)
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


def _vqav2_questions_only(p: Path, obj: dict) -> list[Sample]:
    """A VQAv2 questions file: its annotations beside it if they exist (val), else questions without answers."""
    m = re.fullmatch(r"v2_OpenEnded_mscoco_([\w-]+?)_questions\.json", p.name)
    split = m.group(1) if m else obj.get("data_subtype")
    annotations = p.with_name(f"v2_mscoco_{split}_annotations.json") if split else None
    if annotations is not None and annotations.is_file():
        return load_vqav2(annotations)
    questions = obj["questions"]
    if questions and not (isinstance(questions[0], dict) and "image_id" in questions[0]):
        raise wrong_format("vqav2", p, "a questions file whose questions have 'question_id', 'image_id', 'question'",
                           obj)
    # Test-dev is a subset of test2015: its images are COCO_test2015_*.jpg (LLaVA's llava_vqav2_mscoco_test-dev2015).
    image_split = "test2015" if split and split.startswith("test") else split
    samples = []
    for i, q in enumerate(questions):
        require_keys(q, ("question_id", "image_id", "question"), "vqav2", p, f"question {i}")
        image = f"COCO_{image_split}_{int(q['image_id']):012d}.jpg" if image_split else None
        samples.append(Sample(qid=str(q["question_id"]), question=str(q["question"]), image=image, answers=(),
                              meta={"split": split}))
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
    """Read TextVQA_0.5.1_val.json (ten answers per question) or the test split (none), with OCR tokens if any."""
    p = resolve_file(path, [TEXTVQA_FILE, TEXTVQA_TEST_FILE], "textvqa", TEXTVQA_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "textvqa")
    obj = read_json_or_lines(p, "textvqa")
    if not (isinstance(obj, dict) and isinstance(obj.get("data"), list)):
        raise wrong_format("textvqa", p, "an object with a 'data' list (TextVQA_0.5.1_val.json)", obj)
    rosetta = _rosetta_ocr(p, obj["data"])
    samples = []
    for i, d in enumerate(obj["data"]):
        require_keys(d, ("question_id", "question", "image_id"), "textvqa", p, f"entry {i}")
        question = str(d["question"])
        meta = {"answer_type": d.get("answer_type")}
        ocr = d["ocr_tokens"] if "ocr_tokens" in d else rosetta.get(str(d["image_id"])) if rosetta else None
        if ocr is not None:
            meta["ocr_tokens"] = _ocr_list(ocr, p, f"entry {i}")
        samples.append(Sample(
            qid=str(d["question_id"]), question=question, image=f"{d['image_id']}.jpg",
            answers=tuple(str(a) for a in d.get("answers") or ()), meta=meta,
            # LLaVA's TextVQA files use the image id as question_id and tell questions apart by their text.
            aliases=(f"{d['image_id']}|{question.lower()}",),
        ))
    return check_answers(unique_qids(samples, "textvqa", p), "textvqa", p)


def _rosetta_ocr(annotations: Path, data: list) -> dict[str, list] | None:
    """Image id -> OCR tokens from TextVQA_Rosetta_OCR_v0.2_<split>.json beside the annotations, if it is there."""
    m = re.fullmatch(r"TextVQA_0\.5\.1_(\w+)\.json", annotations.name)
    split = m.group(1) if m else next((d.get("set_name") for d in data if isinstance(d, dict)), None)
    if not split:
        return None
    f = annotations.with_name(ROSETTA_OCR_FILE.format(split=split))
    if not f.is_file():
        return None
    obj = read_json(f, "textvqa")
    if not (isinstance(obj, dict) and isinstance(obj.get("data"), list)):
        raise wrong_format("textvqa", f, "an object with a 'data' list of {image_id, ocr_tokens} (Rosetta OCR)", obj)
    tokens = {}
    for i, d in enumerate(obj["data"]):
        require_keys(d, ("image_id", "ocr_tokens"), "textvqa", f, f"entry {i}")
        tokens[str(d["image_id"])] = _ocr_list(d["ocr_tokens"], f, f"entry {i}")
    return tokens


def _ocr_list(tokens: object, path: Path, where: str) -> list[str]:
    if not isinstance(tokens, list):
        raise DataError(f"textvqa: {path} {where}: 'ocr_tokens' must be a list of strings, found "
                        f"{type(tokens).__name__}")
    return [str(t) for t in tokens]


def load_vizwiz(path: str | Path) -> list[Sample]:
    """Read VizWiz val.json (or test.json, without answers); a question's id is its image file name."""
    p = resolve_file(path, [VIZWIZ_FILE, VIZWIZ_TEST_FILE], "vizwiz", VIZWIZ_SOURCE)
    if p.suffix == ".jsonl":
        return load_simple_vqa(p, "vizwiz")
    obj = read_json_or_lines(p, "vizwiz")
    if not (isinstance(obj, list) and obj and isinstance(obj[0], dict) and "image" in obj[0]):
        raise wrong_format("vizwiz", p, "a list of objects with 'image', 'question' and 'answers' (val.json)", obj)
    samples = []
    for i, d in enumerate(obj):
        require_keys(d, ("image", "question"), "vizwiz", p, f"entry {i}")
        answers = tuple(str(a["answer"]) for a in d.get("answers") or () if isinstance(a, dict) and "answer" in a)
        image = str(d["image"])
        samples.append(Sample(
            qid=image, question=str(d["question"]), image=image, answers=answers,
            meta={"answer_type": d.get("answer_type"), "answerable": d.get("answerable")},
            # LLaVA numbers VizWiz questions by their position in the file; the stem is also accepted.
            aliases=(str(i), image.rsplit(".", 1)[0]),
        ))
    return check_answers(unique_qids(samples, "vizwiz", p), "vizwiz", p)


def load_simple_vqa(p: Path, benchmark: str) -> list[Sample]:
    """Read the simplified JSONL form: {question_id, question, image?, answers: [...] or answer, answer_type?,
    ocr_tokens?}; lines without 'answers' and 'answer' are a test split's (no score, a submission file)."""
    samples = []
    for i, row in enumerate(read_jsonl(p, benchmark)):
        require_keys(row, ("question_id", "question"), benchmark, p, f"line {i + 1}")
        if isinstance(row.get("answers"), list) and row["answers"]:
            answers = tuple(str(a["answer"] if isinstance(a, dict) else a) for a in row["answers"])
        elif isinstance(row.get("answer"), str):
            # One reference answer counts as if all ten humans had given it: right or wrong, 1 or 0.
            answers = (row["answer"],) * 10
        elif row.get("answers") is None and row.get("answer") is None:
            answers = ()
        else:
            raise DataError(f"{benchmark}: {p} line {i + 1}: 'answers' must be a non-empty list and 'answer' a string "
                            "(leave both out for a test split)")
        meta = {"answer_type": row.get("answer_type"), "question_type": row.get("question_type")}
        if row.get("ocr_tokens") is not None:
            meta["ocr_tokens"] = _ocr_list(row["ocr_tokens"], p, f"line {i + 1}")
        samples.append(Sample(qid=str(row["question_id"]), question=str(row["question"]), image=row.get("image"),
                              answers=answers, meta=meta))
    return check_answers(unique_qids(samples, benchmark, p), benchmark, p)


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
