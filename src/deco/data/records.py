"""LLaVA-format records from JSON (a list) or JSONL, validated with errors that name file, line and id.

A record is `{"id": ..., "image": "rel/path.jpg" (optional), "conversations": [{"from": "human",
"value": "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}`.

Decisions:
- Roles `human`/`gpt` (LLaVA); `user`/`assistant` (ShareGPT/OpenAI style) are accepted as aliases
  and normalised to `human`/`gpt`. Anything else is an error.
- Turns must start with `human`, alternate, and end with `gpt` (a trailing question has no answer
  to learn from). `<image>` may only appear in human turns.
- `id` may be a string or an integer; a missing id becomes `<file name>#<index>`.
- `"image": null` is the same as no image. With `allow_multi_image`, `image` may be a list whose
  i-th path goes with the i-th `<image>` marker; without it, a list of one path is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deco.data.templates import GPT, HUMAN, Turn
from deco.errors import DataError
from deco.model.tokens import IMAGE_TOKEN

ROLE_ALIASES = {"human": HUMAN, "user": HUMAN, "gpt": GPT, "assistant": GPT}


@dataclass(frozen=True)
class Record:
    """One validated sample: its id, turns as (role, text), image paths, and where it came from."""

    id: str
    turns: tuple[Turn, ...]
    images: tuple[str, ...]
    source: str  # "file:line[:col]" for messages

    def where(self) -> str:
        """'file:line: sample ID' for error messages."""
        return f"{self.source}: sample '{self.id}'"


def load_records(path: str | Path, allow_multi_image: bool = False) -> list[Record]:
    """Read and validate a .json (list of records) or .jsonl (one record per line) file."""
    path = Path(path)
    return [
        validate_record(obj, source, allow_multi_image, f"{path.name}#{i}")
        for i, (obj, source) in enumerate(read_located(path))
    ]


def read_located(path: str | Path) -> list[tuple[Any, str]]:
    """Parse a JSON list or JSONL file into (object, 'file:line[:col]') pairs, without validating them."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    text = _decode(path)
    first = text.lstrip()[:1]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        located = _parse_jsonl(path, text)
    elif first == "{":  # JSONL in a .json file, or one JSON object where a list was meant
        try:
            located = _parse_jsonl(path, text)
        except DataError:
            if _is_one_object(text):
                raise DataError(f"{path}: expected a JSON list of records, got one JSON object") from None
            raise
    elif first == "[":
        located = _parse_json_list(path, text)
    elif not first:
        raise DataError(f"{path}: empty dataset (the file is empty)")
    else:
        raise DataError(
            f"{path}: expected a JSON list of records or JSONL (one object per line), got {first!r}"
        )
    if not located:
        raise DataError(f"{path}: empty dataset (no records)")
    return located


def records_from_dicts(
    items: Iterable[dict[str, Any]], source: str = "<memory>", allow_multi_image: bool = False
) -> list[Record]:
    """Validate in-memory dicts (tests, generated data); `source` names them in messages."""
    out = [
        validate_record(obj, f"{source}[{i}]", allow_multi_image, f"{source}#{i}")
        for i, obj in enumerate(items)
    ]
    if not out:
        raise DataError(f"{source}: empty dataset (no records)")
    return out


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # tolerate a BOM, which some editors write
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 4].hex(" ")
        raise DataError(
            f"{path}: not valid UTF-8 at byte offset {exc.start} (line {line}): {exc.reason} "
            f"(bytes {bad}); re-encode the file as UTF-8"
        ) from None


def _is_one_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _parse_jsonl(path: Path, text: str) -> list[tuple[Any, str]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
        out.append((obj, f"{path}:{lineno}"))
    return out


class LineTracker:
    """Line and column of positions that only move forward, found incrementally.

    A 1 GB file has tens of millions of lines, or (as json.dump writes it) none at all: a column found by
    scanning back to the previous newline would cost O(file) per record. Here each character is scanned
    at most twice in all.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos, self.line, self.line_start = 0, 1, 0

    def locate(self, pos: int) -> tuple[int, int]:
        """(line, column), both from 1, of `pos`."""
        if pos < self.pos:  # not expected (positions move forward); start over rather than be wrong
            self.pos, self.line, self.line_start = 0, 1, 0
        newlines = self.text.count("\n", self.pos, pos)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.pos, pos) + 1
        self.pos = pos
        return self.line, pos - self.line_start + 1


def _parse_json_list(path: Path, text: str) -> list[tuple[Any, str]]:
    """Parse `[obj, obj, ...]` element by element, keeping each element's line:column."""
    lines = LineTracker(text)

    def at(pos: int) -> str:
        line, column = lines.locate(pos)
        return f"{path}:{line}:{column}"

    def fail(pos: int, msg: str) -> DataError:
        return DataError(f"{at(pos)}: malformed JSON: {msg}")

    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0) + 1  # past '['
    out: list[tuple[Any, str]] = []
    pos = _skip_ws(text, pos)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            if pos >= len(text):
                raise fail(pos, "unexpected end of file inside the list (missing ']')")
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise fail(exc.pos, exc.msg) from None
            out.append((obj, at(pos)))
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
                if text.startswith("]", pos):
                    raise fail(pos, "trailing comma before ']'")
            elif text.startswith("]", pos):
                pos += 1
                break
            elif pos >= len(text):
                raise fail(pos, "unexpected end of file inside the list (missing ']')")
            else:
                raise fail(pos, "expected ',' or ']' after a record")
    pos = _skip_ws(text, pos)
    if pos < len(text):
        raise fail(pos, "extra data after the closing ']'")
    return out


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def validate_record(obj: Any, source: str, allow_multi_image: bool = False, fallback_id: str = "?") -> Record:
    """Check one parsed record and return it as a Record; DataError names `source` and the id."""
    if not isinstance(obj, dict):
        raise DataError(f"{source}: a record must be a JSON object, got {type(obj).__name__}")
    raw_id = obj.get("id", fallback_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise DataError(f"{source}: 'id' must be a string or integer, got {type(raw_id).__name__}")
    where = f"{source}: sample '{raw_id}'"
    turns = _turns(obj, where)
    images = _images(obj.get("image"), where, allow_multi_image)
    _check_markers(turns, images, where, allow_multi_image)
    return Record(str(raw_id), turns, images, source)


def _turns(obj: dict[str, Any], where: str) -> tuple[Turn, ...]:
    if "conversations" not in obj:
        raise DataError(f"{where}: missing 'conversations'")
    convs = obj["conversations"]
    if not isinstance(convs, list) or not convs:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of turns")
    turns: list[Turn] = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where}: conversations[{i}] must be an object with 'from' and 'value'")
        role, value = turn["from"], turn["value"]
        if not isinstance(role, str):
            raise DataError(f"{where}: conversations[{i}].from must be a string, got {type(role).__name__}")
        if not isinstance(value, str):
            raise DataError(f"{where}: conversations[{i}].value must be a string, got {type(value).__name__}")
        if role not in ROLE_ALIASES:
            raise DataError(
                f"{where}: conversations[{i}] has unknown role '{role}'; valid: human, gpt (or user, assistant)"
            )
        turns.append((ROLE_ALIASES[role], value))
    for i, (role, _) in enumerate(turns):
        expected = HUMAN if i % 2 == 0 else GPT
        if role != expected:
            raise DataError(
                f"{where}: roles do not alternate: conversations[{i}] is from '{convs[i]['from']}' but a "
                f"{expected} turn was expected (turns go human, gpt, human, gpt, ...)"
            )
    if len(turns) % 2:
        raise DataError(
            f"{where}: conversation ends with a human turn (conversations[{len(turns) - 1}]) that has no gpt answer"
        )
    return tuple(turns)


def _images(value: Any, where: str, allow_multi_image: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    paths: Sequence[Any] = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise DataError(f"{where}: 'image' must be a non-empty string path (or, multi-image, a list of them)")
    if len(paths) > 1 and not allow_multi_image:
        raise DataError(f"{where}: 'image' lists {len(paths)} images; set allow_multi_image to use several")
    return tuple(paths)


def _check_markers(
    turns: Sequence[Turn], images: tuple[str, ...], where: str, allow_multi_image: bool
) -> None:
    counts = [text.count(IMAGE_TOKEN) for _, text in turns]
    for i, ((role, _), n) in enumerate(zip(turns, counts, strict=True)):
        if n and role == GPT:
            raise DataError(
                f"{where}: {IMAGE_TOKEN} appears in a gpt turn (conversations[{i}]); it belongs in a human turn"
            )
    total = sum(counts)
    if images and total == 0:
        raise DataError(f"{where}: has image '{images[0]}' but no {IMAGE_TOKEN} marker in its conversations")
    if not images and total:
        raise DataError(f"{where}: has {total} {IMAGE_TOKEN} marker(s) but no 'image' field")
    if total > 1 and not allow_multi_image:
        raise DataError(
            f"{where}: has {total} {IMAGE_TOKEN} markers; one per sample is allowed unless allow_multi_image is set"
        )
    if total != len(images):
        raise DataError(f"{where}: has {total} {IMAGE_TOKEN} marker(s) but {len(images)} image path(s)")


def resolve_image(image_folder: str | Path | None, relative: str) -> Path:
    """The file of an image path from a record (relative to `image_folder`, or as given if None)."""
    return Path(relative) if image_folder is None else Path(image_folder) / relative


def outside_message(image_folder: str | Path, relative: str, real: Path) -> str:
    """Why an image path is refused: where it resolves, and the setting that would allow it."""
    return (f"image path '{relative}' resolves to {real}, outside data.image_folder {Path(image_folder).resolve()} "
            "(set data.allow_outside_image_folder: true if that is intended)")


def find_missing_images(
    records: Sequence[Record], image_folder: str | Path | None
) -> list[tuple[Record, Path]]:
    """Every (record, path) whose image file does not exist, for an upfront check."""
    return [
        (rec, path)
        for rec in records
        for path in (resolve_image(image_folder, rel) for rel in rec.images)
        if not path.is_file()
    ]
