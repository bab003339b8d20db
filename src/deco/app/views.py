"""What each model's panel shows for an analysis: word choices, overlays, the route and the metrics table."""

from __future__ import annotations

from typing import Any

from PIL import Image

from deco.app.engine import Analysis
from deco.app.overlay import ALPHA, heat_overlay, token_grid, with_legend

# Metrics shown on the page, in order, with a short name each (deco.analysis.metrics computes them).
METRICS = (
    ("within_mean_cos", "redundancy: mean cosine between the image's visual tokens"),
    ("within_max_cos", "redundancy: most similar pair of tokens"),
    ("within_near_duplicate_fraction", "redundancy: token pairs with cosine >= 0.95"),
    ("coverage", "coverage: patches with at least half the uniform share of relevance"),
    ("map_entropy_norm", "spread: entropy of a token's map / log N (1 = every patch)"),
    ("effective_patches_per_token", "spread: patches a token looks at, exp(entropy)"),
    ("grid_order_spearman", "spatial fidelity: relevance centres follow the token grid (rank correlation)"),
    ("cell_occupancy", "spatial fidelity: grid cells holding a token's relevance centre (1 = tiled)"),
)


def patch_grid(analysis: Analysis) -> tuple[int, int]:
    """The (h, w) patch grid of the maps (one-frame video grids drop their time axis)."""
    grid = analysis.explanation.q2p.grid
    return (int(grid[-2]), int(grid[-1]))


def word_choices(analysis: Analysis) -> list[tuple[str, str]]:
    """(label, value) per answer word; the value is the word's index in the explanation."""
    return [(w.text, str(i)) for i, w in enumerate(analysis.explanation.words)]


def find_word(analysis: Analysis, text: str) -> int | None:
    """Index of the first answer word equal to `text` (ignoring case and punctuation), or None."""
    def norm(word: str) -> str:
        return word.strip().strip(".,;:!?\"'").lower()

    target = norm(text)
    return next((i for i, w in enumerate(analysis.explanation.words) if norm(w.text) == target), None)


def word_heat(analysis: Analysis, index: int) -> Any:
    """The [N] Text-to-Patch map of answer word `index`."""
    return analysis.explanation.word_t2p[index].float().cpu().numpy()


def word_overlay(analysis: Analysis, index: int, alpha: float = ALPHA, peak: float | None = None) -> Image.Image:
    """Text-to-Patch map of answer word `index` over the image the model saw, with its legend (scaled to
    `peak` when both models share one scale, else to its own maximum)."""
    exp = analysis.explanation
    heat = word_heat(analysis, index)
    top = float(heat.max()) if peak is None else peak
    caption = f"{analysis.label} | word '{exp.words[index].text}' | all LLM layers -> {exp.q2p.route}"
    picture = heat_overlay(exp.image, heat, patch_grid(analysis), alpha=alpha, peak=top)
    return with_legend(picture, caption, top, "shared by both models" if peak is not None else "this map's max")


def token_overlay(analysis: Analysis, index: int, alpha: float = ALPHA) -> Image.Image:
    """Query-to-Patch map of visual token `index` over the image the model saw, with its legend."""
    exp = analysis.explanation
    heat = exp.q2p.maps[0, index].float().cpu().numpy()
    caption = f"{analysis.label} | visual token {index} | projector ({exp.q2p.route})"
    picture = heat_overlay(exp.image, heat, patch_grid(analysis), alpha=alpha)
    return with_legend(picture, caption, float(heat.max()), "this map's max")


def token_picker(analysis: Analysis, index: int | None) -> Image.Image | None:
    """The clickable token grid (None for learned queries, which have no place on the image)."""
    out_grid = analysis.explanation.q2p.out_grid
    return None if out_grid is None else token_grid(analysis.explanation.image, tuple(out_grid), index)


def token_label(analysis: Analysis) -> str:
    """The token slider's label: tokens on a grid can also be clicked; learned queries only by index."""
    if analysis.explanation.q2p.out_grid is None:
        return "query index (learned queries have no place on the image: pick one by number)"
    return "visual token (or click a cell of the token grid)"


def route_markdown(analysis: Analysis) -> str:
    """The Query-to-Patch route, named, with what it means."""
    q2p = analysis.explanation.q2p
    grid = f"a {q2p.out_grid[0]}x{q2p.out_grid[1]} grid" if q2p.out_grid else "learned queries, no grid"
    return (f"**Query-to-Patch route: {q2p.route}** ({q2p.note}). Projector `{q2p.projector}`: "
            f"{q2p.maps.shape[1]} visual tokens ({grid}) from {q2p.maps.shape[2]} patches.")


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def metrics_markdown(analysis: Analysis) -> str:
    """The image's token metrics as a Markdown table, with the timings of the analysis."""
    rows = [f"| {meaning} (`{key}`) | {_number(analysis.metrics.get(key))} |" for key, meaning in METRICS]
    t = analysis.explanation.timings
    timing = (f"Explained in {analysis.seconds:.2f} s (Query-to-Patch {t.get('query_to_patch_s', 0):.2f} s, "
              f"Text-to-Query {t.get('text_to_query_s', 0):.2f} s).")
    notes = "".join(f" {n}." for n in analysis.notes)
    return "\n".join(["| this image's visual tokens | value |", "|---|---:|", *rows, "", timing + notes])
