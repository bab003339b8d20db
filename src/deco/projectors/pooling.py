"""DeCo: 2D adaptive average pooling on the raw patch grid, then LLaVA's MLP (arXiv 2405.20985)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deco.errors import ShapeError
from deco.projectors.base import Grid, Projector
from deco.projectors.mlp import make_mlp
from deco.projectors.options.pooling import DecoConfig


def grid_pool(features: torch.Tensor, in_grid: Grid, out_grid: Grid) -> torch.Tensor:
    """Adaptive-average-pool row-major tokens [B, h*w, D] on in_grid to [B, oh*ow, D]."""
    b, _, d = features.shape
    x = features.transpose(1, 2).reshape(b, d, in_grid[0], in_grid[1])  # [B, D, h, w]
    x = F.adaptive_avg_pool2d(x, out_grid)  # [B, D, oh, ow]
    return x.flatten(2).transpose(1, 2)  # [B, oh*ow, D]


def pooling_matrix(in_grid: Grid, out_grid: Grid) -> torch.Tensor:
    """The exact linear map of adaptive average pooling, [oh*ow, h*w]; rows sum to 1."""
    n = in_grid[0] * in_grid[1]
    eye = torch.eye(n, dtype=torch.float64).unsqueeze(0)  # each patch as its own channel: [1, N, N]
    return grid_pool(eye, in_grid, out_grid)[0]  # [M, N]


def check_poolable(name: str, in_grid: Grid, out_grid: Grid) -> None:
    """Pooling must not enlarge the grid (adaptive pooling would silently duplicate patches)."""
    if out_grid[0] > in_grid[0] or out_grid[1] > in_grid[1]:
        raise ShapeError(
            f"{name}: target grid {out_grid[0]}x{out_grid[1]} is larger than the input patch grid "
            f"{in_grid[0]}x{in_grid[1]}; pooling can only reduce the number of tokens"
        )


class DecoProjector(Projector):
    """Pool first (token compression, no parameters), then the MLP (semantic mapping)."""

    config_class = DecoConfig
    description = "DeCo: 2D adaptive average pooling to h x w, then LLaVA's MLP"

    def __init__(self, config: DecoConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.out_grid: Grid = config.grid  # type: ignore[assignment]
        self.mlp = make_mlp(vision_width, llm_width, config.mlp_depth, config.activation)

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return self.out_grid[0] * self.out_grid[1]

    def check_grid(self, grid: Grid) -> None:
        check_poolable(self.name, grid, self.out_grid)

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        pooled = grid_pool(features, grid, self.out_grid)  # [B, M, Dv]
        return self.mlp(pooled)  # [B, M, Dl]
