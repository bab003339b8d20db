"""Options of the LLaVA linear and MLP projectors (projectors/mlp.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deco.projectors.options.base import ProjectorConfig, check_activation, require_positive


@dataclass
class MLPConfig(ProjectorConfig):
    """LLaVA-1.5 default: two linear layers with GELU between (mlp2x_gelu)."""

    tokenwise: ClassVar[bool] = True

    depth: int = 2
    activation: str = "gelu"

    def validate(self) -> None:
        require_positive("depth", self.depth)
        check_activation(self.activation)


@dataclass
class LinearConfig(ProjectorConfig):
    """LLaVA v1: a single linear map, no options."""

    tokenwise: ClassVar[bool] = True
