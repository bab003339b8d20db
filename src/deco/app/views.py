"""What each model's panel shows for an analysis: word choices, overlays, the route and the metrics table."""

from __future__ import annotations

from typing import Any

from PIL import Image

from deco.app.engine import Analysis
from deco.app.overlay import heat_overlay, token_grid

# Metrics shown on the page, in order, with a short explanation each (deco.analysis.metrics computes them).
METRICS = (
    ("within_mean_cos", "mean cosine between this image's visual tokens (redundancy)"),
    ("within_max_cos", "most similar pair of tokens"),
    ("within_near_duplicate_fraction", "token pairs with cosine >= 0.95 (near-duplicates)"),
    ("coverage", "patches that receive at least half the uniform share of relevance"),
    ("map_entropy_norm", "entropy of each token's map / log N (1 = spread over every patch)"),
    ("effective_patches_per_token", "exp(entropy): patches a token looks at"),
    ("grid_order_spearman", "rank correlation of relevance centres with the token grid (grid tokens only)"),
    ("cell_occupancy", "grid cells holding at least one token's relevance centre (1 = tokens tile the image)"),
)


def patch_grid(analysis: Analysis) -> tuple[int, int]:
    """The (h, w) patch grid of the maps (one-frame video grids drop their time axis)."""
    grid = analysis.explanation.q2p.grid
    return (int(grid[-2]), int(grid[-1]))


def word_choices(analysis: Analysis) -> list[tuple[str, str]]:
    """(label, value) per answer word; the value is the word's index in the explanation."""
    return [(w.text, str(i)) for i, w in enumerate(analysis.explanation.words)]


def word_overlay(analysis: Analysis, index: int) -> Image.Image:
    """Text-to-Patch map of answer word `index` over the image the model saw."""
    exp = analysis.explanation
    return heat_overlay(exp.image, exp.word_t2p[index].float().cpu().numpy(), patch_grid(analysis))


def token_overlay(analysis: Analysis, index: int) -> Image.Image:
    """Query-to-Patch map of visual token `index` over the image the model saw."""
    exp = analysis.explanation
    return heat_overlay(exp.image, exp.q2p.maps[0, index].float().cpu().numpy(), patch_grid(analysis))


def token_picker(analysis: Analysis, index: int | None) -> Image.Image | None:
    """The clickable token grid (None for learned queries, which have no place on the image)."""
    out_grid = analysis.explanation.q2p.out_grid
    return None if out_grid is None else token_grid(analysis.explanation.image, tuple(out_grid), index)


def route_markdown(analysis: Analysis) -> str:
    """The Query-to-Patch route, named, with what it means."""
    q2p = analysis.explanation.q2p
    grid = f"a {q2p.out_grid[0]}x{q2p.out_grid[1]} grid" if q2p.out_grid else "learned queries, no grid"
    return (f"**Query-to-Patch route: {q2p.route}** ({q2p.note}). Projector `{q2p.projector}`: "
            f"{q2p.maps.shape[1]} visual tokens ({grid}) from {q2p.maps.shape[2]} patches.")


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def metrics_markdown(analysis: Analysis) -> str:
    """The image's token metrics as a Markdown table, with the timings of the analysis."""
    rows = [f"| {key} | {_number(analysis.metrics.get(key))} | {meaning} |" for key, meaning in METRICS]
    t = analysis.explanation.timings
    timing = (f"Explained in {analysis.seconds:.2f} s (Query-to-Patch {t.get('query_to_patch_s', 0):.2f} s, "
              f"Text-to-Query {t.get('text_to_query_s', 0):.2f} s).")
    notes = "".join(f" {n}." for n in analysis.notes)
    return "\n".join(["| metric (this image) | value | meaning |", "|---|---:|---|", *rows, "", timing + notes])
