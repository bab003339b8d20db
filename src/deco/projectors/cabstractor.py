"""Honeybee's C-Abstractor (Cha et al., CVPR 2024): RegNet convs, adaptive pooling, RegNet convs, MLP.

Structure (kakaobrain/honeybee `CAbstractor`, built on timm's `RegStage`): learnable pos-emb added to
the patch features; RegNet stage (depth 3) at the input resolution; AdaptiveAvgPool2d to s x s;
RegNet stage (depth 3); MLP with SiLU (depth 2) to the LLM width. At Dv=1024, Dl=4096, N=576 this is
37,398,016 parameters for any M: 6 blocks x 2,638,080 + pos-emb 589,824 + MLP 20,979,712.

A RegNet block here is timm's `Bottleneck` with its defaults (bottle_ratio=1, group_size=1,
se_ratio=0.25): the 3x3 conv has groups = width / 1, i.e. it is depthwise, and the SE hidden width is
round(0.25 * the block's *input* width), SE convs with bias, SiLU inside SE as in the block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deco.projectors.base import Grid, Projector, init_normal_
from deco.projectors.mlp import make_mlp
from deco.projectors.options.cabstractor import CAbstractorConfig, base_grid
from deco.projectors.pooling import check_poolable


def resize_pos_emb(pos_emb: torch.Tensor, source: Grid, target: Grid) -> torch.Tensor:
    """[1, h*w, D] on `source` -> [1, H*W, D] on `target`, bicubic on the 2D grid (as timm/ViT resize).

    Used when the input patch grid differs from the one the pos-emb was built for (num_input_tokens);
    on the native grid the parameter is used as is.
    """
    if source == target:
        return pos_emb
    d = pos_emb.shape[-1]
    x = pos_emb.reshape(1, source[0], source[1], d).permute(0, 3, 1, 2)  # [1, D, h, w]
    x = F.interpolate(x.float(), size=target, mode="bicubic", align_corners=False).to(pos_emb.dtype)
    return x.permute(0, 2, 3, 1).reshape(1, target[0] * target[1], d)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a [B, C, H, W] map (timm's LayerNorm2d, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # channels last for layer_norm
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def conv_norm(in_ch: int, out_ch: int, kernel: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Bias-free conv, LayerNorm2d, optional SiLU (timm ConvNormAct with norm_layer=LayerNorm2d)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=False),
        LayerNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global mean -> 1x1 conv (reduce) -> SiLU -> 1x1 conv -> sigmoid, times input."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # [B, C, 1, 1]
        return x * self.fc2(self.act(self.fc1(s))).sigmoid()


class RegBlock(nn.Module):
    """RegNet bottleneck (timm defaults): 1x1, depthwise 3x3, SE, 1x1, residual, SiLU."""

    def __init__(self, in_ch: int, out_ch: int, se_ratio: float = 0.25) -> None:
        super().__init__()
        self.conv1 = conv_norm(in_ch, out_ch, 1)
        self.conv2 = conv_norm(out_ch, out_ch, 3, groups=out_ch)  # group width 1 -> depthwise
        self.se = SqueezeExcite(out_ch, int(round(in_ch * se_ratio)))
        self.conv3 = conv_norm(out_ch, out_ch, 1, act=False)
        # Projection shortcut only when widths differ (timm create_shortcut 'conv1x1').
        self.shortcut = conv_norm(in_ch, out_ch, 1, act=False) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


def reg_stage(depth: int, in_ch: int, out_ch: int) -> nn.Sequential:
    """`depth` RegBlocks at stride 1; only the first changes the width."""
    return nn.Sequential(*[RegBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(depth)])


class CAbstractor(Projector):
    """Convolutional abstractor: local context by RegNet blocks around an adaptive pooling."""

    config_class = CAbstractorConfig
    description = (
        "Honeybee C-Abstractor: pos-emb, RegNet stage, adaptive pool to s x s, RegNet stage, SiLU MLP"
    )

    def __init__(self, config: CAbstractorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        hidden = config.hidden_size or vision_width
        self.out_grid: Grid = config.grid  # type: ignore[assignment]
        self.pos_grid = base_grid(config.num_input_tokens)
        self.pos_emb = (
            nn.Parameter(torch.zeros(1, config.num_input_tokens, vision_width)) if config.pos_emb else None
        )
        if config.depth == 0:  # Honeybee build_net: net = the sampler alone, readout from the encoder width
            hidden = vision_width
        self.stage1 = reg_stage(config.depth, vision_width, hidden)  # empty Sequential (identity) at depth 0
        self.stage2 = reg_stage(config.depth, hidden, hidden)
        self.readout = make_mlp(hidden, llm_width, config.mlp_depth, "silu")
        init_normal_(self)  # Honeybee _init_weights: N(0, 0.02) convs/linears, zero bias, unit LN
        if self.pos_emb is not None:
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        if config.zero_init_last:
            for block in [*self.stage1, *self.stage2]:
                nn.init.zeros_(block.conv3[1].weight)  # conv3 = (conv, LayerNorm2d)

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return self.out_grid[0] * self.out_grid[1]

    def check_grid(self, grid: Grid) -> None:
        check_poolable(self.name or "cabstractor", grid, self.out_grid)

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        b, _, d = features.shape
        if self.pos_emb is not None:
            features = features + resize_pos_emb(self.pos_emb, self.pos_grid, grid)  # [B, N, Dv]
        x = features.transpose(1, 2).reshape(b, d, grid[0], grid[1])  # [B, Dv, h, w]
        x = self.stage1(x)  # [B, C, h, w]
        x = F.adaptive_avg_pool2d(x, self.out_grid)  # [B, C, oh, ow]
        x = self.stage2(x)
        x = x.flatten(2).transpose(1, 2)  # [B, M, C]
        return self.readout(x)  # [B, M, Dl]
