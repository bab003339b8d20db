"""LLaVA-format conversations about videos: each `image` entry is a frame folder, .npy array, GIF or video file.

Text handling (templates, masks, truncation, skipping) is ConversationDataset's; only loading the
visual inputs differs: every entry becomes F frames sampled uniformly (deco.model.video), so a
sample's `pixel_values` is [n_videos, F, 3, S, S] and the collator stacks them into
[num_videos, F, 3, S, S], the DecoModel video batch. Works with `allow_multi_image` for several
videos per sample (each `<image>` marker pairs with one video).

`deco train` picks it when the model's projector has a time axis (train.setup.build_dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deco.data.dataset import ConversationDataset
from deco.data.records import Record, load_records, resolve_image
from deco.errors import ConfigError, DataError
from deco.model.processor import Processor
from deco.model.video import check_video_source


class VideoConversationDataset(ConversationDataset):
    """ConversationDataset whose visual inputs are videos sampled to the processor's `num_frames`."""

    def __init__(
        self,
        records: Sequence[Record] | str | Path,
        video_folder: str | Path | None,
        processor: Processor,
        template: str,
        max_length: int,
        check_videos: bool = True,
        allow_multi_image: bool = False,
        **kwargs: Any,
    ) -> None:
        if processor.num_frames is None:
            raise ConfigError("a video dataset needs a video model (a projector with a time axis and num_frames)")
        if isinstance(records, (str, Path)):
            records = load_records(records, allow_multi_image=allow_multi_image)
        if check_videos:
            # Frame folders are directories, which the image check would call missing: check here, and
            # fail now (not at step N) for an unsupported format or a video file without PyAV installed.
            for rec in records:
                for rel in rec.images:
                    try:
                        check_video_source(resolve_image(video_folder, rel))
                    except DataError as exc:
                        raise DataError(f"{rec.where()}: {exc}") from None
        super().__init__(records, video_folder, processor, template, max_length, check_images=False,
                         allow_multi_image=allow_multi_image, **kwargs)

    def _load_images(self, index: int) -> torch.Tensor | None:
        paths = self._images_of(index)
        if not paths:
            return None
        videos = []
        for rel in paths:
            try:
                videos.append(self.processor.preprocess_video(resolve_image(self.image_folder, rel), str(rel)))
            except DataError as exc:
                raise DataError(f"{self._sources[index]}: sample '{self.sample_ids[index]}': {exc}") from None
        return torch.stack(videos)  # [n_videos, F, 3, S, S]
