"""The sample's content: eight scenes of one coloured shape each, and the facts questions are asked about.

Kept as a table in code (not binary files) so the sample is readable in a diff, identical in a clone
and in an installed wheel, and every answer follows from the same row that draws the image.
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Scene:
    """One sample image: a shape of a colour on one side of a light background."""

    name: str  # file stem and GQA imageId
    shape: str
    colour: str
    side: str

    def caption(self) -> str:
        """The training caption for this scene."""
        return f"a {self.colour} {self.shape} on the {self.side}"


SCENES: tuple[Scene, ...] = (
    Scene("s01", "circle", "red", "left"),
    Scene("s02", "square", "blue", "right"),
    Scene("s03", "triangle", "green", "left"),
    Scene("s04", "circle", "yellow", "right"),
    Scene("s05", "square", "red", "left"),
    Scene("s06", "triangle", "blue", "right"),
    Scene("s07", "circle", "green", "right"),
    Scene("s08", "square", "yellow", "left"),
)
