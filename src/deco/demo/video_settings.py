"""Settings of the video demo: videos, encoder, LM, training, and the projectors at one token budget.

Budget: 8 frames of 6x6 patches (36 px frames, 6 px patches) = 288 patches per video, every
projector emits 72 tokens (4x fewer): spatial-only pools each frame to 3x3 (8 x 9), temporal-only
pools 8 frames to 2 (2 x 36), the 3D variants pool 2x in time and 2x in space (4 x 3 x 6, rows
halved), the Q-Former has 72 queries. The encoder, LM and training rules are the image demo's
classes (deco.demo.settings), so the image demo's runner builds the run configs.
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

    frames: int = 8
    image_size: int = 36
    max_objects: int = 3
    change_prob: float = 0.3
    train_videos: int = 3000
    test_videos: int = 150
    questions_per_video: int = 5
    caption_fraction: float = 0.3
    seed: int = 4321


def _default_options() -> dict[str, Any]:
    return {
        "deco_spatial": {"grid": [3, 3]},
        "deco_temporal": {"frames": 2},
        "deco3d": {"target": [4, 3, 6]},
        "pllava": {"target": [4, 3, 6]},
        "qformer_video": {"num_queries": 72, "num_hidden_layers": 2, "hidden_size": 128,
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
        patch_size=6, hidden_size=64, num_layers=3, num_heads=4, feature_layer=-1, pretrain_steps=400,
        pretrain_images=3000, batch_size=32, lr=2.0e-3, seed=0))
    lm: LMSettings = field(default_factory=lambda: LMSettings(hidden_size=128, intermediate_size=256, num_layers=2,
                                                              num_heads=4))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        stage1_steps=30, stage2_steps=240, batch_size=16, stage1_lr=1.0e-3, stage2_lr=1.0e-3, warmup_ratio=0.03,
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


QUICK = {"seeds": [0], "projectors": ["deco_spatial", "deco_temporal", "deco3d"],
         "videos": {"train_videos": 800, "test_videos": 60},
         "encoder": {"pretrain_steps": 150, "pretrain_images": 800},
         "train": {"stage1_steps": 20, "stage2_steps": 80}}


# One seed trained 4x longer: what the 10-minute default cannot show (about 15 minutes on 2 idle cores).
LONG = {"seeds": [0], "train": {"stage1_steps": 50, "stage2_steps": 1000, "stage2_lr": 2.0e-3}}


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
    for name in settings.projectors:
        if not getattr(get_projector_class(name), "supports_time", False):
            raise ConfigError(f"video demo: projector '{name}' has no time axis")
    if not settings.seeds:
        raise ConfigError("video demo: give at least one seed")
