"""The video kind's settings: its defaults and profiles, its projectors' options, and its checks. The schema
(its `videos` section, VideoSceneSettings, included), loader and YAML recipe are the demo's one set
(deco.demo.core.settings; written out in src/deco/recipes/demo-video.yaml); this file holds only what is
particular to videos.

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
- LM width 64 (was 128): as fast to learn per step in development runs, and cheaper. It starts from
  random weights (lm.pretrain_steps 0): the text pretraining is the image kind's.
- Encoder 2 layers (was 3): per-patch colour, row, column and the frame clock stay at >= 0.99 held out.
- Every object's questions in each conversation (up to 8) and a frame-by-frame caption in half of
  them: the visual tokens dominate a step's cost, question turns are cheap.
"""

from __future__ import annotations

from typing import Any

from deco.config import dataclass_from_dict
from deco.demo.core.settings import DemoSettings
from deco.errors import ConfigError

VIDEO_PROJECTORS = ("deco_spatial", "deco_temporal", "deco3d", "pllava", "qformer_video")


def video_defaults() -> dict[str, Any]:
    """The video kind's built-in settings (on top of the schema's defaults; demo-video.yaml spells them out).

    Every value that shapes a run is written here, not inherited from the image kind's defaults (which
    may change): the recorded results in benchmarks/video_demo/ rerun."""
    return {
        "kind": "video",
        "projectors": list(VIDEO_PROJECTORS),
        "seeds": 3,
        "projector_options": {
            "deco_spatial": {"grid": [3, 3]},
            "deco_temporal": {"frames": 1},
            "deco3d": {"target": [2, 3, 6]},
            "pllava": {"target": [2, 3, 6]},
            "qformer_video": {"num_queries": 36, "num_hidden_layers": 2, "hidden_size": 128,
                              "num_attention_heads": 4, "intermediate_size": 512},
        },
        "encoder": {"patch_size": 6, "hidden_size": 64, "num_layers": 2, "num_heads": 4, "feature_layer": -1,
                    "pretrain_steps": 400, "pretrain_images": 3000, "batch_size": 32, "lr": 2.0e-3, "seed": 0},
        "lm": {"hidden_size": 64, "intermediate_size": 256, "num_layers": 2, "num_heads": 4, "pretrain_steps": 0},
        "train": {"stage1_steps": 20, "stage2_steps": 800, "batch_size": 8, "stage1_lr": 1.0e-3,
                  "stage2_lr": 1.0e-3, "warmup_ratio": 0.03, "schedule": "cosine", "checkpoints": 1,
                  "projector_lrs": {}},
        "eval": {"batch_size": 64, "max_new_tokens": 3},
        "profiles": {
            # About 1-2 minutes: one seed, three pooling variants, fewer videos and steps (a smoke run).
            "quick": {"seeds": 1, "projectors": ["deco_spatial", "deco_temporal", "deco3d"],
                      "videos": {"train_videos": 1000, "test_videos": 100},
                      "encoder": {"pretrain_steps": 200, "pretrain_images": 1000},
                      "train": {"stage2_steps": 400}},
            # One seed, 3x the default's steps: what the default cannot show (benchmarks/video_demo/long).
            "long": {"seeds": 1, "train": {"stage2_steps": 2400}},
        },
    }


def video_settings() -> DemoSettings:
    """The video kind's built-in settings as typed settings."""
    return dataclass_from_dict(DemoSettings, video_defaults(), "<built-in video demo settings>")


def video_projector_options(settings: DemoSettings, name: str, overrides: dict[str, Any] | None = None
                            ) -> dict[str, Any]:
    """The projector's demo options (with `overrides` on top), with num_frames set to the frame count."""
    options = {**settings.projector_options.get(name, {}), **(overrides or {})}
    return {**options, "num_frames": settings.videos.frames}


def token_budget(settings: DemoSettings) -> dict[str, dict[str, int]]:
    """Tokens per video and projector parameters for each projector; all token counts must agree."""
    import torch

    from deco.projectors import build_projector

    grid = (settings.videos.frames, settings.grid, settings.grid)
    out = {}
    for name in settings.projectors:
        with torch.device("meta"):
            proj = build_projector(name, settings.encoder.hidden_size, settings.lm.hidden_size,
                                   video_projector_options(settings, name))
        out[name] = {"tokens": proj.num_tokens(grid), "params": proj.num_parameters()}
    if len({v["tokens"] for v in out.values()}) > 1:
        raise ConfigError(f"video demo: projectors must emit equal token budgets, got "
                          f"{ {k: v['tokens'] for k, v in out.items()} }")
    return out


def check_video(settings: DemoSettings, source: str) -> None:
    """The video kind's cross-field checks (the shared ones are deco.demo.core.settings.validate's)."""
    from deco.projectors.registry import get_options_class, projector_names

    v = settings.videos
    if v.frames < 2:
        raise ConfigError(f"{source}: videos.frames must be >= 2 (one frame has no time)")
    if v.image_size % 3 or v.image_size % settings.encoder.patch_size:
        raise ConfigError(f"{source}: videos.image_size {v.image_size} must divide into 3x3 cells and "
                          f"encoder.patch_size {settings.encoder.patch_size} patches")
    if not 1 <= v.max_objects <= 3:
        raise ConfigError(f"{source}: videos.max_objects must be 1..3 (one object per shape)")
    if v.max_objects > v.frames:
        raise ConfigError(f"{source}: videos.max_objects must not exceed videos.frames (visits take turns)")
    for name in settings.projectors:
        if name not in projector_names():
            raise ConfigError(f"{source}: unknown projector '{name}'; valid: {', '.join(projector_names())}")
        if not get_options_class(name).takes_video:
            raise ConfigError(f"{source}: projector '{name}' has no time axis (kind: video)")
    if settings.lm.pretrain_steps:
        raise ConfigError(f"{source}: lm.pretrain_steps must be 0 for videos (the LM's text pretraining "
                          "reads image scenes)")
    token_budget(settings)
