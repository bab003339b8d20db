"""The two baselines the 2025 benchmarks found hard to beat: random selection and plain pooling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.options.base import square_side
from deco.reducers.base import Cues, Grid, Reduced, Reducer, gather_tokens

if TYPE_CHECKING:
    from deco.model.multimodal import DecoModel


class RandomReducer(Reducer):
    """Keep `budget` tokens chosen uniformly at random, in raster order (UniPruneBench's / VTC-Bench's
    "random" baseline; no reference repository: the rule is one line).

    One random subset per `seed` and token count, the same for every image: an answer then does not depend
    on which batch the image came in (batched = one by one), and seeds give the spread. Per-image draws
    would make a batch's answers depend on its order.
    """

    stage = "tokens"

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        gen = torch.Generator().manual_seed(int(self.spec.option("seed")))
        keep = torch.randperm(x.shape[1], generator=gen)[: self.budget].sort().values.to(x.device)
        index = keep.unsqueeze(0).expand(x.shape[0], -1)  # [I, K]
        return Reduced(gather_tokens(x, index), index)


class PoolReducer(Reducer):
    """2D adaptive average pooling of the projected tokens on their grid to sqrt(K) x sqrt(K), untrained.

    DeCo pools *before* a projector trained on pooled features (projectors/pooling.py); here the projector
    was trained on every patch and sees pooled tokens only at inference: the "reduce" side of "train a
    compressor vs reduce at inference". Pooling in LLM width after the MLP is PLLaVA's order.
    """

    stage = "tokens"

    def check(self, model: DecoModel) -> None:
        super().check(model)
        square_side(self.budget, "pool budget")  # fails at attach, before any image is seen
        grid = self.token_grid(model)
        if grid is None:
            raise ConfigError(f"--reduce {self.spec}: pool needs the projector's tokens on a grid; "
                              f"'{model.projector.name}' has none")

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        if grid is None:
            raise ConfigError(f"--reduce {self.spec}: pool needs the projector's tokens on a grid")
        side = square_side(self.budget, "pool budget")
        h, w = grid
        if side > min(h, w):
            raise ConfigError(f"--reduce {self.spec}: cannot pool a {h}x{w} token grid up to {side}x{side}")
        image = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)  # [I, D, h, w]
        pooled = nn.functional.adaptive_avg_pool2d(image, (side, side)).flatten(2).transpose(1, 2)  # [I, K, D]
        eye = torch.eye(h * w, device=x.device).view(h * w, 1, h, w)
        weights = nn.functional.adaptive_avg_pool2d(eye, (side, side)).flatten(1).T  # [K, M] the pooling matrix
        return Reduced(pooled, torch.full(pooled.shape[:2], -1, dtype=torch.long, device=x.device),
                       weights.unsqueeze(0).expand(x.shape[0], -1, -1))
