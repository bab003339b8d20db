"""Pixel shuffle (space-to-depth) + MLP, as in InternVL and Idefics3: s x s neighbours become one token.

Channel order of a merged token: for the output cell (i, j) and scale s, channel block k = di * s + dj
(row offset di outer, column offset dj inner, both in 0..s-1) holds the full feature vector of patch
(i * s + di, j * s + dj), i.e. channel k * Dv + c is channel c of that patch. Output tokens are row-major
over (i, j). This is the order of Idefics3's `pixel_shuffle` and of InternVL's with ps_version "v2"
(checked against both); InternVL's "v1" left the output grid transposed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deco.errors import ShapeError
from deco.projectors.base import Grid, Projector
from deco.projectors.options.pixel_shuffle import PixelShuffleConfig


def space_to_depth(features: torch.Tensor, grid: Grid, scale: int) -> torch.Tensor:
    """[B, h*w, D] row-major on grid (h, w), both divisible by scale -> [B, (h/s)*(w/s), D*s*s]."""
    b, _, d = features.shape
    h, w = grid
    x = features.reshape(b, h // scale, scale, w // scale, scale, d)  # [B, h/s, di, w/s, dj, D]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, h/s, w/s, di, dj, D]
    return x.reshape(b, (h // scale) * (w // scale), scale * scale * d)  # [B, M, s*s*D]


def pad_to_multiple(features: torch.Tensor, grid: Grid, scale: int) -> tuple[torch.Tensor, Grid]:
    """Zero-pad bottom rows and right columns of a row-major token grid to multiples of scale."""
    b, _, d = features.shape
    h, w = grid
    ph, pw = -h % scale, -w % scale
    if ph == 0 and pw == 0:
        return features, grid
    x = features.reshape(b, h, w, d)
    x = F.pad(x, (0, 0, 0, pw, 0, ph))  # pads D (none), then w (right), then h (bottom)
    return x.reshape(b, (h + ph) * (w + pw), d), (h + ph, w + pw)


class PixelShuffleProjector(Projector):
    """Concatenate each s x s patch neighbourhood into one token, then (LayerNorm,) Linear, GELU, Linear."""

    config_class = PixelShuffleConfig
    description = "Pixel shuffle (InternVL/Idefics3): s x s neighbours concatenated, then an MLP"

    def __init__(self, config: PixelShuffleConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.scale = config.scale_factor
        merged = vision_width * self.scale * self.scale
        # InternVL's mlp1: LayerNorm(Dv*s*s), Linear(Dv*s*s -> Dl), GELU, Linear(Dl -> Dl).
        self.norm = nn.LayerNorm(merged) if config.layer_norm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(merged, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width))

    def check_grid(self, grid: Grid) -> None:
        h, w = grid
        if not self.config.pad and (h % self.scale or w % self.scale):
            raise ShapeError(
                f"{self.name}: patch grid {h}x{w} is not divisible by scale_factor={self.scale}; "
                f"use a grid that is, or set the option pad=true to zero-pad it"
            )

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return -(-grid[0] // self.scale) * -(-grid[1] // self.scale)  # ceil division (pad case)

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        features, grid = pad_to_multiple(features, grid, self.scale)  # no-op unless pad=True
        merged = space_to_depth(features, grid, self.scale)  # [B, M, s*s*Dv]
        return self.mlp(self.norm(merged))  # [B, M, Dl]
