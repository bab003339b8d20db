"""Image preprocessing matches HF's CLIP/SigLIP processors; `<image>` expands to M placeholders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deco.model.processor import ImageTransform, Processor
from deco.model.tokenizer import build_byte_tokenizer
from deco.model.vision import CLIP_MEAN, CLIP_STD, SIGLIP_MEAN, SIGLIP_STD


def random_image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("shape", [(50, 70), (70, 50), (33, 33), (40, 41)])
def test_clip_transform_equals_hf_clip_processor(shape):
    transformers = pytest.importorskip("transformers")
    hf_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    hf = hf_cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    img = random_image(*shape)
    expected = hf(img, return_tensors="pt")["pixel_values"][0]
    got = ImageTransform(32, CLIP_MEAN, CLIP_STD)(img)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_siglip_transform_equals_hf_siglip_processor():
    transformers = pytest.importorskip("transformers")
    hf_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    hf = hf_cls(size={"height": 32, "width": 32})
    img = random_image(50, 70)
    expected = hf(img, return_tensors="pt")["pixel_values"][0]
    got = ImageTransform(32, SIGLIP_MEAN, SIGLIP_STD, crop=False)(img)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_pad_to_square_keeps_the_whole_image():
    # A wide red image padded with the mean colour: the top and bottom rows are the mean (0 after
    # normalising), the centre row is red.
    img = Image.new("RGB", (64, 32), (255, 0, 0))
    out = ImageTransform(32, CLIP_MEAN, CLIP_STD, pad_to_square=True)(img)
    assert out[:, 0, :].abs().max() < 0.05
    assert out[0, 16, 16] > 1.5


def test_processor_expands_each_image_marker_to_m_tokens():
    tok = build_byte_tokenizer("llama")
    proc = Processor(tok, ImageTransform(16, CLIP_MEAN, CLIP_STD), num_image_tokens=7)
    batch = proc(["<image>\nhi", "no image here"], [random_image(20, 20)])
    assert int((batch["input_ids"][0] == proc.image_token_id).sum()) == 7
    assert int((batch["input_ids"][1] == proc.image_token_id).sum()) == 0
    assert batch["pixel_values"].shape == (1, 3, 16, 16)
    # Left padding, so generation continues every row at the same position.
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
