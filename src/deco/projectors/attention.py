"""Attention that can be explained: every attention map inside a projector passes through a probe.

`AttentionProbe` is an identity module applied to attention probabilities [B, heads, Q, K]. Forward
hooks on probes see each map, and `tensor.register_hook` on it gives its gradient, so one relevance
implementation (deco.analysis) serves every projector without model-specific forks.
`kind` says whether the map is self-attention (Q and K are the same token set) or cross-attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AttentionProbe(nn.Module):
    """Identity on attention probabilities; a stable place for hooks to read maps and gradients."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("self", "cross"):
            raise ValueError(f"AttentionProbe kind must be 'self' or 'cross', got {kind!r}")
        self.kind = kind

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return probs


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    probe: AttentionProbe,
    mask: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
) -> torch.Tensor:
    """Explicit softmax attention on [B, H, Q, d] x [B, H, K, d] -> [B, H, Q, d], through `probe`.

    `mask` is additive (0 keep, -inf drop), broadcastable to [B, H, Q, K]. Explicit rather than
    fused SDPA so the probabilities exist as a tensor that hooks can capture.
    """
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # [B, H, Q, K]
    if mask is not None:
        scores = scores + mask
    probs = probe(scores.softmax(dim=-1))
    if dropout is not None:
        probs = dropout(probs)
    return probs @ value
