"""Options of Flamingo's Perceiver resampler (projectors/resampler.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, parse_grid, require_positive


@dataclass
class ResamplerConfig(ProjectorConfig):
    """Flamingo defaults: 6 layers, 64 latents, 8 heads of 64, FFN x4, width = vision width.

    `dim`: working width (None = vision width; otherwise an input Linear(Dv -> dim) comes first).
    `pos_emb_grid`: None (default, as Flamingo, whose media have no spatial position embedding) or
    a grid like '24x24' to add a learnable position embedding over patches, bilinearly resized when
    the input grid differs.
    """

    depth: int = 6
    num_latents: int = 64
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4
    dim: int | None = None
    pos_emb_grid: tuple[int, int] | str | int | None = None

    def __post_init__(self) -> None:
        if self.pos_emb_grid is not None:
            self.pos_emb_grid = parse_grid(self.pos_emb_grid, "pos_emb_grid")

    def validate(self) -> None:
        names = ["depth", "num_latents", "heads", "dim_head", "ff_mult"] + ([] if self.dim is None else ["dim"])
        for name in names:
            value = getattr(self, name)
            require_positive(name, value)
            if not isinstance(value, int):
                raise ConfigError(f"projector option '{name}' must be an int, got {value!r}")
