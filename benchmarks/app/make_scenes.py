"""Render the app's bundled demo scenes (src/deco/app/scenes/*.png) with the demo's own scene renderer.

Run once when the scene list changes: `python benchmarks/app/make_scenes.py`. The PNGs are committed, so
the app does not depend on the demo's renderer at run time.
"""

from __future__ import annotations

from pathlib import Path

from deco.app.scenes import SCENES, scene_folder
from deco.demo.images.scenes import SIZES, Scene, SceneObject, render

SIDE = 48  # the demo's image size; models resize other sizes themselves


def build(objects: list[tuple[str, str, str, int, int]]) -> Scene:
    """A scene from (colour, shape, size, row, col) with each object centred in its cell."""
    cell = SIDE / 3
    placed = tuple(SceneObject(c, s, z, r, k, (k + 0.5) * cell, (r + 0.5) * cell, SIZES[z] * cell)
                   for c, s, z, r, k in objects)
    return Scene(placed, SIDE)


LAYOUTS = {
    "two-shapes": [("red", "circle", "large", 0, 0), ("blue", "square", "large", 2, 2)],
    "three-shapes": [("yellow", "circle", "medium", 0, 2), ("green", "triangle", "large", 1, 1),
                     ("purple", "square", "medium", 2, 0)],
    "small-objects": [("white", "square", "small", 0, 1), ("red", "triangle", "medium", 1, 0),
                      ("blue", "circle", "small", 2, 1)],
    "one-shape": [("green", "square", "large", 1, 2)],
}


def main() -> None:
    """Write one PNG per bundled scene."""
    folder: Path = scene_folder()
    for scene in SCENES:
        render(build(LAYOUTS[scene.name])).save(folder / scene.file)
        print(folder / scene.file)


if __name__ == "__main__":
    main()
