"""Options of MM1's attention pooling (projectors/attnpool.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, check_activation, require_positive


@dataclass
class AttnPoolConfig(ProjectorConfig):
    """144 queries, 8 heads, then LayerNorm and mlp2x_gelu."""

    num_queries: int = 144
    heads: int = 8
    mlp_depth: int = 2
    activation: str = "gelu"
    query_init_std: float = 0.02

    def validate(self) -> None:
        for name in ("num_queries", "heads", "mlp_depth"):
            value = getattr(self, name)
            require_positive(name, value)
            if not isinstance(value, int):
                raise ConfigError(f"projector option '{name}' must be an int, got {value!r}")
        check_activation(self.activation)
        q = self.query_init_std
        if isinstance(q, bool) or not isinstance(q, (int, float)) or q < 0:
            raise ConfigError(f"projector option 'query_init_std' must be >= 0, got {q!r}")
