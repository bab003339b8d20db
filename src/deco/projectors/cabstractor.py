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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deco.errors import ConfigError
from deco.projectors.base import (
    Grid,
    Projector,
    ProjectorConfig,
    init_normal_,
    parse_grid,
    require_positive,
    square_side,
)
from deco.projectors.mlp import make_mlp
from deco.projectors.pooling import check_poolable

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
