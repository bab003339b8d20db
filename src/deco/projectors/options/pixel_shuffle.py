"""Options of the pixel-shuffle projector (projectors/pixel_shuffle.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, require_positive


@dataclass
class PixelShuffleConfig(ProjectorConfig):
    """InternVL default: 2x2 neighbours merged (576 -> 144 tokens), LayerNorm before the MLP (mlp1)."""

    scale_factor: int = 2
    layer_norm: bool = True
    # pad=True zero-pads the bottom rows / right columns up to a multiple of scale_factor, so edge
    # tokens carry zeros in the channel blocks of the missing patches; False rejects such grids.
    pad: bool = False

    def validate(self) -> None:
        if isinstance(self.scale_factor, bool) or not isinstance(self.scale_factor, int):
            raise ConfigError(f"projector option 'scale_factor' must be an int, got {self.scale_factor!r}")
        require_positive("scale_factor", self.scale_factor)
        for name in ("layer_norm", "pad"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"projector option '{name}' must be true or false, got {getattr(self, name)!r}"
                )
