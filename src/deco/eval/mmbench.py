"""MMBench: reader for the published TSV, option-letter extraction, and circular evaluation.

The published dev TSV (mmbench_dev_20230712.tsv) already holds every question once per rotation of its
options: the first copy has `index` i < 1,000,000 and its rotations have i + k * 1,000,000, so rows are
grouped by `index % 1,000,000` (MMBench / VLMEvalKit). LLaVA's `--all-rounds` instead rotates in the
runner and writes `round_id` r with the same `question_id`; in round r the options are the row's options
rotated left by r. Both are handled; a prediction file with `round_id` expects every round of every row.

Circular accuracy: a question counts only if every one of its rotations is answered right (a missing,
empty or unparsed reply is wrong). Vanilla accuracy: the first copy alone (index < 1e6, round 0).
Letters are read with `deco.eval.choices.extract_choice`, option texts included (rule 5 there); MMBench's
own evaluation adds a GPT judge for replies no rule can read, which we do not (they count as wrong).

The test split (mmbench_test_20230712.tsv, no `answer` column or empty answer cells) is read with empty
`answers`; `score` then writes the OpenCompass submission table (`deco.eval.submission`), for which each
Sample keeps its TSV row (without the image) in `meta["row"]`. A file mixing rows with and without answers
is an error.
"""

from __future__ import annotations

import csv
import io
import math
import string
from contextlib import contextmanager
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import Sample, check_answers, read_jsonl, require_keys, resolve_file, unique_qids
from deco.eval.choices import extract_choice
from deco.eval.metrics import by_group, mean_percent
from deco.eval.predictions import Prediction
from deco.eval.textfile import read_utf8

MMBENCH_FILE = "mmbench_dev_20230712.tsv"
MMBENCH_SOURCE = ("https://github.com/open-compass/MMBench (mmbench_dev_20230712.tsv, the dev split "
                  "with answers; LLaVA's eval.zip has the same file)")
MMBENCH_TEST_FILE = "mmbench_test_20230712.tsv"
CIRCULAR_STRIDE = 1_000_000
_REQUIRED = ("index", "question", "A", "B")  # `answer` too, except in the test split


def load_mmbench(path: str | Path) -> list[Sample]:
    """Read the MMBench TSV (or the simplified JSONL form) into one Sample per row."""
    p = resolve_file(path, [MMBENCH_FILE, MMBENCH_TEST_FILE], "mmbench", MMBENCH_SOURCE)
    rows = read_jsonl(p, "mmbench") if p.suffix == ".jsonl" else _read_tsv(p)
    samples = []
    for i, r in enumerate(rows):
        where = f"line {i + 1}" if p.suffix == ".jsonl" else f"row {i + 2}"
        if "index" not in r and "question_id" in r:
            r = {**r, "index": r["question_id"]}
        require_keys(r, ("index", "question"), "mmbench", p, where)
        options = _options(r)
        letters = string.ascii_uppercase[: len(options)]
        answers = () if _is_none(r.get("answer")) else (str(r["answer"]).strip(),)
        if len(options) < 2 or (answers and answers[0] not in letters):
            raise DataError(f"mmbench: {p} {where} has answer {r.get('answer')!r} but options {list(letters)}")
        index = str(r["index"]).strip()
        group, first = _circular_group(index, r.get("circular_id"))
        samples.append(Sample(
            qid=index, question=str(r["question"]), image=None if p.suffix != ".jsonl" else r.get("image"),
            answers=answers, choices=tuple(options), hint=None if _is_none(r.get("hint")) else str(r["hint"]),
            meta={"group": group, "first": first, "category": r.get("category"),
                  "l2_category": r.get("l2-category", r.get("l2_category")),
                  # The TSV embeds each image as base64; a runner decodes it from here.
                  "image_base64": r.get("image") if p.suffix != ".jsonl" else None,
                  "row": {k: v for k, v in r.items() if k not in (None, "image")} if p.suffix != ".jsonl" else None},
        ))
    return check_answers(unique_qids(samples, "mmbench", p), "mmbench", p)


@contextmanager
def _large_csv_fields():
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # images are long base64 fields; C long max on every platform
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_tsv(p: Path) -> list[dict]:
    with _large_csv_fields(), io.StringIO(read_utf8(p, "mmbench: "), newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise DataError(f"mmbench: {p} is not an MMBench TSV: expected columns {list(_REQUIRED)} (+ answer, C, D, hint, "
                            f"category, l2-category, image), found {header[:12]}; missing {missing}")
        return list(reader)


def _is_none(value: object) -> bool:
    """Empty cells as LLaVA's MMBench runner treats them: None, NaN, '', 'nan', 'none'."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none")


def _options(r: dict) -> list[str]:
    """Option texts A, B, C, ... up to the first empty one (or the `options` list of the JSONL form)."""
    if isinstance(r.get("options"), list):
        return [str(o) for o in r["options"]]
    options = []
    for letter in string.ascii_uppercase:
        if letter not in r or _is_none(r[letter]):
            break
        options.append(str(r[letter]))
    return options


def _circular_group(index: str, circular_id: object) -> tuple[str, bool]:
    """(group id, is-first-copy): index % 1e6 for integer indices, else the given circular_id or the index."""
    if circular_id is not None:
        return str(circular_id), index == str(circular_id)
    try:
        i = int(index)
    except ValueError:
        return index, True
    return str(i % CIRCULAR_STRIDE), i < CIRCULAR_STRIDE


def expand_rounds(samples: list[Sample], preds: list[Prediction]) -> list[Sample]:
    """If predictions carry LLaVA's `round_id` > 0, turn each row into one Sample per rotation of its options.

    LLaVA writes `round_id: 0` on every line even without `--all-rounds`; such files are single-pass
    over the TSV (whose rotated copies are rows of their own) and are matched by id alone.
    """
    if not any(_round(p) > 0 for p in preds):
        return samples
    out = []
    for s in samples:
        n = len(s.choices)
        letters = string.ascii_uppercase[:n]
        a = letters.index(s.answers[0])
        for r in range(n):
            out.append(Sample(
                qid=f"{s.qid}/r{r}", question=s.question, image=s.image, answers=(letters[(a - r) % n],),
                choices=s.choices[r:] + s.choices[:r], hint=s.hint,
                meta={**s.meta, "first": s.meta["first"] and r == 0, "round": r},
            ))
    return out


def _round(pred: Prediction) -> int:
    return int(pred.record.get("round_id", 0))  # validated as an integer by read_predictions


def mmbench_alt_keys(pred: Prediction) -> list[str]:
    """Key of a LLaVA `--all-rounds` prediction: its id and round."""
    return [f"{pred.qid}/r{_round(pred)}"] if "round_id" in pred.record else []


def score_mmbench(pairs: list[tuple[Sample, str | None]]) -> dict:
    """Circular accuracy (main), vanilla accuracy, per category / l2-category (circular), x100."""
    hits: list[float] = []
    unparsed = 0
    for s, reply in pairs:
        letter = extract_choice(reply, len(s.choices), s.choices) if reply is not None else None
        unparsed += reply is not None and letter is None
        hits.append(float(letter == s.answers[0]))
    groups: dict[str, list] = {}
    for (s, _), h in zip(pairs, hits, strict=True):
        groups.setdefault(s.meta["group"], []).append((s, h))
    circular = {g: float(all(h for _, h in items)) for g, items in groups.items()}
    head = {g: next((s for s, _ in items if s.meta["first"]), items[0][0]) for g, items in groups.items()}
    vanilla = [h for (s, _), h in zip(pairs, hits, strict=True) if s.meta["first"]]
    metrics: dict = {
        "circular_accuracy": mean_percent(list(circular.values())),
        "vanilla_accuracy": mean_percent(vanilla),
        "questions": len(groups), "rows": len(pairs), "unparsed": unparsed,
    }
    for key in ("category", "l2_category"):
        per = by_group((None if _is_none(head[g].meta.get(key)) else head[g].meta.get(key), v)
                       for g, v in circular.items())
        if per:
            metrics[f"per_{key}"] = per
    if all(len(items) == 1 for items in groups.values()):
        metrics["warnings"] = ["no question has rotated copies: circular accuracy equals single-pass accuracy"]
    return metrics
