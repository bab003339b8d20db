"""Metrics for whole models over a set of images, side by side, written as JSON and Markdown."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from deco.analysis.explanation import ImageInput, load_images, model_query_to_patch, pixel_values
from deco.analysis.loading import images_in, load_for_analysis
from deco.analysis.metrics import coverage, redundancy, spatial_fidelity
from deco.analysis.query_patch import eval_mode
from deco.errors import ConfigError, DataError
from deco.model.multimodal import DecoModel

# Column order of the Markdown table (the JSON keeps every key).
TABLE_COLUMNS = (
    "model", "projector", "route", "tokens", "images",
    "within_mean_cos", "within_max_cos", "within_near_duplicate_fraction", "across_mean_cos",
    "same_index_cos", "coverage", "map_entropy_norm", "effective_patches_per_token",
    "grid_order_spearman", "cell_occupancy", "own_window_share", "seconds",
)


def projector_metrics(
    model: DecoModel,
    images: Sequence[ImageInput],
    label: str | None = None,
    route: str = "auto",
    threshold: float = 0.5,
    duplicate_cos: float = 0.95,
    chunk_size: int = 16,
) -> dict[str, Any]:
    """One table row: redundancy of the projector outputs, coverage and spatial fidelity of its maps."""
    if not threshold > 0:  # also rejects NaN
        raise ConfigError(f"coverage threshold must be > 0 (a share of the uniform relevance), got {threshold}")
    if not -1 <= duplicate_cos <= 1:
        raise ConfigError(f"duplicate_cos must be a cosine in [-1, 1], got {duplicate_cos}")
    start = time.perf_counter()
    pils = load_images(list(images))
    if not pils:
        raise DataError("no images to measure the projector on")
    pixels = pixel_values(model, pils)  # [I, 3, S, S]
    device = next(model.projector.parameters(), pixels).device
    with torch.no_grad(), eval_mode(model):
        tokens = model.encode_images(pixels.to(device))  # [I, M, Dl]
    q2p = model_query_to_patch(model, pixels, route, chunk_size)
    row: dict[str, Any] = {
        "model": label or model.projector.name,
        "projector": model.projector.name,
        "route": q2p.route,
        "tokens": tokens.shape[1],
        "patches": q2p.maps.shape[-1],
        "images": len(pils),
        "zero_relevance_tokens": q2p.zero_rows,
        "threshold": threshold,
        "duplicate_cos": duplicate_cos,
    }
    row.update(redundancy(tokens, duplicate_cos))
    row.update(coverage(q2p.maps, threshold))
    row.update(spatial_fidelity(q2p.maps, q2p.grid, q2p.out_grid))
    row["seconds"] = time.perf_counter() - start
    return row


def compare_projectors(
    models: Mapping[str, DecoModel | str | Path] | Sequence[DecoModel | str | Path],
    images: Sequence[ImageInput] | str | Path,
    route: str = "auto",
    threshold: float = 0.5,
    duplicate_cos: float = 0.95,
    max_images: int | None = 32,
    chunk_size: int = 16,
    allow_pickle: bool = False,
) -> list[dict[str, Any]]:
    """One metrics row per model on the same images: models by label (dict) or as a list; models are
    DecoModels or saved-model/run paths; images are paths/PIL images or a folder."""
    if isinstance(images, (str, Path)):
        images = images_in(images, max_images)
    elif max_images:
        images = list(images)[:max_images]
    items = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    rows = []
    for label, model in items:
        if isinstance(model, (str, Path)):
            label = label or Path(model).name
            model = load_for_analysis(model, allow_pickle)
        rows.append(projector_metrics(model, images, label, route, threshold, duplicate_cos, chunk_size))
    labels = [r["model"] for r in rows]
    for k, r in enumerate(rows):  # two models with one projector name would read the same in a table
        if labels.count(labels[k]) > 1:
            r["model"] = f"{labels[k]}#{labels[: k + 1].count(labels[k])}"
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (TABLE_COLUMNS), with a legend of what each column means."""
    head = "| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in TABLE_COLUMNS) + " |\n" for r in rows)
    legend = (
        "\nroute: how Query-to-Patch maps were obtained (exact pooling matrix, attention relevance, or "
        "input-gradient sensitivity for projectors without attention). within_*/across_*: cosine similarity "
        "of output tokens within one image / between images; same_index_cos: token m of one image vs token m "
        "of another; near-duplicate: cosine >= duplicate_cos. coverage: fraction of patches receiving at "
        "least threshold x the uniform share of relevance. map_entropy_norm: entropy of each token's map / "
        "log N. grid_order_spearman: rank correlation of relevance centres with the token's own grid "
        "position (n/a for learned queries). cell_occupancy: fraction of an M-cell grid holding a centre. "
        "own_window_share: fraction of a grid token's relevance on the patches of its own pooling window "
        "(n/a for learned queries).\n"
    )
    return head + body + legend


def write_table(rows: list[dict[str, Any]], out_dir: str | Path, stem: str = "metrics") -> tuple[Path, Path]:
    """Write `{stem}.json` and `{stem}.md` into out_dir; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    md_path.write_text(markdown_table(rows), encoding="utf-8")
    return json_path, md_path
