"""What data a run trained on, by content rather than by path: the data file's hash and an image manifest.

The data file is hashed in full (SHA-256; about a second per GB). Images are many, so by default
(`data.fingerprint: stat`) a manifest of each referenced image's path (as written in the records), size
and modification time is hashed instead: moving or copying the data with its times kept (`mv`, `cp -p`,
`rsync -a`) keeps the fingerprint, while an edited, replaced or removed image changes it, unless it was
replaced by a file of the same size with its time set back. `data.fingerprint: content` puts each
image's SHA-256 in the manifest instead of its time, which catches that too, at the cost of reading
every image at each start (benchmarks/data/fingerprint_cost.py measures it). The manifest itself is kept
in the run directory (`data_manifest.tsv`) so a changed fingerprint can say which images changed. The
data file's hash, record count and image list come from deco.data.index_cache, which keeps them per data
file, so a resume need not parse the file again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deco.data.index_cache import RecordsSummary, manifest_rows

MANIFEST_FILE = "data_manifest.tsv"
_SHOW = 3  # changed images named in a message


def data_fingerprint(
    train_file: str | Path, summary: RecordsSummary, image_folder: str | Path | None, by: str = "stat"
) -> tuple[dict[str, Any], list[str]]:
    """(fingerprint dict, manifest rows) of a run's training data, from the file's summary; `by`:
    data.fingerprint."""
    manifest = manifest_rows(summary.images, image_folder, by)
    fingerprint = {
        "data_file": str(train_file),
        "data_sha256": summary.data_sha256,
        "data_bytes": summary.data_bytes,
        "records": summary.records,
        "images": len(manifest),
        "images_by": by,
        "images_manifest_sha256": hashlib.sha256("\n".join(manifest).encode("utf-8")).hexdigest(),
    }
    return fingerprint, manifest


def write_manifest(rows: Sequence[str], path: Path) -> None:
    """Write the manifest rows (one per line)."""
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def describe_change(old: dict[str, Any], new: dict[str, Any], old_manifest: Path | None, manifest: list[str]) -> str:
    """What differs between two fingerprints, in one line ('' when they match)."""
    parts = []
    if old.get("data_sha256") != new["data_sha256"]:
        parts.append(
            f"data file content changed ({old.get('data_file')}: {old.get('records')} records, "
            f"{old.get('data_bytes')} bytes, sha256 {str(old.get('data_sha256'))[:12]} -> {new['data_file']}: "
            f"{new['records']} records, {new['data_bytes']} bytes, sha256 {new['data_sha256'][:12]})"
        )
    before, now = old.get("images_by", "stat"), new.get("images_by", "stat")
    if before != now:  # the two manifests cannot be compared row by row
        parts.append(f"images were fingerprinted by {before} in the recorded run and by {now} now (data.fingerprint); "
                     "they cannot be compared")
    elif old.get("images_manifest_sha256") != new["images_manifest_sha256"]:
        parts.append("images changed: " + _manifest_diff(old_manifest, manifest, old.get("images"), now))
    return "; ".join(parts)


def _manifest_diff(old_file: Path | None, rows: list[str], old_count: Any, by: str = "stat") -> str:
    if old_file is None or not old_file.is_file():
        return f"{old_count} images in the run's manifest, {len(rows)} now (no {MANIFEST_FILE} kept to compare)"
    before = dict(_split(line) for line in old_file.read_text(encoding="utf-8").splitlines() if line)
    now = dict(_split(line) for line in rows)
    changed = [p for p in now if p in before and now[p] != before[p]]
    added = [p for p in now if p not in before]
    removed = [p for p in before if p not in now]
    out = []
    modified = "modified (content)" if by == "content" else "modified (size or time)"
    for label, paths in ((modified, changed), ("new", added), ("no longer used", removed)):
        if paths:
            out.append(f"{len(paths)} {label}: {', '.join(paths[:_SHOW])}" + (", ..." if len(paths) > _SHOW else ""))
    return "; ".join(out) or "manifest differs"


def _split(line: str) -> tuple[str, str]:
    path, _, rest = line.partition("\t")
    return path, rest
