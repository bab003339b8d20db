"""Synthetic videos: shapes on the demo's 3x3 grid that move, appear, disappear and change colour.

Each object has its own shape (so a shape names it), a start and an end cell (same row or column; the
object slides between their centres while visible), the frames it is visible in, and optionally a
colour change at one frame. Every frame is a `deco.demo.scenes.Scene`, drawn with the image demo's
renderer, so the image demo's encoder pretraining works on frames unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deco.demo.scenes import COLOURS, COLUMNS, ROWS, SHAPES, SIZES, Scene, SceneObject, render

DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
STILL = "still"
SIZE = "large"  # frames are small: every object is drawn at the largest size


@dataclass(frozen=True)
class Track:
    """One object through time. Visible in frames [appear, leave); colour `colours[1]` from `change_at`."""

    shape: str
    colours: tuple[str, ...]  # one colour, or (before, after) a change
    change_at: int  # first frame with the second colour (== leave when there is no change)
    start: tuple[int, int]  # (row, col) cell at its first visible frame
    end: tuple[int, int]  # (row, col) cell at its last visible frame
    appear: int
    leave: int

    @property
    def direction(self) -> str:
        """left / right / up / down, or still."""
        dr, dc = self.end[0] - self.start[0], self.end[1] - self.start[1]
        for name, (r, c) in DIRECTIONS.items():
            if (dr, dc) != (0, 0) and (np.sign(dr), np.sign(dc)) == (r, c):
                return name
        return STILL

    def visible(self, t: int) -> bool:
        """Whether the object is in frame t."""
        return self.appear <= t < self.leave

    def colour_at(self, t: int) -> str:
        """Its colour in frame t."""
        return self.colours[-1] if t >= self.change_at else self.colours[0]

    def centre_at(self, t: int, cell: float) -> tuple[float, float]:
        """(x, y) of its centre in frame t: a straight slide from start to end while visible."""
        span = max(1, self.leave - 1 - self.appear)
        p = min(1.0, max(0.0, (t - self.appear) / span))
        row = self.start[0] + p * (self.end[0] - self.start[0])
        col = self.start[1] + p * (self.end[1] - self.start[1])
        return (col + 0.5) * cell, (row + 0.5) * cell


@dataclass(frozen=True)
class Video:
    """Tracks, frame count and frame side in pixels."""

    tracks: tuple[Track, ...]
    frames: int
    image_size: int

    def frame(self, t: int) -> Scene:
        """Frame t as a still scene (row/col = the cell its centre is in)."""
        cell = self.image_size / 3
        objects = []
        for tr in self.tracks:
            if not tr.visible(t):
                continue
            cx, cy = tr.centre_at(t, cell)
            row, col = min(2, int(cy // cell)), min(2, int(cx // cell))
            objects.append(SceneObject(tr.colour_at(t), tr.shape, SIZE, row, col, cx, cy, SIZES[SIZE] * cell))
        return Scene(tuple(objects), self.image_size)

    def occupants(self, t: int) -> dict[str, list[Track]]:
        """Cell name -> tracks whose centre is in that cell at frame t."""
        out: dict[str, list[Track]] = {}
        for obj, tr in zip(self.frame(t).objects, [tr for tr in self.tracks if tr.visible(t)], strict=True):
            out.setdefault(obj.cell, []).append(tr)
        return out


def cell_name(cell: tuple[int, int]) -> str:
    """'top-left' ... 'bottom-right' (the image demo's cell names)."""
    return f"{ROWS[cell[0]]}-{COLUMNS[cell[1]]}"


def _timing(rng: np.random.Generator, frames: int) -> tuple[int, int]:
    """Visible frames: whole video (half the objects), enters late, leaves early, or a brief visit."""
    kind = rng.choice(["always", "enters", "leaves", "brief"], p=[0.5, 0.2, 0.2, 0.1])
    lo, hi = max(1, frames // 4), max(2, frames - frames // 4)
    if kind == "enters":
        return int(rng.integers(lo, hi)), frames
    if kind == "leaves":
        return 0, int(rng.integers(lo + 1, hi + 1))
    if kind == "brief":
        start = int(rng.integers(lo, max(lo + 1, frames // 2)))
        return start, min(frames - 1, start + max(2, frames // 3))
    return 0, frames


def _motion(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Start and end cells: still a quarter of the time, else 1 or 2 cells along a row or column."""
    start = (int(rng.integers(3)), int(rng.integers(3)))
    if rng.random() < 0.25:
        return start, start
    options = []
    for dr, dc in DIRECTIONS.values():
        for steps in (1, 2):
            end = (start[0] + dr * steps, start[1] + dc * steps)
            if 0 <= end[0] < 3 and 0 <= end[1] < 3:
                options.append(end)
    return start, options[int(rng.integers(len(options)))]


def sample_video(rng: np.random.Generator, frames: int, image_size: int, max_objects: int = 3,
                 change_prob: float = 0.3) -> Video:
    """1..max_objects tracks with distinct shapes and, at every frame, distinct colours."""
    k = int(rng.integers(1, min(max_objects, len(SHAPES)) + 1))
    shapes = rng.choice(SHAPES, size=k, replace=False).tolist()
    palette = list(COLOURS)
    first = rng.choice(palette, size=k, replace=False).tolist()
    unused = [c for c in palette if c not in first]
    tracks = []
    for shape, colour in zip(shapes, first, strict=True):
        appear, leave = _timing(rng, frames)
        start, end = _motion(rng)
        colours, change_at = (colour,), leave
        if rng.random() < change_prob and leave - appear >= 3 and unused:
            new = unused.pop(int(rng.integers(len(unused))))
            colours, change_at = (colour, new), int(rng.integers(appear + 1, leave - 1))
        tracks.append(Track(shape, colours, change_at, start, end, appear, leave))
    return Video(tuple(tracks), frames, image_size)


def render_video(video: Video) -> np.ndarray:
    """Frames [F, S, S, 3] uint8, each drawn by the image demo's renderer."""
    return np.stack([np.asarray(render(video.frame(t)), dtype=np.uint8) for t in range(video.frames)])
