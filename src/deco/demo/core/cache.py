"""The demo's cache: a folder per asset (dataset with its tokenizer, pretrained encoder, pretrained LM),
named by a hash of the settings that produce it, so a second run with the same settings starts at once and
a changed setting builds a new folder. A folder is built under a temp name and renamed when complete: an
interrupted build is never mistaken for a cached one.

What goes into each key, and how each asset is built, is the scene kind's (deco.demo.images.assets,
deco.demo.video.data); the helpers here are shared by both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DONE = "asset.json"


def default_cache_dir() -> Path:
    """$DECO_CACHE/demo, else $XDG_CACHE_HOME/deco/demo, else ~/.cache/deco/demo."""
    if os.environ.get("DECO_CACHE"):
        return Path(os.environ["DECO_CACHE"]) / "demo"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deco" / "demo"


def _key(kind: str, parts: dict[str, Any], version: int) -> str:
    """The cache folder name of an asset: `kind` (the asset's, not the scene kind's) and a hash of what builds it."""
    blob = json.dumps({"kind": kind, "version": version, **parts}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@dataclass
class Assets:
    """Paths of the cached assets and what their builders reported."""

    data_dir: Path
    encoder_dir: Path
    tokenizer_dir: Path
    data_summary: dict[str, Any]
    encoder_report: dict[str, Any]
    built: list[str]
    lm_dir: Path | None = None  # the text-pretrained LM (image demo); None: the LM starts from random weights
    lm_report: dict[str, Any] | None = None

    @property
    def images(self) -> Path:
        """Image folder the JSON files' paths are relative to."""
        return self.data_dir / "images"


def _cached(
    root: Path, name: str, rebuild: bool, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any], bool]:
    """Return (folder, report, built_now); build into a temp folder and rename when complete."""
    target = root / name
    if target.is_dir() and (target / DONE).is_file() and not rebuild:
        return target, json.loads((target / DONE).read_text(encoding="utf-8")), False
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = build(tmp)
        (tmp / DONE).write_text(json.dumps(report, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, report, True


def data_builder(
    message: str,
    write_data: Callable[[Path], dict[str, Any]],
    write_tokenizer: Callable[[Path], object],
    status: Callable[[str], None],
) -> Callable[[Path], dict[str, Any]]:
    """The dataset step of `cached_assets`: say `message`, write the data and its tokenizer/ folder, return
    the data summary."""

    def build(folder: Path) -> dict[str, Any]:
        status(message)
        summary = write_data(folder)
        write_tokenizer(folder / "tokenizer")
        return summary

    return build


def cached_assets(
    root: Path,
    rebuild: bool,
    data_key: str,
    build_data: Callable[[Path], dict[str, Any]],
    encoder_key: str,
    build_encoder: Callable[[Path], dict[str, Any]],
) -> Assets:
    """The dataset (with its tokenizer/ folder) and the encoder, each from the cache or built now, in that
    order; `built` names what was built. Shared by the image and video demos."""
    data_dir, summary, fresh_data = _cached(root, data_key, rebuild, build_data)
    encoder_dir, report, fresh_encoder = _cached(root, encoder_key, rebuild, build_encoder)
    built = ["dataset"] * fresh_data + ["encoder"] * fresh_encoder
    return Assets(data_dir, encoder_dir, data_dir / "tokenizer", summary, report, built)


def is_cached(root: Path, name: str) -> bool:
    """Whether `name` is built and complete under `root`."""
    return (root / name / DONE).is_file()
