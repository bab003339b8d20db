"""Pictures for the page: a relevance map over the image, and the token grid to click on.

The maps are deco.analysis results ([N] patch relevance); this only draws them, the way
deco.analysis.figures does (grey image underneath, inferno heat map on top, nearest-neighbour patches),
but straight to a PIL image so a click is answered in milliseconds instead of a Matplotlib figure.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

DISPLAY = 336  # pixels per side on the page: the demo's 48 px scenes are tiny
ALPHA = 0.65
LEGEND = 58  # pixels under the map: caption, colour bar, its scale


def _grey(image: np.ndarray, size: int) -> np.ndarray:
    """[size, size, 3] grey copy of an [S, S, 3] image in [0, 1], so the heat colours stay readable."""
    grey = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    big = Image.fromarray((grey * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(big, dtype=np.float32)[..., None] / 255.0, 3, axis=-1)


def heat_overlay(image: np.ndarray, heat: np.ndarray, grid: tuple[int, int], size: int = DISPLAY,
                 alpha: float = ALPHA, peak: float | None = None) -> Image.Image:
    """The map `heat` [N] (patches, row-major on `grid`) over the image, scaled to `peak` (default: its own
    maximum) with `alpha` of heat over the grey image."""
    values = np.asarray(heat, dtype=np.float32).reshape(grid)
    top = float(values.max()) if peak is None else float(peak)
    scaled = np.clip(values / top, 0.0, 1.0) if top > 0 else values
    cells = Image.fromarray((scaled * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    colours = colormaps["inferno"](np.asarray(cells, dtype=np.float32) / 255.0)[..., :3]
    blended = (1 - alpha) * _grey(image, size) + alpha * colours
    return Image.fromarray((blended * 255).round().astype(np.uint8))


def with_legend(picture: Image.Image, caption: str, peak: float, scale: str) -> Image.Image:
    """The map with a legend under it: the caption (model, word or token, layers), the inferno colour bar
    and its scale from 0 to `peak` (`scale` says whether that is this map's maximum or one shared)."""
    width = picture.width
    canvas = Image.new("RGB", (width, picture.height + LEGEND), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    top = picture.height
    draw.text((4, top + 2), caption[:60], fill=(0, 0, 0))
    ramp = colormaps["inferno"](np.linspace(0.0, 1.0, width - 8))[:, :3]
    bar = Image.fromarray((np.repeat(ramp[None], 12, axis=0) * 255).astype(np.uint8))
    canvas.paste(bar, (4, top + 18))
    for x, text in ((4, "0"), (width // 2 - 12, f"{peak / 2:.3g}"), (width - 44, f"{peak:.3g}")):
        draw.line([(max(4, x), top + 30), (max(4, x), top + 33)], fill=(0, 0, 0))
        draw.text((x, top + 34), text, fill=(0, 0, 0))
    draw.text((4, top + 46), f"relevance share per patch; scale: {scale}"[:60], fill=(80, 80, 80))
    return canvas


def token_grid(image: np.ndarray, out_grid: tuple[int, int], selected: int | None, size: int = DISPLAY) -> Image.Image:
    """The image with the visual tokens' grid drawn on it and the selected token outlined (click a cell)."""
    canvas = Image.fromarray((np.asarray(image)[..., :3] * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    rows, cols = out_grid
    for r in range(1, rows):
        draw.line([(0, r * size / rows), (size, r * size / rows)], fill=(128, 128, 128), width=1)
    for c in range(1, cols):
        draw.line([(c * size / cols, 0), (c * size / cols, size)], fill=(128, 128, 128), width=1)
    if selected is not None and 0 <= selected < rows * cols:
        r, c = divmod(selected, cols)
        box = [c * size / cols, r * size / rows, (c + 1) * size / cols - 1, (r + 1) * size / rows - 1]
        draw.rectangle(box, outline=(255, 220, 0), width=3)
    return canvas


def clicked_token(x: float, y: float, out_grid: tuple[int, int], size: int = DISPLAY) -> int:
    """The token under a click at pixel (x, y) of a `token_grid` picture."""
    rows, cols = out_grid
    r = min(rows - 1, max(0, int(y * rows / size)))
    c = min(cols - 1, max(0, int(x * cols / size)))
    return r * cols + c
