"""Exact-name registry of projectors. No substring matching: an unknown name is an error."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from deco.errors import ConfigError
from deco.projectors.base import Projector, ProjectorConfig

# name -> "module:Class". Listed here (not discovered) so the set of names is explicit and
# importing one projector does not import them all.
_PROJECTORS: dict[str, str] = {
    "linear": "deco.projectors.mlp:LinearProjector",
    "mlp": "deco.projectors.mlp:MLPProjector",
    "deco": "deco.projectors.pooling:DecoProjector",
    "qformer": "deco.projectors.qformer:QFormerProjector",
    "cabstractor": "deco.projectors.cabstractor:CAbstractor",
    "dabstractor": "deco.projectors.dabstractor:DAbstractor",
    "resampler": "deco.projectors.resampler:PerceiverResampler",
    "attnpool": "deco.projectors.attnpool:AttentionPoolProjector",
    "pixel_shuffle": "deco.projectors.pixel_shuffle:PixelShuffleProjector",
    "ldpv2": "deco.projectors.ldpv2:LDPv2Projector",
    "tokenpacker": "deco.projectors.tokenpacker:TokenPackerProjector",
    # Video (a time axis: grids (frames, h, w); see projectors/video.py).
    "deco3d": "deco.projectors.video:Deco3DProjector",
    "pllava": "deco.projectors.video:PLLaVAProjector",
    "deco_temporal": "deco.projectors.video:TemporalPoolProjector",
    "deco_spatial": "deco.projectors.video:SpatialPoolProjector",
    "qformer_video": "deco.projectors.video:QFormerVideoProjector",
}


def projector_names() -> list[str]:
    """All registered projector names, in registry order."""
    return list(_PROJECTORS)


def get_projector_class(name: str) -> type[Projector]:
    """Look up a projector class by its exact name."""
    if name not in _PROJECTORS:
        close = difflib.get_close_matches(str(name), _PROJECTORS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown projector '{name}'.{hint} Valid names: {', '.join(_PROJECTORS)}"
        )
    module_name, class_name = _PROJECTORS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    cls.name = name
    return cls


def make_projector_config(name: str, options: Mapping[str, Any] | None = None) -> ProjectorConfig:
    """Build the projector's config dataclass from a dict, rejecting unknown keys by name."""
    cls = get_projector_class(name).config_class
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
