"""The contract every token reducer follows, and how one runs inside a DecoModel's image encoding.

A reducer takes an image's M visual tokens and keeps a budget K <= M of them (or merges them into K),
without training. It declares K before anything runs (`num_tokens`), so the processor lays out K
placeholders per image, exactly as a projector declares its M. Where it acts (`stage`):
- "vision": on the tower's patch features [I, N, Dv]; the (token-wise) projector then maps the K kept
  patches. This is where VisionZip and VisPruner act in their LLaVA code.
- "tokens": on the projector's output [I, M, Dl], so any projector works.
- "llm": inside the LLM (FastV); the input keeps all M tokens and the reducer hooks the layers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from deco.errors import ConfigError
from deco.model.anyres import token_grid_of
from deco.reducers.cues import Cues
from deco.reducers.registry import ReduceSpec

if TYPE_CHECKING:
    from deco.model.multimodal import DecoModel

Grid = tuple[int, int]


@dataclass
class Reduced:
    """A reducer's output: the kept tokens and, for each, where it came from."""

    values: torch.Tensor  # [I, K, D]
    sources: torch.Tensor  # [I, K] index of the input token kept; -1 for a merged (contextual/pooled) token
    weights: torch.Tensor | None = None  # [I, K, M] how each output mixes the inputs (None: one-hot of sources)

    def maps(self, m: int) -> torch.Tensor:
        """[I, K, M] row-stochastic weights of each kept token over the M input tokens (relevance analysis:
        for a per-patch projector these are the kept tokens' Query-to-Patch maps)."""
        if self.weights is not None:
            return self.weights
        if bool((self.sources < 0).any()):
            raise ValueError("a merged token without weights has no map")
        out = torch.zeros(*self.sources.shape, m, device=self.sources.device)
        return out.scatter_(2, self.sources.unsqueeze(-1), 1.0)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [I, N, D], index [I, K] -> x's rows at index: [I, K, D]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Reducer:
    """Base class: subclasses set `stage` (from the registry) and implement `reduce` (or LLM hooks)."""

    stage: ClassVar[str] = "tokens"
    needs_tower_attention: ClassVar[bool] = False

    def __init__(self, spec: ReduceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.budget = spec.budget
        self.input_tokens: int | None = None  # M, set by attach
        self.last: Reduced | None = None  # the latest batch's kept tokens (relevance analysis reads it)
        self.seconds = 0.0  # time spent choosing tokens (tower attention included), summed over calls

    def num_tokens(self, m: int) -> int:
        """Tokens per image in the LLM's input when the projector gives m (llm-stage reducers keep m)."""
        if self.budget > m:
            raise ConfigError(f"--reduce {self.spec}: the budget {self.budget} is more than the {m} tokens per "
                              f"image this model has")
        return m if self.stage == "llm" else self.budget

    def check(self, model: DecoModel) -> None:
        """Raise ConfigError when this reducer cannot act on `model` (checked once, by attach)."""
        if model.supports_time or model.anyres is not None:
            raise ConfigError(f"--reduce {self.name}: token reducers take single-view images; this model "
                              "takes videos or AnyRes tiles")
        if model.multi_level_layers is not None:
            raise ConfigError(f"--reduce {self.name}: not for multi-level projectors (TokenPacker)")
        if self.stage == "vision" and not type(model.projector.config).tokenwise:
            raise ConfigError(
                f"--reduce {self.name} chooses patches before the projector, which needs a per-patch projector "
                f"(mlp, linear); '{model.projector.name}' mixes patches: use random, pool or divprune after it")

    def attach(self, model: DecoModel) -> None:
        """Check the model, record M and install any hooks (llm-stage reducers)."""
        self.check(model)
        self.input_tokens = model.projector.num_tokens(model.vision_tower.grid)
        self.num_tokens(self.input_tokens)

    def detach(self, model: DecoModel) -> None:
        """Undo what attach installed on shared modules (hooks, the LLM's attention kernel)."""

    def token_grid(self, model: DecoModel) -> Grid | None:
        """The projector's output tokens as a grid, None if they are not one (a Q-Former's queries)."""
        return token_grid_of(model.projector, model.vision_tower.grid)  # type: ignore[return-value]

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        """x [I, M, D] on `grid` -> Reduced with K = budget tokens per image."""
        raise NotImplementedError

    def prepare_llm(self, is_image: torch.Tensor) -> None:
        """Called with the batch's placeholder mask [B, T] before the LLM runs (llm-stage reducers)."""

    def encode(self, model: DecoModel, pixel_values: torch.Tensor) -> torch.Tensor:
        """[I, 3, S, S] -> the reduced tokens [I, K, Dl] (what DecoModel.encode_images returns)."""
        if self.stage == "llm":
            return model.project(model.vision_tower(pixel_values), model.vision_tower.grid)
        if self.needs_tower_attention:
            from deco.reducers.tower import tower_cues

            features, cues = tower_cues(model.vision_tower, pixel_values)
        else:
            features, cues = model.vision_tower(pixel_values), Cues()
        self.seconds += cues.seconds  # the attention map's extra cost, not the encoder pass
        grid = model.vision_tower.grid
        if self.stage == "vision":
            start = time.perf_counter()
            self.last = self.reduce(features, grid, cues)
            self.seconds += time.perf_counter() - start
            k = self.last.values.shape[1]
            return model.project(self.last.values, (1, k))  # a per-patch projector takes any token count
        tokens = model.project(features, grid)  # [I, M, Dl]
        start = time.perf_counter()
        self.last = self.reduce(tokens, self.token_grid(model), cues)
        self.seconds += time.perf_counter() - start
        return self.last.values
