"""Token cross-entropy as a sum, so a step can divide by its global count of loss tokens (the
gradient-accumulation loss fix of HF transformers' Trainer, late 2024).

The loss is computed over the vocabulary in row chunks, in float32, without ever holding the whole
[B*T, V] logits in float32: a plain `F.cross_entropy(logits.float(), ...)` keeps an fp32 copy of the
logits and their fp32 log-probabilities for backward, which at LLaVA's shapes (2048 tokens x 32k
vocab x 16 samples) is 4 GiB each. Backward recomputes each chunk's softmax instead of storing it.
"""

from __future__ import annotations

from typing import Any

import torch

from deco.data import IGNORE_INDEX

# Float32 elements per chunk (64 MiB): 524 token positions at a 32k vocabulary. Smaller chunks only add
# kernel launches; larger ones hold more float32 at once.
CHUNK_ELEMENTS = 1 << 24


def count_loss_tokens(labels: torch.Tensor) -> int:
    """Positions that carry loss after the causal shift (label at t is predicted from position t-1)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def shifted_labels(labels: torch.Tensor) -> torch.Tensor:
    """labels [B, T] -> targets [B, T]: position t predicts label t+1; the last position predicts nothing.

    Shifting the labels instead of the logits keeps the logits contiguous (`logits[:, :-1]` would make
    reshape copy all of them).
    """
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Sum of -log softmax(logits)[target] over rows whose target is not IGNORE_INDEX, in float32."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, logits.shape[0], chunk):
            rows = logits[start : start + chunk].float()  # [n, V]
            tgt = targets[start : start + chunk]
            keep = tgt != IGNORE_INDEX
            picked = rows.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1)  # [n]
            total += ((torch.logsumexp(rows, dim=1) - picked) * keep).sum()
        ctx.save_for_backward(logits, targets)
        ctx.chunk = chunk
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, targets = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk):
            tgt = targets[start : start + ctx.chunk]
            g = torch.softmax(logits[start : start + ctx.chunk].float(), dim=1)  # d(logsumexp)/d(logits)
            g.scatter_add_(1, tgt.clamp(min=0).unsqueeze(1), torch.full_like(g[:, :1], -1.0))
            # In place: one float32 chunk at a time, written into the gradient in the logits' dtype.
            g.mul_(grad_out).masked_fill_((tgt == IGNORE_INDEX).unsqueeze(1), 0.0)
            grad[start : start + ctx.chunk].copy_(g)
        return grad, None, None


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Sum over loss tokens of -log p(label), in float32: logits [B, T, V], labels [B, T] -> scalar.

    Dividing per micro-batch (HF's mean) and then averaging over micro-batches and ranks weights tokens
    of short batches more; summing here and dividing once by the step's global token count does not.
    """
    targets = shifted_labels(labels.to(logits.device)).reshape(-1)  # [B*T]
    chunk = chunk or max(1, CHUNK_ELEMENTS // logits.shape[-1])  # rows per chunk
    return _ChunkedCrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), targets, chunk)
