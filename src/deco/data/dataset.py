"""LLaVA-format conversations as a map-style dataset: text tokenized up front, images loaded lazily.

Skipping in a map-style dataset: every sample's text is rendered, tokenized, expanded and truncated
when the dataset is built (text is cheap: two batched tokenizer calls per 1024 samples), so the bad
ones are known before training starts. They are dropped from the index (or raise, with
`on_bad_sample="error"`), `len(dataset)` counts only good samples, and every rank of a distributed
run sees the same index. Images are the expensive part and stay lazy: a missing or corrupt image
file found while loading always raises (naming the file and sample), because a map-style dataset
cannot drop a sample once the sampler has picked it; `check_images="exists"` (or True) finds missing
files up front instead, where they can be skipped, and `check_images="decode"` decodes every image up
front in parallel (deco.data.check), so corrupt files are found before step 1 too. Image paths that
resolve (symlinks followed) outside `image_folder` are bad samples unless `allow_outside_image_folder`.

Token ids are kept in one flat int32 array (not Python lists) so that forked DataLoader workers share
them instead of copying: 665K LLaVA samples would otherwise cost gigabytes per worker.

High resolution (a processor with `anyres`): an image's block length depends on its tile layout,
which depends on its size, so at build time each image file's header is read (size and EXIF
orientation, no decoding) and its layout fixed; the sample's length, truncation check and sampler
length then use the exact block, and loading tiles the image with that same layout.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deco.data.check import image_problems
from deco.data.columns import StringColumn, ragged_offsets
from deco.data.encoding import IGNORE_INDEX, ConversationEncoder, Encoded
from deco.data.images import DEFAULT_MAX_PIXELS, load_image
from deco.data.index_cache import (
    index_key,
    load_index,
    manifest_rows,
    records_summary,
    save_index,
    template_identity,
    tokenizer_identity,
)
from deco.data.records import Record, load_records, resolve_image
from deco.data.templates import Template, get_template
from deco.errors import ConfigError, DataError
from deco.model.anyres import Layout, select_layout
from deco.model.processor import Processor

log = logging.getLogger(__name__)

SKIP_REASONS = ("tokenization_mismatch", "empty_loss", "image_truncated", "bad_for_template", "missing_image",
                "unreadable_image", "outside_image_folder")
_CHECK_MODES = {False: None, None: None, True: "exists", "exists": "exists", "decode": "decode"}
_CHUNK = 1024


class ConversationDataset(Dataset):
    """Samples as dicts: `input_ids` [T], `labels` [T], `pixel_values` [n_images, 3, H, W] or None,
    `sample_id`. With AnyRes, `pixel_values` is [n_views, 3, S, S] (each image's global view, then its tiles) and
    `image_layouts` lists each image's (rows, cols); each block holds the layout's newline/separator ids.
    """

    def __init__(
        self,
        records: Sequence[Record] | str | Path,
        image_folder: str | Path | None,
        processor: Processor,
        template: str | Template,
        max_length: int,
        on_bad_sample: str = "error",
        check_images: bool | str = False,
        allow_multi_image: bool = False,
        system: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        allow_outside_image_folder: bool = False,
        check_workers: int | None = None,
        cache_dir: str | Path | None = None,
        loaded: Sequence[Record] | None = None,
    ) -> None:
        """`records`: validated records, or the path of a LLaVA JSON/JSONL file. With a path and `cache_dir`,
        the built index is cached there and reused by any later build with the same inputs
        (deco.data.index_cache); `loaded` passes the file's records when the caller has read them already."""
        if on_bad_sample not in ("error", "skip"):
            raise ConfigError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        if check_images not in _CHECK_MODES:
            raise ConfigError(f"check_images must be 'exists' or 'decode' (or a bool), got {check_images!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            raise ConfigError(f"max_length must be a positive integer, got {max_length!r}")
        if processor.tokenizer.pad_token_id is None:
            raise ConfigError(
                "the tokenizer has no pad token; call deco.model.tokenizer.ensure_pad_token on it"
            )
        self.processor = processor
        self.template = get_template(template)
        self.image_folder = None if image_folder is None else Path(image_folder)
        self.max_length = max_length
        self.on_bad_sample = on_bad_sample
        self.max_pixels = max_pixels
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.skipped_ids: dict[str, list[str]] = {r: [] for r in SKIP_REASONS}
        # Every skipped sample with where it came from, for the run directory's skipped_samples.jsonl.
        self.bad_samples: list[dict[str, str]] = []
        self.allow_outside_image_folder = allow_outside_image_folder
        self.check_workers = check_workers
        self.images_checked = (0, 0.0)  # (images decoded up front, seconds)
        self.index_dir: Path | None = None  # the cached index this dataset was read from or saved to
        self.cache_hit = False
        check = _CHECK_MODES[check_images]
        if isinstance(records, (str, Path)):
            if cache_dir is not None:
                summary, read = records_summary(records, allow_multi_image, Path(cache_dir), loaded)
                self.index_dir = Path(cache_dir) / index_key(
                    self._key_parts(summary.data_sha256, manifest_rows(summary.images, image_folder), system,
                                    check, allow_multi_image))
                found = load_index(self.index_dir)
                if found is not None:
                    self._adopt(*found)
                    self.cache_hit = True
                    log.info("tokenized index read from %s (%d samples)", self.index_dir, len(self))
                    return
                loaded = loaded if loaded is not None else read
            records = loaded if loaded is not None else load_records(records, allow_multi_image=allow_multi_image)
        if not records:
            raise DataError("empty dataset (no records)")
        self._build(records, ConversationEncoder(processor.tokenizer, self.template), system, check)
        if self.index_dir is not None:
            try:
                save_index(self.index_dir, *self._index_contents(len(records)))
            except OSError as exc:  # a full or read-only cache costs the next start time, not this run
                log.warning("could not cache the tokenized index in %s (%s); the next start tokenizes again",
                            self.index_dir, exc)
                self.index_dir = None

    # ---- building the index -------------------------------------------------------------------

    def _build(
        self, records: Sequence[Record], encoder: ConversationEncoder, system: str | None, check: str | None
    ) -> None:
        problems: dict[int, tuple[str, str]] = {}
        if check is not None or (self.image_folder is not None and not self.allow_outside_image_folder):
            found, n, seconds = image_problems(records, self.image_folder, check == "decode",
                                               self.allow_outside_image_folder, self.check_workers, self.max_pixels)
            self.images_checked = (n, seconds)
            # Without a check only the folder rule applies (video entries may be frame folders).
            problems = {id(records[i]): p for i, p in found.items()
                        if check is not None or p[0] == "outside_image_folder"}
        ids_parts: list[np.ndarray] = []
        mask_parts: list[np.ndarray] = []
        sample_ids: list[str] = []
        sources: list[str] = []
        images: list[tuple[str, ...]] = []
        lengths: list[int] = []
        # AnyRes only: each sample's image layouts, fixed here so block lengths are known up front.
        layouts_of: list[tuple[Layout, ...]] | None = [] if self.processor.anyres is not None else None
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            rendered, todo = [], []
            for rec in chunk:
                if id(rec) in problems:
                    self._bad(rec, *problems[id(rec)])
                    continue
                try:
                    rendered.append(self.template.segments(rec.turns, system))
                    todo.append(rec)
                except DataError as exc:
                    self._bad(rec, "bad_for_template", f"template '{self.template.name}': {exc}")
            for rec, enc in zip(todo, encoder.encode_many(rendered), strict=True):
                if isinstance(enc, DataError):
                    self._bad(rec, "tokenization_mismatch", str(enc))
                    continue
                layouts = self._choose_layouts(rec) if layouts_of is not None else ()
                if layouts is None:
                    continue
                kept = self._fit(rec, enc, self._block_sizes(layouts, len(rec.images)))
                if kept is not None:
                    ids, mask, length = kept
                    ids_parts.append(ids)
                    mask_parts.append(mask)
                    sample_ids.append(rec.id)
                    sources.append(rec.source)
                    images.append(rec.images)
                    lengths.append(length)
                    if layouts_of is not None:
                        layouts_of.append(layouts)
        if not sample_ids:
            raise DataError(
                f"empty dataset: all {len(records)} samples were skipped ({self._skip_summary()})"
            )
        # Flat arrays and string columns, not per-sample Python objects: forked workers share them.
        self._offsets = ragged_offsets([len(p) for p in ids_parts])
        self._ids = np.concatenate(ids_parts)  # int32, unexpanded: one id per <image>
        self._mask = np.concatenate(mask_parts)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.sample_ids = StringColumn.of(sample_ids)
        self._sources = StringColumn.of(sources)
        self._image_paths = StringColumn.of(rel for paths in images for rel in paths)
        self._image_offsets = ragged_offsets([len(paths) for paths in images])
        self._layout_array = (None if layouts_of is None else
                              np.asarray([lay for lays in layouts_of for lay in lays], dtype=np.int64).reshape(-1, 2))

    # ---- the cached index (deco.data.index_cache) ---------------------------------------------

    def _key_parts(self, data_sha256: str, manifest: list[str], system: str | None, check: str | None,
                   allow_multi_image: bool) -> dict[str, object]:
        """Everything the index depends on besides the code (see deco.data.index_cache)."""
        anyres = self.processor.anyres
        return {
            "dataset": type(self).__name__,
            "data_sha256": data_sha256,
            "images_manifest_sha256": hashlib.sha256("\n".join(manifest).encode("utf-8")).hexdigest(),
            "tokenizer": tokenizer_identity(self.processor.tokenizer),
            "template": template_identity(self.template, system), "max_length": self.max_length,
            "image_tokens": self.processor.num_image_tokens, "image_token_id": self.processor.image_token_id,
            "layout_token_id": self.processor.layout_token_id,
            "anyres": None if anyres is None else [anyres.tile_size, anyres.tile_tokens, anyres.token_grid,
                                                   anyres.layouts, anyres.max_tiles, anyres.layout_tokens],
            "on_bad_sample": self.on_bad_sample, "check_images": check,
            "image_folder": None if self.image_folder is None else str(self.image_folder.resolve()),
            "allow_outside_image_folder": self.allow_outside_image_folder,
            "allow_multi_image": allow_multi_image, "max_pixels": self.max_pixels,
        }

    def _index_contents(self, num_records: int) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        arrays = {"ids": self._ids, "mask": self._mask, "offsets": self._offsets, "lengths": self.lengths,
                  "image_offsets": self._image_offsets, **self.sample_ids.arrays("sample_ids"),
                  **self._sources.arrays("sources"), **self._image_paths.arrays("image_paths")}
        if self._layout_array is not None:
            arrays["layouts"] = self._layout_array
        meta = {"records": num_records, "skipped": self.skipped, "skipped_ids": self.skipped_ids,
                "bad_samples": self.bad_samples, "images_checked": list(self.images_checked)}
        return arrays, meta

    def _adopt(self, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
        """Take a cached index (arrays mapped from disk) as this dataset's."""
        self._ids, self._mask, self._offsets = arrays["ids"], arrays["mask"], arrays["offsets"]
        self.lengths, self._image_offsets = arrays["lengths"], arrays["image_offsets"]
        self.sample_ids = StringColumn.from_arrays(arrays, "sample_ids")
        self._sources = StringColumn.from_arrays(arrays, "sources")
        self._image_paths = StringColumn.from_arrays(arrays, "image_paths")
        self._layout_array = arrays.get("layouts")
        self.skipped.update(meta["skipped"])  # type: ignore[arg-type]
        self.skipped_ids.update(meta["skipped_ids"])  # type: ignore[arg-type]
        self.bad_samples = list(meta["bad_samples"])  # type: ignore[call-overload]
        self.images_checked = tuple(meta["images_checked"])  # type: ignore[assignment]
        if self.num_skipped:
            log.warning("the cached index skipped %d sample(s) (%s)", self.num_skipped, self._skip_summary())

    def _images_of(self, index: int) -> tuple[str, ...]:
        lo, hi = int(self._image_offsets[index]), int(self._image_offsets[index + 1])
        return tuple(self._image_paths[k] for k in range(lo, hi))

    def _layouts_of(self, index: int) -> tuple[Layout, ...]:
        if self._layout_array is None:
            return ()
        lo, hi = int(self._image_offsets[index]), int(self._image_offsets[index + 1])
        return tuple((int(r), int(c)) for r, c in self._layout_array[lo:hi])

    def _block_sizes(self, layouts: Sequence[Layout], n_images: int) -> np.ndarray:
        """Token positions each `<image>` expands to: M, or with AnyRes its layout's block length."""
        anyres = self.processor.anyres
        if anyres is None:
            return np.full(n_images, self.processor.num_image_tokens, dtype=np.int64)
        return np.asarray([anyres.num_tokens(layout) for layout in layouts], dtype=np.int64)

    def _choose_layouts(self, rec: Record) -> tuple[Layout, ...] | None:
        """AnyRes: each image's tile layout, from its file header (size after EXIF rotation); None if skipped."""
        anyres = self.processor.anyres
        assert anyres is not None
        layouts = []
        for rel in rec.images:
            path = resolve_image(self.image_folder, rel)
            if not path.is_file():
                self._bad(rec, "missing_image", f"image file not found: {path}")
                return None
            try:
                size = _oriented_size(path, self.max_pixels)
            except DataError as exc:
                self._bad(rec, "unreadable_image", str(exc))
                return None
            layout = select_layout(size, anyres.layouts, anyres.tile_size)
            layouts.append(anyres.check_layout(layout, f"{rec.where()}: image {path}"))
        return tuple(layouts)

    def _fit(self, rec: Record, enc: Encoded, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Check image ids and truncation; return (ids, loss mask, final length) or None if skipped.

        `sizes` is each image's block length (M, or the AnyRes block of its layout).
        """
        ids = np.asarray(enc.input_ids, dtype=np.int64)
        mask = np.asarray(enc.labels, dtype=np.int64) != IGNORE_INDEX
        is_image = ids == self.processor.image_token_id
        if int(is_image.sum()) != len(rec.images):
            raise DataError(
                f"{rec.where()}: the tokenizer turned {len(rec.images)} <image> marker(s) into "
                f"{int(is_image.sum())} image token(s); is <image> a special token of this tokenizer?"
            )
        # Where each unexpanded position lands once every <image> becomes its block.
        grow = np.zeros(len(ids), dtype=np.int64)
        grow[is_image] = sizes - 1
        expanded_pos = np.arange(len(ids)) + np.cumsum(grow) - grow
        length = len(ids) + int(grow.sum())
        if length > self.max_length:
            block_ends = expanded_pos[is_image] + sizes
            if (block_ends > self.max_length).any():
                self._bad(
                    rec,
                    "image_truncated",
                    f"max_length {self.max_length} would cut the image placeholder block (sample is "
                    f"{length} tokens, an image block ends at {int(block_ends.max())})",
                )
                return None
            length = self.max_length
        # Position 0 predicts nothing (labels are shifted inside the model), so it never counts.
        loss_tokens = int((mask & (expanded_pos < length) & (expanded_pos > 0)).sum())
        if loss_tokens == 0:
            why = (
                f"after truncation to max_length {self.max_length}"
                if length == self.max_length
                else "in the text"
            )
            self._bad(rec, "empty_loss", f"no token carries loss {why} (no assistant answer left)")
            return None
        return ids.astype(np.int32), mask, length

    def _bad(self, rec: Record, reason: str, message: str) -> None:
        text = f"{rec.where()}: {message}"
        if self.on_bad_sample == "error":
            raise DataError(text + " (set on_bad_sample='skip' to skip such samples)")
        self.skipped[reason] += 1
        self.skipped_ids[reason].append(rec.id)
        self.bad_samples.append({"id": rec.id, "source": rec.source, "reason": reason, "message": message})
        log.warning("skipping %s [%s]", text, reason)

    def _skip_summary(self) -> str:
        return ", ".join(f"{r}: {n}" for r, n in self.skipped.items() if n) or "none"

    # ---- access -------------------------------------------------------------------------------

    @property
    def num_skipped(self) -> int:
        """How many samples were dropped, all reasons together."""
        return sum(self.skipped.values())

    @property
    def modality_lengths(self) -> list[int]:
        """Lengths, positive for samples with images and negative for text-only ones (as LLaVA)."""
        has_image = np.diff(self._image_offsets) > 0
        return np.where(has_image, self.lengths, -np.asarray(self.lengths)).tolist()

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> dict[str, object]:
        lo, hi = self._offsets[index], self._offsets[index + 1]
        ids, mask = self._ids[lo:hi].astype(np.int64), self._mask[lo:hi]
        labels = np.where(mask, ids, IGNORE_INDEX)
        is_image = ids == self.processor.image_token_id
        layouts = self._layouts_of(index)
        # Expand each <image> id to its block (label -100), then cut at the length fixed at build time.
        reps = np.ones(len(ids), dtype=np.int64)
        reps[is_image] = self._block_sizes(layouts, int(is_image.sum()))
        expanded, labels = np.repeat(ids, reps), np.repeat(labels, reps)
        anyres = self.processor.anyres
        if anyres is not None:  # AnyRes blocks hold newline/separator ids between the placeholders
            starts = (np.cumsum(reps) - reps)[is_image]
            image_id, layout_id = self.processor.image_token_id, int(self.processor.layout_token_id or 0)
            for start, layout in zip(starts, layouts, strict=True):
                block = anyres.block(layout, image_id, layout_id)
                expanded[start : start + len(block)] = block
        length = int(self.lengths[index])
        sample: dict[str, object] = {
            "input_ids": torch.from_numpy(expanded[:length]),  # [T]
            "labels": torch.from_numpy(labels[:length]),  # [T]
            "pixel_values": self._load_images(index),  # [n_images, 3, H, W] (AnyRes: [n_views, ...]) or None
            "sample_id": self.sample_ids[index],
        }
        if anyres is not None:
            sample["image_layouts"] = list(layouts)
        return sample

    def _load_images(self, index: int) -> torch.Tensor | None:
        paths = self._images_of(index)
        if not paths:
            return None
        layouts = self._layouts_of(index)
        tensors = []
        for i, rel in enumerate(paths):
            path = resolve_image(self.image_folder, rel)
            where = f"{self._sources[index]}: sample '{self.sample_ids[index]}'"
            try:
                image = load_image(path, max_pixels=self.max_pixels)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None
            anyres = self.processor.anyres
            if anyres is None or not layouts:
                tensors.append(self.processor.preprocess_image(image)[None])  # [1, 3, H, W]
            else:  # the layout fixed at build time, so the block length always matches
                views, _ = anyres.views(image, layouts[i], f"{where}: image {path}")
                tensors.append(views)  # [1 + rows*cols, 3, S, S]
        return torch.cat(tensors)  # [n_images (AnyRes: n_views), 3, H, W]


def _oriented_size(path: Path, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) as load_image will return the image (EXIF rotation applied), from the header only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation tag
    except Exception as exc:  # PIL raises many types for unreadable headers
        raise DataError(f"cannot read the image header of {path}: {type(exc).__name__}: {exc}") from None
    if width <= 0 or height <= 0:
        raise DataError(f"image has zero size ({width} x {height}): {path}")
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(
            f"image is too large to load safely: {path} is {width} x {height}, above {max_pixels:,} pixels"
        )
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
