"""The wheel ships every non-Python file under src/deco (recipes, the eval README, images)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _matches(relative: str, pattern: str) -> bool:
    # setuptools' `**/` also matches files at the package root; fnmatch's `*` crosses folders.
    return fnmatch.fnmatch(relative, pattern) or (
        pattern.startswith("**/") and fnmatch.fnmatch(relative, pattern[3:])
    )


def test_package_data_covers_every_data_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["deco"]
    package = ROOT / "src" / "deco"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "eval/README.md" in data and "recipes/tiny.yaml" in data
    missing = [f for f in data if not any(_matches(f, pat) for pat in patterns)]
    assert not missing, f"add patterns for these files to [tool.setuptools.package-data] in pyproject.toml: {missing}"
