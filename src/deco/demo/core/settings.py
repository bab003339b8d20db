"""The demo's settings: scenes, encoder, LM, training and evaluation sizes, with profiles for
`--quick` and `--paper-geometry`.

The schema and its defaults live here, each kind's own defaults, profiles and checks in its package
(deco.demo.images.settings, deco.demo.video.settings), handed in through a `SceneKind`: an installed
package runs with no files around it. configs/demo.yaml is the same settings written out with their
reasons, and a test keeps the two equal. `deco demo --config FILE` reads an edited copy.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deco.config import dataclass_from_dict, deep_merge, read_yaml
from deco.errors import ConfigError

if TYPE_CHECKING:
    from deco.demo.core.kind import Kinds

PROJECTORS = ("mlp", "deco", "qformer", "cabstractor", "dabstractor")
# The question families the demo trains and reports (deco.demo.images.questions.FAMILIES has them all).
# Left out by default, each because the uncompressed MLP stayed below 0.90 at the default budget in
# development runs (why in configs/demo.yaml); all stay available through `scenes.families`.
DEFAULT_FAMILIES = ("column", "row", "cell", "relation", "exists")


@dataclass
class SceneSettings:
    """Synthetic scenes: coloured shapes in distinct cells of a 3x3 grid."""

    image_size: int = 48
    min_objects: int = 2
    max_objects: int = 3
    train_images: int = 8000
    test_images: int = 150
    validation_images: int = 100
    questions_per_image: int = 8
    caption_fraction: float = 0.5
    seed: int = 1234
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))


@dataclass
class VideoSceneSettings:
    """Synthetic videos (the video kind; deco.demo.video.settings has its defaults and checks): frames, frame
    size, objects, split sizes, questions per video."""

    frames: int = 4
    image_size: int = 36
    max_objects: int = 2
    still_prob: float = 0.2  # "still" is then about as common as each direction
    clock: bool = True  # background brightens with time (deco.demo.video.scenes: why)
    train_videos: int = 3000
    test_videos: int = 200
    questions_per_video: int = 8  # the visual tokens dominate a step's cost; questions are cheap
    caption_fraction: float = 0.5
    seed: int = 4321


@dataclass
class EncoderSettings:
    """The tiny ViT and its in-process pretraining on per-patch scene labels."""

    patch_size: int = 4
    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    feature_layer: int = -1
    pretrain_steps: int = 1000
    pretrain_images: int = 3000
    batch_size: int = 32
    lr: float = 2.0e-3
    seed: int = 0


@dataclass
class LMSettings:
    """The small Llama and its text-only pretraining on the scenes' language (deco.demo.images.language)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 32
    pretrain_lr: float = 3.0e-3
    conversations_per_scene: int = 2
    seed: int = 0


# Chosen by `deco demo --sweep --steps 400` (1e-3, 3e-3, 1e-2 each; validation split; 2026-12-03,
# scenes of 2-3 objects; benchmarks/demo/sweep-min2-2core-2026-12-03/): the best validation accuracy.
SWEPT_LRS = {"mlp": 1.0e-2, "deco": 1.0e-3, "qformer": 1.0e-3, "cabstractor": 3.0e-4, "dabstractor": 1.0e-3}
# Warmup ratios other than train.warmup_ratio, from the same sweeps (no warmup scored best for all five).
SWEPT_WARMUPS = {"mlp": 0.0, "deco": 0.0, "qformer": 0.0, "cabstractor": 0.0, "dabstractor": 0.0}


@dataclass
class TrainSettings:
    """Equal for every projector: steps, batch, data order, learning-rate rule."""

    stage1_steps: int = 100
    stage2_steps: int = 750
    batch_size: int = 16
    stage1_lr: float = 3.0e-3
    stage2_lr: float = 3.0e-3
    warmup_ratio: float = 0.03
    schedule: str = "cosine"
    checkpoints: int = 3
    # Per projector, its learning rate in both stages (the LM keeps stage2_lr), chosen by `deco demo
    # --sweep` on the validation split; projectors not listed use stage1_lr / stage2_lr.
    projector_lrs: dict[str, float] = field(default_factory=lambda: dict(SWEPT_LRS))
    # Per projector, its warmup ratio (from the sweep); projectors not listed use warmup_ratio.
    projector_warmups: dict[str, float] = field(default_factory=lambda: dict(SWEPT_WARMUPS))
    # Every N steps, per-block gradient norms and weight/activation scales of the projector
    # (deco.train.report.diagnostics; the ladder reads them); 0 = off.
    diagnostics_every: int = 25


@dataclass
class SweepSettings:
    """`deco demo --sweep`: each projector at each learning rate, equal steps, scored on the validation split."""

    lrs: list[float] = field(default_factory=lambda: [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2])
    warmups: list[float] = field(default_factory=lambda: [0.03, 0.0])  # warmup ratios crossed with lrs


# deco demo --ladder: DeCo, then Honeybee's C-Abstractor from its depth-0 case (pooling + SiLU MLP) up to
# three RegNet blocks per stage, with and without its pos-emb, with Honeybee's initialisation (every block's
# last norm at 1) and timm RegNet's (zero_init_last: each block starts as its shortcut); the D-Abstractor
# with 1 and 2 decoder layers, with its deformable offsets fixed at their initial pattern, and with the
# pooled features as the query content (Honeybee's pooled_v_target "tgt") instead of its position. Options
# go over projector_options; the rungs name the options they test, so changing the demo's defaults does
# not change what a rung is.
DEFAULT_RUNGS: dict[str, dict[str, Any]] = {
    "deco": {"projector": "deco"},
    "cabs-d0": {"projector": "cabstractor", "options": {"depth": 0}},
    "cabs-d0-nopos": {"projector": "cabstractor", "options": {"depth": 0, "pos_emb": False}},
    "cabs-d1": {"projector": "cabstractor", "options": {"depth": 1, "zero_init_last": False}},
    "cabs-d1-nopos": {"projector": "cabstractor", "options": {"depth": 1, "zero_init_last": False, "pos_emb": False}},
    "cabs-d1-zil": {"projector": "cabstractor", "options": {"depth": 1, "zero_init_last": True}},
    "cabs-d2-zil": {"projector": "cabstractor", "options": {"depth": 2, "zero_init_last": True}},
    "cabs-d3-zil": {"projector": "cabstractor", "options": {"depth": 3, "zero_init_last": True}},
    "dabs-l1": {"projector": "dabstractor", "options": {"num_layers": 1, "pooled_v_target": "query"}},
    "dabs-l2": {"projector": "dabstractor", "options": {"num_layers": 2, "pooled_v_target": "query"}},
    "dabs-l2-fixed": {"projector": "dabstractor", "options": {"num_layers": 2, "pooled_v_target": "query",
                                                              "learn_offsets": False}},
    "dabs-l2-tgt": {"projector": "dabstractor", "options": {"num_layers": 2, "pooled_v_target": "tgt"}},
}


@dataclass
class LadderSettings:
    """`deco demo --ladder`: rungs (name -> projector, options over the demo's, optional lr), each at `seeds`
    seeds; the first rung is the reference the others are compared with."""

    seeds: int = 3
    rungs: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RUNGS))


@dataclass
class EvalSettings:
    """Held-out evaluation: greedy decoding, exact match per question family."""

    batch_size: int = 64
    curve_images: int = 50
    test_images: int | None = None
    loss_steps: list[int] = field(default_factory=lambda: [25, 50, 100, 200])
    examples: int = 6
    max_new_tokens: int = 6  # greedy answer length cap (answers are two to five words)


@dataclass
class DemoSettings:
    """Everything the demo needs, for either scene kind: `kind` "image" reads `scenes` (and `tokens`, the
    compressors' output grid, and `sweep`), "video" reads `videos` (deco.demo.video.settings)."""

    kind: str = "image"
    projectors: list[str] = field(default_factory=lambda: list(PROJECTORS))
    seeds: int = 1  # training seeds run (--seed, --seed + 1, ...); several give mean and SD
    tokens: str = "6x6"
    projector_options: dict[str, Any] = field(default_factory=dict)
    scenes: SceneSettings = field(default_factory=SceneSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    lm: LMSettings = field(default_factory=LMSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    ladder: LadderSettings = field(default_factory=LadderSettings)
    videos: VideoSceneSettings = field(default_factory=VideoSceneSettings)
    profiles: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (written into results.json)."""
        return dataclasses.asdict(self)

    @property
    def grid(self) -> int:
        """Patch grid side of the encoder (of one frame, for videos)."""
        return self.frame_size // self.encoder.patch_size

    @property
    def frame_size(self) -> int:
        """Side in pixels of an image (or of a video's frame)."""
        return self.videos.image_size if self.kind == "video" else self.scenes.image_size

    @property
    def token_grid(self) -> tuple[int, int]:
        """The compressors' output grid (h, w)."""
        from deco.projectors.base import parse_grid

        return parse_grid(self.tokens, "tokens")


def default_settings(kind: str, kinds: Kinds) -> DemoSettings:
    """The built-in settings of a kind (what configs/demo.yaml or configs/demo-video.yaml spells out)."""
    if kind not in kinds:
        raise ConfigError(f"demo kind must be one of {', '.join(kinds)}, got {kind!r}")
    return kinds[kind].defaults()


def settings_from_dict(data: dict[str, Any], source: str, kinds: Kinds) -> DemoSettings:
    """Typed settings from a nested dict; unknown keys and wrong types name the key."""
    settings = dataclass_from_dict(DemoSettings, data, source)
    validate(settings, source, kinds)
    return settings


def load_settings(path: str | Path | None, profiles: tuple[str, ...], kind: str | None, kinds: Kinds) -> DemoSettings:
    """Built-in defaults of a kind, or a YAML file over its kind's defaults (the file's `kind`, else `kind`,
    else image), with the named profiles merged on top in order."""
    if path is None:
        data = default_settings(kind or "image", kinds).to_dict()
        source = f"<built-in {kind or 'image'} demo settings>"
    else:
        source = str(path)
        raw = read_yaml(path)
        file_kind = raw.get("kind", kind or "image")
        if kind is not None and file_kind != kind:
            raise ConfigError(f"{source}: kind is {file_kind!r} but a {kind} demo was asked for "
                              f"(--video needs a file with `kind: video`, such as configs/demo-video.yaml)")
        data = deep_merge(default_settings(file_kind, kinds).to_dict(), raw)
    for name in profiles:
        if name not in data.get("profiles", {}):
            raise ConfigError(f"{source}: no profile '{name}' (have: {', '.join(data.get('profiles', {}))})")
        data = deep_merge(data, data["profiles"][name])
    return settings_from_dict(data, source, kinds)


def validate(settings: DemoSettings, source: str, kinds: Kinds) -> None:
    """Cross-field checks that would otherwise fail minutes into a run: the shared ones, then the kind's."""
    if settings.kind not in kinds:
        raise ConfigError(f"{source}: kind must be one of {', '.join(kinds)}, got {settings.kind!r}")
    if settings.seeds < 1:
        raise ConfigError(f"{source}: seeds must be >= 1, got {settings.seeds}")
    _validate_training(settings, source)
    kinds[settings.kind].check(settings, source)


def _validate_training(settings: DemoSettings, source: str) -> None:
    """Checks shared by both kinds: steps, checkpoints, evaluation sizes, per-projector learning rates."""
    from deco.projectors import projector_names

    if settings.train.stage1_steps < 1 or settings.train.stage2_steps < 1:
        raise ConfigError(f"{source}: train.stage1_steps and train.stage2_steps must be >= 1")
    if settings.eval.test_images is not None and settings.eval.curve_images > settings.eval.test_images:
        raise ConfigError(f"{source}: eval.curve_images must not exceed eval.test_images")
    if settings.train.checkpoints < 1:
        raise ConfigError(f"{source}: train.checkpoints must be >= 1")
    for name, ratio in settings.train.projector_warmups.items():
        if name not in projector_names() or not 0 <= ratio < 1:
            raise ConfigError(f"{source}: train.projector_warmups.{name} must name a projector and a ratio in [0, 1)")
    if settings.train.diagnostics_every < 0:
        raise ConfigError(f"{source}: train.diagnostics_every must be >= 0 (0 = off)")
    for name, lr in settings.train.projector_lrs.items():
        if name not in projector_names():
            raise ConfigError(f"{source}: train.projector_lrs names unknown projector '{name}'")
        if not lr > 0:
            raise ConfigError(f"{source}: train.projector_lrs.{name} must be > 0, got {lr}")
    if settings.eval.max_new_tokens < 1:
        raise ConfigError(f"{source}: eval.max_new_tokens must be >= 1")
