"""Honeybee's D-Abstractor (Cha et al., CVPR 2024): a Deformable-DETR decoder over the patch grid.

Structure (kakaobrain/honeybee `DAbstractor`, on HF `DeformableDetrDecoderLayer`): M learnable query
contents; query position = the patch features adaptive-avg-pooled to s x s (Honeybee's
pooled_v_target="query"); learnable reference points initialised on a uniform s x s grid; a learnable
pos-emb added to the patch features; 6 post-LN decoder layers (self-attention among queries,
deformable cross-attention to the single-level feature map, ReLU FFN); Linear(d -> Dl).
At Dv=d=1024, Dl=4096, N=576, M=144: 6 x 8,501,344 + queries 147,456 + reference points 288 +
pos-emb 589,824 + output 4,198,400 = 55,944,032 parameters.

Reference points: Honeybee keeps them as a raw learnable [1, M, 2] parameter in [0, 1] and feeds
them to every layer as is: no inverse-sigmoid/sigmoid and no per-layer refinement (that needs a box
head it does not have). We do the same; points that drift outside [0, 1] sample zeros there.
Honeybee runs this module in fp32 (deformable attention "only supports fp32"): autocast is disabled
inside and inputs are cast to the parameters' dtype; keep the module's parameters in fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.attention import AttentionProbe, attend
from deco.projectors.base import Grid, Projector, init_normal_
from deco.projectors.cabstractor import resize_pos_emb
from deco.projectors.deformable import MultiScaleDeformableAttention
from deco.projectors.options.cabstractor import base_grid
from deco.projectors.options.dabstractor import DAbstractorConfig
from deco.projectors.pooling import check_poolable, grid_pool


class QuerySelfAttention(nn.Module):
    """DETR self-attention: position added to queries and keys, not to values."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.probe = AttentionProbe("self")

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, q, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, q, self.heads, d // self.heads).transpose(1, 2)  # [B, H, Q, Dh]

        qk = x + pos
        out = attend(split(self.q_proj(qk)), split(self.k_proj(qk)), split(self.v_proj(x)), self.probe)
        return self.out_proj(out.transpose(1, 2).reshape(b, q, d))  # [B, Q, D]


class DeformableDecoderLayer(nn.Module):
    """Post-LN: x = LN(x + SA(x, pos)); x = LN(x + DeformCA(x + pos)); x = LN(x + FFN(x))."""

    def __init__(
        self, width: int, heads: int, points: int, ffn_width: int, dropout: float, learn_offsets: bool = True
    ) -> None:
        super().__init__()
        self.self_attn = QuerySelfAttention(width, heads)
        self.self_attn_norm = nn.LayerNorm(width)
        self.cross_attn = MultiScaleDeformableAttention(width, heads=heads, levels=1, points=points,
                                                        learn_offsets=learn_offsets)
        self.cross_attn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_width), nn.ReLU(), nn.Linear(ffn_width, width))
        self.ffn_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, ref: torch.Tensor, value: torch.Tensor, shape: Grid
    ) -> torch.Tensor:
        x = self.self_attn_norm(x + self.dropout(self.self_attn(x, pos)))
        x = self.cross_attn_norm(x + self.dropout(self.cross_attn(x + pos, ref, value, [shape])))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


def grid_reference_points(out_grid: Grid, in_grid: Grid) -> torch.Tensor:
    """Honeybee's initial points [1, oh*ow, 2] as (x, y) in [0, 1]: evenly spaced from the centre of
    the first patch to the centre of the last one (linspace(0.5, side - 0.5, steps) / side)."""

    def axis(steps: int, side: int) -> torch.Tensor:
        if steps == 1:
            return torch.tensor([0.5])
        return torch.linspace(0.5, side - 0.5, steps) / side

    ys, xs = torch.meshgrid(axis(out_grid[0], in_grid[0]), axis(out_grid[1], in_grid[1]), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)[None]





class DAbstractor(Projector):
    """Deformable-attention abstractor: M queries each sample a few learned points near their cell."""

    keeps_fp32 = True

    config_class = DAbstractorConfig
    description = "Honeybee D-Abstractor: 6-layer Deformable-DETR decoder, pooled-feature query positions"

    def __init__(self, config: DAbstractorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        width = config.hidden_size or vision_width
        if width % config.num_heads != 0:
            raise ConfigError(f"dabstractor: width {width} is not divisible by num_heads={config.num_heads}")
        self.out_grid: Grid = config.grid  # type: ignore[assignment]
        self.pos_grid = base_grid(config.num_input_tokens)
        m = self.out_grid[0] * self.out_grid[1]
        self.input_proj = nn.Linear(vision_width, width) if width != vision_width else nn.Identity()
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(
                width, config.num_heads, config.num_points, config.ffn_width, config.dropout, config.learn_offsets
            )
            for _ in range(config.num_layers)
        )
        # The learned query part: the content ("query"), the position ("tgt"); "none": content and position
        # (Honeybee's Embedding(M, 2d) split in two).
        self.query_embed = nn.Parameter(torch.zeros(m, width * (2 if config.pooled_v_target == "none" else 1)))
        self.reference_points = nn.Parameter(grid_reference_points(self.out_grid, self.pos_grid))
        self.pos_emb = (
            nn.Parameter(torch.zeros(1, config.num_input_tokens, width)) if config.pos_emb else None
        )
        self.output_proj = nn.Linear(width, llm_width) if width != llm_width else nn.Identity()
        # Honeybee's _init_weights (N(0, 0.02), zero bias, unit LN), then Deformable-DETR's own init
        # for the deformable attention (radial offsets, zero attention logits, xavier projections).
        init_normal_(self)
        nn.init.normal_(self.query_embed, std=0.02)
        if self.pos_emb is not None:
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        for layer in self.layers:
            layer.cross_attn.reset_parameters()

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return self.out_grid[0] * self.out_grid[1]

    def check_grid(self, grid: Grid) -> None:
        check_poolable(self.name or "dabstractor", grid, self.out_grid)

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        dtype = self.query_embed.dtype  # fp32 unless someone cast the module
        with torch.autocast(device_type=features.device.type, enabled=False):
            out = self._decode(features.to(dtype), grid)
        return out.to(features.dtype)

    def _decode(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        b = features.shape[0]
        value = self.input_proj(features)  # [B, N, d]
        if self.pos_emb is not None:
            value = value + resize_pos_emb(self.pos_emb, self.pos_grid, grid)
        learned = self.query_embed.unsqueeze(0).expand(b, -1, -1)
        target = self.config.pooled_v_target
        if target == "none":
            pos, x = learned.chunk(2, dim=-1)  # [B, M, d] each
        else:
            pooled = grid_pool(value, grid, self.out_grid)  # [B, M, d]
            # "query": position = pooled features, content learned; "tgt": the other way round
            pos, x = (pooled, learned) if target == "query" else (learned, pooled)
        ref = self.reference_points.expand(b, -1, -1)[:, :, None]  # [B, M, 1 level, 2]
        for layer in self.layers:
            x = layer(x, pos, ref, value, grid)
        return self.output_proj(x)  # [B, M, Dl]
