"""Exact-name registry of training-free token reducers, and the `NAME:BUDGET` setting that picks one.

Like the projectors' registry: one table, exact names (a near miss gets "did you mean"), lazy imports.
Torch-free on purpose: `--reduce visionzip:64` is checked (name, budget, options) before torch loads;
`build_reducer` imports the one torch module it needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from deco.errors import ConfigError
from deco.names import look_up

if TYPE_CHECKING:
    from deco.reducers.base import Reducer

# Where a reducer acts (the "acts on" column of docs/reducers.md):
# - "vision": on the tower's patch features, before a token-wise projector (what the reference does).
# - "tokens": on the projector's output tokens, so it works after any projector.
# - "llm": inside the LLM, after layer K; the input keeps every placeholder.
STAGES = ("vision", "tokens", "llm")


class _Entry(NamedTuple):
    module: str  # deco.reducers.<module>
    cls: str
    stage: str
    attention: str  # "" (any attention kernel), "tower" (the tower's attention map) or "llm" (eager LLM)
    options: dict[str, Any]  # option -> default (the reference implementation's)
    reference: str  # repository, for tables


_REDUCERS: dict[str, _Entry] = {
    "random": _Entry("simple", "RandomReducer", "tokens", "", {"seed": 0}, "UniPruneBench / VTC-Bench baseline"),
    "pool": _Entry("simple", "PoolReducer", "tokens", "", {}, "DeCo's pooling, untrained"),
    "divprune": _Entry("divprune", "DivPruneReducer", "tokens", "", {}, "vbdi/divprune"),
    "visionzip": _Entry("visionzip", "VisionZipReducer", "vision", "tower", {"contextual": -1},
                        "dvlab-research/VisionZip"),
    "vispruner": _Entry("vispruner", "VisPrunerReducer", "vision", "tower", {"important_ratio": 0.5},
                        "Theia-4869/VisPruner"),
    # fastv layer -1: the paper's K=2, or the last layer but one in an LLM of fewer than 3 layers.
    "fastv": _Entry("fastv", "FastVReducer", "llm", "llm", {"layer": -1}, "pkunlp-icler/FastV"),
}


# The one help line of every command's --reduce option.
REDUCE_HELP = ("Training-free token reducer at inference, NAME:TOKENS per image: random, pool, divprune, visionzip, "
               "vispruner, fastv (e.g. visionzip:64; options as NAME:TOKENS:key=value). Default: none.")


def reducer_names() -> list[str]:
    """All registered reducer names, in registry order."""
    return list(_REDUCERS)


def reducer_entry(name: str) -> _Entry:
    """The registry row of reducer `name` (exact name), or a ConfigError with a suggestion."""
    return look_up(_REDUCERS, name, "reducer")


@dataclass(frozen=True)
class ReduceSpec:
    """A reducer and its token budget per image (`visionzip:64`), with options (`fastv:64:layer=3`)."""

    name: str
    budget: int
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}:{self.budget}" + (f":{extra}" if extra else "")

    @property
    def entry(self) -> _Entry:
        """The registry row (stage, attention need, reference)."""
        return reducer_entry(self.name)

    def option(self, key: str) -> Any:
        """An option's value, the reference default when not given."""
        return self.options.get(key, self.entry.options[key])


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"reducer option value {text!r} is not a number") from None


def parse_reduce(spec: str | ReduceSpec | None, key: str = "--reduce") -> ReduceSpec | None:
    """`"visionzip:64"` or `"fastv:64:layer=3"` -> ReduceSpec; None/""/"none" -> None. Checks everything;
    errors name `key` (the option or config key the spec came from)."""
    if spec is None or isinstance(spec, ReduceSpec):
        return spec
    text = str(spec).strip()
    if text.lower() in ("", "none"):
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"{key} {text!r} must look like NAME:TOKENS (e.g. visionzip:64) "
                          f"or NAME:TOKENS:key=value,...; names: {', '.join(_REDUCERS)}")
    name = parts[0].strip()
    entry = reducer_entry(name)
    try:
        budget = int(parts[1])
    except ValueError:
        raise ConfigError(f"{key} {text!r}: the token budget {parts[1]!r} is not a whole number") from None
    if budget < 1:
        raise ConfigError(f"{key} {text!r}: the token budget must be >= 1, got {budget}")
    options: dict[str, Any] = {}
    for item in (parts[2].split(",") if len(parts) == 3 and parts[2] else []):
        option, sep, value = item.partition("=")
        option = option.strip()
        if not sep or option not in entry.options:
            valid = ", ".join(entry.options) or "(none)"
            raise ConfigError(f"{key} {text!r}: reducer '{name}' has no option {option!r}; valid options: {valid}")
        options[option] = _number(value.strip())
    return ReduceSpec(name, budget, options)


def build_reducer(spec: str | ReduceSpec) -> Reducer:
    """Instantiate the reducer a spec names (imports its torch module)."""
    parsed = parse_reduce(spec)
    if parsed is None:
        raise ConfigError("build_reducer needs a reducer, got none")
    entry = parsed.entry
    cls = getattr(importlib.import_module(f"deco.reducers.{entry.module}"), entry.cls)
    return cls(parsed)
