"""TokenPacker (Li et al. 2024, arXiv 2407.02392): coarse point queries, each attending to its own region.

Reference: CircleRadon/TokenPacker, llava/model/multimodal_projector/builder.py (`TokenPacker`).
- Point queries: the single-level features (the LLaVA layer, hidden_states[-2]) bilinearly resized from
  h x w to (h/s) x (w/s), then Linear(Dv -> E, no bias) and LayerNorm.
- Keys/values: multi-level features (the reference concatenates CLIP hidden states 12, 16, 22, 23, so
  4 * Dv wide) through Linear(L*Dv -> E), GELU, Linear(E -> E) and LayerNorm, separately for k and v.
- Region-to-point injection: query (i, j) attends only to the s x s patches it was downsampled from,
  with a standard multi-head attention (E wide, 8 heads of 128 at E=1024; in/out projections), then the
  LLaVA MLP Linear(E -> Dl), GELU, Linear(Dl -> Dl). No residual around the attention.
At Dv=E=1024, Dl=4096, L=4, s=2 that is 36,722,688 parameters.

Multi-level features: DecoModel asks the vision tower for the layers in `vision.multi_level_layers`
(default: the reference's hidden states 12, 16, 22, 23 of CLIP-L's 24 layers, CLS dropped, in that
order; CircleRadon/TokenPacker, llava/model/multimodal_encoder/clip_encoder.py `feature_select`) in the
same encoder pass as the main layer, and passes them concatenated to `forward` as `multi_level=`
[B, N, levels*Dv]. Called with `features` alone (the bench, the relevance analysis, the contract
tests), every level is that one map, as if the tower returned the same layer `levels` times; the weight
shapes and parameter count are the same either way. `levels=1` is the purely single-level variant.

Attention maps: the probe (kind "cross") sees the per-region probabilities [B, heads, M, s*s]. Key k
of query m is patch `region_index(grid)[m, k]` (row-major index into the h x w grid);
`patch_attention` scatters a region map into the dense [B, heads, M, N] query-to-patch map (zeros
outside each query's region).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deco.errors import ConfigError, ShapeError
from deco.projectors.attention import AttentionProbe
from deco.projectors.base import Grid, Projector
from deco.projectors.mlp import make_mlp
from deco.projectors.options.tokenpacker import TokenPackerConfig


class TokenPackerProjector(Projector):
    """Downsampled point queries cross-attend to their own s x s region of patches, then an MLP."""

    config_class = TokenPackerConfig
    description = "TokenPacker: coarse point queries inject their s x s region by attention, then an MLP"

    def __init__(self, config: TokenPackerConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.scale = config.scale_factor
        self.levels = config.levels
        self.heads = config.num_heads
        embed = config.embed_dim if config.embed_dim is not None else vision_width
        if embed % self.heads:
            raise ConfigError(
                f"projector option 'num_heads'={self.heads} must divide the attention width "
                f"embed_dim={embed} (embed_dim defaults to the vision width)"
            )
        self.embed_dim = embed
        self.q_proj = nn.Linear(vision_width, embed, bias=False)
        self.k_proj = make_mlp(self.levels * vision_width, embed, depth=2)
        self.v_proj = make_mlp(self.levels * vision_width, embed, depth=2)
        self.ln_q = nn.LayerNorm(embed, eps=1e-6)
        self.ln_k = nn.LayerNorm(embed, eps=1e-6)
        self.ln_v = nn.LayerNorm(embed, eps=1e-6)
        # The reference's nn.MultiheadAttention, written out so the probabilities pass a probe.
        self.attn_q = nn.Linear(embed, embed)
        self.attn_k = nn.Linear(embed, embed)
        self.attn_v = nn.Linear(embed, embed)
        self.attn_out = nn.Linear(embed, embed)
        self.probe = AttentionProbe("cross")
        self.mlp = make_mlp(embed, llm_width, depth=2)
        self._multi_level: torch.Tensor | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        """Reference init: truncated N(0, 0.02) linears, zero biases; MHA's packed in-projection is xavier."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # nn.MultiheadAttention keeps its [3E, E] in_proj_weight xavier-uniform (it is not an nn.Linear).
        bound = math.sqrt(6.0 / (4 * self.embed_dim))
        for lin in (self.attn_q, self.attn_k, self.attn_v):
            nn.init.uniform_(lin.weight, -bound, bound)

    def check_grid(self, grid: Grid) -> None:
        h, w = grid
        if h % self.scale or w % self.scale:
            raise ShapeError(
                f"{self.name}: patch grid {h}x{w} is not divisible by scale_factor={self.scale}; "
                f"each query needs a full {self.scale}x{self.scale} region"
            )

    def num_tokens(self, grid: Grid) -> int:
        self.check_grid(grid)
        return (grid[0] // self.scale) * (grid[1] // self.scale)

    def region_index(self, grid: Grid, device: torch.device | None = None) -> torch.Tensor:
        """[M, s*s] long: row-major patch index of each query's keys (query row-major, keys row-major)."""
        self.check_grid(grid)
        h, w = grid
        s = self.scale
        ids = torch.arange(h * w, device=device).reshape(h // s, s, w // s, s)  # [h/s, di, w/s, dj]
        return ids.permute(0, 2, 1, 3).reshape((h // s) * (w // s), s * s)  # [M, s*s]

    def patch_attention(self, probs: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Scatter region probabilities [..., M, s*s] into the dense query-to-patch map [..., M, N]."""
        index = self.region_index(grid, probs.device).expand(*probs.shape[:-2], -1, -1)
        dense = probs.new_zeros(*probs.shape[:-1], grid[0] * grid[1])
        return dense.scatter(-1, index, probs)

    def forward(
        self, features: torch.Tensor, grid: Grid, multi_level: torch.Tensor | None = None
    ) -> torch.Tensor:
        """As `Projector.forward`; `multi_level` [B, N, levels*Dv] optionally gives real multi-level keys."""
        if multi_level is None:
            return super().forward(features, grid)
        expected = (features.shape[0], features.shape[1], self.levels * self.vision_width)
        if tuple(multi_level.shape) != expected:
            raise ShapeError(
                f"{self.name}: multi_level features must be [B, N, levels*Dv] = {list(expected)} "
                f"(levels={self.levels}, Dv={self.vision_width}), got {list(multi_level.shape)}"
            )
        self._multi_level = multi_level  # read by project(); the base forward still checks features
        try:
            return super().forward(features, grid)
        finally:
            self._multi_level = None

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        b = features.shape[0]
        h, w = grid
        s, heads = self.scale, self.heads
        kv_in = self._multi_level if self._multi_level is not None else features.repeat(1, 1, self.levels)
        key = self.ln_k(self.k_proj(kv_in))  # [B, N, E]
        value = self.ln_v(self.v_proj(kv_in))  # [B, N, E]

        # Point queries: bilinear downsampling in fp32 as the reference does (exact 2x2 mean at s=2).
        maps = features.transpose(1, 2).reshape(b, self.vision_width, h, w).float()  # [B, Dv, h, w]
        coarse = F.interpolate(maps, size=(h // s, w // s), mode="bilinear", align_corners=False)
        coarse = coarse.flatten(2).transpose(1, 2).to(features.dtype)  # [B, M, Dv]
        query = self.ln_q(self.q_proj(coarse))  # [B, M, E]

        m = coarse.shape[1]
        d = self.embed_dim // heads
        index = self.region_index(grid, features.device)  # [M, s*s]
        q = self.attn_q(query).reshape(b, m, heads, d).transpose(1, 2)  # [B, H, M, d]
        # Gather each query's s*s keys: a permutation of the N patches, nothing is duplicated.
        k = self.attn_k(key)[:, index].reshape(b, m, s * s, heads, d).permute(0, 3, 1, 2, 4)  # [B,H,M,s*s,d]
        v = self.attn_v(value)[:, index].reshape(b, m, s * s, heads, d).permute(0, 3, 1, 2, 4)
        scores = torch.einsum("bhmd,bhmkd->bhmk", q, k) / math.sqrt(d)  # [B, H, M, s*s]
        probs = self.probe(scores.softmax(dim=-1))
        out = torch.einsum("bhmk,bhmkd->bhmd", probs, v)  # [B, H, M, d]
        out = self.attn_out(out.transpose(1, 2).reshape(b, m, self.embed_dim))  # [B, M, E]
        return self.mlp(out)  # [B, M, Dl]
