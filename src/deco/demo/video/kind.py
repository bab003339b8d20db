"""The video scene kind as the demo's core sees it (deco.demo.core.kind.SceneKind)."""

from __future__ import annotations

from deco.demo.core.kind import SceneKind
from deco.demo.video.data import prepare_video_assets
from deco.demo.video.questions import FAMILIES
from deco.demo.video.settings import check_video, video_projector_options, video_settings

VIDEO = SceneKind(
    name="video",
    defaults=video_settings,
    check=check_video,
    prepare_assets=prepare_video_assets,
    projector_options=video_projector_options,
    families=FAMILIES,
    videos=True,
)
