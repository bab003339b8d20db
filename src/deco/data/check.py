"""Data preflight: validate every record and decode every image, in parallel, before any training.

`deco data check DATA.json --images DIR` and `data.check_images: decode` both run this: each image
goes through the project's one loader (`load_image`: missing, empty, corrupt, truncated, non-image
and decompression-bomb files all fail there), spread over worker processes, so the check runs at
about the speed of decoding on all cores. Every bad sample is reported with file, line, id and
reason, not only the first.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deco.data.images import DEFAULT_MAX_PIXELS, load_image
from deco.data.records import (
    Record,
    outside_message,
    read_located,
    resolve_image,
    validate_record,
)
from deco.errors import DataError

_SOURCE = re.compile(r"^(.*?):(\d+)(?::\d+)?$")


@dataclass(frozen=True)
class BadSample:
    """One sample that cannot be trained on, and why."""

    file: str
    line: int | None
    id: str
    reason: str


@dataclass
class CheckReport:
    """What `check_data` found."""

    records: int = 0
    good: list[Record] = field(default_factory=list)
    bad: list[BadSample] = field(default_factory=list)
    images: int = 0
    bad_images: int = 0
    decode_seconds: float = 0.0
    workers: int = 1

    @property
    def images_per_second(self) -> float | None:
        """Images decoded per second of wall time (None when nothing was decoded)."""
        return self.images / self.decode_seconds if self.images and self.decode_seconds > 0 else None

    def summary(self) -> str:
        """One line: records good/bad with reasons, images decoded and the rate."""
        reasons: dict[str, int] = {}
        for bad in self.bad:
            kind = bad.reason.split(":", 1)[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        why = f" ({'; '.join(f'{n}x {k}' for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])})" if reasons else ""
        rate = self.images_per_second
        return (f"{self.records} records: {len(self.good)} good, {len(self.bad)} bad{why}; {self.images} images "
                f"decoded, {self.bad_images} bad, in {self.decode_seconds:.1f} s"
                + (f" ({rate:.0f} images/s, {self.workers} worker(s))" if rate else ""))


def default_workers() -> int:
    """Every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _decode_one(args: tuple[str, int | None]) -> str | None:
    path, max_pixels = args
    try:
        load_image(path, max_pixels=max_pixels)
    except DataError as exc:
        return str(exc)
    return None


def decode_images(
    paths: Sequence[Path], workers: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> dict[Path, str]:
    """Decode every file fully; returns {path: reason} for the ones that fail. Parallel over processes."""
    workers = max(1, min(workers or default_workers(), len(paths) or 1))
    jobs = [(str(p), max_pixels) for p in paths]
    if workers == 1:
        results: Iterable[str | None] = map(_decode_one, jobs)
        return {p: r for p, r in zip(paths, results, strict=True) if r is not None}
    # fork: workers start in milliseconds and share the loaded modules (spawn would re-import torch).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = list(pool.map(_decode_one, jobs, chunksize=chunk))
    return {p: r for p, r in zip(paths, results, strict=True) if r is not None}


def image_problems(
    records: Sequence[Record],
    image_folder: str | Path | None,
    decode: bool,
    allow_outside: bool = False,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[dict[int, tuple[str, str]], int, float]:
    """{index of record: (reason kind, message)} for records whose images are outside the folder, missing
    or (with `decode`) undecodable; plus the number of images decoded and the seconds it took."""
    problems: dict[int, tuple[str, str]] = {}
    to_decode: dict[Path, list[int]] = {}
    # Each distinct path is resolved and stat'ed once: LLaVA-665K names ~620K images in ~530K distinct
    # files, and resolving symlinks costs ~40 us a path (a quarter of a minute per million).
    root = None if image_folder is None or allow_outside else Path(image_folder).resolve()
    verdicts: dict[str, tuple[Path, tuple[str, str] | None]] = {}
    for i, rec in enumerate(records):
        for rel in rec.images:
            if rel not in verdicts:
                verdicts[rel] = _verdict(image_folder, rel, root)
            path, problem = verdicts[rel]
            if problem is not None:
                problems.setdefault(i, problem)
            elif decode:
                to_decode.setdefault(path, []).append(i)
    started = time.perf_counter()
    bad = decode_images(list(to_decode), workers, max_pixels) if to_decode else {}
    seconds = time.perf_counter() - started
    for path, reason in bad.items():
        for i in to_decode[path]:
            problems.setdefault(i, ("unreadable_image", reason))
    return problems, len(to_decode), seconds


def _verdict(image_folder: str | Path | None, rel: str, root: Path | None) -> tuple[Path, tuple[str, str] | None]:
    """(file, None) for a usable image path, or (file, (reason kind, message)) when it is outside the folder
    (`root`, resolved; None when anything goes) or not a file."""
    path = resolve_image(image_folder, rel)
    if root is not None:
        real = path.resolve()
        if not real.is_relative_to(root):
            return path, ("outside_image_folder", outside_message(image_folder or "", rel, real))
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "not found"
        return path, ("missing_image", f"image file {what}: {path}")
    return path, None


def _line_of(source: str) -> tuple[str, int | None]:
    """'file:line[:col]' -> (file, line); anything else -> (source, None)."""
    match = _SOURCE.match(source)
    return (match.group(1), int(match.group(2))) if match else (source, None)


def check_data(
    data_file: str | Path,
    image_folder: str | Path | None,
    workers: int | None = None,
    allow_multi_image: bool = False,
    allow_outside: bool = False,
    decode: bool = True,
) -> CheckReport:
    """Validate every record of a LLaVA-format file and check (decode) every image it names."""
    report = CheckReport(workers=max(1, workers or default_workers()))
    located = read_located(data_file)  # a file that is not JSON at all fails here, naming line and column
    report.records = len(located)
    name = Path(data_file).name
    records: list[Record] = []
    for i, (obj, source) in enumerate(located):
        try:
            records.append(validate_record(obj, source, allow_multi_image, f"{name}#{i}"))
        except DataError as exc:
            raw_id = obj.get("id", f"{name}#{i}") if isinstance(obj, dict) else f"{name}#{i}"
            report.bad.append(_bad(source, str(raw_id), _strip_where(str(exc), source, raw_id)))
    problems, report.images, report.decode_seconds = image_problems(
        records, image_folder, decode, allow_outside, report.workers)
    report.bad_images = sum(1 for kind, _ in problems.values() if kind == "unreadable_image")
    for i, rec in enumerate(records):
        if i in problems:
            kind, message = problems[i]
            report.bad.append(_bad(rec.source, rec.id, f"{kind}: {message}"))
        else:
            report.good.append(rec)
    report.bad.sort(key=lambda b: (b.file, b.line or 0))
    return report


def _bad(source: str, sample_id: str, reason: str) -> BadSample:
    file, line = _line_of(source)
    return BadSample(file, line, sample_id, reason)


def _strip_where(message: str, source: str, raw_id: object) -> str:
    """A record error without its 'file:line: sample ID: ' prefix (the report has those as fields)."""
    for prefix in (f"{source}: sample '{raw_id}': ", f"{source}: "):
        if message.startswith(prefix):
            return "invalid_record: " + message[len(prefix):]
    return "invalid_record: " + message


def write_report(bad: Sequence[BadSample], path: str | Path) -> Path:
    """One JSON line per bad sample: file, line, id, reason."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(b)) + "\n" for b in bad), encoding="utf-8")
    return path
