"""Batches samples for training: right padding, attention mask, images stacked in placeholder order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from deco.data.encoding import IGNORE_INDEX
from deco.errors import ConfigError, DataError, DecoError
from deco.model.processor import Processor

if TYPE_CHECKING:
    from deco.model.anyres import AnyRes


class DataCollator:
    """Pads `ConversationDataset` samples into the model's batch.

    Output: `input_ids` [B, T] long (right-padded with the pad id), `attention_mask` [B, T] long,
    `labels` [B, T] long (-100 on padding), `pixel_values` [num_images, 3, H, W] with the images in the
    order their placeholder blocks appear reading the batch row by row (None when no sample has an
    image), and `sample_ids` (list of str). If `image_token_id` and `num_image_tokens` are given, each
    row is checked to hold exactly M placeholders per image.

    AnyRes (`anyres` given): samples carry `image_layouts`; `pixel_values` is every image's views
    [sum of views, 3, S, S] in placeholder order, the batch gets `image_layouts` (one (rows, cols) per
    image, batch order; None without images), and each row must hold its layouts' placeholder counts.
    """

    def __init__(
        self,
        pad_token_id: int | None,
        image_token_id: int | None = None,
        num_image_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        anyres: AnyRes | None = None,
    ) -> None:
        if pad_token_id is None:
            raise ConfigError(
                "the tokenizer has no pad token; call deco.model.tokenizer.ensure_pad_token on it"
            )
        if image_token_id is not None and pad_token_id == image_token_id:
            raise ConfigError(
                f"the pad token id {pad_token_id} is the image token id; padding would read as image slots"
            )
        self.pad_token_id = int(pad_token_id)
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.pad_to_multiple_of = pad_to_multiple_of
        self.anyres = anyres

    @classmethod
    def from_processor(cls, processor: Processor, pad_to_multiple_of: int | None = None) -> DataCollator:
        """A collator using the processor's pad token, image token and M."""
        return cls(
            processor.tokenizer.pad_token_id,
            processor.image_token_id,
            processor.num_image_tokens,
            pad_to_multiple_of,
            processor.anyres,
        )

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Pad a list of samples into one batch."""
        if not samples:
            raise DataError("cannot collate an empty list of samples")
        width = max(len(s["input_ids"]) for s in samples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_size = len(samples)
        input_ids = torch.full((batch_size, width), self.pad_token_id, dtype=torch.long)  # [B, T]
        labels = torch.full((batch_size, width), IGNORE_INDEX, dtype=torch.long)  # [B, T]
        attention_mask = torch.zeros((batch_size, width), dtype=torch.long)  # [B, T]
        images: list[torch.Tensor] = []
        layouts: list[tuple[int, int]] = []
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[row, :n] = sample["input_ids"]
            labels[row, :n] = sample["labels"]
            attention_mask[row, :n] = 1
            pixels = sample.get("pixel_values")
            if self.anyres is not None:
                layouts += self._check_anyres(sample, pixels)
            else:
                self._check_placeholders(sample, pixels)
            if pixels is not None:
                images.append(pixels)  # [n_images, 3, H, W]; row order = placeholder order
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": torch.cat(images) if images else None,  # [num_images (AnyRes: views), 3, H, W]
            "sample_ids": [s["sample_id"] for s in samples],
        }
        if self.anyres is not None:
            batch["image_layouts"] = layouts or None
        return batch

    def _check_anyres(self, sample: dict[str, Any], pixels: torch.Tensor | None) -> list[tuple[int, int]]:
        """A sample's layouts: allowed, matching its views, and its row holding their placeholder counts."""
        anyres, where = self.anyres, f"sample '{sample.get('sample_id')}'"
        assert anyres is not None
        layouts = [tuple(layout) for layout in sample.get("image_layouts") or []]
        if pixels is not None and "image_layouts" not in sample:
            raise DataError(f"{where}: an AnyRes batch needs the sample's image_layouts with its pixel_values")
        views = 0 if pixels is None else len(pixels)
        try:
            need = sum(anyres.num_views(anyres.check_layout(lay, f"{where}: image {i}"))  # type: ignore[arg-type]
                       for i, lay in enumerate(layouts))
        except DecoError as exc:
            raise DataError(str(exc)) from None
        if need != views:
            raise DataError(f"{where}: image layouts {layouts} need {need} views but pixel_values holds {views}")
        if self.image_token_id is not None:
            found = int((torch.as_tensor(sample["input_ids"]) == self.image_token_id).sum())
            want = sum(anyres.num_placeholders(lay) for lay in layouts)  # type: ignore[arg-type]
            if found != want:
                raise DataError(
                    f"{where}: {found} image placeholders, but its AnyRes layouts "
                    f"{', '.join(f'{r}x{c}' for r, c in layouts) or '(none)'} need {want}"
                )
        return layouts  # type: ignore[return-value]

    def _check_placeholders(self, sample: dict[str, Any], pixels: torch.Tensor | None) -> None:
        if self.image_token_id is None or self.num_image_tokens is None:
            return
        n_images = 0 if pixels is None else len(pixels)
        found = int((torch.as_tensor(sample["input_ids"]) == self.image_token_id).sum())
        if found != n_images * self.num_image_tokens:
            raise DataError(
                f"sample '{sample.get('sample_id')}': {found} image placeholders for {n_images} image(s) "
                f"of {self.num_image_tokens} tokens each"
            )
