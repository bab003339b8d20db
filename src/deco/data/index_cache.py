"""Tokenize once: a dataset's tokenized, masked, length-checked index cached on disk.

Building the index of LLaVA-665K means parsing a 1 GB JSON list and tokenizing 665K conversations:
minutes, on every rank, at every start and resume. The finished index (flat token ids, loss mask,
lengths, sample ids, sources, image paths, AnyRes layouts, what was skipped and why) is saved under
`data.cache_dir` in a folder named by a hash of everything it depends on:

- the data file's bytes (SHA-256) and the image manifest (every distinct image path with its size and
  modification time: image checks and AnyRes layouts depend on the files);
- the tokenizer (its full serialisation), the template and system prompt, max_length;
- the processor's geometry (tokens per image, the image and layout token ids, AnyRes layouts);
- the image rules (check_images, image folder, allow_outside_image_folder, allow_multi_image, max_pixels).

Any change builds a new folder; nothing stale is ever reused. Arrays are `.npy` files (no pickle) that
later runs map from disk, so the ranks of a machine share one copy through the page cache. A folder is
written under a temporary name and renamed when complete, so a killed build is never read; two
processes building the same index at once both succeed and one copy is kept.

A second, smaller entry per data file (`summary-*.json`: record count and distinct image paths) lets a
run fingerprint its data without parsing the file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from deco.data.records import Record, load_records, resolve_image
from deco.errors import DataError

log = logging.getLogger(__name__)
INDEX_VERSION = 1
META = "index.json"


def default_cache_dir() -> Path:
    """$DECO_DATA_CACHE, else $DECO_CACHE/data, else $XDG_CACHE_HOME/deco/data, else ~/.cache/deco/data."""
    if os.environ.get("DECO_DATA_CACHE"):
        return Path(os.environ["DECO_DATA_CACHE"])
    if os.environ.get("DECO_CACHE"):
        return Path(os.environ["DECO_CACHE"]) / "data"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deco" / "data"


def resolve_cache_dir(setting: str | Path | None) -> Path | None:
    """data.cache_dir: "auto" -> default_cache_dir(), None/"off" -> no cache, else the folder given."""
    if setting is None or setting == "off":
        return None
    return default_cache_dir() if setting == "auto" else Path(setting)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (about a second per GB), remembered per (path, size, mtime) in this process:
    the fingerprint and the index key both need the data file's hash."""
    st = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of_file(path)


def sha256_of_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class RecordsSummary:
    """What a data file holds, without its text: hash, size, record count and distinct image paths."""

    data_sha256: str
    data_bytes: int
    records: int
    images: list[str]  # sorted distinct image paths, as written in the records


def records_summary(
    path: str | Path, allow_multi_image: bool, cache_dir: Path | None, records: Sequence[Record] | None = None,
) -> tuple[RecordsSummary, list[Record] | None]:
    """The file's summary (from the cache, else by reading it) and its records when they had to be read."""
    if not Path(path).is_file():
        raise DataError(f"data file not found: {path}")
    sha = file_sha256(path)
    entry = None if cache_dir is None else cache_dir / f"summary-{sha[:32]}-{int(allow_multi_image)}.json"
    if records is None and entry is not None and entry.is_file():
        try:
            return RecordsSummary(**json.loads(entry.read_text(encoding="utf-8"))), None
        except (ValueError, TypeError):
            pass  # damaged or from another version: rebuilt below
    loaded = list(records) if records is not None else load_records(path, allow_multi_image=allow_multi_image)
    summary = RecordsSummary(sha, Path(path).stat().st_size, len(loaded),
                             sorted({rel for rec in loaded for rel in rec.images}))
    if entry is not None:
        try:
            _write_atomically(entry, json.dumps(asdict(summary)).encode("utf-8"))
        except OSError as exc:  # an unwritable cache costs the next start time, not this run
            log.warning("could not cache the data file's summary in %s (%s)", entry, exc)
    return summary, loaded


def manifest_rows(images: Sequence[str], image_folder: str | Path | None, by: str = "stat") -> list[str]:
    """'path<TAB>size<TAB>mtime_ns' (by="stat") or 'path<TAB>size<TAB>sha256:HEX' (by="content", every file
    read) for each image path in the order given; 'path<TAB>missing<TAB>-' where absent."""
    rows = []
    for rel in images:
        try:
            path = resolve_image(image_folder, rel)
            st = path.stat()
            mark = f"sha256:{sha256_of_file(path)}" if by == "content" else str(st.st_mtime_ns)
            rows.append(f"{rel}\t{st.st_size}\t{mark}")
        except OSError:
            rows.append(f"{rel}\tmissing\t-")
    return rows


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash of everything that decides how a tokenizer splits text: its full serialisation when it is a
    fast tokenizer, else its vocabulary and settings; plus its class and special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
        digest.update(json.dumps(tokenizer.init_kwargs, sort_keys=True, default=str).encode("utf-8"))
    specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    digest.update(json.dumps([specials, tokenizer.all_special_ids], sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


_PROBE = (("human", "<image>\nq1"), ("gpt", "a1"))  # one round: some templates take no more


def template_identity(template: Any, system: str | None) -> str:
    """A template by its class and what it renders for a probe conversation (templates are code, so their
    text is what can be compared; a change to either shows)."""
    rendered = [(seg.text, seg.trainable) for seg in template.segments(_PROBE, system)] + [template.after_answer()]
    return json.dumps([f"{type(template).__module__}.{type(template).__qualname__}", template.name, rendered])


def index_key(parts: dict[str, Any]) -> str:
    """The folder name of the index built from `parts` (all JSON values)."""
    blob = json.dumps({"version": INDEX_VERSION, **parts}, sort_keys=True, default=str)
    return "index-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def load_index(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """(arrays, mapped read-only from disk; metadata) of a complete index folder, or None if there is none."""
    meta_file = folder / META
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in meta["arrays"]}
    return arrays, meta


def save_index(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write an index folder atomically (temp folder, then rename; a concurrent identical build wins ties)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        (tmp / META).write_text(json.dumps({**meta, "arrays": sorted(arrays)}), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, path)
