"""Videos as frame sequences: a frame folder, a .npy array, an animated GIF or a video file, sampled to F frames.

Sampling takes the middle frame of F equal segments (as PLLaVA's and VideoChat2's loaders do), so a
video of T >= F frames gives F distinct, evenly spread frames; with fewer than F frames some repeat.
Every source uses the same rule, so the same frame count gives the same indices. A video with fewer
frames than `min_frames` (the projector's temporal target) is an error, as is a video with zero frames
or frames of different sizes. Frames from files go through the project's one image loader
(`deco.data.images.load_image`). Video files (.mp4, .webm, ...) are decoded with PyAV, an optional
extra (`pip install 'deco-vlm[video]'`); GIFs need only PIL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from deco.data.images import DEFAULT_MAX_PIXELS, load_image, to_rgb
from deco.errors import DataError

if TYPE_CHECKING:  # processor.py imports this module
    from deco.model.processor import ImageTransform

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
ANIMATION_SUFFIXES = (".gif",)
VIDEO_FILE_SUFFIXES = (".mp4", ".m4v", ".webm", ".avi", ".mkv", ".mov")
INSTALL_HINT = "pip install 'deco-vlm[video]'"


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


def _import_av(path: Path) -> ModuleType:
    """PyAV, or a DataError naming the file and the install command."""
    try:
        import av
    except ImportError:
        raise DataError(
            f"video file {path}: reading '{path.suffix}' files needs PyAV, which is not installed: "
            f"{INSTALL_HINT} (or extract the frames to a folder first)"
        ) from None
    return av


def _gif_frames(path: Path, num_frames: int, min_frames: int, max_pixels: int | None) -> list[Image.Image]:
    where = f"animated image {path}"
    load_image(path, max_pixels)  # names the file for a missing, empty, corrupt or too large GIF
    picked: list[int] = []
    cache: dict[int, Image.Image] = {}
    try:
        with Image.open(path) as im:
            picked = sample_indices(getattr(im, "n_frames", 1), num_frames, min_frames, where)
            for i in sorted(set(picked)):  # forward seeks only: GIF frames build on the previous ones
                im.seek(i)
                cache[i] = to_rgb(im.copy())
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises EOFError, OSError, ... on truncated frames
        raise DataError(f"{where}: corrupt or truncated frame ({type(exc).__name__}: {exc})") from None
    return [cache[i] for i in picked]


def _unreadable(where: str, exc: Exception) -> DataError:
    reason = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's own text repeats the path
    return DataError(f"{where}: corrupt or unreadable video file ({type(exc).__name__}: {reason})")


@contextmanager
def _video_stream(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) of a file; any failure inside becomes a DataError naming the file."""
    av = _import_av(path)
    where = f"video file {path}"
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.EOFError:  # FFmpeg's probe found no packet at all
        raise DataError(f"{where}: the video has zero frames (the file ends before the first one)") from None
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors, OSError, ... on corrupt data
        raise _unreadable(where, exc) from None
    try:
        with container:
            if not container.streams.video:
                raise DataError(f"{where}: the file has no video stream")
            yield container, container.streams.video[0]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise FFmpeg errors on corrupt or truncated frames
        raise _unreadable(where, exc) from None


def _decode_file(path: Path, wanted: set[int], max_pixels: int | None) -> tuple[dict[int, Image.Image], int]:
    """Decode frames in order; only those in `wanted` become RGB images, and decoding stops after the last one.

    Returns (frames by index, frames decoded). An empty `wanted` decodes the whole stream: a frame count.
    """
    where = f"video file {path}"
    frames: dict[int, Image.Image] = {}
    decoded, first_size, last = 0, None, max(wanted, default=None)
    with _video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"  # frame-parallel decoding; frames still come out in order
        for frame in container.decode(stream):
            size = (frame.width, frame.height)
            if first_size is None:
                first_size = size
                if max_pixels is not None and size[0] * size[1] > max_pixels:
                    raise DataError(
                        f"{where}: frames of {size[0]}x{size[1]} are above the limit of {max_pixels:,} pixels "
                        "(decompression-bomb guard)"
                    )
            elif size != first_size:
                raise DataError(
                    f"{where}: frames have different sizes: frame 0 is {first_size[0]}x{first_size[1]} but "
                    f"frame {decoded} is {size[0]}x{size[1]} (width x height); all frames of a video must match"
                )
            if decoded in wanted:
                frames[decoded] = frame.to_image()  # the only YUV -> RGB conversions done
            decoded += 1
            if last is not None and decoded > last:
                break
    return frames, decoded


def _file_frames(path: Path, num_frames: int, min_frames: int, max_pixels: int | None) -> list[Image.Image]:
    """Frames of a video file by index, as for folders; sequential decoding keeps the indices exact.

    Seeking by timestamp is not used: B-frames, edit lists and variable frame rates make a timestamp
    an unreliable frame index, and the same clip must give the same frames as its extracted folder.
    """
    where = f"video file {path}"
    if path.stat().st_size == 0:
        raise DataError(f"{where}: the file is empty (0 bytes)")
    with _video_stream(path) as (_, stream):
        total = int(stream.frames or 0)  # what the container header says; 0 when it does not say
    if total <= 0:  # .mkv/.webm (and some others) store no frame count: count by decoding
        _, total = _decode_file(path, set(), max_pixels)
    picked = sample_indices(total, num_frames, min_frames, where)
    frames, decoded = _decode_file(path, set(picked), max_pixels)
    if len(frames) < len(set(picked)):  # the header over-counted: resample from the frames that exist
        picked = sample_indices(decoded, num_frames, min_frames, where)
        frames, _ = _decode_file(path, set(picked), max_pixels)
    return [frames[i] for i in picked]


def video_kind(path: str | Path) -> str:
    """'folder', 'array', 'animation' or 'file' for a video path, or a DataError naming an unsupported one."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    for kind, suffixes in (("array", ARRAY_SUFFIXES), ("animation", ANIMATION_SUFFIXES), ("file", VIDEO_FILE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise DataError(
        f"video {path}: unsupported format '{path.suffix}'; give a folder of frame images, a .npy array "
        f"[T, H, W, 3], a .gif or a video file ({', '.join(VIDEO_FILE_SUFFIXES)})"
    )


def check_video_source(path: str | Path) -> None:
    """Fail early for a video that cannot be read: missing, unsupported format, or a video file without PyAV."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    if video_kind(path) == "file":
        _import_av(path)


def load_video(
    path: str | Path, num_frames: int, min_frames: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> list[Image.Image]:
    """`num_frames` RGB frames sampled uniformly from a frame folder, .npy array [T, H, W(, C)], GIF or video file."""
    path = Path(path)
    check_video_source(path)
    kind = video_kind(path)
    if kind == "folder":
        return _folder_frames(path, num_frames, min_frames, max_pixels)
    if kind == "array":
        return _array_frames(path, num_frames, min_frames)
    if kind == "animation":
        return _gif_frames(path, num_frames, min_frames, max_pixels)
    return _file_frames(path, num_frames, min_frames, max_pixels)


def frames_to_tensor(frames: Sequence[Image.Image], transform: ImageTransform, where: str = "video") -> torch.Tensor:
    """Frames -> [F, 3, S, S] with the encoder's image transform; frames of different sizes are an error."""
    if not frames:
        raise DataError(f"{where}: the video has zero frames")
    _check_same_size([f.size for f in frames], [f"frame {i}" for i in range(len(frames))], where)
    return torch.stack([transform(f) for f in frames])  # [F, 3, S, S]
