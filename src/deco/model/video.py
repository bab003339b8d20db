"""Videos as frame sequences: a folder of frame images or a .npy array, sampled uniformly to F frames.

Sampling takes the middle frame of F equal segments (as PLLaVA's and VideoChat2's loaders do), so a
video of T >= F frames gives F distinct, evenly spread frames; with fewer than F frames some repeat.
A video with fewer frames than `min_frames` (the projector's temporal target) is an error, as is a
video with zero frames or frames of different sizes. Frames from files go through the project's one
image loader (`deco.data.images.load_image`). Decoding compressed video files (mp4, ...) is not done
here: extract frames first (e.g. `ffmpeg -i clip.mp4 frames/%06d.png`) or save an array.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from deco.data.images import DEFAULT_MAX_PIXELS, load_image, to_rgb
from deco.errors import DataError

if TYPE_CHECKING:  # processor.py imports this module
    from deco.model.processor import ImageTransform

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)


def sample_indices(total: int, num_frames: int, min_frames: int = 1, where: str = "video") -> list[int]:
    """Indices of `num_frames` frames spread uniformly over `total` (segment middles)."""
    if total <= 0:
        raise DataError(f"{where}: the video has zero frames")
    if total < min_frames:
        raise DataError(
            f"{where}: the video has {total} frame(s), fewer than the temporal target of {min_frames} "
            "frames the projector pools to"
        )
    if num_frames <= 0:
        raise DataError(f"{where}: cannot sample {num_frames} frames (need a positive number)")
    segment = total / num_frames
    return [min(total - 1, int(segment * i + segment / 2)) for i in range(num_frames)]


def _natural_key(path: Path) -> list[object]:
    """frame_2 before frame_10: digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Frame image files of a folder in natural order (hidden files and other files ignored)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(files, key=_natural_key)


def _check_same_size(sizes: Sequence[tuple[int, int]], names: Sequence[str], where: str) -> None:
    for size, name in zip(sizes, names, strict=True):
        if size != sizes[0]:
            raise DataError(
                f"{where}: frames have different sizes: {names[0]} is {sizes[0][0]}x{sizes[0][1]} but "
                f"{name} is {size[0]}x{size[1]} (width x height); all frames of a video must match"
            )


def _folder_frames(folder: Path, num_frames: int, min_frames: int, max_pixels: int | None) -> list[Image.Image]:
    files = list_frames(folder)
    where = f"video folder {folder}"
    if not files:
        raise DataError(f"{where}: the video has zero frames (no {'/'.join(FRAME_SUFFIXES)} files)")
    picked = sample_indices(len(files), num_frames, min_frames, where)
    sizes = []
    for f in files:  # headers only: cheap, and every frame is checked, not just the sampled ones
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
        except Exception:  # noqa: BLE001 - load_image below names the file and the reason
            sizes.append(load_image(f, max_pixels).size)
    _check_same_size(sizes, [f.name for f in files], where)
    cache: dict[int, Image.Image] = {}
    for i in picked:
        if i not in cache:
            cache[i] = load_image(files[i], max_pixels)
    return [cache[i] for i in picked]


def _array_frames(path: Path, num_frames: int, min_frames: int) -> list[Image.Image]:
    where = f"video array {path}"
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: not a readable .npy array ({exc})") from None
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"{where}: expected frames as [T, H, W] or [T, H, W, C] with C in 1, 3, 4; got shape {array.shape}"
        )
    if 0 in array.shape[1:3]:
        raise DataError(f"{where}: frames have zero size (shape {array.shape})")
    picked = sample_indices(array.shape[0], num_frames, min_frames, where)
    frames = []
    for i in picked:
        frame = np.asarray(array[i])
        if frame.dtype != np.uint8:
            if np.issubdtype(frame.dtype, np.floating) and frame.size and float(frame.max()) <= 1.0:
                frame = frame * 255.0  # float frames in [0, 1]
            frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        frames.append(to_rgb(Image.fromarray(frame)))
    return frames


def load_video(
    path: str | Path, num_frames: int, min_frames: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> list[Image.Image]:
    """`num_frames` RGB frames sampled uniformly from a frame folder or a .npy array [T, H, W(, C)]."""
    path = Path(path)
    if path.is_dir():
        return _folder_frames(path, num_frames, min_frames, max_pixels)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return _array_frames(path, num_frames, min_frames)
    raise DataError(
        f"video {path}: unsupported format '{path.suffix}'; give a folder of frame images or a .npy array "
        "[T, H, W, 3] (compressed video files: extract frames first, e.g. with ffmpeg)"
    )


def frames_to_tensor(frames: Sequence[Image.Image], transform: ImageTransform, where: str = "video") -> torch.Tensor:
    """Frames -> [F, 3, S, S] with the encoder's image transform; frames of different sizes are an error."""
    if not frames:
        raise DataError(f"{where}: the video has zero frames")
    _check_same_size([f.size for f in frames], [f"frame {i}" for i in range(len(frames))], where)
    return torch.stack([transform(f) for f in frames])  # [F, 3, S, S]
