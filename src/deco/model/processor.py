"""Turns (image, text) into model inputs: pixel tensors, and `<image>` expanded to M placeholders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from deco.errors import DataError
from deco.model.tokenizer import IMAGE_TOKEN, ensure_image_token


@dataclass
class ImageTransform:
    """Resize (shortest side, bicubic), centre-crop to `size`, scale to [0, 1], normalise.

    This is CLIP's preprocessing; SigLIP resizes straight to size x size (`crop=False`).
    `pad_to_square` (LLaVA-1.5's "pad" aspect mode) pads with the mean colour before resizing.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: bool = True
    pad_to_square: bool = False

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL RGB image -> float tensor [3, size, size]."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.pad_to_square:
            image = _expand_to_square(image, tuple(int(round(m * 255)) for m in self.mean))
        if self.crop:
            w, h = image.size
            scale = self.size / min(w, h)
            new_w, new_h = max(self.size, int(w * scale)), max(self.size, int(h * scale))  # truncation, as HF
            image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
            left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        else:
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0  # [H, W, 3]
        array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # [3, H, W]


def _expand_to_square(image: Image.Image, fill: tuple[int, ...]) -> Image.Image:
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


class Processor:
    """Pairs a tokenizer with an image transform and the projector's token count M per image."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, transform: ImageTransform, num_image_tokens: int
    ) -> None:
        self.tokenizer = tokenizer
        self.transform = transform
        self.num_image_tokens = num_image_tokens
        self.image_token_id = ensure_image_token(tokenizer)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> [3, H, W] normalised tensor."""
        return self.transform(image)

    def expand_image_tokens(self, input_ids: Sequence[int]) -> list[int]:
        """Replace each single `<image>` id by M copies (the model fills them with projector outputs)."""
        out: list[int] = []
        for token in input_ids:
            if token == self.image_token_id:
                out.extend([self.image_token_id] * self.num_image_tokens)
            else:
                out.append(int(token))
        return out

    def __call__(
        self, text: str | Sequence[str], images: Sequence[Image.Image] | Image.Image | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize text(s) with `<image>` markers expanded, left-pad for generation, stack images."""
        texts = [text] if isinstance(text, str) else list(text)
        if isinstance(images, Image.Image):
            images = [images]
        images = list(images or [])
        markers = sum(t.count(IMAGE_TOKEN) for t in texts)
        if markers != len(images):
            raise DataError(
                f"the text has {markers} {IMAGE_TOKEN} marker(s) but {len(images)} image(s) were given"
            )
        rows = [self.expand_image_tokens(self.tokenizer(t).input_ids) for t in texts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: generation appends on the right
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention_mask[i, width - len(row) :] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if images:
            batch["pixel_values"] = torch.stack([self.preprocess_image(im) for im in images])
        return batch
