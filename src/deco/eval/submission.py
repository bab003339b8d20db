"""Submission files for test splits without public answers, in the format each evaluation server takes.

| benchmark | server | file |
|---|---|---|
| vqav2   | EvalAI (VQA Challenge; test-dev is what LLaVA-1.5 reports) | JSON list `[{"question_id": int, "answer": str}]` |
| textvqa | EvalAI (TextVQA Challenge) | the same layout |
| vizwiz  | EvalAI (VizWiz VQA) | JSON list `[{"image": "VizWiz_test_00000000.jpg", "answer": str}]` |
| mmbench | OpenCompass MMBench | the question table with a `prediction` column (`.tsv`, or `.xlsx` with openpyxl) |

Facts from LLaVA's converters (scripts/convert_vqav2_for_submission.py, convert_vizwiz_for_submission.py,
convert_mmbench_for_submission.py): one entry per question of the split, in the split's order; VQAv2 and
VizWiz answers go through the EvalAI answer processor (`normalize_evalai`), and a VQAv2 question without
a prediction gets the answer "". The MMBench table is the TSV without its hint, category, source, image,
comment and l2-category columns, with `prediction` inserted after the option columns; LLaVA writes the raw
reply there, we write the option letter read from it (`extract_choice`), or the trimmed reply when no
letter can be read (the server's own matching may still place it).
"""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path
from typing import Any

from deco.errors import ConfigError
from deco.eval.annotations import Sample
from deco.eval.choices import extract_choice
from deco.eval.match import Matching, apply_missing_policy
from deco.eval.normalize import normalize_evalai

SERVERS = {
    "vqav2": "EvalAI, VQA Challenge (test-dev or test-standard phase)",
    "textvqa": "EvalAI, TextVQA Challenge (test phase)",
    "vizwiz": "EvalAI, VizWiz VQA Challenge (test phase)",
    "mmbench": "OpenCompass MMBench evaluation server (test split)",
}
_MMBENCH_DROP = ("hint", "category", "source", "image", "comment", "l2-category")  # as LLaVA's converter


def submission_benchmarks() -> list[str]:
    """Benchmarks whose test split has a submission format here."""
    return list(SERVERS)


def default_submission_path(benchmark: str, preds_path: str | Path) -> Path:
    """Where the submission goes unless told: beside the predictions, `<stem>.submission.json` (`.tsv` for MMBench)."""
    p = Path(preds_path)
    return p.with_name(f"{p.stem}.submission{'.tsv' if benchmark == 'mmbench' else '.json'}")


def submission_pairs(matching: Matching, missing: str, preds_path: str | Path) -> tuple[list, list[str]]:
    """Which questions go into the submission, and warnings: `apply_missing_policy` worded for a file
    that a server will score ("wrong": every question written, a missing one with an empty answer)."""
    return apply_missing_policy(matching, missing, preds_path, submission=True)


def write_submission(benchmark: str, pairs: list[tuple[Sample, Any]], path: str | Path) -> dict[str, Any]:
    """Write the submission file for (question, prediction or None) pairs; returns {path, format, server, rows}."""
    if benchmark not in SERVERS:
        raise ConfigError(f"{benchmark} has no submission format (its answers are public: score it locally); "
                          f"submission files exist for {', '.join(SERVERS)}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replies = [(s, p.answer if p is not None else "") for s, p in pairs]
    if benchmark == "mmbench":
        columns, rows = mmbench_table(replies)
        fmt = _write_table(out, columns, rows)
    else:
        key = "image" if benchmark == "vizwiz" else "question_id"
        entries = [{key: s.image if benchmark == "vizwiz" else _json_id(s.qid), "answer": normalize_evalai(reply)}
                   for s, reply in replies]
        out.write_text(json.dumps(entries) + "\n", encoding="utf-8")
        fmt, rows = "json", entries
    return {"path": str(out), "format": fmt, "server": SERVERS[benchmark], "rows": len(rows)}


def mmbench_table(replies: list[tuple[Sample, str]]) -> tuple[list[str], list[list[str]]]:
    """The OpenCompass table: TSV columns minus LLaVA's dropped ones, `prediction` after the last option column."""
    first = replies[0][0].meta.get("row") if replies else None
    if first:
        columns = [c for c in first if c not in _MMBENCH_DROP]
    else:  # the simplified JSONL form has no table: index, question, the options
        width = max(len(s.choices) for s, _ in replies) if replies else 2
        columns = ["index", "question", *string.ascii_uppercase[:width]]
    options = [i for i, c in enumerate(columns) if len(c) == 1 and c in string.ascii_uppercase]
    at = (options[-1] + 1) if options else len(columns)
    columns.insert(at, "prediction")
    rows = []
    for s, reply in replies:
        letter = extract_choice(reply, len(s.choices), s.choices) if reply.strip() else None
        cells = dict(s.meta.get("row") or {"index": s.qid, "question": s.question,
                                           **dict(zip(string.ascii_uppercase, s.choices, strict=False))})
        cells["prediction"] = letter or reply.strip()
        rows.append([str(cells.get(c, "") or "") for c in columns])
    return columns, rows


def _write_table(out: Path, columns: list[str], rows: list[list[str]]) -> str:
    if out.suffix.lower() == ".xlsx":
        try:
            from openpyxl import Workbook
        except ImportError:
            raise ConfigError(f"writing {out} needs openpyxl (pip install openpyxl); or name a .tsv file "
                              "(the same table, tab-separated)") from None
        book = Workbook()
        sheet = book.active
        sheet.append(columns)
        for row in rows:
            sheet.append([_json_id(v) if c == "index" else v for c, v in zip(columns, row, strict=True)])
        book.save(out)
        return "xlsx"
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return "tsv"


def _json_id(qid: str) -> int | str:
    """Question ids back to the integers the servers expect (our Samples carry them as strings)."""
    return int(qid) if qid.isdigit() else qid
