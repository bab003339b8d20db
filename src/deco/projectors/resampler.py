"""Flamingo's Perceiver resampler (arXiv 2204.14198, Sec. 2.1 and App. A.1.1) as a projector.

A fixed set of learnable latents reads the patches. In each layer the latents attend to the
LayerNormed features concatenated with the LayerNormed latents themselves (Flamingo's choice, so the
latents can also exchange information), then pass a feed-forward block; both are residual. Linear
layers inside the resampler have no bias and latents start N(0, 1), as in the public Flamingo
re-implementations (lucidrains/flamingo-pytorch, OpenFlamingo); the paper does not say.
Parameters at Dv=1024 (= dim), Dl=4096, defaults: 67,217,408.

Attention maps go through one probe of kind "cross" per layer, shaped [B, heads, L, N + L]: the
first N key columns are the patches in row-major grid order, the LAST num_latents columns are the
latents, so the relevance analysis splits them with `probs[..., :N]` / `probs[..., N:]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deco.projectors.attention import AttentionProbe, attend
from deco.projectors.base import Grid, Projector
from deco.projectors.options.resampler import ResamplerConfig


class PerceiverAttention(nn.Module):
    """Latents attend to [LN(features); LN(latents)]; keys/values share one projection."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.probe = AttentionProbe("cross")

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, heads, n, dh]

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.norm_latents(latents)  # [B, L, D]
        kv_input = torch.cat([self.norm_media(media), latents], dim=1)  # [B, N + L, D]; latents last
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        out = attend(self._split(self.to_q(latents)), self._split(k), self._split(v), self.probe)
        return self.to_out(out.transpose(1, 2).flatten(2))  # [B, L, D]


class FeedForward(nn.Sequential):
    """LayerNorm, Linear(D -> mult*D), GELU, Linear back (pre-LN; the caller adds the residual)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim, bias=False),
            nn.GELU(),
            nn.Linear(mult * dim, dim, bias=False),
        )


class PerceiverResampler(Projector):
    """Perceiver resampler + Linear(dim -> Dl): M = num_latents tokens for any input grid."""

    config_class = ResamplerConfig
    description = "Flamingo Perceiver resampler: latents attend to [patches; latents], then Linear"

    def __init__(self, config: ResamplerConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        dim = config.dim or vision_width
        self.input_proj = nn.Linear(vision_width, dim) if dim != vision_width else nn.Identity()
        self.pos_emb: nn.Parameter | None = None
        if config.pos_emb_grid is not None:
            h, w = config.pos_emb_grid  # type: ignore[misc]
            self.pos_emb = nn.Parameter(torch.randn(1, dim, h, w) * 0.02)  # [1, D, h, w]
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim))  # [L, D]
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, config.heads, config.dim_head), FeedForward(dim, config.ff_mult)])
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, llm_width)

    def num_tokens(self, grid: Grid) -> int:
        return self.config.num_latents

    def _position(self, grid: Grid) -> torch.Tensor:
        pos = self.pos_emb  # [1, D, h0, w0]
        if tuple(pos.shape[2:]) != tuple(grid):
            pos = F.interpolate(pos, size=grid, mode="bilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2)  # [1, N, D]

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        x = self.input_proj(features)  # [B, N, D]
        if self.pos_emb is not None:
            x = x + self._position(grid)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)  # [B, L, D]
        for attn, ff in self.layers:
            latents = latents + attn(x, latents)
            latents = latents + ff(latents)
        return self.proj(self.norm(latents))  # [B, L, Dl]
