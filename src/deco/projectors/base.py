"""The contract every projector follows: vision features on a patch grid in, LLM-width tokens out."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from deco.errors import ShapeError

# The options side of the contract is torch-free (config validation uses it); re-exported here.
from deco.projectors.options.base import Grid, ProjectorConfig, parse_grid, require_positive, square_side

__all__ = ["Grid", "Projector", "ProjectorConfig", "init_normal_", "parse_grid", "require_positive", "square_side"]


class Projector(nn.Module):
    """Maps vision features [B, N, Dv] laid on an (h, w) patch grid to LLM tokens [B, M, Dl].

    Subclasses set `config_class` and `description`, implement `num_tokens` (so the data pipeline
    can lay out M placeholders before anything runs) and `project` (the actual computation).
    """

    config_class: ClassVar[type[ProjectorConfig]] = ProjectorConfig
    description: ClassVar[str] = ""
    name: ClassVar[str] = ""
    # Projectors that are numerically fragile in half precision (Honeybee's D-Abstractor) stay fp32.
    keeps_fp32: ClassVar[bool] = False
    # What the model must feed the projector, copied from `config_class` (declared there, torch-free, so
    # config validation knows it before torch loads; see options/base.py):
    # - supports_time: takes videos, grids (frames, h, w) (projectors/video.py).
    # - wants_multi_level: also reads several encoder layers (TokenPacker's keys/values); forward then
    #   takes `multi_level=[B, N, levels*Dv]`, those layers' patch features concatenated on the channel
    #   axis in the order listed, and the instance's `levels` says how many. DecoModel supplies them;
    #   called with `features` alone, such a projector falls back on its own.
    # - reference_layers: the hidden states the reference concatenates (default of vision.multi_level_layers).
    supports_time: ClassVar[bool] = False
    wants_multi_level: ClassVar[bool] = False
    reference_layers: ClassVar[tuple[int, ...] | None] = None
    levels: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.supports_time = cls.config_class.takes_video
        cls.wants_multi_level = cls.config_class.multi_level
        cls.reference_layers = cls.config_class.reference_layers

    def __init__(self, config: ProjectorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__()
        require_positive("vision_width", vision_width)
        require_positive("llm_width", llm_width)
        config.validate()
        self.config = config
        self.vision_width = vision_width
        self.llm_width = llm_width

    def num_tokens(self, grid: Grid) -> int:
        """Number of output tokens M for an input patch grid (h, w)."""
        raise NotImplementedError

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        """[B, N, Dv] on grid (h, w) -> [B, M, Dl]; inputs are already validated."""
        raise NotImplementedError

    def check_grid(self, grid: Grid) -> None:
        """Raise ShapeError when this projector cannot take an input grid (e.g. pooling up)."""

    def forward(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Validate shapes, then project. Errors name both the expected and the received shape."""
        if features.dim() != 3:
            raise ShapeError(f"{self.name}: expected features [B, N, Dv], got shape {tuple(features.shape)}")
        h, w = grid
        if features.shape[1] != h * w:
            raise ShapeError(
                f"{self.name}: features have N={features.shape[1]} tokens but the grid {h}x{w} "
                f"declares {h * w}"
            )
        if features.shape[2] != self.vision_width:
            raise ShapeError(
                f"{self.name}: features have width Dv={features.shape[2]} but the projector was "
                f"built for vision width {self.vision_width}"
            )
        self.check_grid(grid)
        out = self.project(features, grid)
        return out

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total (or trainable) parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """Honeybee/BLIP-2 style init: N(0, std) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
