"""High resolution, LLaVA-NeXT style (AnyRes): tiles of the encoder's size plus a downscaled global view.

For an image, the tile layout (rows x cols) is picked among the configured ones as LLaVA-NeXT's
`select_best_resolution` does: the layout whose canvas (cols*S x rows*S) keeps the most of the image's
resolution once the image is scaled to fit it, ties broken by the least wasted canvas. The image is
scaled to fit the canvas keeping its aspect, padded (centred, black as LLaVA-NeXT), and cut into tiles;
the global view is the whole image through the encoder's usual transform. Every view (global first,
then tiles row by row) goes through the encoder and the projector, so each tile is pooled on its own.

The layout reaches the LLM as text tokens between the placeholder blocks:
- "newline" (LLaVA-NeXT): the tiles' token grids are joined into one (rows*ph) x (cols*pw) grid and a
  newline token ends each of its rows; the global view's tokens come first. Needs a projector whose
  output is a grid (DeCo-style pooling, mlp, linear). LLaVA-NeXT learns an `image_newline` vector and
  drops the padded rows/cols ("unpad"); here the tokenizer's own newline token marks rows (no new
  weights) and padded tiles are kept, so the count depends on the layout only and is known up front.
- "separator": global view, then each tile's block preceded by one separator token; any projector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image

from deco.errors import ConfigError, ShapeError
from deco.model.layout import Layout, parse_layout
from deco.projectors.base import Grid

if TYPE_CHECKING:  # processor.py imports this module
    from deco.model.processor import ImageTransform

# LLaVA-NeXT (v1.6) grid pinpoints at 336 px: 336x672, 672x336, 672x672, 1008x336, 336x1008.
DEFAULT_LAYOUTS: tuple[Layout, ...] = ((1, 2), (2, 1), (2, 2), (1, 3), (3, 1))
LAYOUT_TOKENS = ("newline", "separator")


def select_layout(size: tuple[int, int], layouts: Sequence[Layout], tile: int) -> Layout:
    """LLaVA-NeXT's choice for an image of (width, height): most kept resolution, then least waste."""
    width, height = size
    best, best_kept, best_waste = layouts[0], -1, float("inf")
    for rows, cols in layouts:
        canvas_w, canvas_h = cols * tile, rows * tile
        scale = min(canvas_w / width, canvas_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = canvas_w * canvas_h - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (rows, cols), kept, waste
    return best


def fit_on_canvas(image: Image.Image, canvas: tuple[int, int]) -> Image.Image:
    """Scale to fit (width, height) keeping the aspect ratio, centred on black padding."""
    width, height = image.size
    scale = min(canvas[0] / width, canvas[1] / height)
    new_w, new_h = min(canvas[0], max(1, round(width * scale))), min(canvas[1], max(1, round(height * scale)))
    out = Image.new("RGB", canvas, (0, 0, 0))
    out.paste(image.resize((new_w, new_h), Image.Resampling.BICUBIC),
              ((canvas[0] - new_w) // 2, (canvas[1] - new_h) // 2))
    return out


class AnyRes:
    """Tiles + global view for one encoder/projector pair; knows the token layout of every tiling.

    `tile_tokens` (M) is the projector's count for one view; `token_grid` its (ph, pw) output grid,
    or None when the output is not a grid (then only the "separator" layout works).
    """

    def __init__(
        self,
        transform: ImageTransform,
        tile_tokens: int,
        token_grid: Grid | None,
        layouts: Sequence[object] = DEFAULT_LAYOUTS,
        max_tiles: int = 4,
        layout_tokens: str = "newline",
    ) -> None:
        if isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1:
            raise ConfigError(f"anyres max_tiles must be a positive int, got {max_tiles!r}")
        if layout_tokens not in LAYOUT_TOKENS:
            raise ConfigError(f"anyres layout_tokens must be one of {', '.join(LAYOUT_TOKENS)}, got {layout_tokens!r}")
        parsed = [parse_layout(v, "anyres layouts") for v in layouts]
        if not parsed:
            raise ConfigError("anyres layouts: give at least one tile layout (rows, cols)")
        for rows, cols in parsed:
            if rows * cols > max_tiles:
                raise ConfigError(
                    f"anyres layouts: {rows}x{cols} has {rows * cols} tiles, more than max_tiles={max_tiles}"
                )
        if layout_tokens == "newline":
            if token_grid is None:
                raise ConfigError(
                    "anyres layout_tokens='newline' needs a projector whose output is a token grid "
                    "(deco, mlp, linear, ...); use layout_tokens='separator' for this projector"
                )
            if token_grid[0] * token_grid[1] != tile_tokens:
                raise ConfigError(f"anyres: token grid {token_grid} does not hold the projector's {tile_tokens} tokens")
        self.transform = transform
        self.tile_size = transform.size
        self.tile_tokens = tile_tokens
        self.token_grid = token_grid
        self.layouts: tuple[Layout, ...] = tuple(parsed)
        self.max_tiles = max_tiles
        self.layout_tokens = layout_tokens

    # ---- before running -----------------------------------------------------------------------

    def check_layout(self, layout: Layout, where: str = "image") -> Layout:
        """A layout must be one of the configured ones (and so within max_tiles)."""
        layout = tuple(layout)  # type: ignore[assignment]
        if layout not in self.layouts:
            rows, cols = layout
            extra = f" ({rows * cols} tiles, max_tiles={self.max_tiles})" if rows * cols > self.max_tiles else ""
            raise ShapeError(
                f"{where}: tile layout {rows}x{cols}{extra} is not among the configured layouts "
                f"{', '.join(f'{r}x{c}' for r, c in self.layouts)}"
            )
        return layout

    def num_views(self, layout: Layout) -> int:
        """Encoder inputs for one image: the global view plus rows*cols tiles."""
        return 1 + layout[0] * layout[1]

    def num_placeholders(self, layout: Layout) -> int:
        """Projector tokens for one image (global view + every tile)."""
        return self.num_views(layout) * self.tile_tokens

    def num_tokens(self, layout: Layout) -> int:
        """LLM positions one image takes: placeholders plus the newline/separator tokens."""
        rows, cols = self.check_layout(layout)
        if self.layout_tokens == "newline":
            return self.num_placeholders(layout) + rows * self.token_grid[0]  # type: ignore[index]
        return self.num_placeholders(layout) + rows * cols

    def tokens_for_size(self, size: tuple[int, int]) -> int:
        """LLM positions for an image of (width, height), before loading or running anything."""
        return self.num_tokens(select_layout(size, self.layouts, self.tile_size))

    def token_report(self) -> list[str]:
        """Human-readable token count per configured layout (logged before training starts)."""
        kind = "newline" if self.layout_tokens == "newline" else "separator"
        lines = []
        for layout in self.layouts:
            n = self.num_tokens(layout)
            views, extra = self.num_views(layout), n - self.num_placeholders(layout)
            lines.append(
                f"AnyRes: layout {layout[0]}x{layout[1]} -> {n} tokens per image "
                f"({views} views x {self.tile_tokens} + {extra} {kind})"
            )
        widest = max(self.layouts, key=self.num_tokens)
        lines.append(
            f"AnyRes: max {self.num_tokens(widest)} tokens per image (layout {widest[0]}x{widest[1]}, "
            f"max_tiles={self.max_tiles}, {self.tile_size} px tiles)"
        )
        return lines

    def block(self, layout: Layout, image_token_id: int, layout_token_id: int) -> list[int]:
        """The ids one `<image>` marker expands to: placeholders with layout tokens between them."""
        rows, cols = self.check_layout(layout)
        m = self.tile_tokens
        ids = [image_token_id] * m  # global view
        if self.layout_tokens == "newline":
            ph, pw = self.token_grid  # type: ignore[misc]
            for _ in range(rows * ph):
                ids += [image_token_id] * (cols * pw) + [layout_token_id]
        else:
            for _ in range(rows * cols):
                ids += [layout_token_id] + [image_token_id] * m
        return ids

    # ---- images --------------------------------------------------------------------------------

    def views(self, image: Image.Image, layout: Layout | None = None, where: str = "image") -> tuple[torch.Tensor, Layout]:
        """[1 + rows*cols, 3, S, S] (global view first, then tiles row-major) and the layout used."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if layout is None:
            layout = select_layout(image.size, self.layouts, self.tile_size)
        rows, cols = self.check_layout(layout, where)
        s = self.tile_size
        canvas = fit_on_canvas(image, (cols * s, rows * s))
        tiles = [canvas.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r in range(rows) for c in range(cols)]
        return torch.stack([self.transform(image)] + [self.transform(t) for t in tiles]), (rows, cols)

    # ---- model side ----------------------------------------------------------------------------

    def arrange(self, tokens: torch.Tensor, layout: Layout) -> torch.Tensor:
        """Projector outputs of one image's views [1 + n, M, D] -> placeholder order [(1 + n) * M, D]."""
        rows, cols = self.check_layout(layout)
        if tokens.shape[0] != self.num_views(layout) or tokens.shape[1] != self.tile_tokens:
            raise ShapeError(
                f"anyres: a {rows}x{cols} image needs {self.num_views(layout)} views of {self.tile_tokens} "
                f"tokens, got {tuple(tokens.shape[:2])}"
            )
        if self.layout_tokens == "separator":
            return tokens.flatten(0, 1)
        ph, pw = self.token_grid  # type: ignore[misc]
        d = tokens.shape[-1]
        tiles = tokens[1:].reshape(rows, cols, ph, pw, d).permute(0, 2, 1, 3, 4)  # [rows, ph, cols, pw, D]
        return torch.cat([tokens[0], tiles.reshape(-1, d)])  # global, then the joined grid row-major


def token_grid_of(projector: object, grid: Grid) -> Grid | None:
    """The projector's output token grid for an input grid, or None if its tokens are not a grid."""
    out = getattr(projector, "out_grid", None)
    if out is not None:
        return tuple(out)  # type: ignore[return-value]
    if projector.num_tokens(grid) == grid[0] * grid[1]:  # type: ignore[attr-defined]
        return grid  # one token per patch (mlp, linear)
    return None


def check_layouts(layouts: Sequence[Layout], anyres: AnyRes, views: int) -> None:
    """The batch's layouts are allowed and account for every view in pixel_values."""
    expected = 0
    for i, layout in enumerate(layouts):
        expected += anyres.num_views(anyres.check_layout(tuple(layout), f"image {i}"))  # type: ignore[arg-type]
    if expected != views:
        raise ShapeError(f"anyres: the layouts {list(layouts)} need {expected} views but pixel_values holds {views}")
