"""Token cross-entropy as a sum, so a step can divide by its global count of loss tokens (FACTS §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deco.data import IGNORE_INDEX


def count_loss_tokens(labels: torch.Tensor) -> int:
    """Positions that carry loss after the causal shift (label at t is predicted from position t-1)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over loss tokens of -log p(label), in float32: logits [B, T, V], labels [B, T] -> scalar.

    Dividing per micro-batch (HF's mean) and then averaging over micro-batches and ranks weights tokens
    of short batches more; summing here and dividing once by the step's global token count does not.
    """
    shift_logits = logits[:, :-1].float()  # [B, T-1, V]
    shift_labels = labels[:, 1:].to(shift_logits.device)  # [B, T-1]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
