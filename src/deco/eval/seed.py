"""SEED-Bench: reader for SEED-Bench.json, option-letter accuracy per dimension, image / video / overall.

LLaVA-1.5 reports SEED-Image: accuracy over all questions of the 9 image dimensions (data_type "image"),
computed as right / total over those questions (not a mean of dimensions). LLaVA compares the reply
with the letter exactly; we read the letter with `deco.eval.choices.extract_choice` (no option-text
matching), which agrees on bare letters and also reads "(B)", "B.", "The answer is B".

Scope: image questions are always scored; video questions only if the prediction file answers any
of them (LLaVA-1.5's SEED-Image runs never ask them).
"""

from __future__ import annotations

import string
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import (
    Sample,
    read_json_or_lines,
    read_jsonl,
    require_keys,
    resolve_file,
    unique_qids,
    wrong_format,
)
from deco.eval.choices import extract_choice
from deco.eval.metrics import by_group, mean_percent

SEED_FILE = "SEED-Bench.json"
SEED_SOURCE = "https://huggingface.co/datasets/AILab-CVC/SEED-Bench (SEED-Bench.json)"
IMAGE_DIMENSIONS = range(1, 10)


def load_seed(path: str | Path) -> list[Sample]:
    """Read SEED-Bench.json ({question_type: {name: id}, questions: [...]}) or the simplified JSONL form."""
    p = resolve_file(path, [SEED_FILE], "seed", SEED_SOURCE)
    if p.suffix == ".jsonl":
        questions, names = read_jsonl(p, "seed"), {}
    else:
        obj = read_json_or_lines(p, "seed")
        if not (isinstance(obj, dict) and isinstance(obj.get("questions"), list)):
            raise wrong_format("seed", p, "an object with 'questions' and 'question_type' (SEED-Bench.json)", obj)
        questions = obj["questions"]
        names = {int(v): str(k) for k, v in (obj.get("question_type") or {}).items()}
    samples = []
    for i, q in enumerate(questions):
        require_keys(q, ("question_id", "question", "answer"), "seed", p, f"question {i}")
        choices = tuple(str(c) for c in q["choices"]) if isinstance(q.get("choices"), list) else tuple(
            str(q[k]) for k in ("choice_a", "choice_b", "choice_c", "choice_d") if k in q)
        letters = string.ascii_uppercase[: len(choices)]
        if len(choices) < 2 or str(q["answer"]) not in letters:
            raise DataError(f"seed: {p} question {i} has answer {q['answer']!r} but {len(choices)} choices")
        dim = q.get("question_type_id")
        dim = int(dim) if dim is not None else None
        data_type = q.get("data_type") or ("image" if dim is None or dim in IMAGE_DIMENSIONS else "video")
        samples.append(Sample(
            qid=str(q["question_id"]), question=str(q["question"]), choices=choices, answers=(str(q["answer"]),),
            image=q.get("image", q.get("data_id")),
            meta={"dimension": names.get(dim, q.get("dimension", dim)), "data_type": data_type},
        ))
    return unique_qids(samples, "seed", p)


def scope_seed(samples: list[Sample], answered: set[str]) -> tuple[list[Sample], list[str]]:
    """Keep image questions; keep video questions only if any of them was answered."""
    video = [s for s in samples if s.meta["data_type"] != "image"]
    if not video or any(s.qid in answered for s in video):
        return samples, []
    kept = [s for s in samples if s.meta["data_type"] == "image"]
    return kept, [f"no prediction for any of the {len(video)} video questions: scored the {len(kept)} image "
                  "questions (SEED-Image) only"]


def score_seed(pairs: list[tuple[Sample, str | None]]) -> dict:
    """Image accuracy (main), video and overall accuracy, per-dimension accuracy, x100."""
    hits = []
    unparsed = 0
    for s, reply in pairs:
        letter = extract_choice(reply, len(s.choices)) if reply is not None else None
        unparsed += reply is not None and letter is None
        hits.append(float(letter == s.answers[0]))
    image = [h for (s, _), h in zip(pairs, hits, strict=True) if s.meta["data_type"] == "image"]
    video = [h for (s, _), h in zip(pairs, hits, strict=True) if s.meta["data_type"] != "image"]
    metrics: dict = {"image_accuracy": mean_percent(image), "image_questions": len(image)}
    if video:
        metrics.update(video_accuracy=mean_percent(video), video_questions=len(video))
    metrics.update(accuracy=mean_percent(hits), questions=len(hits), unparsed=unparsed)
    per_dim = by_group((s.meta["dimension"], h) for (s, _), h in zip(pairs, hits, strict=True))
    if per_dim:
        metrics["per_dimension"] = per_dim
    return metrics
