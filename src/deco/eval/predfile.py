"""The prediction file `deco eval` writes: one JSON line per question, appended and flushed as it goes.

Every line carries the run it belongs to (benchmark, model fingerprint, template, max_new_tokens; TextVQA
adds its `ocr` setting), so a file can be resumed safely: lines of another run, ids the annotations do not
hold, duplicates and malformed lines are errors naming the line. A last line cut short by a crash (no
newline at the end, not valid JSON) is reported and dropped, and the file is truncated back to its last
complete line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from deco.errors import DataError

RUN_KEYS = ("benchmark", "model_id", "template", "max_new_tokens")  # every line has these; a run may add more


def model_fingerprint(projector: torch.nn.Module, config: Mapping[str, Any]) -> str:
    """Short hash of the projector weights and the model's config sections.

    The projector is trained in both stages, so its weights tell trained models apart; hashing the whole
    LLM would take seconds per GB.
    """
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(projector.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def read_answered(
    path: Path, run: Mapping[str, Any], known_ids: set[str], warn: Callable[[str], None]
) -> set[str]:
    """Ids already answered in an existing prediction file of the same run (empty if there is no file)."""
    if not path.exists():
        return set()
    if not path.is_file():
        raise DataError(f"--out {path} exists and is not a file")
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    keep_bytes = len(data)
    if tail:
        try:
            json.loads(tail)
            warn(f"{path}: the last line has no newline; completing it")
            with open(path, "ab") as f:
                f.write(b"\n")
            lines.append(tail)
        except (json.JSONDecodeError, UnicodeDecodeError):
            keep_bytes = len(data) - len(tail)
            warn(f"{path}: dropping the truncated last line {len(lines) + 1} (an interrupted write): "
                 f"{tail[:60]!r}...")
            with open(path, "r+b") as f:
                f.truncate(keep_bytes)
    answered: dict[str, int] = {}
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj = _parse(raw, path, n)
        _check_run(obj, run, path, n)
        qid = str(obj["question_id"])
        if qid in answered:
            raise DataError(f"{path} line {n}: question {qid!r} is answered twice (first on line {answered[qid]})")
        if qid not in known_ids:
            raise DataError(f"{path} line {n}: question {qid!r} is not in the {run['benchmark']} annotations "
                            "given (another data file, or another benchmark's predictions?)")
        answered[qid] = n
    return set(answered)


def _parse(raw: bytes, path: Path, n: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} line {n}: not valid JSON ({e}); only a cut-off last line is dropped") from None
    if not isinstance(obj, dict) or "question_id" not in obj or "answer" not in obj:
        raise DataError(f"{path} line {n}: not a deco eval prediction (needs question_id and answer)")
    return obj


OPTIONAL_RUN_KEYS = ("reduce",)


def _check_run(obj: Mapping[str, Any], run: Mapping[str, Any], path: Path, n: int) -> None:
    missing = [k for k in RUN_KEYS if k not in obj]
    if missing:
        raise DataError(f"{path} line {n} has no {', '.join(missing)}: it was not written by `deco eval`, so it "
                        "cannot be resumed; pass another --out")
    # extra keys (TextVQA's `ocr`) are compared too; `reduce` also when only the file has it (a reduced
    # file must not resume an unreduced run)
    keys = [*run, *(k for k in OPTIONAL_RUN_KEYS if k in obj and k not in run)]
    differ = [k for k in keys if obj.get(k) != run.get(k)]
    if differ:
        was = ", ".join(f"{k}={obj.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={run.get(k)!r}" for k in differ)
        model = f" (model {obj.get('model')})" if "model_id" in differ else ""
        raise DataError(f"{path} line {n} belongs to another run: {was}{model}; this run has {now}. "
                        "Pass another --out, or delete the file to start over")


class PredictionWriter:
    """Appends prediction lines; each batch is flushed and synced so a crash loses at most that batch."""

    def __init__(self, path: Path, run: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run = dict(run)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write one batch of records (each gets the run keys) as complete lines."""
        text = "".join(json.dumps({**rec, **self.run}, ensure_ascii=False) + "\n" for rec in records)
        self.file.write(text)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
