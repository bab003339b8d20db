"""Reading an evaluation file as text: UTF-8 (a leading BOM allowed), or one line naming the file, the
byte offset and the line of the first byte that is not UTF-8. Shared by every questions, answers and
predictions reader of `deco eval` and `deco score`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deco.errors import DataError


def read_utf8(path: str | Path, label: str = "") -> str:
    """The whole file decoded as UTF-8; `label` (e.g. 'gqa: ') starts the error message."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # decoded whole, so exc.start is the offset in the file
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{label}{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} (line {line}) "
            "cannot be decoded; save the file as UTF-8"
        ) from None


def text_lines(text: str) -> list[str]:
    """The lines of a JSONL / TSV / text file: split on newlines only (JSON strings may hold U+2028,
    which str.splitlines would split on), a CR before each newline dropped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def json_object_line(line: str, where: str) -> dict[str, Any]:
    """One line of a JSON-lines file as a JSON object; `where` ('FILE line N') starts the message otherwise."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, found a {type(obj).__name__}")
    return obj
