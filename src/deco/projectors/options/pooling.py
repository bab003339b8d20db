"""Options of the DeCo projector (projectors/pooling.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.projectors.options.base import ProjectorConfig, check_activation, parse_grid, require_positive


@dataclass
class DecoConfig(ProjectorConfig):
    """Paper default: 24x24 -> 12x12 (576 -> 144 tokens), then mlp2x_gelu. Pooling has no weights."""

    grid: tuple[int, int] | str | int = (12, 12)
    mlp_depth: int = 2
    activation: str = "gelu"

    def __post_init__(self) -> None:
        self.grid = parse_grid(self.grid, "grid")

    def validate(self) -> None:
        require_positive("mlp_depth", self.mlp_depth)
        check_activation(self.activation)
