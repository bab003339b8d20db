"""The image scene kind as the demo's core sees it (deco.demo.core.kind.SceneKind)."""

from __future__ import annotations

from deco.demo.core.kind import SceneKind
from deco.demo.images.assets import prepare_image_assets
from deco.demo.images.questions import FAMILIES, LOCALISATION, SPATIAL
from deco.demo.images.settings import check_image, image_defaults, image_projector_options

IMAGE = SceneKind(
    name="image",
    defaults=image_defaults,
    check=check_image,
    prepare_assets=prepare_image_assets,
    projector_options=image_projector_options,
    families=FAMILIES,
    groups={"spatial": SPATIAL, "localisation": LOCALISATION},
)
