"""A table of every projector at given widths/grid: tokens out and parameter count."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from deco.errors import DecoError
from deco.projectors.base import parse_grid, square_side
from deco.projectors.registry import build_projector, get_options_class, projector_names


def token_options(name: str, tokens: int | None) -> dict[str, Any]:
    """Map a requested output token count onto the projector's own option, where it has one."""
    if tokens is None:
        return {}
    fields = {f.name for f in dataclasses.fields(get_options_class(name))}
    for option in ("num_queries", "num_latents"):
        if option in fields:
            return {option: tokens}
    if "grid" in fields:
        side = square_side(tokens, "tokens")
        return {"grid": (side, side)}
    return {}  # linear, mlp, pixel_shuffle: the token count follows from the input grid


def projector_catalog(dv: int, dl: int, grid: str, tokens: int | None = None) -> list[dict[str, Any]]:
    """One row per registered projector: name, tokens for the grid, params, description.

    Modules are built on the meta device, so counting a 50M-parameter projector costs nothing.
    """
    in_grid = parse_grid(grid, "grid")
    rows = []
    for name in projector_names():
        try:
            with torch.device("meta"):
                proj = build_projector(name, dv, dl, token_options(name, tokens))
            # Video projectors (projectors/video.py) count tokens per video of their num_frames frames.
            video = getattr(proj, "supports_time", False)
            rows.append(
                {
                    "name": name,
                    "tokens": proj.num_tokens((proj.num_frames, *in_grid) if video else in_grid),
                    "params": proj.num_parameters(),
                    "description": proj.description + (f" (per video of {proj.num_frames} frames)" if video else ""),
                }
            )
        except DecoError as exc:
            rows.append({"name": name, "tokens": None, "params": None, "description": f"unavailable: {exc}"})
    return rows
