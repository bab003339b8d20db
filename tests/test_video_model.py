"""Videos through the processor and DecoModel: [V, F, 3, S, S] in, M placeholders per video filled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deco.config import load_config
from deco.errors import DataError, ShapeError
from deco.model import build_model

QF = "{num_queries: 5, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32, num_frames: 4}"


def tiny(projector="deco3d", options="{target: 2x3x3, num_frames: 4}"):
    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml", [f"projector.name={projector}", f"projector.options={options}"])
    return build_model(cfg).eval()


def clip(frames=6, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (frames, 40, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize("projector,options,m", [
    ("deco3d", "{target: 2x3x3, num_frames: 4}", 18),
    ("pllava", "{target: 2x3x3, num_frames: 4}", 18),
    ("deco_temporal", "{frames: 2, num_frames: 4}", 2 * 144),
    ("deco_spatial", "{grid: 3x3, num_frames: 4}", 4 * 9),
    ("qformer_video", QF, 5),
])
def test_processor_lays_out_m_per_video_and_the_model_runs(projector, options, m):
    model = tiny(projector, options)
    assert model.num_frames == 4 and model.num_image_tokens == m
    batch = model.processor()(["<image>\nWhat moved?", "First <image> then <image>?"],
                              videos=[clip(6), clip(9, 1), clip(4, 2)])
    assert batch["pixel_values"].shape == (3, 4, 3, 48, 48)
    image_id = model.processor().image_token_id
    assert (batch["input_ids"][0] == image_id).sum() == m
    assert (batch["input_ids"][1] == image_id).sum() == 2 * m
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert model.generate(**batch, max_new_tokens=2).shape == (2, 2)


def test_frames_reach_the_projector_frame_major_with_a_time_grid():
    model = tiny()
    pixels = torch.randn(2, 4, 3, 48, 48)
    features = model.vision_tower(pixels.flatten(0, 1))  # [8, 144, Dv]
    expected = model.projector(features.reshape(2, 4 * 144, -1), (4, 12, 12))
    torch.testing.assert_close(model.encode_images(pixels), expected)
    # Swapping two frames changes what the model sees (the time axis is real, not a bag of frames).
    swapped = pixels[:, [3, 1, 2, 0]]  # frames 0 and 3 fall in different pooled time steps
    assert not torch.allclose(model.encode_images(swapped), model.encode_images(pixels))


def test_placeholder_count_mismatch_names_both_numbers():
    model = tiny()
    batch = model.processor()("<image>\nHi", videos=[clip()])
    two = torch.cat([batch["pixel_values"]] * 2)
    with pytest.raises(ShapeError, match="18 image placeholder tokens but the 2 video.* give 36"):
        model(input_ids=batch["input_ids"], pixel_values=two)


def test_video_errors():
    model = tiny("deco3d", "{target: 4x3x3, num_frames: 8}")
    proc = model.processor()
    assert proc.min_frames == 4
    with pytest.raises(DataError, match="video 0: the video has 3 frame.*temporal target of 4"):
        proc("<image>\nHi", videos=[clip(3)])
    with pytest.raises(DataError, match="zero frames"):
        proc("<image>\nHi", videos=[np.zeros((0, 8, 8, 3), dtype=np.uint8)])
    with pytest.raises(DataError, match="2 <image> marker.*1 video"):
        proc("<image> and <image>", videos=[clip(8)])
    with pytest.raises(DataError, match="takes videos of 8 frames"):
        proc("<image>\nHi", images=[Image.new("RGB", (48, 48))])
    frames = [Image.new("RGB", (48, 48))] * 7 + [Image.new("RGB", (40, 48))]
    with pytest.raises(DataError, match="different sizes"):
        proc("<image>\nHi", videos=[frames])


def test_image_models_refuse_videos_clearly():
    model = tiny("deco", "{grid: 3x3}")
    with pytest.raises(DataError, match="images only"):
        model.processor()("<image>\nHi", videos=[clip()])
    with pytest.raises(ShapeError, match="has no time axis"):
        model.encode_images(torch.randn(1, 4, 3, 48, 48))


def test_a_one_frame_video_model_takes_plain_images():
    model = tiny("deco3d", "{target: 1x3x3, num_frames: 1}")
    batch = model.processor()("<image>\nHi", images=[Image.new("RGB", (48, 48), (9, 9, 9))])
    assert batch["pixel_values"].shape == (1, 3, 48, 48)
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]
