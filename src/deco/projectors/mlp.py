"""LLaVA's projectors: `linear` (LLaVA) and `mlp` (LLaVA-1.5's mlp2x_gelu), one token per patch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.base import Grid, Projector, ProjectorConfig, require_positive

_ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


def make_mlp(in_width: int, out_width: int, depth: int, activation: str = "gelu") -> nn.Sequential:
    """Linear(in->out) followed by (act, Linear(out->out)) x (depth-1), as LLaVA's mlpNx_gelu."""
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation '{activation}'; valid: {', '.join(_ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Linear(in_width, out_width)]
    for _ in range(depth - 1):
        layers += [_ACTIVATIONS[activation](), nn.Linear(out_width, out_width)]
    return nn.Sequential(*layers)


@dataclass
class MLPConfig(ProjectorConfig):
    """LLaVA-1.5 default: two linear layers with GELU between (mlp2x_gelu)."""

    depth: int = 2
    activation: str = "gelu"

    def validate(self) -> None:
        require_positive("depth", self.depth)
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"projector option 'activation' must be one of {', '.join(_ACTIVATIONS)}")


@dataclass
class LinearConfig(ProjectorConfig):
    """LLaVA v1: a single linear map, no options."""


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
