"""The `Sample` every benchmark reader returns, and shared helpers for reading annotation files.

Readers never download anything: a missing file is a `DataError` naming the file expected and where
the benchmark publishes it. A file of the wrong kind is a `DataError` saying what was expected and,
where it can tell, which benchmark's file it looks like.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deco.errors import DataError
from deco.eval.textfile import json_object_line, read_utf8, text_lines


@dataclass(frozen=True)
class Sample:
    """One benchmark question: what a runner needs to ask it and what a scorer needs to grade it."""

    qid: str  # the id a prediction must carry (unique within a benchmark)
    question: str  # question text as published, without any prompt suffix
    image: str | None  # image path relative to the benchmark's image folder (None: embedded / none)
    answers: tuple[str, ...]  # ground truth: human answers (VQA), "yes"/"no", or the correct letter
    choices: tuple[str, ...] = ()  # option texts in letter order (multiple choice only)
    hint: str | None = None  # context shown before the question (MMBench hint, ScienceQA context)
    meta: Mapping[str, Any] = field(default_factory=dict)  # answer_type, split, subtask, category, ...
    aliases: tuple[str, ...] = ()  # other ids that identify this question (e.g. LLaVA's id schemes)


def resolve_file(path: str | Path, names: Iterable[str], benchmark: str, source: str) -> Path:
    """Return `path` if it is a file, else the first of `names` inside the folder `path`."""
    names = list(names)
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for name in names:
            if (p / name).is_file():
                return p / name
        raise DataError(
            f"{benchmark}: none of the expected annotation files ({', '.join(names)}) is in folder {p}; "
            f"get them from {source}"
        )
    raise DataError(f"{benchmark}: annotation file {p} does not exist; expected {names[0]} from {source}")


def read_json(path: Path, benchmark: str) -> Any:
    """Load a JSON file, naming the file (and benchmark) when it is not UTF-8 or not valid JSON, and refusing
    a key that repeats within one object (JSON keeps only the last: a repeated question id would win silently)."""
    return _parse_json(read_utf8(path, f"{benchmark}: "), path, benchmark)


def _parse_json(text: str, path: Path, benchmark: str) -> Any:
    repeats: list[list[str]] = []  # per object, innermost first: the top-level object's come last

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        repeats.append([k for k, _ in items if k in seen or seen.add(k)])
        return dict(items)

    try:
        obj = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise DataError(f"{benchmark}: {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if isinstance(obj, dict) and repeats and repeats[-1]:
        raise DataError(f"{benchmark}: question id {repeats[-1][0]!r} appears twice in {path} (as a key of its "
                        "top-level object: JSON would keep only the last)")
    nested = next((r[0] for r in repeats if r), None)
    if nested is not None:
        raise DataError(f"{benchmark}: key {nested!r} appears twice in one object of {path} (JSON would keep only "
                        "the last)")
    return obj


def read_jsonl(path: Path, benchmark: str) -> list[dict[str, Any]]:
    """Load a file with one JSON object per line; blank lines are skipped."""
    return _parse_lines(read_utf8(path, f"{benchmark}: "), path, benchmark)


def _parse_lines(text: str, path: Path, benchmark: str) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        rows.append(json_object_line(line, f"{benchmark}: {path} line {n}"))
    return rows


def read_json_or_lines(path: Path, benchmark: str) -> Any:
    """Load a JSON document, or, if the file holds one object per line, the list of those objects.

    Readers of single-document formats use this too, so that a JSONL file of another benchmark gets a
    "wrong format" error naming what it looks like rather than a bare JSON syntax error. A syntax error
    inside one multi-line document is reported at its own line.
    """
    text = read_utf8(path, f"{benchmark}: ")
    header = text_lines(text)[0]
    if "\t" in header and "index" in header.split("\t"):
        raise DataError(f"{benchmark}: {path} is a TSV table with columns {header.split(chr(9))[:8]} "
                        "(an MMBench file?), not this benchmark's JSON")
    try:
        return _parse_json(text, path, benchmark)
    except DataError:
        if not _is_json_lines(text):
            raise
        return _parse_lines(text, path, benchmark)


def _is_json_lines(text: str) -> bool:
    """True when the first non-blank line is a whole JSON object and more lines follow (JSON Lines)."""
    lines = [line for line in text_lines(text) if line.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except json.JSONDecodeError:
        return False


def wrong_format(benchmark: str, path: Path, expected: str, found: Any) -> DataError:
    """Build the error for an annotation file that is not the benchmark's format."""
    guess = sniff(found)
    looks = f"; it looks like {guess}" if guess else ""
    return DataError(f"{benchmark}: {path} is not a {benchmark} annotation file: expected {expected}, "
                     f"found {describe(found)}{looks}")


def require_keys(row: Mapping[str, Any], keys: Iterable[str], benchmark: str, path: Path, where: str) -> None:
    """Raise a DataError naming the record and the missing keys, if any of `keys` is absent."""
    if not isinstance(row, Mapping):
        raise DataError(f"{benchmark}: {path} {where} is a {type(row).__name__}, not an object")
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{benchmark}: {path} {where} has no {', '.join(repr(k) for k in missing)}; "
                        f"its keys are {sorted(row)[:12]}")


def unique_qids(samples: list[Sample], benchmark: str, path: Path) -> list[Sample]:
    """Check that no question id repeats in an annotation file (a repeat would make matching ambiguous)."""
    seen: set[str] = set()
    for s in samples:
        if s.qid in seen:
            raise DataError(f"{benchmark}: question id {s.qid!r} appears twice in {path}")
        seen.add(s.qid)
    if not samples:
        raise DataError(f"{benchmark}: {path} holds no questions")
    return samples


def check_answers(samples: list[Sample], benchmark: str, path: Path) -> list[Sample]:
    """Refuse a file where some questions have answers and others do not.

    A split is scored only when every question has answers, and gets a submission file only when none
    has (a test split); a mix would silently score part of it, so it is an error naming the first
    question without answers.
    """
    without = [s for s in samples if not s.answers]
    if without and len(without) < len(samples):
        raise DataError(f"{benchmark}: {path} mixes questions with and without answers: question {without[0].qid!r} "
                        f"(first of {len(without)}) has none while {len(samples) - len(without)} have some. Pass "
                        "a split where every question has answers (scored) or none has (a test split: a submission "
                        "file is written instead)")
    return samples


def has_answers(samples: list[Sample]) -> bool:
    """True for a split that can be scored locally, False for a test split without answers."""
    return all(s.answers for s in samples)


def describe(obj: Any) -> str:
    """A short description of a loaded JSON value: its type and first keys."""
    if isinstance(obj, dict):
        keys = list(obj)[:8]
        first = obj[keys[0]] if keys else None
        inner = f" (first value has keys {sorted(first)[:8]})" if isinstance(first, dict) else ""
        return f"an object with keys {keys}{inner}"
    if isinstance(obj, list):
        if obj and isinstance(obj[0], dict):
            return f"a list of {len(obj)} objects with keys {sorted(obj[0])[:10]}"
        return f"a list of {len(obj)} items"
    return f"a {type(obj).__name__}"


def sniff(obj: Any) -> str | None:
    """Guess which benchmark (or other file) a loaded JSON value comes from, for error messages."""
    if isinstance(obj, dict) and "label" in obj and "text" in obj:
        return "POPE labels (coco_pope_*.json)"  # a one-line JSONL file parses as a single object
    if isinstance(obj, dict):
        if isinstance(obj.get("annotations"), list) and _first_has(obj["annotations"], "answers"):
            return "a VQAv2 annotations file (v2_mscoco_*_annotations.json)"
        if isinstance(obj.get("questions"), list):
            if _first_has(obj["questions"], "question_type_id") or _first_has(obj["questions"], "choice_a"):
                return "SEED-Bench's SEED-Bench.json"
            if _first_has(obj["questions"], "image_id"):
                return "a VQAv2 questions file (v2_OpenEnded_*_questions.json), which has no answers"
        if isinstance(obj.get("data"), list) and _first_has(obj["data"], "answers"):
            return "TextVQA's TextVQA_0.5.1_val.json"
        if {"train", "test"} <= set(obj) and isinstance(obj.get("test"), list):
            return "ScienceQA's pid_splits.json"
        values = [v for _, v in zip(range(3), obj.values(), strict=False)]
        if values and all(isinstance(v, dict) for v in values):
            if all("imageId" in v or "types" in v for v in values):
                return "a GQA questions file (e.g. testdev_balanced_questions.json)"
            if all("choices" in v and "answer" in v for v in values):
                return "ScienceQA's problems.json"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        row = obj[0]
        if "conversations" in row:
            return "LLaVA training data, not an annotation file"
        if "answers" in row and "image" in row:
            return "VizWiz annotations (val.json)"
        if "label" in row and "text" in row:
            return "POPE labels (coco_pope_*.json)"
        if "text" in row and ("answer_id" in row or "model_id" in row):
            return "a LLaVA answer file (predictions), not annotations"
        if "circular_id" in row or "options" in row:
            return "MMBench-style multiple-choice lines"
    return None


def _first_has(rows: list[Any], key: str) -> bool:
    return bool(rows) and isinstance(rows[0], dict) and key in rows[0]
