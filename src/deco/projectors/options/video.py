"""Options of the video projectors (projectors/video.py): grids with a time axis (frames, h, w)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, check_activation, parse_grid, require_positive
from deco.projectors.options.qformer import QFormerConfig

Grid3 = tuple[int, int, int]


def parse_grid3(value: object, name: str = "target") -> Grid3:
    """Accept '16x12x12', [16, 12, 12] or (16, 12, 12) and return (t, h, w) of positive ints."""
    if isinstance(value, str):
        try:
            nums = [int(p) for p in value.lower().replace(" ", "").split("x")]
        except ValueError:
            raise ConfigError(f"'{name}' must look like '16x12x12', got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        nums = list(value)
    else:
        raise ConfigError(f"'{name}' must be 'TxHxW' or [t, h, w], got {value!r}")
    if len(nums) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in nums):
        raise ConfigError(f"'{name}' must be three positive ints (frames, h, w), got {value!r}")
    return (nums[0], nums[1], nums[2])


def _check_num_frames(num_frames: object, at_least: int, what: str) -> None:
    require_positive("num_frames", num_frames)  # type: ignore[arg-type]
    if not isinstance(num_frames, int):
        raise ConfigError(f"projector option 'num_frames' must be an int, got {num_frames!r}")
    if num_frames < at_least:
        raise ConfigError(f"projector option 'num_frames'={num_frames} is smaller than {what}={at_least}")


@dataclass
class Video3DConfig(ProjectorConfig):
    """3D target (frames, h, w); PLLaVA's default: 16 frames pooled to 16x12x12."""

    takes_video: ClassVar[bool] = True

    target: tuple[int, int, int] | str = (16, 12, 12)
    num_frames: int = 16
    mlp_depth: int = 2
    activation: str = "gelu"

    def __post_init__(self) -> None:
        self.target = parse_grid3(self.target, "target")

    def validate(self) -> None:
        require_positive("mlp_depth", self.mlp_depth)
        check_activation(self.activation)
        _check_num_frames(self.num_frames, self.target[0], "the temporal target")  # type: ignore[index]


@dataclass
class TemporalConfig(ProjectorConfig):
    """Pool frames only, to `frames`; every frame keeps its full patch grid."""

    takes_video: ClassVar[bool] = True

    frames: int = 4
    num_frames: int = 16
    mlp_depth: int = 2
    activation: str = "gelu"

    def validate(self) -> None:
        require_positive("frames", self.frames)
        require_positive("mlp_depth", self.mlp_depth)
        check_activation(self.activation)
        _check_num_frames(self.num_frames, self.frames, "'frames'")


@dataclass
class SpatialConfig(ProjectorConfig):
    """Pool each frame to `grid` (DeCo's 12x12 by default) and keep every frame."""

    takes_video: ClassVar[bool] = True

    grid: tuple[int, int] | str | int = (12, 12)
    num_frames: int = 16
    mlp_depth: int = 2
    activation: str = "gelu"

    def __post_init__(self) -> None:
        self.grid = parse_grid(self.grid, "grid")

    def validate(self) -> None:
        require_positive("mlp_depth", self.mlp_depth)
        check_activation(self.activation)
        _check_num_frames(self.num_frames, 1, "1")


@dataclass
class QFormerVideoConfig(QFormerConfig):
    """The Q-Former of projectors/qformer.py (same defaults) plus frames and a frame-position table."""

    takes_video: ClassVar[bool] = True

    num_frames: int = 16
    max_frames: int = 32

    def validate(self) -> None:
        super().validate()
        require_positive("max_frames", self.max_frames)
        _check_num_frames(self.num_frames, 1, "1")
        if self.num_frames > self.max_frames:
            raise ConfigError(
                f"projector option 'num_frames'={self.num_frames} exceeds 'max_frames'={self.max_frames} "
                "(the frame-position table)"
            )
