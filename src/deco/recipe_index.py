"""Named recipes shipped inside the package (src/deco/recipes/, `configs/` in a clone): find them by name.

A config argument that is not an existing file is looked up here, so `deco train llava15-deco-144` and
`deco info tiny` work from an installed wheel with no clone around. Accepted spellings of a name:
`tiny`, `tiny.yaml`, `configs/tiny.yaml`, `accelerate/ddp`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from deco.errors import ConfigError

SUFFIX = ".yaml"
# The folder name a clone uses for the same files (a symlink to src/deco/recipes).
CLONE_FOLDER = "configs"


def recipes_dir() -> Path:
    """The folder of recipes shipped with the installed package."""
    return Path(__file__).resolve().with_name("recipes")


def recipe_names() -> list[str]:
    """Every shipped recipe's name, e.g. `llava15-deco-144`, `accelerate/ddp`, sorted."""
    root = recipes_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob(f"*{SUFFIX}"))


def _name_of(text: str) -> str:
    parts = Path(text).as_posix().split("/")
    if parts and parts[0] == CLONE_FOLDER:  # `configs/tiny.yaml` typed outside a clone
        parts = parts[1:]
    name = "/".join(parts)
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name


def find_recipe(text: str | Path) -> Path | None:
    """The shipped recipe file a name refers to, or None."""
    name = _name_of(str(text))
    if not name or ".." in name.split("/"):
        return None
    file = recipes_dir() / f"{name}{SUFFIX}"
    return file if file.is_file() else None


def resolve_config_file(path: str | Path) -> Path:
    """`path` when a file is there, else the shipped recipe of that name; a clear error otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    found = find_recipe(path)
    if found is not None:
        return found
    close = difflib.get_close_matches(_name_of(str(path)), recipe_names(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"config file not found: {path} (not a file, nor a shipped recipe name{hint}; `deco recipes` lists them)"
    )


def describe_recipe(file: Path) -> str:
    """The first sentence of a recipe's leading comment block (its one-line description)."""
    lines = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(x for x in lines if x)
    text = text.split(". ", 1)[0].rstrip(".") + "." if text else ""
    return text if len(text) <= 100 else text[:97].rsplit(" ", 1)[0] + " ..."  # one line in a terminal


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every shipped recipe."""
    return [(name, describe_recipe(recipes_dir() / f"{name}{SUFFIX}")) for name in recipe_names()]
