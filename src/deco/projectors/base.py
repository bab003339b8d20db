"""The contract every projector follows: vision features on a patch grid in, LLM-width tokens out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from deco.errors import ConfigError, ShapeError

Grid = tuple[int, int]


@dataclass
class ProjectorConfig:
    """Base for per-projector config dataclasses; subclasses add fields with reference defaults."""

    def validate(self) -> None:
        """Raise ConfigError for impossible values (checked once, when the projector is built)."""


def require_positive(name: str, value: int | float) -> None:
    """Raise a ConfigError naming the field when a size is not positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"projector option '{name}' must be a positive number, got {value!r}")


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


class Projector(nn.Module):
    """Maps vision features [B, N, Dv] laid on an (h, w) patch grid to LLM tokens [B, M, Dl].

    Subclasses set `config_class` and `description`, implement `num_tokens` (so the data pipeline
    can lay out M placeholders before anything runs) and `project` (the actual computation).
    """

    config_class: ClassVar[type[ProjectorConfig]] = ProjectorConfig
    description: ClassVar[str] = ""
    name: ClassVar[str] = ""
    # Projectors that are numerically fragile in half precision (Honeybee's D-Abstractor) stay fp32.
    keeps_fp32: ClassVar[bool] = False
    # Projectors that also read several encoder layers (TokenPacker's keys/values) set this; their
    # forward then takes `multi_level=[B, N, levels*Dv]`, those layers' patch features concatenated on
    # the channel axis in the order listed, and the instance's `levels` says how many it takes.
    # DecoModel supplies them; called with `features` alone, such a projector falls back on its own.
    wants_multi_level: ClassVar[bool] = False
    # The encoder hidden-state indices the reference implementation concatenates (the default of
    # `vision.multi_level_layers` for this projector); None when there is no reference choice.
    reference_layers: ClassVar[tuple[int, ...] | None] = None
    levels: int = 1

    def __init__(self, config: ProjectorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__()
        require_positive("vision_width", vision_width)
        require_positive("llm_width", llm_width)
        config.validate()
        self.config = config
        self.vision_width = vision_width
        self.llm_width = llm_width

    def num_tokens(self, grid: Grid) -> int:
        """Number of output tokens M for an input patch grid (h, w)."""
        raise NotImplementedError

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        """[B, N, Dv] on grid (h, w) -> [B, M, Dl]; inputs are already validated."""
        raise NotImplementedError

    def check_grid(self, grid: Grid) -> None:
        """Raise ShapeError when this projector cannot take an input grid (e.g. pooling up)."""

    def forward(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Validate shapes, then project. Errors name both the expected and the received shape."""
        if features.dim() != 3:
            raise ShapeError(f"{self.name}: expected features [B, N, Dv], got shape {tuple(features.shape)}")
        h, w = grid
        if features.shape[1] != h * w:
            raise ShapeError(
                f"{self.name}: features have N={features.shape[1]} tokens but the grid {h}x{w} "
                f"declares {h * w}"
            )
        if features.shape[2] != self.vision_width:
            raise ShapeError(
                f"{self.name}: features have width Dv={features.shape[2]} but the projector was "
                f"built for vision width {self.vision_width}"
            )
        self.check_grid(grid)
        out = self.project(features, grid)
        return out

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total (or trainable) parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """Honeybee/BLIP-2 style init: N(0, std) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
