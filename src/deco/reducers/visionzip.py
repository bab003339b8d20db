"""VisionZip (CVPR 2025): dominant patches by the tower's attention, plus contextual tokens merged by key similarity."""

from __future__ import annotations

import torch

from deco.errors import ConfigError
from deco.reducers.base import Cues, Grid, Reduced, Reducer, gather_tokens


def contextual_count(budget: int, option: int) -> int:
    """VisionZip's split of a budget: 64 = 54 dominant + 10 contextual (also 108+20 at 128, 162+30 at 192),
    i.e. round(budget * 10 / 64) contextual, unless the `contextual` option says otherwise (-1: that rule)."""
    return round(budget * 10 / 64) if option < 0 else int(option)


def visionzip(features: torch.Tensor, importance: torch.Tensor, keys: torch.Tensor, dominant: int,
              contextual: int) -> Reduced:
    """features [I, N, D], importance [I, N], keys [I, N, d] -> dominant + contextual tokens [I, K, D].

    Follows `CLIPVisionTower.feature_select` of dvlab-research/VisionZip (visionzip/clip_encoder.py):
    (1) dominant = top-`dominant` patches by attention, kept in raster order; (2) the rest, in raster
    order, are split into `contextual` targets (every step-th, step = R // C) and the others; (3) each
    other token joins the target with the most similar L2-normalised key; (4) a contextual token is the
    plain mean of its target and the tokens that joined it. The reference also keeps [CLS] as one of the
    dominant tokens; deco's towers drop [CLS] (as LLaVA-1.5 does), so all `dominant` are patches.
    """
    n_images, n, width = features.shape
    top = importance.topk(dominant, dim=1).indices.sort(dim=1).values  # [I, Dm]
    rest_mask = torch.ones(n_images, n, dtype=torch.bool, device=features.device)
    rest_mask.scatter_(1, top, False)
    rest = rest_mask.nonzero()[:, 1].view(n_images, n - dominant)  # [I, R] raster order
    out, sources = [gather_tokens(features, top)], [top]
    weights = [torch.zeros(n_images, dominant, n, device=features.device).scatter_(2, top.unsqueeze(-1), 1.0)]
    if contextual:
        r = n - dominant
        step = max(1, r // contextual)
        targets = torch.arange(0, r, step, device=features.device)[:contextual]
        others = torch.ones(r, dtype=torch.bool, device=features.device)
        others[targets] = False
        rest_feat, rest_keys = gather_tokens(features, rest), gather_tokens(keys, rest)
        rest_keys = rest_keys / rest_keys.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sim = rest_keys[:, others] @ rest_keys[:, targets].transpose(1, 2)  # [I, R - C, C]
        assign = torch.zeros_like(sim, dtype=features.dtype).scatter_(2, sim.argmax(-1, keepdim=True), 1.0)
        counts = 1 + assign.sum(dim=1).unsqueeze(-1)  # [I, C, 1]
        merged = (assign.transpose(1, 2) @ rest_feat[:, others] + rest_feat[:, targets]) / counts
        out.append(merged)
        sources.append(torch.full((n_images, contextual), -1, dtype=torch.long, device=features.device))
        members = torch.zeros(n_images, contextual, r, device=features.device)  # [I, C, R] over the rest
        members[:, :, others] = assign.transpose(1, 2).float()
        members[:, torch.arange(contextual), targets] = 1.0
        mixed = torch.zeros(n_images, contextual, n, device=features.device)
        mixed.scatter_(2, rest.unsqueeze(1).expand(-1, contextual, -1), members / counts.float())
        weights.append(mixed)
    return Reduced(torch.cat(out, dim=1), torch.cat(sources, dim=1), torch.cat(weights, dim=1))


class VisionZipReducer(Reducer):
    """VisionZip on the tower's patch features before a per-patch projector (where its LLaVA code acts).

    Needs the tower's attention at the feature layer (deco.reducers.tower; any kernel runs the rest). A
    tower without [CLS] ranks patches by the attention they receive, averaged over patch queries.
    """

    stage = "vision"
    needs_tower_attention = True

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        contextual = contextual_count(self.budget, int(self.spec.option("contextual")))
        if not 0 <= contextual < self.budget:
            raise ConfigError(f"--reduce {self.spec}: contextual must be in 0..{self.budget - 1}")
        assert cues.importance is not None and cues.keys is not None
        return visionzip(x, cues.importance, cues.keys, self.budget - contextual, contextual)
