"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021), the rules R-GAE builds on.

Notation: for one explained output, every attention layer gives a map A [heads, Q, K] and its
gradient dA. The layer's contribution is Abar = mean_h clamp(dA * A, min=0) (their eq. 5).
Relevance matrices start from the identity (each token explains itself) and are updated layer by
layer in forward order:
- self-attention among tokens s:           R_ss += Abar_ss @ R_ss,  R_si += Abar_ss @ R_si  (eqs. 6-7)
- cross-attention s -> another set i:      R_si += norm(R_ss)^T @ Abar_si @ norm(R_ii)      (eq. 10)
  where norm(R) = I + row_normalise(R - I) (eqs. 8-9: the residual normalisation). In a projector the
  patches i are never updated (no attention among them), so R_ii = I and norm(R_ii) = I.
All functions take a leading batch dimension: each batch element can explain a different output.
"""

from __future__ import annotations

import torch


def head_mean_relevance(probs: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Abar = mean over heads of clamp(grad * A, min=0): [B, heads, Q, K] -> [B, Q, K] (float32)."""
    return (grad.float() * probs.float()).clamp(min=0).mean(dim=1)


def normalise_residual(r: torch.Tensor) -> torch.Tensor:
    """I + row-normalised (R - I) for square [B, S, S] relevance (Chefer eqs. 8-9).

    Rows whose non-identity part is all zero (nothing mixed in yet) keep the identity, as the
    public implementation does with its zero-row guard, instead of producing 0/0.
    """
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    hat = r - eye
    sums = hat.sum(dim=-1, keepdim=True)
    sums = torch.where(sums == 0, torch.ones_like(sums), sums)
    return hat / sums + eye


def self_attention_rule(
    r_ss: torch.Tensor, r_si: torch.Tensor, cam_ss: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Updates for a self-attention layer over s: (R_ss + Abar R_ss, R_si + Abar R_si)."""
    return r_ss + cam_ss @ r_ss, r_si + cam_ss @ r_si


def cross_attention_addition(r_ss: torch.Tensor, cam_si: torch.Tensor) -> torch.Tensor:
    """The addition to R_si from a cross-attention layer s -> i with unchanged i (R_ii = I): eq. 10."""
    return normalise_residual(r_ss).transpose(-1, -2) @ cam_si


def decoder_row(cams: list[torch.Tensor], position: torch.Tensor) -> torch.Tensor:
    """Row `position` of R = (I + Abar_L) ... (I + Abar_1) for a stack of self-attention layers.

    cams: per layer [B, T, T] (forward order); position: [B] long. Returns [B, T]. Equal to running
    R <- R + Abar @ R from the identity and reading one row, but O(T^2) per layer instead of O(T^3):
    the row vector is pushed through the layers from the last to the first.
    """
    b, t, _ = cams[0].shape
    row = torch.zeros(b, t, dtype=cams[0].dtype, device=cams[0].device)
    row[torch.arange(b), position] = 1.0
    for cam in reversed(cams):
        row = row + (row.unsqueeze(1) @ cam).squeeze(1)
    return row


def decoder_relevance(cams: list[torch.Tensor]) -> torch.Tensor:
    """The full matrix R [B, T, T] of the self-attention rule from the identity (reference for tests)."""
    b, t, _ = cams[0].shape
    r = torch.eye(t, dtype=cams[0].dtype, device=cams[0].device).expand(b, t, t).clone()
    for cam in cams:
        r = r + cam @ r
    return r


def row_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Divide each row (last dim) by its sum; all-zero rows stay zero (nothing to distribute)."""
    sums = maps.sum(dim=-1, keepdim=True)
    return torch.where(sums > 0, maps / sums.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))
