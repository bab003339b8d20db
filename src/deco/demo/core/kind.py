"""What the shared core needs from a scene kind, handed in by the kind: the core imports no kind.

Each kind package builds one `SceneKind` (deco.demo.images.kind.IMAGE, deco.demo.video.kind.VIDEO) and
deco.demo.kinds names them; code above the core looks a kind up there and passes it down. A kind's
functions are module-level, so a `SceneKind` pickles by reference into the demo's worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deco.demo.core.cache import Assets
    from deco.demo.core.settings import DemoSettings


class PrepareAssets(Protocol):
    """A kind's cached assets (dataset, tokenizer, encoder; an LM if it pretrains one), from the cache or built now."""

    def __call__(self, settings: DemoSettings, cache_dir: str | Path, rebuild: bool = False,
                 status: Callable[[str], None] = ..., progress: Callable[[int, int], None] | None = None,
                 lm_progress: Callable[[int, int], None] | None = None, parallel: bool = True) -> Assets: ...


@dataclass(frozen=True)
class SceneKind:
    """A scene kind as the core sees it: its name (the settings' `kind`), built-in settings, checks, assets,
    projector geometry and question families."""

    name: str
    defaults: Callable[[], DemoSettings]  # the kind's built-in settings (what its YAML recipe spells out)
    check: Callable[[DemoSettings, str], None]  # the kind's cross-field checks, after the shared ones
    prepare_assets: PrepareAssets
    # A projector's demo options (a ladder rung's overrides on top) with the kind's geometry filled in.
    projector_options: Callable[[DemoSettings, str, dict[str, Any] | None], dict[str, Any]]
    families: tuple[str, ...]  # question families in report order
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # families also scored together
    videos: bool = False  # evaluation asks with the video (sampled to the model's frame count), not an image


Kinds = Mapping[str, SceneKind]  # kinds by name, in the order error messages list them
