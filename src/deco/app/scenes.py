"""The demo scenes bundled with the app: PNGs drawn by the demo's renderer, with questions it was trained on.

The images are committed files (benchmarks/app/make_scenes.py drew them), so the page offers them even
when the demo package changes; the questions use the demo's phrasing ("cell of red"), which its models
were trained to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundledScene:
    """One bundled image: its name, file and questions to try."""

    name: str
    file: str
    questions: tuple[str, ...]


SCENES: tuple[BundledScene, ...] = (
    BundledScene("two-shapes", "two-shapes.png", ("cell of red", "column of blue", "is red left of blue")),
    BundledScene("three-shapes", "three-shapes.png", ("cell of green", "shape of green", "is there a green square")),
    BundledScene("small-objects", "small-objects.png", ("row of blue", "size of white", "cell of white")),
    BundledScene("one-shape", "one-shape.png", ("column of green", "describe the image", "is there a green square")),
)


def scene_folder() -> Path:
    """The folder holding the bundled PNGs (inside the installed package)."""
    return Path(__file__).with_name("scenes")


def scene_paths() -> list[Path]:
    """Paths of the bundled scene images, in SCENES order."""
    return [scene_folder() / s.file for s in SCENES]


def example_rows() -> list[list[str]]:
    """(image path, question) pairs for the page's examples: each scene with its first question."""
    return [[str(scene_folder() / s.file), s.questions[0]] for s in SCENES]
