"""Question families over a video: one-word answers, the referent last (as the image demo's).

An object is named by its colour (distinct per video; the tiny encoder reads colour reliably, shape
less so), and every answer is read through it. In development runs, questions about a pair ("is red
before blue", like the image demo's "is red left of blue") and questions answered by a colour ("which
comes first", "start at top-left") stayed at chance for every variant within the budget. Four of the five families need time; `count` is the control that
needs every frame but not their order.

| family    | example question    | answers                        | needs                              |
|-----------|---------------------|--------------------------------|------------------------------------|
| direction | direction red       | left, right, up, down, still   | where it is early vs late          |
| order     | order red           | first, second, third           | when it comes, against the others  |
| start     | start red           | top-left ... bottom-right      | where it is in its first frame     |
| end       | end red             | top-left ... bottom-right      | where it is in its last frame      |
| count     | how many shapes     | 1, 2, 3                        | every frame (visits take turns)    |

`start`/`end` ask where an object is when it comes and when it goes. The issue's "what is at a place
at the start versus the end" (a place named, a colour answered) stayed at chance for every variant in
development runs while this form, the same read of one moment, is learnable in budget.
Captions trace every object frame by frame ("red top-left top-center top-right ."), in the order the
objects come, so the caption turn practises the reading the questions need.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deco.demo.images.scenes import COLOURS, COLUMNS, ROWS
from deco.demo.video.scenes import DIRECTIONS, STILL, Track, Video, cell_name

QA = tuple[str, str]
ORDINALS = ("first", "second", "third")
FAMILIES = ("direction", "order", "start", "end", "count")
DESCRIBE = "describe the video"


def caption(video: Video) -> str:
    """Each object's colour and its cell in every frame it is on screen, objects in order of coming."""
    tracks = sorted(video.tracks, key=lambda tr: tr.appear)
    return " ".join(" ".join([tr.colour, *video.cells(tr), "."]) for tr in tracks)


def _pick(video: Video, rng: np.random.Generator) -> Track:
    return video.tracks[int(rng.integers(len(video.tracks)))]


def _direction(track: Track) -> QA:
    return f"direction {track.colour}", track.direction


def _start(track: Track) -> QA:
    return f"start {track.colour}", cell_name(track.start)


def _end(track: Track) -> QA:
    return f"end {track.colour}", cell_name(track.end)


def _order(video: Video, track: Track) -> QA:
    """Which comer the object is; visits never start together."""
    rank = sorted(tr.appear for tr in video.tracks).index(track.appear)
    return f"order {track.colour}", ORDINALS[rank]


def _count(video: Video) -> QA:
    return "how many shapes", str(len(video.tracks))


PER_OBJECT: dict[str, Callable[[Track], QA]] = {"direction": _direction, "start": _start, "end": _end}


def ask(family: str, video: Video, rng: np.random.Generator) -> QA | None:
    """One (question, answer) of a family, or None when the video cannot pose it (order, one object)."""
    if family in PER_OBJECT:
        return PER_OBJECT[family](_pick(video, rng))
    if family == "order":  # a lone object is trivially first: not asked
        return _order(video, _pick(video, rng)) if len(video.tracks) > 1 else None
    if family == "count":
        return _count(video)
    raise KeyError(f"unknown video question family '{family}'")


def conversation_questions(video: Video, rng: np.random.Generator, n: int) -> list[tuple[str, QA]]:
    """Up to n (family, qa) pairs drawn from every question the video poses, in random order.

    Every object gets its direction, start and end question (and its order one when there are
    several), plus the count. The order is random: the test asks each question as the first turn,
    and a family always asked first would teach "first turn -> that family's answer" (a development
    run answered "2" to "direction red" that way).
    """
    pairs = [(f, ask_fn(tr)) for tr in video.tracks for f, ask_fn in PER_OBJECT.items()]
    if len(video.tracks) > 1:
        pairs += [("order", _order(video, tr)) for tr in video.tracks]
    pairs.append(("count", _count(video)))
    return [pairs[i] for i in rng.permutation(len(pairs))[:n]]


def vocabulary() -> list[str]:
    """Every word a question, answer or caption can use."""
    words = {"direction", "order", "start", "end", "how", "many", "shapes", ".", STILL, *ORDINALS}
    words |= set(DIRECTIONS) | set(COLOURS) | {str(i) for i in range(10)}
    words |= {f"{r}-{c}" for r in ROWS for c in COLUMNS} | set(DESCRIBE.split())
    return sorted(words)
