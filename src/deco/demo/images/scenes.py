"""Synthetic Sort-of-CLEVR scenes: coloured shapes of three sizes in distinct cells of a 3x3 grid.

Each object sits in its own cell (jittered inside it) and has its own colour, so a colour names one
object; shapes may repeat (counting). Small objects are 7 px wide, about two 4-px patches across, so
their shape survives in a few patches only: spatial detail matters, as in the paper's localisation tasks.
Images are drawn at 4x and box-filtered down (anti-aliased edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50),
    "green": (60, 180, 75),
    "blue": (60, 100, 235),
    "yellow": (235, 210, 50),
    "purple": (165, 80, 215),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
# Radius as a fraction of the cell side (a cell is 16 px at 48 px images: radii 3.5, 5.0, 6.7 px). At the
# earlier 2.7 px a small shape covered one or two 4-px patches and the tiny encoder told circle, square and
# triangle apart on .82 of object patches; questions about shape stayed near .6 for every projector.
SIZES = {"small": 0.22, "medium": 0.31, "large": 0.42}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
BACKGROUND = (35, 35, 40)
SUPERSAMPLE = 4


@dataclass(frozen=True)
class SceneObject:
    """One shape: attributes, its 3x3 cell, and its centre and radius in pixels."""

    colour: str
    shape: str
    size: str
    row: int
    col: int
    cx: float
    cy: float
    radius: float

    @property
    def cell(self) -> str:
        """Cell name, one token: 'top-left' ... 'bottom-right'."""
        return f"{ROWS[self.row]}-{COLUMNS[self.col]}"


@dataclass(frozen=True)
class Scene:
    """An image's objects (row-major by cell) and its side in pixels."""

    objects: tuple[SceneObject, ...]
    image_size: int


def cell_names() -> list[str]:
    """All nine cell names in row-major order."""
    return [f"{r}-{c}" for r in ROWS for c in COLUMNS]


def sample_scene(rng: np.random.Generator, image_size: int, min_objects: int, max_objects: int) -> Scene:
    """Draw 1..n objects in distinct cells with distinct colours; shapes and sizes independent."""
    k = int(rng.integers(min_objects, max_objects + 1))
    cells = sorted(rng.choice(9, size=k, replace=False).tolist())
    colours = rng.choice(list(COLOURS), size=k, replace=False).tolist()
    cell_side = image_size / 3
    objects = []
    for cell, colour in zip(cells, colours, strict=True):
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size] * cell_side
        row, col = divmod(cell, 3)
        slack = max(0.0, cell_side / 2 - radius * 1.15 - 1.0)  # keep the whole shape inside its cell
        cx = (col + 0.5) * cell_side + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell_side + rng.uniform(-slack, slack)
        objects.append(SceneObject(colour, str(rng.choice(SHAPES)), size, row, col, cx, cy, radius))
    return Scene(tuple(objects), image_size)


def _polygon(obj: SceneObject, scale: float) -> list[tuple[float, float]] | None:
    cx, cy, r = obj.cx * scale, obj.cy * scale, obj.radius * scale
    if obj.shape == "square":
        h = r * 0.88  # similar area to the circle
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if obj.shape == "triangle":
        t = r * 1.2
        return [(cx, cy - t), (cx + t * 0.866, cy + t * 0.5), (cx - t * 0.866, cy + t * 0.5)]
    return None


def _draw(scene: Scene, mode: str, fills: list) -> Image.Image:
    side = scene.image_size * SUPERSAMPLE
    canvas = Image.new(mode, (side, side), BACKGROUND if mode == "RGB" else 0)
    draw = ImageDraw.Draw(canvas)
    for obj, fill in zip(scene.objects, fills, strict=True):
        points = _polygon(obj, SUPERSAMPLE)
        if points is None:
            cx, cy, r = obj.cx * SUPERSAMPLE, obj.cy * SUPERSAMPLE, obj.radius * SUPERSAMPLE
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(points, fill=fill)
    return canvas


def render(scene: Scene) -> Image.Image:
    """The RGB image (anti-aliased by drawing at 4x and box-filtering down)."""
    big = _draw(scene, "RGB", [COLOURS[o.colour] for o in scene.objects])
    return big.resize((scene.image_size, scene.image_size), Image.Resampling.BOX)


def patch_owners(scene: Scene, patch_size: int, min_cover: float = 0.2) -> np.ndarray:
    """[G, G] index of the object covering most of each patch (>= min_cover of it), else -1."""
    label = np.asarray(_draw(scene, "L", list(range(1, len(scene.objects) + 1))), dtype=np.int64)
    g = scene.image_size // patch_size
    p = patch_size * SUPERSAMPLE
    blocks = label.reshape(g, p, g, p).transpose(0, 2, 1, 3).reshape(g, g, p * p)  # [G, G, pixels]
    counts = np.stack([(blocks == i + 1).mean(-1) for i in range(len(scene.objects))], -1)  # [G, G, K]
    owner = counts.argmax(-1)
    return np.where(counts.max(-1) >= min_cover, owner, -1)
