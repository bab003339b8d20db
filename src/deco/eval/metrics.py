"""Small helpers shared by the scorers: percentages and per-group means."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable


def percent(hits: float, total: int) -> float:
    """100 * hits / total, or 0.0 for an empty group."""
    return 100.0 * hits / total if total else 0.0


def mean_percent(values: list[float]) -> float:
    """Mean of per-question scores in [0, 1], as a percentage."""
    return percent(sum(values), len(values))


def by_group(items: Iterable[tuple[Hashable, float]]) -> dict[str, float]:
    """Percentage mean of scores per group key, groups sorted by name; None keys are skipped."""
    groups: dict[str, list[float]] = defaultdict(list)
    for key, value in items:
        if key is not None:
            groups[str(key)].append(value)
    return {k: mean_percent(v) for k, v in sorted(groups.items())}
