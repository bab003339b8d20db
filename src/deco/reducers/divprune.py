"""DivPrune (CVPR 2025): keep the tokens that maximise the minimum pairwise distance (greedy max-min)."""

from __future__ import annotations

import torch

from deco.reducers.base import Cues, Grid, Reduced, Reducer, gather_tokens


def divprune_indices(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """tokens [M, D] -> the k indices DivPrune picks, in the order it picks them.

    Follows `DivPrune(visual_feature_vectors, image_feature_length, ...)` of vbdi/divprune (its LLaVA
    integration; the function as copied in lmms-eval/LLaVA forks): distance = 1 - cosine similarity; the
    first token is the one farthest from its nearest neighbour (second-smallest entry of its column, the
    smallest being itself), then each step adds the token whose minimum distance to the chosen set is
    largest. Needs no attention map.
    """
    unit = tokens.float() / tokens.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    dist = 1.0 - unit @ unit.T  # [M, M]
    chosen = torch.empty(k, dtype=torch.long, device=tokens.device)
    nearest = dist.topk(2, dim=0, largest=False).values[1] if dist.shape[0] > 1 else dist[0]
    chosen[0] = nearest.argmax()
    closest = dist[chosen[0]].clone()  # min distance of every token to the chosen set
    for i in range(1, k):
        chosen[i] = closest.argmax()
        closest = torch.minimum(closest, dist[chosen[i]])
    return chosen


class DivPruneReducer(Reducer):
    """DivPrune on the projected tokens (the LLM's visual inputs, where its LLaVA code prunes), per image.

    Differs from the reference: the kept tokens go back to raster order (the reference keeps them in the
    order picked), so the LLM reads them as the image lays them out, as VisionZip and VisPruner do; the
    running minimum replaces re-taking the min over all chosen rows each step (same result, O(MK) not O(MK^2)).
    """

    stage = "tokens"

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        index = torch.stack([divprune_indices(row, self.budget).sort().values for row in x])  # [I, K]
        return Reduced(gather_tokens(x, index), index)
