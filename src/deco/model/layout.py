"""AnyRes tile layouts as configs name them ('2x2' or [rows, cols]): parsing only, no torch.

config.py checks `vision.anyres.layouts` with this before any model import; anyres.py builds on it.
"""

from __future__ import annotations

from deco.errors import ConfigError

Layout = tuple[int, int]  # (rows, cols) of tiles


def parse_layout(value: object, where: str = "layout") -> Layout:
    """(rows, cols) from [2, 2], (1, 3) or '2x2'."""
    if isinstance(value, str):
        try:
            value = [int(p) for p in value.lower().replace(" ", "").split("x")]
        except ValueError:
            raise ConfigError(f"{where}: a tile layout looks like '2x2' (rows x cols), got {value!r}") from None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)):
        raise ConfigError(f"{where}: a tile layout is two positive ints (rows, cols), got {value!r}")
    return (value[0], value[1])
