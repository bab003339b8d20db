"""The demo's scene kinds by name, and what needs them all: the settings loaders and the assets of whichever
kind the settings name. The one module that knows both kinds: the shared core (deco.demo.core) knows none,
and gets a kind's `SceneKind` from the code above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deco.demo.core import settings as core
from deco.demo.core.cache import Assets
from deco.demo.core.kind import SceneKind
from deco.demo.core.settings import DemoSettings
from deco.demo.images.kind import IMAGE
from deco.demo.video.kind import VIDEO

KINDS: dict[str, SceneKind] = {kind.name: kind for kind in (IMAGE, VIDEO)}


def scene_kind(settings: DemoSettings) -> SceneKind:
    """The kind the settings name (validated settings name a known one)."""
    return KINDS[settings.kind]


def default_settings(kind: str = "image") -> DemoSettings:
    """The built-in settings of a kind (what configs/demo.yaml or configs/demo-video.yaml spells out)."""
    return core.default_settings(kind, KINDS)


def settings_from_dict(data: dict[str, Any], source: str = "<dict>") -> DemoSettings:
    """Typed settings from a nested dict; unknown keys and wrong types name the key."""
    return core.settings_from_dict(data, source, KINDS)


def load_settings(path: str | Path | None = None, profiles: tuple[str, ...] = (), kind: str | None = None
                  ) -> DemoSettings:
    """Built-in defaults of a kind, or a YAML file over its kind's defaults (the file's `kind`, else `kind`,
    else image), with the named profiles merged on top in order."""
    return core.load_settings(path, profiles, kind, KINDS)


def prepare_assets(settings: DemoSettings, cache_dir: str | Path, **options: Any) -> Assets:
    """The assets of the settings' kind, from the cache or built now (`options`: rebuild, status, progress,
    lm_progress, parallel, as the kind's builder takes them): images get the dataset, encoder and
    text-pretrained LM (none when lm.pretrain_steps is 0; deco.demo.images.assets), videos their dataset and
    frame encoder (deco.demo.video.data)."""
    return scene_kind(settings).prepare_assets(settings, cache_dir, **options)
