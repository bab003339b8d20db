"""MobileVLM V2's lightweight downsample projector (LDPv2): MLP, then pooling, then a conv position encoding.

Reference: Meituan-AutoML/MobileVLM, mobilevlm/model/vision_projector.py (`LDPNetV2Projector`):
FeatureIRLayer (Linear, GELU, Linear) -> TokenDownLayer (AdaptiveAvgPool2d((12, 12))) ->
PosInjectLayer (depthwise 3x3 conv with bias, stride 1, padding 1, added to its input: a Twins-style
positional encoding generator). Unlike DeCo, the pooling runs after the MLP, in LLM width.
The reference needs a square input grid; here any h x w grid that is at least the target grid works.
"""

from __future__ import annotations

import torch
from torch import nn

from deco.projectors.base import Grid, Projector
from deco.projectors.mlp import make_mlp
from deco.projectors.options.ldpv2 import LDPv2Config
from deco.projectors.pooling import check_poolable, grid_pool


class LDPv2Projector(Projector):
    """Per-patch MLP to LLM width, adaptive average pooling to s x s, depthwise-conv PEG residual."""

    config_class = LDPv2Config
    description = "MobileVLM V2 LDPv2: MLP, adaptive avg pooling to h x w, depthwise 3x3 conv residual"

    def __init__(self, config: LDPv2Config, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.out_grid: Grid = config.grid  # type: ignore[assignment]
        self.mlp = make_mlp(vision_width, llm_width, depth=2, activation="gelu")
        # groups == channels: one 3x3 filter per channel, so it only mixes neighbouring positions.
        self.peg = nn.Conv2d(llm_width, llm_width, kernel_size=3, padding=1, groups=llm_width, bias=True)

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return self.out_grid[0] * self.out_grid[1]

    def check_grid(self, grid: Grid) -> None:
        check_poolable(self.name, grid, self.out_grid)

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        x = self.mlp(features)  # [B, N, Dl]
        x = grid_pool(x, grid, self.out_grid)  # [B, M, Dl]
        b, m, d = x.shape
        oh, ow = self.out_grid
        maps = x.transpose(1, 2).reshape(b, d, oh, ow)  # [B, Dl, oh, ow]
        maps = maps + self.peg(maps)  # residual: the conv adds position information
        return maps.flatten(2).transpose(1, 2)  # [B, M, Dl]
