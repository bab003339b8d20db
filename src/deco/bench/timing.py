"""Timing method: synchronised clocks, interleaved run order, median and inter-quartile range."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a clock read after it covers the work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def now(device: torch.device | str) -> float:
    """Seconds on a monotonic clock, after the device's queued work is done."""
    synchronize(device)
    return time.perf_counter()


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, IQR, min, max and count of timing samples (seconds)."""
    values = sorted(float(s) for s in samples)
    if not values:
        return {"median": None, "q1": None, "q3": None, "iqr": None, "min": None, "max": None, "n": 0}
    if len(values) == 1:
        q1 = q3 = values[0]
    else:
        # "inclusive" quartiles interpolate between samples, so 2-3 repeats still give a spread.
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """`items` rotated by the round index (and reversed on odd rounds).

    Each round runs every configuration once; rotating the start and alternating the direction
    puts each configuration early, late, before and after each other one across rounds, so slow
    drifts and bursts of load from other processes hit all configurations alike.
    """
    items = list(items)
    if not items:
        return items
    k = round_index % len(items)
    out = items[k:] + items[:k]
    return out[::-1] if round_index % 2 else out


def interleave(
    jobs: dict[str, Callable[[], dict[str, float]]],
    repeats: int,
    warmup: int,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Run every job once per round, in rotated order; return {job: {measure: [samples]}}.

    Each job times itself and returns named durations in seconds (a generation job returns both
    its prefill and its per-token decode time). The first `warmup` rounds are discarded.
    """
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in jobs}
    total = warmup + repeats
    for r in range(total):
        for name in rotated(list(jobs), r):
            measured = jobs[name]()
            if r >= warmup:
                for key, value in measured.items():
                    samples[name].setdefault(key, []).append(value)
        if on_round is not None:
            on_round(r + 1, total)
    return samples
