"""Settings of the video demo: videos, encoder, LM, training, and the projectors at one token budget.

Budget: 4 frames of 6x6 patches (36 px frames, 6 px patches; a 3x3 cell is 2x2 patches) = 144 patches
per video, every projector emits 36 tokens (4x fewer): spatial-only pools each frame to its 3x3 cells
(4 x 9), temporal-only pools the 4 frames to 1 (1 x 36: time averaged away, the time-blind baseline),
the 3D variants pool 2x in time and 2x in space (2 x 3 x 6, rows halved), the Q-Former has 36 queries.

Why these sizes (measured on the shared 2-core VM while developing; benchmarks/video_demo/README.md):
- The old design (8 frames, 72 tokens, 3 objects, 240 steps of 16) learned no time question. A
  step costs about the same whatever the LM width: the frozen encoder over every frame and loading
  the frames are half of it. 4 frames halve the encoder's and the LM's visual work per step.
- Batch 8 for 800 steps (was 16 for 240): at equal cost, 1000 steps of 8 learned more than 500 of 16.
- At most 2 objects (was 3): with a third one, start/end of an object stayed near .3-.5 in 1000
  steps; with two, .7-.8.
- LM width 64 (was 128): as fast to learn per step in development runs, and cheaper.
- Encoder 2 layers (was 3): per-patch colour, row, column and the frame clock stay at >= 0.99 held out.
- Every object's questions in each conversation (up to 8) and a frame-by-frame caption in half of
  them: the visual tokens dominate a step's cost, question turns are cheap.
The encoder, LM and training rules are the image demo's classes (deco.demo.settings), so the image
demo's runner builds the run configs.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deco.demo.settings import DemoSettings, EncoderSettings, EvalSettings, LMSettings, TrainSettings
from deco.errors import ConfigError

VIDEO_PROJECTORS = ("deco_spatial", "deco_temporal", "deco3d", "pllava", "qformer_video")


@dataclass
class VideoSceneSettings:
    """Synthetic videos: frames, frame size, objects, split sizes, questions per video."""

    frames: int = 4
    image_size: int = 36
    max_objects: int = 2
    still_prob: float = 0.2  # "still" is then about as common as each direction
    clock: bool = True  # background brightens with time (video_scenes: why)
    train_videos: int = 3000
    test_videos: int = 200
    questions_per_video: int = 8  # the visual tokens dominate a step's cost; questions are cheap
    caption_fraction: float = 0.5
    seed: int = 4321


def _default_options() -> dict[str, Any]:
    return {
        "deco_spatial": {"grid": [3, 3]},
        "deco_temporal": {"frames": 1},
        "deco3d": {"target": [2, 3, 6]},
        "pllava": {"target": [2, 3, 6]},
        "qformer_video": {"num_queries": 36, "num_hidden_layers": 2, "hidden_size": 128,
                          "num_attention_heads": 4, "intermediate_size": 512},
    }


@dataclass
class VideoDemoSettings:
    """Everything the video demo needs."""

    projectors: list[str] = field(default_factory=lambda: list(VIDEO_PROJECTORS))
    projector_options: dict[str, Any] = field(default_factory=_default_options)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    videos: VideoSceneSettings = field(default_factory=VideoSceneSettings)
    # Every value spelled out (not the image demo's defaults, which may change): recorded results rerun.
    encoder: EncoderSettings = field(default_factory=lambda: EncoderSettings(
        patch_size=6, hidden_size=64, num_layers=2, num_heads=4, feature_layer=-1, pretrain_steps=400,
        pretrain_images=3000, batch_size=32, lr=2.0e-3, seed=0))
    lm: LMSettings = field(default_factory=lambda: LMSettings(hidden_size=64, intermediate_size=256, num_layers=2,
                                                              num_heads=4))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        stage1_steps=20, stage2_steps=800, batch_size=8, stage1_lr=1.0e-3, stage2_lr=1.0e-3, warmup_ratio=0.03,
        schedule="cosine", checkpoints=1))
    eval: EvalSettings = field(default_factory=lambda: EvalSettings(batch_size=64))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (written into results.json)."""
        return dataclasses.asdict(self)

    @property
    def grid(self) -> int:
        """Patch grid side of a frame."""
        return self.videos.image_size // self.encoder.patch_size

    def options(self, name: str) -> dict[str, Any]:
        """A projector's options for this demo, with num_frames set to the videos' frame count."""
        return {**copy.deepcopy(self.projector_options.get(name, {})), "num_frames": self.videos.frames}

    def as_demo_settings(self) -> DemoSettings:
        """The image demo's settings object with these sizes (what its runner's stage_config reads)."""
        demo = DemoSettings(projectors=list(self.projectors), tokens="1x1", encoder=self.encoder, lm=self.lm,
                            train=self.train, eval=self.eval)
        demo.scenes.image_size = self.videos.image_size
        return demo


# About 1-2 minutes: one seed, three pooling variants, fewer videos and steps (a smoke run, not a result).
QUICK = {"seeds": [0], "projectors": ["deco_spatial", "deco_temporal", "deco3d"],
         "videos": {"train_videos": 1000, "test_videos": 100},
         "encoder": {"pretrain_steps": 200, "pretrain_images": 1000},
         "train": {"stage2_steps": 400}}


# One seed, 3x the default's steps: what the 10-minute default cannot show (not recorded; ~8 minutes, estimated).
LONG = {"seeds": [0], "train": {"stage2_steps": 2400}}


def video_settings(quick: bool = False, overrides: dict[str, Any] | None = None, long: bool = False) -> VideoDemoSettings:
    """The defaults, the `quick` or `long` profile and/or nested overrides; checked."""
    from deco.config import _deep_merge, _from_dict

    data = VideoDemoSettings().to_dict()
    if quick:
        data = _deep_merge(data, QUICK)
    if long:
        data = _deep_merge(data, LONG)
    if overrides:
        data = _deep_merge(data, overrides)
    settings = _from_dict(VideoDemoSettings, data, "<video demo settings>")
    validate(settings)
    return settings


def validate(settings: VideoDemoSettings) -> None:
    """Cross-field checks that would otherwise fail minutes into a run."""
    from deco.projectors import get_projector_class

    v = settings.videos
    if v.frames < 2:
        raise ConfigError("video demo: videos.frames must be >= 2 (one frame has no time)")
    if v.image_size % 3 or v.image_size % settings.encoder.patch_size:
        raise ConfigError(f"video demo: videos.image_size {v.image_size} must divide into 3x3 cells and "
                          f"encoder.patch_size {settings.encoder.patch_size} patches")
    if not 1 <= v.max_objects <= 3:
        raise ConfigError("video demo: videos.max_objects must be 1..3 (one object per shape)")
    if v.max_objects > v.frames:
        raise ConfigError("video demo: videos.max_objects must not exceed videos.frames (visits take turns)")
    for name in settings.projectors:
        if not getattr(get_projector_class(name), "supports_time", False):
            raise ConfigError(f"video demo: projector '{name}' has no time axis")
    if not settings.seeds:
        raise ConfigError("video demo: give at least one seed")
