"""The project's one image loader: any common file -> 8-bit RGB PIL image, or a DataError naming the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from deco.errors import DataError

# PIL's own default (about a 9459 x 9459 image); PIL only warns above it, we refuse.
DEFAULT_MAX_PIXELS = 89_478_485

# Transparent pixels are composited on white: a transparent PNG logo on white is what a person sees in
# a browser, while PIL's plain `.convert("RGB")` (what LLaVA does) exposes whatever colour happens to be
# stored under alpha = 0, often black.
BACKGROUND = (255, 255, 255)


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file and return it as an 8-bit RGB PIL image with its EXIF orientation applied.

    Raises DataError naming the file for a missing, empty, corrupt, truncated, zero-size or too large
    (decompression-bomb) image. `max_pixels=None` turns the size guard off (PIL's own hard limit of
    2 x `PIL.Image.MAX_IMAGE_PIXELS` still applies).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "not found"
        raise DataError(f"image file {what}: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # PIL warns (and only raises above 2x its limit); the limit is ours to enforce.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                _check_size(path, width, height, max_pixels)
                image.load()  # decode now, so a truncated file fails here with its name
                image = ImageOps.exif_transpose(image)  # a new image: the file can close
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"image is too large to load safely (decompression-bomb guard): {path}: {exc}"
        ) from None
    except Image.UnidentifiedImageError:
        size = _png_header_size(path)
        if size is not None and 0 in size:
            raise DataError(f"image has zero size ({size[0]} x {size[1]}): {path}") from None
        raise DataError(f"not an image, or an image format PIL cannot read: {path}") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, struct.error, ... on corrupt data
        raise DataError(f"corrupt or truncated image file {path}: {type(exc).__name__}: {exc}") from None
    try:
        return to_rgb(image)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot convert image mode {image.mode!r} to RGB: {path}: {exc}") from None


def _check_size(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise DataError(f"image has zero size ({width} x {height}): {path}")
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(
            f"image is too large to load safely (decompression-bomb guard): {path} is {width} x {height} "
            f"= {width * height:,} pixels, above the limit of {max_pixels:,}"
        )


def _png_header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG header, for a clearer message when PIL refuses the file."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha composited on white, 16/32-bit integers scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        # A palette can carry transparency (a `transparency` entry or an RGBA palette).
        has_alpha = "transparency" in image.info or (
            image.palette is not None and image.palette.mode == "RGBA"
        )
        return _composite(image.convert("RGBA")) if has_alpha else image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite(image.convert("RGBA"))
    if mode.startswith("I;16") or mode == "I":
        # PIL's own I -> L conversion clips at 255, so a 16-bit image would come out almost white.
        # Treat I (what some 16-bit files open as) as 16-bit too: 0..65535 -> 0..255.
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, ...


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")
