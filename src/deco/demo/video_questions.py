"""Question families over a video, one-word answers, referent last (as the image demo's, FACTS §7).

An object is named by the colour it first shows (distinct per video). Colour is what the tiny frame
encoder reads reliably (shape only about half the time at these sizes), so colours carry the
questions; an object that changes colour keeps its first-colour name, which takes tracking it.

| family    | example question      | answers                         | needs                         |
|-----------|-----------------------|---------------------------------|-------------------------------|
| direction | direction of red      | left, right, up, down, still    | where it is early vs late     |
| order     | earlier red or blue   | red / blue                      | when each one appears         |
| count     | how many shapes       | 1, 2, 3                         | every frame (brief visitors)  |
| start     | start at top-left     | a colour, or none               | the first frame, one place    |
| end       | end at top-left       | a colour, or none               | the last frame, one place     |
| colour    | end colour of red     | a colour                        | the last frame it is seen in  |
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deco.demo.questions import pick_questions
from deco.demo.scenes import COLOURS, COLUMNS, ROWS, SHAPES
from deco.demo.video_scenes import DIRECTIONS, STILL, Track, Video, cell_name

QA = tuple[str, str]
FAMILIES = ("direction", "order", "count", "start", "end", "colour")
DESCRIBE = "describe the video"
NONE = "none"


def caption(video: Video) -> str:
    """'red circle right from top-left to top-right turns blue enters . ...' for every object."""
    parts = []
    for tr in video.tracks:
        words = [tr.colours[0], tr.shape, tr.direction, "from", cell_name(tr.start), "to", cell_name(tr.end)]
        if len(tr.colours) > 1:
            words += ["turns", tr.colours[1]]
        if tr.appear > 0:
            words.append("enters")
        if tr.leave < video.frames:
            words.append("leaves")
        parts.append(" ".join(words) + " .")
    return " ".join(parts)


def _pick(video: Video, rng: np.random.Generator) -> Track:
    return video.tracks[int(rng.integers(len(video.tracks)))]


def _direction(video: Video, rng: np.random.Generator) -> QA:
    tr = _pick(video, rng)
    return f"direction of {tr.colours[0]}", tr.direction


def _order(video: Video, rng: np.random.Generator) -> QA | None:
    pairs = [(a, b) for a in video.tracks for b in video.tracks if a.appear < b.appear]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    first, second = (a, b) if rng.integers(2) else (b, a)  # the earlier one named first half the time
    return f"earlier {first.colours[0]} or {second.colours[0]}", a.colours[0]


def _count(video: Video, rng: np.random.Generator) -> QA:
    return "how many shapes", str(len(video.tracks))


def _place(video: Video, rng: np.random.Generator, frame: int, word: str) -> QA | None:
    """The colour of an object alone in a cell at that frame (2/3 of the time), or an empty cell ("none");
    cells shared by two objects are not asked."""
    occupied = video.occupants(frame)
    alone = [c for c, trs in occupied.items() if len(trs) == 1]
    empty = [f"{r}-{c}" for r in ROWS for c in COLUMNS if f"{r}-{c}" not in occupied]
    if alone and (rng.random() < 2 / 3 or not empty):
        cell = alone[int(rng.integers(len(alone)))]
        return f"{word} at {cell}", occupied[cell][0].colour_at(frame)
    if not empty:
        return None
    # Prefer cells that are occupied at the other end of the video: "none" then needs the right frame.
    other = video.occupants(video.frames - 1 if frame == 0 else 0)
    tricky = [c for c in empty if c in other]
    pool = tricky if tricky and rng.integers(2) else empty
    return f"{word} at {pool[int(rng.integers(len(pool)))]}", NONE


def _start(video: Video, rng: np.random.Generator) -> QA | None:
    return _place(video, rng, 0, "start")


def _end(video: Video, rng: np.random.Generator) -> QA | None:
    return _place(video, rng, video.frames - 1, "end")


def _colour(video: Video, rng: np.random.Generator) -> QA:
    """Objects that change colour are asked about half the time when there is one."""
    changing = [tr for tr in video.tracks if len(tr.colours) > 1]
    tr = changing[int(rng.integers(len(changing)))] if changing and rng.integers(2) else _pick(video, rng)
    return f"end colour of {tr.colours[0]}", tr.colours[-1]


ASKERS: dict[str, Callable[[Video, np.random.Generator], QA | None]] = {
    "direction": _direction,
    "order": _order,
    "count": _count,
    "start": _start,
    "end": _end,
    "colour": _colour,
}


def ask(family: str, video: Video, rng: np.random.Generator) -> QA | None:
    """One (question, answer) of a family, or None when the video cannot pose it."""
    return ASKERS[family](video, rng)


def conversation_questions(video: Video, rng: np.random.Generator, n: int) -> list[tuple[str, QA]]:
    """Up to n (family, qa) pairs from distinct families, in random order."""
    return pick_questions(ask, FAMILIES, video, rng, n)


def vocabulary() -> list[str]:
    """Every word a question, answer or caption can use."""
    words = {"direction", "of", "earlier", "or", "how", "many", "shapes", "start", "end", "at", "colour",
             "from", "to", "turns", "enters", "leaves", ".", NONE, STILL}
    words |= set(DIRECTIONS) | set(SHAPES) | set(COLOURS) | {str(i) for i in range(10)}
    words |= {f"{r}-{c}" for r in ROWS for c in COLUMNS} | set(DESCRIBE.split())
    return sorted(words)
