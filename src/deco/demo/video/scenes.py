"""Synthetic videos: shapes on the demo's 3x3 grid that slide, and take turns on screen, under a clock.

Each object has its own colour (which names it) and shape, a start and an end cell (same row or column,
or the same cell: still), and a visit: the frames it is on screen. It slides from the centre of its
start cell to the centre of its end cell during its visit. Visits take turns: with two or three
objects every visit has the same length, the first starts at frame 0 and the last ends at the last
frame, so an object's time on screen says nothing about when it came (no shortcut for "which came
first"), and the video read backwards is as likely as forwards.

The clock: the background brightens frame by frame (like a burned-in timestamp), so every patch of
a frame carries its time. Without it the tiny LM, trained from scratch for minutes, never learned to
read time from token positions alone (RoPE): it told the axis of a motion but not its sign, and
guessed on "which came first", for every projector. Pooling in time averages the clock with
everything else, which is the loss the experiment measures.

Every frame is a `deco.demo.images.scenes.Scene` drawn with the image demo's renderer, then given the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deco.demo.images.scenes import BACKGROUND, COLOURS, COLUMNS, ROWS, SHAPES, Scene, SceneObject, render

DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
STILL = "still"
SIZE = "large"  # frames are small: every object is drawn at the largest size
# ... at this radius (a fraction of the cell side): the image kind's "large" when the video results in
# benchmarks/video_demo/ were recorded, pinned here so they rerun and cached videos stay valid when the
# image kind's sizes change.
RADIUS = 0.38
CLOCK_STEP = (80, 80, 80)  # background brightening from the first frame to the last


@dataclass(frozen=True)
class Track:
    """One object through time: on screen in frames [appear, leave), sliding from `start` to `end`."""

    colour: str
    shape: str
    start: tuple[int, int]  # (row, col) cell at its first visible frame
    end: tuple[int, int]  # (row, col) cell at its last visible frame
    appear: int
    leave: int

    @property
    def direction(self) -> str:
        """left / right / up / down, or still."""
        step = (int(np.sign(self.end[0] - self.start[0])), int(np.sign(self.end[1] - self.start[1])))
        return next((name for name, d in DIRECTIONS.items() if d == step), STILL)

    def visible(self, t: int) -> bool:
        """Whether the object is in frame t."""
        return self.appear <= t < self.leave

    def centre_at(self, t: int, cell: float) -> tuple[float, float]:
        """(x, y) of its centre in frame t: a straight slide from start to end while visible."""
        span = max(1, self.leave - 1 - self.appear)
        p = min(1.0, max(0.0, (t - self.appear) / span))
        row = self.start[0] + p * (self.end[0] - self.start[0])
        col = self.start[1] + p * (self.end[1] - self.start[1])
        return (col + 0.5) * cell, (row + 0.5) * cell


@dataclass(frozen=True)
class Video:
    """Tracks, frame count, frame side in pixels, and whether frames carry the clock."""

    tracks: tuple[Track, ...]
    frames: int
    image_size: int
    clock: bool = True

    def frame(self, t: int) -> Scene:
        """Frame t as a still scene (row/col = the cell its centre is in)."""
        cell = self.image_size / 3
        objects = []
        for tr in self.tracks:
            if tr.visible(t):
                cx, cy = tr.centre_at(t, cell)
                row, col = min(2, int(cy // cell)), min(2, int(cx // cell))
                objects.append(SceneObject(tr.colour, tr.shape, SIZE, row, col, cx, cy, RADIUS * cell))
        return Scene(tuple(objects), self.image_size)

    def cells(self, track: Track) -> list[str]:
        """The cell name of a track's centre in each frame it is visible."""
        return [o.cell for t in range(track.appear, track.leave) for o in self.frame(t).objects
                if o.colour == track.colour]


def cell_name(cell: tuple[int, int]) -> str:
    """'top-left' ... 'bottom-right' (the image demo's cell names)."""
    return f"{ROWS[cell[0]]}-{COLUMNS[cell[1]]}"


def clock_colour(t: int, frames: int) -> tuple[int, int, int]:
    """Background colour of frame t: the image demo's background, brightened linearly with time."""
    p = t / max(1, frames - 1)
    return tuple(int(round(b + p * s)) for b, s in zip(BACKGROUND, CLOCK_STEP, strict=True))  # type: ignore[return-value]


def _visits(rng: np.random.Generator, k: int, frames: int) -> list[tuple[int, int]]:
    """Equal-length visits taking turns: the first from frame 0, the last to the end, others between."""
    if k == 1:
        return [(0, frames)]
    length = int(rng.integers(frames // 2, frames - k + 2))  # k-1 distinct later starts must fit
    middle = sorted(rng.choice(np.arange(1, frames - length), size=k - 2, replace=False).tolist()) if k > 2 else []
    return [(s, s + length) for s in [0, *middle, frames - length]]


def _motion(rng: np.random.Generator, still_prob: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """Start and end cells: still with `still_prob`, else 1 or 2 cells along a row or column."""
    start = (int(rng.integers(3)), int(rng.integers(3)))
    if rng.random() < still_prob:
        return start, start
    options = [(start[0] + dr * n, start[1] + dc * n) for dr, dc in DIRECTIONS.values() for n in (1, 2)]
    options = [e for e in options if 0 <= e[0] < 3 and 0 <= e[1] < 3]
    return start, options[int(rng.integers(len(options)))]


def sample_video(rng: np.random.Generator, frames: int, image_size: int, max_objects: int = 3,
                 still_prob: float = 0.2, clock: bool = True) -> Video:
    """1..max_objects tracks with distinct colours and shapes, visits taking turns in a random order."""
    k = int(rng.integers(1, min(max_objects, len(SHAPES), frames) + 1))
    shapes = rng.choice(SHAPES, size=k, replace=False).tolist()
    colours = rng.choice(list(COLOURS), size=k, replace=False).tolist()
    tracks = [Track(c, s, *_motion(rng, still_prob), a, b)
              for c, s, (a, b) in zip(colours, shapes, _visits(rng, k, frames), strict=True)]
    order = rng.permutation(k)  # the track list is not in time order
    return Video(tuple(tracks[i] for i in order), frames, image_size, clock)


def render_frame(video: Video, t: int) -> np.ndarray:
    """Frame t [S, S, 3] uint8: the image demo's rendering, its background set to the clock colour."""
    pixels = np.array(render(video.frame(t)), dtype=np.uint8)
    if video.clock:
        background = (pixels == np.array(BACKGROUND, dtype=np.uint8)).all(-1)
        pixels[background] = clock_colour(t, video.frames)
    return pixels


def render_video(video: Video) -> np.ndarray:
    """Frames [F, S, S, 3] uint8."""
    return np.stack([render_frame(video, t) for t in range(video.frames)])
