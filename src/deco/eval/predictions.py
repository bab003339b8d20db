"""Read prediction files: deco's JSONL and LLaVA's answer files, validated line by line.

Accepted, one JSON object per line (blank lines are skipped):
- deco: `{"question_id" or "id": ..., "answer": "...", "prompt": "..." (optional), ...timing}`
- LLaVA: `{"question_id": ..., "prompt": "...", "text": "...", "answer_id": ..., "model_id": ..., "metadata": {}}`
  (MMBench files from LLaVA's `--all-rounds` also carry `round_id`; it is kept in `record`).

Every problem is a `DataError` naming the file and line: invalid JSON, a line that is not an object,
no id or no answer, an id or answer of the wrong type, two different ids or answers in one line, or a
LLaVA question file passed where answers belong. Ids are compared as strings (LLaVA writes ints).
Duplicate ids are checked when predictions are matched to questions (see `deco.eval.match`), because
some benchmarks (MME in LLaVA's files) legitimately share an id between two questions of one image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deco.errors import DataError
from deco.eval.textfile import json_object_line, read_utf8, text_lines


@dataclass(frozen=True)
class Prediction:
    """One model answer, with the line it came from (for error messages)."""

    qid: str
    answer: str
    prompt: str | None
    line: int
    record: Mapping[str, Any] = field(default_factory=dict)  # the whole line, for benchmark extras


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read and validate a prediction JSONL file (deco or LLaVA format)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"prediction file {p} does not exist")
    preds = []
    for n, line in enumerate(text_lines(read_utf8(p, "prediction file ")), start=1):
        if line.strip():
            preds.append(_parse_line(line, p, n))
    if not preds:
        raise DataError(f"prediction file {p} holds no predictions")
    return preds


def _parse_line(line: str, path: Path, n: int) -> Prediction:
    where = f"{path} line {n}"
    obj = json_object_line(line, where)
    qid = _one_of(obj, ("question_id", "id"), where, "id")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid).strip() == "":
        raise DataError(f"{where}: the id must be a non-empty string or an integer, found {qid!r}")
    answer = _one_of(obj, ("answer", "text"), where, "answer")
    if "answer" not in obj and "image" in obj and not {"prompt", "answer_id", "model_id"} & set(obj):
        # LLaVA question files also have "question_id" + "text" (the question); do not score questions.
        raise DataError(f"{where}: looks like a LLaVA question file (has 'image' and 'text' but no 'prompt', "
                        "'answer_id' or 'model_id'); pass the answers file written by the model")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # a bare number is a legitimate short answer
    if not isinstance(answer, str):
        raise DataError(f"{where}: the answer must be a string, found {answer!r}")
    round_id = obj.get("round_id", 0)
    if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
        raise DataError(f"{where}: 'round_id' (LLaVA's MMBench rotation) must be an integer >= 0, found {round_id!r}")
    prompt = obj.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise DataError(f"{where}: 'prompt' must be a string, found {type(prompt).__name__}")
    return Prediction(qid=str(qid), answer=answer, prompt=prompt, line=n, record=obj)


def _one_of(obj: dict[str, Any], keys: tuple[str, str], where: str, what: str) -> Any:
    present = [k for k in keys if k in obj]
    if not present:
        raise DataError(f"{where}: no {what} (expected key {keys[0]!r} or {keys[1]!r}); keys are {sorted(obj)}")
    if len(present) == 2 and obj[keys[0]] != obj[keys[1]]:
        raise DataError(f"{where}: both {keys[0]!r} and {keys[1]!r} are given and differ; keep one")
    return obj[present[0]]
