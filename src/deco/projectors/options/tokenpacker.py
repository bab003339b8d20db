"""Options of TokenPacker (projectors/tokenpacker.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, require_positive


@dataclass
class TokenPackerConfig(ProjectorConfig):
    """Reference defaults: 2x downsampling (576 -> 144 tokens), 8 heads, 4 feature levels for keys/values."""

    multi_level: ClassVar[bool] = True
    # CLIP-L/14 hidden states (entry 0 = embeddings); 23 is LLaVA's -2.
    reference_layers: ClassVar[tuple[int, ...] | None] = (12, 16, 22, 23)

    scale_factor: int = 2
    num_heads: int = 8
    embed_dim: int | None = None  # attention width E; None = the vision width (reference: 1024 = Dv)
    levels: int = 4  # encoder layers concatenated for keys/values; `vision.multi_level_layers` names them

    def validate(self) -> None:
        names = ["scale_factor", "num_heads", "levels"] + ([] if self.embed_dim is None else ["embed_dim"])
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"projector option '{name}' must be an int, got {value!r}")
            require_positive(name, value)
