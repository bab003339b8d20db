"""Looking inside HF checkpoint folders before loading them: architecture, weight files, tokenizer files.

Everything here reads file names and JSON only, so a wrong or unsafe folder is refused with a clear
message before any weights are touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from deco.errors import ConfigError
from deco.pickles import PICKLE_HINT, PICKLE_SUFFIXES, pickle_policy

SAFE_SUFFIXES = (".safetensors",)
# Any one of these makes AutoTokenizer able to build a tokenizer (fast json, sentencepiece, BPE files).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The config.json of an HF checkpoint folder, or a ConfigError saying what is there instead."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint folder not found: {path}")
    if not path.is_dir():
        raise ConfigError(f"'{path}' is a file; expected a checkpoint folder (config.json + weights)")
    file = path / "config.json"
    if not file.is_file():
        present = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "(empty)"
        raise ConfigError(f"'{path}' has no config.json, so it is not an HF checkpoint (it holds: {present})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def describe_architecture(config: dict[str, Any]) -> str:
    """'model_type' (Architectures) of an HF config dict, for error messages."""
    archs = config.get("architectures") or []
    return f"'{config.get('model_type', '?')}'" + (f" ({', '.join(archs)})" if archs else "")


def require_model_type(path: str | Path, config: dict[str, Any], expected: Iterable[str], what: str) -> str:
    """Return the config's model_type if it is one of `expected`, else name what was found."""
    expected = tuple(expected)
    model_type = config.get("model_type")
    if model_type not in expected:
        raise ConfigError(
            f"'{path}' is a {describe_architecture(config)} checkpoint; expected {what} "
            f"(model_type {' or '.join(repr(e) for e in expected)})"
        )
    return model_type


def weight_files(path: str | Path, allow_pickle: bool = False) -> list[Path]:
    """The weight files of a folder: safetensors if any, else pickles (only when allowed)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file())
    safe = [p for p in files if p.name.endswith(SAFE_SUFFIXES)]
    if safe:
        return safe
    pickles = [p for p in files if p.name.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        names = ", ".join(p.name for p in pickles[:4])
        raise ConfigError(f"'{path}' holds only pickle weights ({names}); {PICKLE_HINT}")
    if not pickles:
        raise ConfigError(f"'{path}' has no weight files (*.safetensors)")
    return pickles


def read_tensors(
    files: Iterable[Path], select: Iterable[str] | None = None, allow_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """Read tensors (all, or only the names in `select`) from safetensors or, if allowed, pickle files."""
    wanted = None if select is None else set(select)
    out: dict[str, torch.Tensor] = {}
    for file in files:
        if file.name.endswith(SAFE_SUFFIXES):
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
                    if wanted is None or key in wanted:
                        out[key] = handle.get_tensor(key)
        else:
            with pickle_policy(allow_pickle):  # refused unless allowed; weights-only; the file named
                state = torch.load(str(file), map_location="cpu", weights_only=True)
            out.update({k: v for k, v in state.items() if wanted is None or k in wanted})
    return out


def tensor_names(files: Iterable[Path], allow_pickle: bool = False) -> list[str]:
    """Names of all tensors in the weight files (safetensors headers only; pickles are loaded)."""
    names: list[str] = []
    for file in files:
        if file.name.endswith(SAFE_SUFFIXES):
            with safe_open(str(file), framework="pt") as handle:
                names.extend(handle.keys())
        else:
            names.extend(read_tensors([file], allow_pickle=allow_pickle))
    return names


def require_tokenizer_files(path: str | Path) -> None:
    """Raise a ConfigError naming the folder when no tokenizer can be built from it."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(
            f"'{path}' has no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); save the "
            "tokenizer into the checkpoint folder (tokenizer.save_pretrained(folder))"
        )


def find_pickles(path: str | Path) -> list[Path]:
    """Every pickle-format file under a folder (an exported folder must have none)."""
    return sorted(p for p in Path(path).rglob("*") if p.is_file() and p.name.endswith(PICKLE_SUFFIXES))
