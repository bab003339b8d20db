"""LLaVA's projectors: `linear` (LLaVA) and `mlp` (LLaVA-1.5's mlp2x_gelu), one token per patch."""

from __future__ import annotations

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.base import Grid, Projector
from deco.projectors.options.base import ACTIVATIONS
from deco.projectors.options.mlp import LinearConfig, MLPConfig

# Keyed by the torch-free names options validate against (a missing module fails at import).
_MODULES = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}
_ACTIVATIONS = {name: _MODULES[name] for name in ACTIVATIONS}


def make_mlp(in_width: int, out_width: int, depth: int, activation: str = "gelu") -> nn.Sequential:
    """Linear(in->out) followed by (act, Linear(out->out)) x (depth-1), as LLaVA's mlpNx_gelu."""
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation '{activation}'; valid: {', '.join(_ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Linear(in_width, out_width)]
    for _ in range(depth - 1):
        layers += [_ACTIVATIONS[activation](), nn.Linear(out_width, out_width)]
    return nn.Sequential(*layers)


class MLPProjector(Projector):
    """Per-patch MLP, no compression: M = N."""

    config_class = MLPConfig
    description = "LLaVA-1.5 MLP (Linear, GELU, Linear) on every patch; no compression"

    def __init__(self, config: MLPConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.mlp = make_mlp(vision_width, llm_width, config.depth, config.activation)

    def num_tokens(self, grid: Grid) -> int:
        return grid[0] * grid[1]

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        return self.mlp(features)  # [B, N, Dl]


class LinearProjector(Projector):
    """Per-patch linear map (LLaVA v1), M = N."""

    config_class = LinearConfig
    description = "LLaVA linear map on every patch; no compression"

    def __init__(self, config: LinearConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.linear = nn.Linear(vision_width, llm_width)

    def num_tokens(self, grid: Grid) -> int:
        return grid[0] * grid[1]

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        return self.linear(features)
