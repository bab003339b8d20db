"""Options of Honeybee's C-Abstractor (projectors/cabstractor.py), and the query grid it shares with the D-Abstractor."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import Grid, ProjectorConfig, parse_grid, require_positive, square_side

DEFAULT_NUM_QUERIES = 144


def resolve_query_grid(num_queries: int | None, grid: object) -> tuple[int, Grid]:
    """Settle `num_queries` / `grid` into (M, (oh, ow)); default 144 = 12x12; both given must agree."""
    if grid is None:
        m = DEFAULT_NUM_QUERIES if num_queries is None else num_queries
        require_positive("num_queries", m)
        side = square_side(m, "num_queries")
        return m, (side, side)
    out = parse_grid(grid, "grid")
    if num_queries is not None and num_queries != out[0] * out[1]:
        raise ConfigError(
            f"'num_queries'={num_queries} disagrees with 'grid'={out[0]}x{out[1]} "
            f"({out[0] * out[1]} tokens); give one of them"
        )
    return out[0] * out[1], out


def base_grid(num_input_tokens: int) -> Grid:
    """The square patch grid a learnable pos-emb of `num_input_tokens` rows was laid out on."""
    require_positive("num_input_tokens", num_input_tokens)
    side = square_side(num_input_tokens, "num_input_tokens")
    return (side, side)


@dataclass
class CAbstractorConfig(ProjectorConfig):
    """Honeybee defaults: 144 queries (12x12), RegNet depth 3, MLP depth 2, pos-emb for 576 patches.

    `hidden_size` None means the vision width (Honeybee's fixed 1024 equals CLIP-L's width).
    `depth` 0 is Honeybee's own degenerate case (`build_net`): no RegNet stages, the pooling then the SiLU
    MLP from the vision width (`hidden_size` unused), i.e. DeCo with SiLU and Honeybee's initialisation.
    `grid` may be non-square; `num_queries` must be a perfect square. Give either, or both agreeing.
    """

    num_queries: int | None = None
    grid: tuple[int, int] | str | int | None = None
    depth: int = 3
    mlp_depth: int = 2
    hidden_size: int | None = None
    num_input_tokens: int = 576
    pos_emb: bool = True
    # timm's RegNet starts every bottleneck as its shortcut (zero_init_last: the last norm's weight zeroed);
    # Honeybee builds bare RegStages and never calls it, so its blocks start at gamma 1 (our default).
    zero_init_last: bool = False

    def __post_init__(self) -> None:
        self.num_queries, self.grid = resolve_query_grid(self.num_queries, self.grid)

    def validate(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 0:
            raise ConfigError(f"projector option 'depth' must be an integer >= 0 (0: pooling + MLP), got {self.depth!r}")
        require_positive("mlp_depth", self.mlp_depth)
        if self.hidden_size is not None:
            require_positive("hidden_size", self.hidden_size)
        base_grid(self.num_input_tokens)
