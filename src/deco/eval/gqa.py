"""GQA: reader for the balanced question files, and exact-match accuracy as LLaVA scores it.

LLaVA (scripts/convert_gqa_for_eval.py) strips trailing periods and lowercases the reply, then GQA's
eval.py counts exact matches with the gold answer. We also strip surrounding whitespace first and
lowercase the gold answer (GQA's gold answers are already lowercase, so this changes nothing there).
Reported x100 overall and per structural / semantic type when the file has `types`. GQA's other
metrics (consistency, validity, plausibility, grounding) need extra files and are not computed.
"""

from __future__ import annotations

from pathlib import Path

from deco.eval.annotations import (
    Sample,
    read_json_or_lines,
    read_jsonl,
    require_keys,
    resolve_file,
    unique_qids,
    wrong_format,
)
from deco.eval.metrics import by_group, mean_percent

GQA_FILE = "testdev_balanced_questions.json"
GQA_SOURCE = "https://cs.stanford.edu/people/dorarad/gqa/download.html (Questions 1.2)"


def load_gqa(path: str | Path) -> list[Sample]:
    """Read a GQA questions file (testdev_balanced_questions.json: question id -> record)."""
    p = resolve_file(path, [GQA_FILE], "gqa", GQA_SOURCE)
    if p.suffix == ".jsonl":
        lines = read_jsonl(p, "gqa")
        for i, r in enumerate(lines):
            require_keys(r, ("question_id", "question", "answer"), "gqa", p, f"line {i + 1}")
        items = [(r["question_id"], r) for r in lines]
    else:
        obj = read_json_or_lines(p, "gqa")
        first = next(iter(obj.values()), None) if isinstance(obj, dict) else None
        if not (isinstance(first, dict) and "answer" in first and "question" in first):
            raise wrong_format("gqa", p, "an object mapping question ids to {question, answer, imageId, types}", obj)
        items = list(obj.items())
    samples = []
    for qid, r in items:
        require_keys(r, ("question", "answer"), "gqa", p, f"question {qid}")
        types = r.get("types") or {}
        image = r.get("image") or (f"{r['imageId']}.jpg" if "imageId" in r else None)
        samples.append(Sample(
            qid=str(qid), question=str(r["question"]), image=image, answers=(str(r["answer"]),),
            meta={"structural": types.get("structural", r.get("structural")),
                  "semantic": types.get("semantic", r.get("semantic"))},
        ))
    return unique_qids(samples, "gqa", p)


def normalize_gqa(text: str) -> str:
    """LLaVA's GQA answer cleaning: drop trailing periods, lowercase (after trimming whitespace)."""
    return text.strip().rstrip(".").strip().lower()


def score_gqa(pairs: list[tuple[Sample, str | None]]) -> dict:
    """Exact-match accuracy (x100) overall and per structural / semantic question type."""
    hits = [
        float(answer is not None and normalize_gqa(answer) == normalize_gqa(s.answers[0])) for s, answer in pairs
    ]
    metrics: dict = {"accuracy": mean_percent(hits)}
    for key in ("structural", "semantic"):
        groups = by_group((s.meta.get(key), h) for (s, _), h in zip(pairs, hits, strict=True))
        if groups:
            metrics[f"per_{key}"] = groups
    return metrics
