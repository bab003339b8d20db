"""The image kind's settings: its defaults (compressor sizes, profiles), its projectors' options for the
demo geometry, and its checks. The schema and loader are the demo's one set (deco.demo.core.settings;
written out in configs/demo.yaml); this file holds only what is particular to images.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from deco.demo.core.settings import DemoSettings
from deco.errors import ConfigError

# Honeybee/BLIP-2 compressors at their reference sizes would cost 10-50x the whole LM per step on a
# CPU; these keep their structure (layers, attention, convs) at the demo's width. Sizes are printed.
DEFAULT_PROJECTOR_OPTIONS: dict[str, Any] = {
    "mlp": {},
    "deco": {},
    "qformer": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512},
    "cabstractor": {"depth": 1, "hidden_size": 128, "zero_init_last": True},
    "dabstractor": {"num_layers": 2, "num_heads": 4, "num_points": 4, "ffn_width": 256, "hidden_size": 128},
}

DEFAULT_PROFILES: dict[str, Any] = {
    "quick": {"projectors": ["deco", "qformer"], "train": {"stage1_steps": 30, "stage2_steps": 400, "checkpoints": 2},
              "eval": {"curve_images": 40, "test_images": 80}},
    "paper_geometry": {"scenes": {"image_size": 96}, "tokens": "12x12"},
}


def image_defaults() -> DemoSettings:
    """The image kind's built-in settings: the schema's defaults with its compressor sizes and profiles."""
    return DemoSettings(
        projector_options=copy.deepcopy(DEFAULT_PROJECTOR_OPTIONS), profiles=copy.deepcopy(DEFAULT_PROFILES)
    )


def image_projector_options(settings: DemoSettings, name: str, overrides: dict[str, Any] | None = None
                            ) -> dict[str, Any]:
    """The projector's demo options (with a ladder rung's `overrides` on top) plus its token count and input
    grid for the demo geometry."""
    from deco.projectors.registry import get_options_class

    options = {**settings.projector_options.get(name, {}), **(overrides or {})}
    fields = {f.name for f in dataclasses.fields(get_options_class(name))}
    h, w = settings.token_grid
    if "grid" in fields:
        options["grid"] = [h, w]
    elif "num_queries" in fields:
        options["num_queries"] = h * w
    if "num_input_tokens" in fields:  # learnable pos-emb laid out on the encoder's grid
        options["num_input_tokens"] = settings.grid * settings.grid
    return options


def check_image(settings: DemoSettings, source: str) -> None:
    """The image kind's cross-field checks (the shared ones are deco.demo.core.settings.validate's)."""
    from deco.demo.images.questions import FAMILIES
    from deco.projectors import projector_names

    s = settings.scenes
    unknown = [f for f in s.families if f not in FAMILIES]
    if not s.families or unknown or len(set(s.families)) != len(s.families):
        raise ConfigError(f"{source}: scenes.families must be distinct names from {', '.join(FAMILIES)}; "
                          f"got {s.families}")
    if not 1 <= s.min_objects <= s.max_objects <= 9:
        raise ConfigError(f"{source}: scenes need 1 <= min_objects <= max_objects <= 9")
    if s.image_size % settings.encoder.patch_size:
        raise ConfigError(f"{source}: scenes.image_size {s.image_size} is not a multiple of encoder.patch_size")
    if s.image_size % 3:
        raise ConfigError(f"{source}: scenes.image_size {s.image_size} must divide into 3x3 cells")
    h, w = settings.token_grid
    if h > settings.grid or w > settings.grid:
        raise ConfigError(f"{source}: tokens {settings.tokens} exceed the {settings.grid}x{settings.grid} patch grid")
    for name in settings.projectors:
        if name not in projector_names():
            raise ConfigError(f"{source}: unknown projector '{name}'; valid: {', '.join(projector_names())}")
    if not settings.sweep.lrs or any(not lr > 0 for lr in settings.sweep.lrs):
        raise ConfigError(f"{source}: sweep.lrs must be a non-empty list of positive learning rates")
    if not settings.sweep.warmups or any(not 0 <= w < 1 for w in settings.sweep.warmups):
        raise ConfigError(f"{source}: sweep.warmups must be a non-empty list of warmup ratios in [0, 1)")
    _check_ladder(settings, source)


def _check_ladder(settings: DemoSettings, source: str) -> None:
    """Each rung names a known projector whose options (the demo's, the rung's on top) build a config."""
    from deco.projectors import make_projector_config, projector_names

    if settings.ladder.seeds < 1 or not settings.ladder.rungs:
        raise ConfigError(f"{source}: ladder needs seeds >= 1 and at least one rung")
    for name, rung in settings.ladder.rungs.items():
        where = f"{source}: ladder.rungs.{name}"
        if not isinstance(rung, dict) or set(rung) - {"projector", "options", "lr"}:
            raise ConfigError(f"{where} must be a mapping with keys projector, options (optional), lr (optional)")
        if rung.get("projector") not in projector_names():
            raise ConfigError(f"{where}.projector must be one of {', '.join(projector_names())}, "
                              f"got {rung.get('projector')!r}")
        if rung.get("lr") is not None and not float(rung["lr"]) > 0:
            raise ConfigError(f"{where}.lr must be > 0, got {rung['lr']!r}")
        try:
            make_projector_config(rung["projector"],
                                  image_projector_options(settings, rung["projector"], rung.get("options")))
        except ConfigError as exc:
            raise ConfigError(f"{where}.options: {exc}") from exc
