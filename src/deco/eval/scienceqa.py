"""ScienceQA: reader for problems.json (+ pid_splits.json), option-letter accuracy, the IMG subset.

SQA-IMG, the number LLaVA-1.5 reports, is the accuracy on test questions that come with an image. The
letter is read with `deco.eval.choices.extract_choice` without option-text matching, which agrees with
LLaVA's eval_science_qa.py on the replies it accepts ("B", "B. text", "The answer is B.") and also
reads "(B)" or "B)"; anything else is wrong, as there.

Scope: the image questions of the split are always scored (a missing one counts per the missing
policy). Questions without an image are scored too only if the prediction file answers any of them,
so a run on the IMG subset alone is not charged for the text-only questions it never asked.
"""

from __future__ import annotations

import string
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
from deco.eval.choices import extract_choice
from deco.eval.metrics import by_group, mean_percent

SQA_FILE = "problems.json"
SQA_SPLITS_FILE = "pid_splits.json"
SQA_SOURCE = "https://github.com/lupantech/ScienceQA (data/scienceqa/problems.json and pid_splits.json)"


def load_scienceqa(path: str | Path, split: str = "test") -> list[Sample]:
    """Read the questions of one split from problems.json (pid_splits.json beside it, if present)."""
    p = resolve_file(path, [SQA_FILE], "scienceqa", SQA_SOURCE)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p, "scienceqa")
        for i, r in enumerate(rows):
            require_keys(r, ("question_id", "question", "choices", "answer"), "scienceqa", p, f"line {i + 1}")
        items = [(str(r["question_id"]), r) for r in rows]
    else:
        problems = read_json_or_lines(p, "scienceqa")
        first = next(iter(problems.values()), None) if isinstance(problems, dict) else None
        if not (isinstance(first, dict) and "choices" in first and "answer" in first):
            raise wrong_format("scienceqa", p, "problems.json: an object mapping problem ids to "
                               "{question, choices, answer, image, ...}", problems)
        items = [(pid, problems[pid]) for pid in _split_ids(p, problems, split)]
    samples = []
    for pid, r in items:
        require_keys(r, ("question", "choices", "answer"), "scienceqa", p, f"problem {pid}")
        choices = tuple(str(c) for c in r["choices"])
        letters = string.ascii_uppercase[: len(choices)]
        answer = r["answer"]
        letter = letters[answer] if isinstance(answer, int) and 0 <= answer < len(letters) else str(answer)
        if letter not in letters:
            raise DataError(f"scienceqa: {p} problem {pid} has answer {answer!r} but {len(choices)} choices")
        image = r.get("image")
        samples.append(Sample(
            qid=str(pid), question=str(r["question"]), choices=choices, answers=(letter,),
            image=f"{split}/{pid}/{image}" if image and p.suffix != ".jsonl" else image,
            hint=r.get("hint") or None,
            meta={"has_image": bool(image), "subject": r.get("subject"), "grade": r.get("grade")},
        ))
    return unique_qids(samples, "scienceqa", p)


def _split_ids(problems_path: Path, problems: dict, split: str) -> list[str]:
    """Problem ids of `split`: from pid_splits.json if beside problems.json, else each problem's 'split'."""
    splits_path = problems_path.with_name(SQA_SPLITS_FILE)
    if splits_path.is_file():
        splits = read_json(splits_path, "scienceqa")
        if not (isinstance(splits, dict) and isinstance(splits.get(split), list)):
            raise wrong_format("scienceqa", splits_path, f"pid_splits.json with a {split!r} list", splits)
        unknown = [pid for pid in splits[split] if pid not in problems]
        if unknown:
            raise DataError(f"scienceqa: {splits_path} lists ids not in {problems_path}, e.g. {unknown[0]!r}")
        return [str(pid) for pid in splits[split]]
    if any("split" in v for v in problems.values()):
        ids = [pid for pid, v in problems.items() if v.get("split") == split]
        if not ids:
            raise DataError(f"scienceqa: no problem in {problems_path} has split {split!r}")
        return ids
    raise DataError(f"scienceqa: {problems_path} has no 'split' fields and {splits_path} is missing; "
                    f"get pid_splits.json from {SQA_SOURCE}")


def scope_scienceqa(samples: list[Sample], answered: set[str]) -> tuple[list[Sample], list[str]]:
    """Keep image questions; keep text-only questions only if any of them was answered."""
    text_only = [s for s in samples if not s.meta["has_image"]]
    if not text_only or any(s.qid in answered for s in text_only):
        return samples, []
    kept = [s for s in samples if s.meta["has_image"]]
    return kept, [f"no prediction for any of the {len(text_only)} questions without an image: scored the "
                  f"{len(kept)} image questions (SQA-IMG) only"]


def _grade_band(grade: object) -> str | None:
    if not isinstance(grade, str) or not grade.startswith("grade"):
        return None
    try:
        return "G1-6" if int(grade[5:]) <= 6 else "G7-12"
    except ValueError:
        return None


def score_scienceqa(pairs: list[tuple[Sample, str | None]]) -> dict:
    """IMG accuracy (main), accuracy over all scored questions, per subject and grade band, x100."""
    hits = []
    unparsed = 0
    for s, reply in pairs:
        letter = extract_choice(reply, len(s.choices)) if reply is not None else None
        unparsed += reply is not None and letter is None
        hits.append(float(letter == s.answers[0]))
    scored = list(zip((s for s, _ in pairs), hits, strict=True))
    img = [h for s, h in scored if s.meta["has_image"]]
    metrics: dict = {
        "img_accuracy": mean_percent(img), "img_questions": len(img),
        "accuracy": mean_percent(hits), "questions": len(hits), "unparsed": unparsed,
    }
    subjects = by_group((s.meta.get("subject"), h) for s, h in scored)
    grades = by_group((_grade_band(s.meta.get("grade")), h) for s, h in scored)
    if subjects:
        metrics["per_subject"] = subjects
    if grades:
        metrics["per_grade"] = grades
    if not img:
        metrics["warnings"] = ["no question with an image was scored: img_accuracy is 0 by definition"]
    return metrics
