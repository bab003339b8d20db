"""MM1's attention pooling connector (McKinney et al., arXiv 2403.09611, Sec. 3.2 "VL Connector").

MM1 names only the idea: k learnable queries pool the image tokens by attention (k = 64 or 144).
Choices made here where the paper is silent:
- one multi-head cross-attention layer with query/key/value/output projections (with bias) in the
  vision width; queries are the learnable embeddings, keys/values the raw vision features (no
  LayerNorm on them, as LLaVA's MLP also takes them raw); no residual from the queries, so each
  output is purely a weighted sum of projected patches (a pooling);
- then LayerNorm and LLaVA's 2-layer GELU MLP to the LLM width;
- queries start N(0, 0.02) (BLIP-2/Honeybee practice); linear layers keep PyTorch's default init.
Parameters at Dv=1024, Dl=4096, 144 queries: 25,327,616.
"""

from __future__ import annotations

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.attention import AttentionProbe, attend
from deco.projectors.base import Grid, Projector
from deco.projectors.mlp import make_mlp
from deco.projectors.options.attnpool import AttnPoolConfig


class AttentionPoolProjector(Projector):
    """Learnable queries cross-attend once to the patches, then LayerNorm + MLP: M = num_queries."""

    config_class = AttnPoolConfig
    description = "MM1 attention pooling: learnable queries, one cross-attention layer, LayerNorm, MLP"

    def __init__(self, config: AttnPoolConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        if vision_width % config.heads:
            raise ConfigError(
                f"attnpool: vision width {vision_width} must be divisible by option 'heads'={config.heads}"
            )
        self.heads = config.heads
        self.queries = nn.Parameter(torch.randn(config.num_queries, vision_width) * config.query_init_std)
        self.q_proj = nn.Linear(vision_width, vision_width)
        self.k_proj = nn.Linear(vision_width, vision_width)
        self.v_proj = nn.Linear(vision_width, vision_width)
        self.out_proj = nn.Linear(vision_width, vision_width)
        self.probe = AttentionProbe("cross")
        self.norm = nn.LayerNorm(vision_width)
        self.mlp = make_mlp(vision_width, llm_width, config.mlp_depth, config.activation)

    def num_tokens(self, grid: Grid) -> int:
        return self.config.num_queries

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, heads, n, d/heads]

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        b = features.shape[0]
        q = self._split(self.q_proj(self.queries).unsqueeze(0).expand(b, -1, -1))  # [B, heads, M, dh]
        k, v = self._split(self.k_proj(features)), self._split(self.v_proj(features))  # [B, heads, N, dh]
        pooled = attend(q, k, v, self.probe).transpose(1, 2).flatten(2)  # [B, M, Dv]
        return self.mlp(self.norm(self.out_proj(pooled)))  # [B, M, Dl]
