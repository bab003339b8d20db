"""Spatio-temporal projectors: the base contract with a time axis (frames, h, w).

Extension of the contract (base.py): a projector with `supports_time = True` takes features
[B, F*N, Dv] of F frames, frame-major (frame 0's N = h*w patches row-major, then frame 1's, ...), with
a 3-tuple grid (F, h, w). A 2-tuple grid (h, w) is a single image, i.e. a 1-frame video, so these
projectors also pass the image contract. `num_tokens(grid)` works before running for both forms.
`num_frames` (an option of each) is the F every video is sampled to: the model lays out
`num_tokens((num_frames, h, w))` placeholders per video. Output tokens are time-major: (t, h, w).

- `deco3d`: DeCo order, 3D adaptive average pooling over (frames, h, w) on raw features, then the MLP.
- `pllava`: PLLaVA order (github.com/magic-research/PLLaVA, `PllavaMultiModalProjector`): the MLP
  (linear_1, act, linear_2) on every patch of every frame, then 3D adaptive pooling in LLM width.
  PLLaVA's default pools 16 frames of 24x24 to 16x12x12 (space only); its ablation found temporal
  pooling hurt. PLLaVA repeats an image to 16 frames; here fewer frames than the target is an error.
- `deco_temporal`: pool frames only (t, h, w) with the full patch grid kept, then the MLP.
- `deco_spatial`: pool each frame to (h', w') and keep every frame (DeCo per frame), then the MLP.
- `qformer_video`: BLIP-2's Q-Former (projectors/qformer.py) reading all frames' patches at once, with
  a learned frame-position embedding added to each frame's features (as Video-LLaMA's video Q-Former
  has one, up to 32 frames) so the queries can tell frames apart: the ViT sees frames one by one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from deco.errors import ShapeError
from deco.projectors.base import Grid, Projector, ProjectorConfig
from deco.projectors.mlp import make_mlp
from deco.projectors.options.video import (
    Grid3,
    QFormerVideoConfig,
    SpatialConfig,
    TemporalConfig,
    Video3DConfig,
    parse_grid3,  # noqa: F401 - re-exported: video grids are parsed from here too
)
from deco.projectors.pooling import check_poolable
from deco.projectors.qformer import QFormerProjector


def time_grid(grid: object, name: str) -> Grid3:
    """(h, w) -> (1, h, w) (an image is a 1-frame video); (F, h, w) as is; anything else a ShapeError."""
    if isinstance(grid, (tuple, list)) and len(grid) in (2, 3):
        out = (1, *grid) if len(grid) == 2 else tuple(grid)
        if all(isinstance(n, int) and n > 0 for n in out):
            return out  # type: ignore[return-value]
    raise ShapeError(f"{name}: grid must be (h, w) or (frames, h, w) of positive ints, got {grid!r}")


def video_pool(features: torch.Tensor, in_grid: Grid3, out_grid: Grid3) -> torch.Tensor:
    """3D adaptive average pooling of frame-major tokens [B, F*h*w, D] to [B, t*oh*ow, D] (time-major)."""
    b, _, d = features.shape
    x = features.transpose(1, 2).reshape(b, d, *in_grid)  # [B, D, F, h, w]
    x = F.adaptive_avg_pool3d(x, out_grid)  # [B, D, t, oh, ow]
    return x.flatten(2).transpose(1, 2)  # [B, t*oh*ow, D]


def video_pooling_matrix(in_grid: Grid3, out_grid: Grid3) -> torch.Tensor:
    """The exact linear map of 3D adaptive pooling, [t*oh*ow, F*h*w]; rows sum to 1."""
    n = in_grid[0] * in_grid[1] * in_grid[2]
    eye = torch.eye(n, dtype=torch.float64).unsqueeze(0)  # each patch as its own channel
    return video_pool(eye, in_grid, out_grid)[0]


def check_frames(name: str, frames: int, target: int) -> None:
    """Pooling in time cannot invent frames: fewer frames than the temporal target is an error."""
    if frames < target:
        raise ShapeError(
            f"{name}: the input has {frames} frame(s) but the temporal target is {target}; sample at "
            f"least {target} frames per video (a single image counts as 1 frame)"
        )


class VideoProjector(Projector):
    """Base of projectors with a time axis: takes (h, w) or (frames, h, w) grids (see module doc)."""

    @property
    def num_frames(self) -> int:
        """Frames per video the model lays out placeholders for (the `num_frames` option)."""
        return self.config.num_frames  # type: ignore[attr-defined]

    @property
    def min_frames(self) -> int:
        """Fewest frames an input may have (the temporal target, or 1)."""
        return 1

    def video_tokens(self, grid: Grid3) -> int:
        """M for a validated (frames, h, w) grid."""
        raise NotImplementedError

    def check_grid(self, grid: Grid | Grid3) -> None:  # type: ignore[override]
        f, _, _ = time_grid(grid, self.name)
        check_frames(self.name, f, self.min_frames)

    def num_tokens(self, grid: Grid | Grid3) -> int:  # type: ignore[override]
        g = time_grid(grid, self.name)
        self.check_grid(g)
        return self.video_tokens(g)

    def forward(self, features: torch.Tensor, grid: Grid | Grid3) -> torch.Tensor:  # type: ignore[override]
        """Validate [B, F*h*w, Dv] against the grid, then project; errors name both numbers."""
        g = time_grid(grid, self.name)
        if features.dim() != 3:
            raise ShapeError(f"{self.name}: expected features [B, N, Dv], got shape {tuple(features.shape)}")
        f, h, w = g
        if features.shape[1] != f * h * w:
            what = f"the grid {h}x{w}" if len(grid) == 2 else f"the grid {f} frames x {h}x{w}"
            raise ShapeError(
                f"{self.name}: features have N={features.shape[1]} tokens but {what} declares {f * h * w}"
            )
        if features.shape[2] != self.vision_width:
            raise ShapeError(
                f"{self.name}: features have width Dv={features.shape[2]} but the projector was "
                f"built for vision width {self.vision_width}"
            )
        self.check_grid(g)
        return self.project(features, g)


# ---- pooling projectors -----------------------------------------------------------------------


class _PoolingVideoProjector(VideoProjector):
    """3D adaptive pooling and an MLP, in DeCo order (pool first) or PLLaVA order (MLP first)."""

    mlp_first: ClassVar[bool] = False

    def __init__(self, config: ProjectorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.mlp = make_mlp(vision_width, llm_width, config.mlp_depth, config.activation)  # type: ignore[attr-defined]

    def target(self, grid: Grid3) -> Grid3:
        """The pooled (t, h, w) for an input (frames, h, w)."""
        raise NotImplementedError

    def check_grid(self, grid: Grid | Grid3) -> None:  # type: ignore[override]
        g = time_grid(grid, self.name)
        out = self.target(g)
        check_frames(self.name, g[0], out[0])
        check_poolable(self.name, g[1:], out[1:])

    def video_tokens(self, grid: Grid3) -> int:
        t, h, w = self.target(grid)
        return t * h * w

    def project(self, features: torch.Tensor, grid: Grid3) -> torch.Tensor:  # type: ignore[override]
        out = self.target(grid)
        if self.mlp_first:
            return video_pool(self.mlp(features), grid, out)  # [B, F*N, Dl] -> [B, M, Dl]
        return self.mlp(video_pool(features, grid, out))  # [B, M, Dv] -> [B, M, Dl]


class Deco3DProjector(_PoolingVideoProjector):
    """DeCo order in 3D: adaptive average pooling over (frames, h, w), then LLaVA's MLP."""

    config_class = Video3DConfig
    description = "DeCo in 3D: adaptive avg pooling over (frames, h, w) to a t x h x w target, then MLP"

    @property
    def min_frames(self) -> int:
        return self.config.target[0]  # type: ignore[attr-defined]

    def target(self, grid: Grid3) -> Grid3:
        return self.config.target  # type: ignore[attr-defined,no-any-return]


class PLLaVAProjector(Deco3DProjector):
    """PLLaVA order: the MLP on every patch of every frame, then 3D adaptive pooling in LLM width."""

    description = "PLLaVA: MLP on every frame's patches, then adaptive avg pooling over (frames, h, w)"
    mlp_first = True


class TemporalPoolProjector(_PoolingVideoProjector):
    """Pool along time only: F frames -> `frames`, the patch grid kept; then the MLP."""

    config_class = TemporalConfig
    description = "Temporal-only pooling: adaptive avg pooling of frames to t, full patch grid, then MLP"

    @property
    def min_frames(self) -> int:
        return self.config.frames  # type: ignore[attr-defined,no-any-return]

    def target(self, grid: Grid3) -> Grid3:
        return (self.config.frames, grid[1], grid[2])  # type: ignore[attr-defined]


class SpatialPoolProjector(_PoolingVideoProjector):
    """Pool each frame spatially (DeCo per frame), keep all frames; then the MLP."""

    config_class = SpatialConfig
    description = "Spatial-only pooling: each frame pooled to h x w (DeCo per frame), all frames kept"

    @property
    def out_grid(self) -> Grid:
        """The per-frame token grid (as DecoProjector's), so AnyRes can lay tiles out in rows."""
        return self.config.grid  # type: ignore[attr-defined,no-any-return]

    def target(self, grid: Grid3) -> Grid3:
        return (grid[0], *self.config.grid)  # type: ignore[attr-defined,return-value]


# ---- Q-Former over all frames -------------------------------------------------------------------


class QFormerVideoProjector(VideoProjector, QFormerProjector):
    """Learnable queries cross-attending to every patch of every frame; M = num_queries.

    The Q-Former itself (weights, init, attention probes) is QFormerProjector's; this adds
    `frame_position_embedding` [max_frames, Dv], added to each frame's patches before the Q-Former.
    """

    config_class = QFormerVideoConfig
    description = "Q-Former over all frames' patches (frame-position embedding), then Linear"

    def __init__(self, config: QFormerVideoConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.frame_position_embedding = nn.Parameter(torch.zeros(config.max_frames, vision_width))
        nn.init.normal_(self.frame_position_embedding, std=config.initializer_range)

    def check_grid(self, grid: Grid | Grid3) -> None:  # type: ignore[override]
        f = time_grid(grid, self.name)[0]
        if f > self.config.max_frames:  # type: ignore[attr-defined]
            raise ShapeError(
                f"{self.name}: the input has {f} frames but the frame-position table holds "
                f"max_frames={self.config.max_frames}"  # type: ignore[attr-defined]
            )

    def video_tokens(self, grid: Grid3) -> int:
        return self.config.num_queries  # type: ignore[attr-defined,no-any-return]

    def project(self, features: torch.Tensor, grid: Grid3) -> torch.Tensor:  # type: ignore[override]
        b, f = features.shape[0], grid[0]
        x = features.view(b, f, -1, features.shape[-1])  # [B, F, N, Dv]
        x = x + self.frame_position_embedding[:f, None, :].to(x.dtype)  # frame t's patches get row t
        return QFormerProjector.project(self, x.flatten(1, 2), grid[1:])  # [B, M, Dl]
