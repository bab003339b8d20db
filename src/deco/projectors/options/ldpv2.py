"""Options of MobileVLM V2's LDPv2 (projectors/ldpv2.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.projectors.options.base import ProjectorConfig, parse_grid


@dataclass
class LDPv2Config(ProjectorConfig):
    """MobileVLM V2 default: pool to 12x12 (576 -> 144 tokens)."""

    grid: tuple[int, int] | str | int = (12, 12)

    def __post_init__(self) -> None:
        self.grid = parse_grid(self.grid, "grid")
