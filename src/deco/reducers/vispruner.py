"""VisPruner (ICCV 2025): half the budget by the tower's attention, the rest the most diverse of the others."""

from __future__ import annotations

import torch

from deco.errors import ConfigError
from deco.reducers.base import Cues, Grid, Reduced, Reducer, gather_tokens


def vispruner_indices(features: torch.Tensor, importance: torch.Tensor, budget: int, important_ratio: float
                      ) -> torch.Tensor:
    """features [I, N, D], importance [I, N] -> kept patch indices [I, budget], sorted.

    Follows `LlavaMetaForCausalLM.encode_images` of Theia-4869/VisPruner (llava/model/llava_arch.py; read in
    its anonymous-4869/VisPruner copy):
    important = the int(budget * ratio) patches with the most attention; the others (in falling
    attention order) are thinned until the diverse share is left: split them into even and odd places,
    score each even token by its highest cosine similarity to an odd one, drop the r = min(8, excess)
    most similar even tokens, repeat.
    """
    batch = torch.arange(features.shape[0], device=features.device)[:, None]
    unit = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_important = int(budget * important_ratio)
    n_diverse = budget - n_important
    order = importance.argsort(dim=-1, descending=True)  # [I, N]
    important, residual = order[:, :n_important], order[:, n_important:]
    while True:
        r = min(8, residual.shape[1] - n_diverse)
        if r <= 0:
            break
        tokens = unit[batch, residual]  # [I, R, D]
        a, b = tokens[:, ::2], tokens[:, 1::2]
        scores = (a @ b.transpose(-1, -2)).max(dim=-1).values  # [I, R/2]
        distinct = scores.argsort(dim=-1, descending=True)[:, r:]  # keep all but the r most redundant
        residual = torch.cat([residual[:, ::2][batch, distinct], residual[:, 1::2]], dim=-1)
    return torch.cat([important, residual], dim=-1).sort(dim=-1).values


class VisPrunerReducer(Reducer):
    """VisPruner on the tower's patch features before a per-patch projector, as its LLaVA code does.

    Differs from the reference only where the tower has no [CLS] (importance = attention received,
    averaged over patch queries; see deco.reducers.tower).
    """

    stage = "vision"
    needs_tower_attention = True

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        ratio = float(self.spec.option("important_ratio"))
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"--reduce {self.spec}: important_ratio must be in [0, 1]")
        assert cues.importance is not None
        index = vispruner_indices(x, cues.importance, self.budget, ratio)
        return Reduced(gather_tokens(x, index), index)
