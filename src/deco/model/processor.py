"""Turns (image, text) into model inputs: pixel tensors, and `<image>` expanded to M placeholders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from deco.errors import ConfigError, DataError
from deco.model.tokenizer import IMAGE_TOKEN, ensure_image_token

if TYPE_CHECKING:
    from deco.model.anyres import AnyRes


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
            image = _expand_to_square(image, tuple(int(m * 255) for m in self.mean))
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
    """Pairs a tokenizer with an image transform and the projector's token count M per image.

    Videos: with `num_frames` set (a projector with a time axis), every visual input is a video
    sampled to that many frames and M counts tokens per video; pass them as `videos=`.
    High resolution: with `anyres` (deco.model.anyres.AnyRes), each image becomes a global view plus
    tiles, its marker expands to its own block (placeholders with newline/separator tokens between
    them), and the batch carries `image_layouts`. Each `<image>` marker gets its own block.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        transform: ImageTransform,
        num_image_tokens: int,
        num_frames: int | None = None,
        min_frames: int = 1,
        anyres: AnyRes | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.transform = transform
        self.num_image_tokens = num_image_tokens
        self.image_token_id = ensure_image_token(tokenizer)
        self.num_frames = num_frames
        self.min_frames = min_frames
        self.anyres = anyres
        self.layout_token_id = newline_token_id(tokenizer) if anyres is not None else None

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> [3, H, W] normalised tensor."""
        return self.transform(image)

    def preprocess_video(self, video: str | Path | Sequence[Image.Image] | np.ndarray, where: str = "video") -> torch.Tensor:
        """A frame folder, .npy file, GIF or video file (.mp4, ...; needs the `video` extra), list of frames or
        [T, H, W, 3] array -> [F, 3, S, S], F = num_frames."""
        from deco.model.video import frames_to_tensor, load_video, sample_indices

        if self.num_frames is None:
            raise DataError(f"{where}: this model takes images only; videos need a projector with a time axis")
        if isinstance(video, (str, Path)):
            frames = load_video(video, self.num_frames, self.min_frames)
        else:
            if isinstance(video, np.ndarray):
                video = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in video]
            frames = list(video)
            frames = [frames[i] for i in sample_indices(len(frames), self.num_frames, self.min_frames, where)]
        return frames_to_tensor(frames, self.transform, where)

    def expand_image_tokens(self, input_ids: Sequence[int], blocks: Sequence[Sequence[int]] | None = None) -> list[int]:
        """Replace each single `<image>` id by M copies (the model fills them with projector outputs).

        `blocks` (one per marker, in order) replaces markers by given id lists instead (AnyRes).
        """
        out: list[int] = []
        markers = 0
        for token in input_ids:
            if token == self.image_token_id:
                if blocks is None:
                    out.extend([self.image_token_id] * self.num_image_tokens)
                elif markers < len(blocks):
                    out.extend(int(t) for t in blocks[markers])
                markers += 1
            else:
                out.append(int(token))
        if blocks is not None and markers != len(blocks):
            raise DataError(f"the text has {markers} {IMAGE_TOKEN} marker(s) but {len(blocks)} image block(s) were given")
        return out

    def __call__(
        self,
        text: str | Sequence[str],
        images: Sequence[Image.Image] | Image.Image | None = None,
        videos: Sequence[object] | None = None,
    ) -> dict[str, Any]:
        """Tokenize text(s) with `<image>` markers expanded, left-pad for generation, stack images.

        `videos` (frame folders, .npy paths, GIF or video files, frame lists or arrays) pair with the markers instead of
        `images` on a video model: pixel_values is then [V, F, 3, S, S].
        """
        texts = [text] if isinstance(text, str) else list(text)
        if isinstance(images, Image.Image):
            images = [images]
        images = list(images or [])
        videos = list(videos or [])
        if images and videos:
            raise DataError("give images or videos, not both: one batch holds one kind of visual input")
        markers = sum(t.count(IMAGE_TOKEN) for t in texts)
        visuals, kind = (videos, "video") if videos else (images, "image")
        if markers != len(visuals):
            raise DataError(
                f"the text has {markers} {IMAGE_TOKEN} marker(s) but {len(visuals)} {kind}(s) were given"
            )
        pixels, extra = self.visual_inputs(images, videos)
        blocks = extra.pop("blocks", None)
        rows, start = [], 0
        for t in texts:
            n = t.count(IMAGE_TOKEN)
            rows.append(self.expand_image_tokens(self.tokenizer(t).input_ids,
                                                 None if blocks is None else blocks[start : start + n]))
            start += n
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: generation appends on the right
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention_mask[i, width - len(row) :] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if pixels is not None:
            batch["pixel_values"] = pixels
        batch.update(extra)
        return batch

    def visual_inputs(
        self, images: Sequence[Image.Image], videos: Sequence[object] = ()
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """pixel_values for the batch, plus AnyRes `image_layouts` and marker `blocks` where they apply.

        For callers that tokenize themselves: pass `blocks` to `expand_image_tokens` and the rest of the
        dict to the model.
        """
        if videos:
            return torch.stack([self.preprocess_video(v, f"video {i}") for i, v in enumerate(videos)]), {}
        if not images:
            return None, {}
        if self.num_frames is not None and self.num_frames > 1:
            raise DataError(
                f"this model takes videos of {self.num_frames} frames (pass videos=); an image is one frame"
            )
        if self.anyres is None:
            return torch.stack([self.preprocess_image(im) for im in images]), {}
        views, layouts, blocks = [], [], []
        for i, image in enumerate(images):
            v, layout = self.anyres.views(image, where=f"image {i}")
            views.append(v)
            layouts.append(layout)
            blocks.append(self.anyres.block(layout, self.image_token_id, self.layout_token_id))
        return torch.cat(views), {"image_layouts": layouts, "blocks": blocks}  # [sum views, 3, S, S]


def newline_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id a tokenizer gives a newline on its own (the last one: SentencePiece puts '▁' first)."""
    ids = tokenizer("\n", add_special_tokens=False).input_ids
    if not ids:
        raise ConfigError("the tokenizer has no token for a newline; AnyRes needs one to mark tile rows")
    return int(ids[-1])
