"""What attention-based reducers read from the vision tower: its own module, so that the tower code that
computes them (deco.reducers.tower) and the reducer base that asks for them (deco.reducers.base) need not
import each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Cues:
    """What attention-based reducers read from the vision tower (None for the others)."""

    importance: torch.Tensor | None = None  # [I, N] attention each patch gets ([CLS] row, or mean over patches)
    keys: torch.Tensor | None = None  # [I, N, d] the feature layer's keys, heads averaged (VisionZip's metric)
    seconds: float = 0.0  # time spent computing these beyond the encoder pass itself
