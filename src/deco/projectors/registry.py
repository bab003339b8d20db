"""Exact-name registry of projectors. No substring matching: an unknown name is an error.

One table serves both sides: config validation looks up a projector's options class here without
importing torch (`make_projector_config`, `get_options_class`); building one imports its torch module
(`get_projector_class`, `build_projector`). Neither imports any other projector's module.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from deco.errors import ConfigError
from deco.names import look_up
from deco.projectors.options.base import ProjectorConfig

if TYPE_CHECKING:
    from deco.projectors.base import Projector


class _Entry(NamedTuple):
    family: str  # deco.projectors.<family> holds the module, deco.projectors.options.<family> its options
    module_class: str
    options_class: str


# Listed here (not discovered) so the set of names is explicit and importing one projector does not
# import them all.
_PROJECTORS: dict[str, _Entry] = {
    "linear": _Entry("mlp", "LinearProjector", "LinearConfig"),
    "mlp": _Entry("mlp", "MLPProjector", "MLPConfig"),
    "deco": _Entry("pooling", "DecoProjector", "DecoConfig"),
    "qformer": _Entry("qformer", "QFormerProjector", "QFormerConfig"),
    "cabstractor": _Entry("cabstractor", "CAbstractor", "CAbstractorConfig"),
    "dabstractor": _Entry("dabstractor", "DAbstractor", "DAbstractorConfig"),
    "resampler": _Entry("resampler", "PerceiverResampler", "ResamplerConfig"),
    "attnpool": _Entry("attnpool", "AttentionPoolProjector", "AttnPoolConfig"),
    "pixel_shuffle": _Entry("pixel_shuffle", "PixelShuffleProjector", "PixelShuffleConfig"),
    "ldpv2": _Entry("ldpv2", "LDPv2Projector", "LDPv2Config"),
    "tokenpacker": _Entry("tokenpacker", "TokenPackerProjector", "TokenPackerConfig"),
    # Video (a time axis: grids (frames, h, w); see projectors/video.py).
    "deco3d": _Entry("video", "Deco3DProjector", "Video3DConfig"),
    "pllava": _Entry("video", "PLLaVAProjector", "Video3DConfig"),
    "deco_temporal": _Entry("video", "TemporalPoolProjector", "TemporalConfig"),
    "deco_spatial": _Entry("video", "SpatialPoolProjector", "SpatialConfig"),
    "qformer_video": _Entry("video", "QFormerVideoProjector", "QFormerVideoConfig"),
}


def projector_names() -> list[str]:
    """All registered projector names, in registry order."""
    return list(_PROJECTORS)


def _entry(name: str) -> _Entry:
    return look_up(_PROJECTORS, name, "projector")


def get_options_class(name: str) -> type[ProjectorConfig]:
    """The options dataclass of projector `name` (exact name), without importing torch."""
    entry = _entry(name)
    module = importlib.import_module(f"deco.projectors.options.{entry.family}")
    return getattr(module, entry.options_class)


def get_projector_class(name: str) -> type[Projector]:
    """Look up a projector class by its exact name (imports its torch module)."""
    entry = _entry(name)
    cls = getattr(importlib.import_module(f"deco.projectors.{entry.family}"), entry.module_class)
    if cls.config_class is not get_options_class(name):  # the table and the module must tell one story
        raise TypeError(f"projector '{name}': {cls.__name__}.config_class is not {entry.options_class}")
    cls.name = name
    return cls


def make_projector_config(name: str, options: Mapping[str, Any] | None = None) -> ProjectorConfig:
    """Build the projector's config dataclass from a dict, rejecting unknown keys by name (no torch)."""
    cls = get_options_class(name)
    options = dict(options or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(
            f"projector '{name}' has no option(s) {', '.join(repr(u) for u in unknown)}; "
            f"valid options: {', '.join(sorted(fields)) or '(none)'}"
        )
    try:
        config = cls(**options)
    except TypeError as exc:  # pragma: no cover - dataclass field errors are caught above
        raise ConfigError(f"projector '{name}': {exc}") from None
    config.validate()
    return config


def build_projector(
    name: str,
    vision_width: int,
    llm_width: int,
    options: Mapping[str, Any] | ProjectorConfig | None = None,
) -> Projector:
    """Instantiate projector `name` for the given widths with config options (dict or dataclass)."""
    cls = get_projector_class(name)
    config = options if isinstance(options, ProjectorConfig) else make_projector_config(name, options)
    return cls(config, vision_width, llm_width)
