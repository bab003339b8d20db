"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021) in pure torch via grid_sample.

Each query looks at `points` locations per head and level: reference point + learned offset. The
feature map is sampled there bilinearly (grid_sample, zeros padding, align_corners=False, as in
Deformable-DETR's pytorch reference) and the samples are mixed by softmax weights over levels*points.
No compiled extension: it runs wherever torch runs.

Explaining it. The sampling weights pass through `AttentionProbe("cross")` as [B, heads, Q, L*P];
they are weights over *sampled points*, not over patches. Each point mixes at most 4 patches with
bilinear weights, so the effective patch attention is A_eff[b, h, q, n] = sum_p w[b, h, q, p] *
bilinear(loc[b, h, q, p], patch n), and the module's output before `output_proj` is exactly
A_eff @ value. The locations pass through `self.locations` (a `SamplingLocations` identity module,
[B, heads, Q, L*P, 2], (x, y) in [0, 1] per level) and the last ones are also kept (detached) in
`self.last_sampling_locations`. `patch_attention(weights, locations, shapes)` builds A_eff, so a
relevance hook can turn the probe's map (and its gradient, by the same linear map) into a patch map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deco.errors import ConfigError, ShapeError
from deco.projectors.attention import AttentionProbe

Shape2d = tuple[int, int]


class SamplingLocations(nn.Module):
    """Identity on sampling locations [B, heads, Q, L*P, 2]; a place for hooks (not an attention map)."""

    def forward(self, locations: torch.Tensor) -> torch.Tensor:
        return locations


def deformable_sample(
    value: torch.Tensor,
    shapes: Sequence[Shape2d],
    locations: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted bilinear sampling of per-head values.

    value [B, S, H, Dh] (S = sum of h*w over levels, row-major per level), locations
    [B, Q, H, L, P, 2] in [0, 1] as (x, y), weights [B, Q, H, L, P] -> [B, Q, H*Dh].
    """
    b, _, heads, dh = value.shape
    _, q, _, levels, points, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1  # grid_sample wants [-1, 1]
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(b * heads, dh, h, w)  # [B*H, Dh, h, w]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [B*H, Q, P, 2]
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(samples, dim=-2).flatten(-2)  # [B*H, Dh, Q, L*P]
    w = weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)  # [B*H, 1, Q, L*P]
    out = (stacked * w).sum(-1).view(b, heads * dh, q)  # [B, H*Dh, Q]
    return out.transpose(1, 2).contiguous()  # [B, Q, H*Dh]


def patch_attention(
    weights: torch.Tensor, locations: torch.Tensor, shapes: Sequence[Shape2d]
) -> torch.Tensor:
    """Effective attention over patches, [B, H, Q, S], from sampling weights [B, H, Q, L*P] and
    locations [B, H, Q, L*P, 2] (levels major, points minor, as the probes show them).

    Uses the same bilinear kernel as grid_sample(align_corners=False, zeros padding): a point at
    normalised x sits at pixel coordinate x*w - 0.5 between its two neighbouring patch centres;
    neighbours outside the map are dropped (they would have sampled zeros).
    """
    b, heads, q, lp = weights.shape
    levels = len(shapes)
    points = lp // levels
    total = sum(h * w for h, w in shapes)
    out = weights.new_zeros(b, heads, q, total)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        sl = slice(lvl * points, (lvl + 1) * points)
        wl = weights[..., sl]  # [B, H, Q, P]
        px = locations[..., sl, 0] * w - 0.5
        py = locations[..., sl, 1] * h - 0.5
        x0, y0 = px.floor(), py.floor()
        fx, fy = px - x0, py - y0
        for dx, dy, kernel in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)) + start
            out.scatter_add_(-1, index, wl * kernel * inside)
        start += h * w
    return out


def _radial_offsets(heads: int, levels: int, points: int) -> torch.Tensor:
    """Deformable-DETR's offset bias: head k points along angle 2*pi*k/heads, point i at i+1 cells."""
    thetas = torch.arange(heads, dtype=torch.float32) * (2.0 * math.pi / heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)  # [H, 2]
    grid = grid / grid.abs().max(-1, keepdim=True)[0]  # onto the unit square's border
    grid = grid.view(heads, 1, 1, 2).repeat(1, levels, points, 1)
    grid = grid * torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, points, 1)
    return grid.reshape(-1)  # [H*L*P*2]


class MultiScaleDeformableAttention(nn.Module):
    """Queries [B, Q, D] attend to `points` bilinear samples per head and level of the value maps."""

    def __init__(
        self, d_model: int, heads: int = 8, levels: int = 1, points: int = 4, learn_offsets: bool = True
    ) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ConfigError(f"deformable attention: width {d_model} is not divisible by heads={heads}")
        self.d_model, self.heads, self.levels, self.points = d_model, heads, levels, points
        # learn_offsets False: every query samples the fixed radial pattern around its reference point
        # (Deformable-DETR's initial offsets, kept): an ablation that takes the "deformable" out.
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2) if learn_offsets else None
        self.register_buffer("fixed_offsets", _radial_offsets(heads, levels, points), persistent=False)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.probe = AttentionProbe("cross")
        self.locations = SamplingLocations()
        self.last_sampling_locations: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR's init: radial offset bias, zero attention logits (uniform weights), xavier."""
        if self.sampling_offsets is not None:
            nn.init.zeros_(self.sampling_offsets.weight)
            with torch.no_grad():
                self.sampling_offsets.bias.copy_(_radial_offsets(self.heads, self.levels, self.points))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        shapes: Sequence[Shape2d],
    ) -> torch.Tensor:
        """query [B, Q, D] (position already added), reference_points [B, Q, L, 2] (x, y) in [0, 1],
        value [B, S, D] with S = sum h*w over `shapes` -> [B, Q, D]."""
        b, q, _ = query.shape
        if len(shapes) != self.levels or value.shape[1] != sum(h * w for h, w in shapes):
            raise ShapeError(
                f"deformable attention: value has {value.shape[1]} tokens but shapes {list(shapes)} "
                f"({self.levels} level(s) expected) declare {sum(h * w for h, w in shapes)}"
            )
        heads, levels, points = self.heads, self.levels, self.points
        v = self.value_proj(value).view(b, value.shape[1], heads, self.d_model // heads)  # [B, S, H, Dh]
        if self.sampling_offsets is not None:
            offsets = self.sampling_offsets(query).view(b, q, heads, levels, points, 2)
        else:
            offsets = self.fixed_offsets.to(query.dtype).view(1, 1, heads, levels, points, 2).expand(b, q, -1, -1, -1, -1)
        logits = self.attention_weights(query).view(b, q, heads, levels * points)
        # Probe sees [B, H, Q, L*P]: weights over sampled points (see module docstring for patches).
        probs = self.probe(logits.softmax(-1).transpose(1, 2)).transpose(1, 2)  # [B, Q, H, L*P]
        # Offsets are in cells of each level's map; normalise by (w, h) to the [0, 1] frame.
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locs = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        flat = self.locations(locs.permute(0, 2, 1, 3, 4, 5).flatten(3, 4))  # [B, H, Q, L*P, 2]
        self.last_sampling_locations = flat.detach()
        locs = flat.unflatten(3, (levels, points)).permute(0, 2, 1, 3, 4, 5)  # [B, Q, H, L, P, 2]
        out = deformable_sample(v, shapes, locs, probs.view(b, q, heads, levels, points))  # [B, Q, D]
        return self.output_proj(out)
