"""The options contract every projector shares, and the parsers its options use (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deco.errors import ConfigError

Grid = tuple[int, int]

# Activation names the MLPs accept; projectors/mlp.py maps each to its torch module.
ACTIVATIONS = ("gelu", "silu", "relu")


@dataclass
class ProjectorConfig:
    """Base for per-projector config dataclasses; subclasses add fields with reference defaults.

    The class variables say what the model must feed the projector. They live here, not on the torch
    module, so config validation knows them without importing torch; `Projector` subclasses read them.
    """

    # Takes a time axis: grids (frames, h, w) of videos (projectors/video.py).
    takes_video: ClassVar[bool] = False
    # Also reads several encoder layers concatenated (TokenPacker's keys/values).
    multi_level: ClassVar[bool] = False
    # The encoder hidden-state indices the reference implementation concatenates (the default of
    # `vision.multi_level_layers`); None when there is no reference choice.
    reference_layers: ClassVar[tuple[int, ...] | None] = None
    # Maps each patch on its own (LLaVA's linear/MLP): a subset of patches projects to the same tokens as
    # projecting first and selecting after, so token reducers that choose patches may act before it.
    tokenwise: ClassVar[bool] = False

    def validate(self) -> None:
        """Raise ConfigError for impossible values (checked once, when the projector is built)."""


def require_positive(name: str, value: int | float) -> None:
    """Raise a ConfigError naming the field when a size is not positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"projector option '{name}' must be a positive number, got {value!r}")


def check_activation(activation: str) -> None:
    """Raise a ConfigError naming the option when an activation is not one of ACTIVATIONS."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"projector option 'activation' must be one of {', '.join(ACTIVATIONS)}")


def parse_grid(value: object, name: str = "grid") -> Grid:
    """Accept 12, (12, 12), [12, 12] or '12x12' and return an (h, w) tuple of positive ints."""
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"'{name}' must look like '12x12' or 12, got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        nums = [value, value]
    elif isinstance(value, (list, tuple)):
        nums = list(value)
    else:
        raise ConfigError(f"'{name}' must be an int, 'HxW' or [h, w], got {value!r}")
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in nums):
        raise ConfigError(f"'{name}' must be two positive ints, got {value!r}")
    return (nums[0], nums[1])


def square_side(num_tokens: int, name: str = "num_queries") -> int:
    """Side of the square grid with num_tokens cells, or a ConfigError if it is not a square."""
    side = round(num_tokens**0.5)
    if side * side != num_tokens:
        raise ConfigError(f"'{name}'={num_tokens} must be a perfect square (the tokens form a grid)")
    return side
