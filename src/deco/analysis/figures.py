"""PNG figures: per-query overlays, per-word Text-to-Patch heat maps, Text-to-Query matrix, metric bars.

Matplotlib's object API (Figure + Agg canvas) is used directly, so nothing depends on or changes the
global pyplot backend. Every heat map is drawn on the image exactly as the model saw it (after its
resize/crop/pad), with the patch grid stretched over it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deco.projectors.base import Grid

CMAP = "inferno"


def _label(text: str, limit: int = 14) -> str:
    """A token/word as a safe, short plot label (no mathtext, control characters shown escaped)."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    shown = shown.replace("$", r"\$")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, vmax: float | None = None) -> Any:
    """Draw the image, then the heat map over it (semi-transparent); returns the heat-map artist."""
    size_h, size_w = image.shape[:2]
    # A grey copy underneath keeps the shapes visible without its colours mixing into the colour map.
    grey = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, extent=(0, size_w, size_h, 0))
    artist = ax.imshow(heat, cmap=CMAP, alpha=0.65, extent=(0, size_w, size_h, 0), vmin=0.0,
                       vmax=vmax if vmax is not None else max(float(heat.max()), 1e-12), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def _pick(count: int, limit: int) -> list[int]:
    """`limit` indices spread evenly over range(count) (all of them when count <= limit)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def query_grid_figure(
    image: np.ndarray, maps: torch.Tensor, grid: Grid, path: str | Path, title: str, max_queries: int = 64
) -> Path:
    """Each token's Query-to-Patch map over the image, in a grid of panels (up to `max_queries`)."""
    maps = maps.detach().float().cpu()
    chosen = _pick(maps.shape[0], max_queries)
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(1.5 * cols + 1.2, 1.55 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    artist = None
    for slot, ax in enumerate(axes.flat):
        if slot >= len(chosen):
            ax.axis("off")
            continue
        m = chosen[slot]
        heat = maps[m].reshape(grid).numpy()
        peak = float(heat.max())
        artist = _overlay(ax, image, heat / peak if peak > 0 else heat, vmax=1.0)
        ax.set_title(f"token {m}", fontsize=8, pad=2)
    shown = "" if len(chosen) == maps.shape[0] else f" ({len(chosen)} of {maps.shape[0]} tokens)"
    fig.suptitle(_label(title + shown, 150), fontsize=10)
    if artist is not None:
        bar = fig.colorbar(artist, ax=axes, shrink=0.6)
        bar.set_label("relevance / each map's maximum", fontsize=8)
    return _save(fig, path)


def text_to_patch_figure(
    image: np.ndarray, word_maps: torch.Tensor, words: list[str], grid: Grid, path: str | Path, title: str,
    max_words: int = 16,
) -> Path:
    """The image, then one Text-to-Patch heat map per answer word, each with its colour bar."""
    maps = word_maps.detach().float().cpu()
    chosen = list(range(min(len(words), max_words)))
    panels = len(chosen) + 1
    cols = min(panels, 5)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(2.8 * cols, 2.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for slot, ax in enumerate(axes.flat):
        if slot == 0:
            ax.imshow(image)
            ax.set_title("image (as the model saw it)", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        elif slot <= len(chosen):
            k = chosen[slot - 1]
            artist = _overlay(ax, image, maps[k].reshape(grid).numpy())
            ax.set_title(f"word {k + 1}: '{_label(words[k], 20)}'", fontsize=9)
            bar = fig.colorbar(artist, ax=ax, shrink=0.8)
            bar.ax.tick_params(labelsize=7)
            bar.set_label("share of relevance", fontsize=7)
        else:
            ax.axis("off")
    if not chosen:
        title += " (no answer words to show)"
    fig.suptitle(_label(title, 150), fontsize=10)
    return _save(fig, path)


def text_to_query_figure(maps: torch.Tensor, tokens: list[str], path: str | Path, title: str) -> Path:
    """Answer tokens (rows) x visual tokens (columns) relevance matrix, rows summing to 1."""
    data = maps.detach().float().cpu().numpy()
    fig = Figure(figsize=(min(3 + 0.12 * data.shape[1], 16), 1.6 + 0.3 * data.shape[0]), layout="constrained")
    ax = fig.subplots()
    artist = ax.imshow(data, aspect="auto", cmap=CMAP, interpolation="nearest", vmin=0.0)
    ax.set_yticks(range(len(tokens)))
    ax.set_yticklabels([_label(t.replace(" ", "\u2423")) for t in tokens], fontsize=8)  # spaces shown as ␣
    ax.set_xlabel("visual token (projector output index)")
    ax.set_ylabel("answer token")
    ax.set_title(_label(title, 150), fontsize=10)
    fig.colorbar(artist, ax=ax).set_label("share of relevance", fontsize=8)
    return _save(fig, path)


BAR_METRICS = (
    ("within_mean_cos", "mean cosine within image\n(redundancy, lower = more diverse)"),
    ("within_near_duplicate_fraction", "near-duplicate token pairs\n(fraction, within image)"),
    ("same_index_cos", "same token across images\n(cosine; high = ignores image)"),
    ("coverage", "patch coverage\n(higher = more of the image kept)"),
    ("map_entropy_norm", "Query-to-Patch map entropy\n(/ log N; low = sparse)"),
    ("grid_order_spearman", "grid-order Spearman\n(n/a for learned queries)"),
    ("cell_occupancy", "relevance-centre cell occupancy\n(1 = tokens tile the image)"),
)


def metrics_bar_chart(rows: list[dict[str, Any]], path: str | Path, title: str = "Visual-token metrics") -> Path:
    """One panel per metric, one bar per model; missing values are marked n/a."""
    cols = 4
    panels = len(BAR_METRICS)
    fig = Figure(figsize=(4.0 * cols, 3.3 * math.ceil(panels / cols) + 0.5), layout="constrained")
    axes = fig.subplots(math.ceil(panels / cols), cols, squeeze=False)
    labels = [_label(f"{r['model']} ({r['route']})", 28) for r in rows]
    colours = [f"C{i % 10}" for i in range(len(rows))]
    for ax, (key, name) in zip(axes.flat, BAR_METRICS, strict=False):
        values = [r.get(key) for r in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(range(len(rows)), heights, color=colours)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate("n/a" if v is None else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        low = min([0.0] + [v for v in values if v is not None])
        ax.set_ylim(low * 1.15, max([1.0] + heights) * 1.15)
        ax.axhline(0, color="grey", linewidth=0.5)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.suptitle(_label(title, 150), fontsize=11)
    return _save(fig, path)
