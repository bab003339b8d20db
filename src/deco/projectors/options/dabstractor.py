"""Options of Honeybee's D-Abstractor (projectors/dabstractor.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, require_positive
from deco.projectors.options.cabstractor import base_grid, resolve_query_grid

POOLED_V_TARGETS = ("query", "tgt", "none")


@dataclass
class DAbstractorConfig(ProjectorConfig):
    """Honeybee / Deformable-DETR defaults: 144 queries, 6 layers, 8 heads, 4 points, FFN 1024, dropout 0.1.

    `hidden_size` None means d_model = vision width (Honeybee); otherwise a Linear input projection
    is added, as Honeybee does when the widths differ. `learn_offsets` False (an ablation, not Honeybee)
    keeps every layer's sampling offsets at Deformable-DETR's initial radial pattern.
    `pooled_v_target` is Honeybee's switch for where the pooled features go: "query" (its default: the
    query *position*, the content a learned embedding), "tgt" (the query *content*, i.e. the decoder's
    residual stream starts from the pooled features as DeCo's tokens; the position is learned), "none"
    (both learned, no pooled features).
    """

    num_queries: int | None = None
    grid: tuple[int, int] | str | int | None = None
    num_layers: int = 6
    num_heads: int = 8
    num_points: int = 4
    ffn_width: int = 1024
    dropout: float = 0.1
    hidden_size: int | None = None
    num_input_tokens: int = 576
    pos_emb: bool = True
    learn_offsets: bool = True
    pooled_v_target: str = "query"

    def __post_init__(self) -> None:
        self.num_queries, self.grid = resolve_query_grid(self.num_queries, self.grid)

    def validate(self) -> None:
        for name in ("num_layers", "num_heads", "num_points", "ffn_width"):
            require_positive(name, getattr(self, name))
        if self.hidden_size is not None:
            require_positive("hidden_size", self.hidden_size)
        if self.pooled_v_target not in POOLED_V_TARGETS:
            raise ConfigError(f"projector option 'pooled_v_target' must be one of {', '.join(POOLED_V_TARGETS)}, "
                              f"got {self.pooled_v_target!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"projector option 'dropout' must be in [0, 1), got {self.dropout!r}")
        base_grid(self.num_input_tokens)
