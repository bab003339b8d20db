"""Frame sampling: uniform F frames from a folder of frames or a .npy array, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deco.errors import DataError
from deco.model.processor import ImageTransform
from deco.model.video import frames_to_tensor, list_frames, load_video, sample_indices

TRANSFORM = ImageTransform(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop=False)


def write_frames(folder, n, size=(20, 12), names="frame_{}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 10 % 256, 0, 0)).save(folder / names.format(i))
    return folder


def red(image):
    return image.getpixel((0, 0))[0]


def test_uniform_sampling_takes_segment_middles():
    assert sample_indices(16, 4) == [2, 6, 10, 14]
    assert sample_indices(4, 4) == [0, 1, 2, 3]
    assert sample_indices(3, 4) == [0, 1, 1, 2]  # fewer frames than F (but >= the target): some repeat
    assert sample_indices(100, 1) == [50]


def test_zero_frames_and_fewer_than_the_temporal_target_are_errors():
    with pytest.raises(DataError, match="clip.npy: the video has zero frames"):
        sample_indices(0, 4, where="clip.npy")
    with pytest.raises(DataError, match="3 frame.*temporal target of 4"):
        sample_indices(3, 8, min_frames=4)


def test_folder_frames_are_read_in_natural_order_and_sampled(tmp_path):
    folder = write_frames(tmp_path / "v", 12)
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frames(folder)][:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    assert list_frames(folder)[10].name == "frame_10.png"  # not between frame_1 and frame_2
    frames = load_video(folder, 4)
    assert [red(f) for f in frames] == [10, 40, 70, 100]  # frames 1, 4, 7, 10
    assert all(f.mode == "RGB" and f.size == (20, 12) for f in frames)


def test_folder_errors_name_the_video_and_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: the video has zero frames"):
        load_video(empty, 4)
    short = write_frames(tmp_path / "short", 2)
    with pytest.raises(DataError, match="short: the video has 2 frame.*temporal target of 4"):
        load_video(short, 8, min_frames=4)
    mixed = write_frames(tmp_path / "mixed", 4)
    Image.new("RGB", (30, 12)).save(mixed / "frame_2.png")
    with pytest.raises(DataError, match="different sizes: frame_0.png is 20x12 but frame_2.png is 30x12"):
        load_video(mixed, 2)
    broken = write_frames(tmp_path / "broken", 3)
    (broken / "frame_1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="frame_1.png"):
        load_video(broken, 3)


def test_npy_arrays_in_every_common_layout(tmp_path):
    rgb = np.zeros((10, 6, 8, 3), dtype=np.uint8)
    rgb[:, :, :, 0] = np.arange(10)[:, None, None] * 20
    np.save(tmp_path / "rgb.npy", rgb)
    frames = load_video(tmp_path / "rgb.npy", 5)
    assert [red(f) for f in frames] == [20, 60, 100, 140, 180]  # frames 1, 3, 5, 7, 9
    assert frames[0].size == (8, 6)
    np.save(tmp_path / "gray.npy", np.full((3, 6, 8), 7, dtype=np.uint8))
    assert load_video(tmp_path / "gray.npy", 2)[0].getpixel((0, 0)) == (7, 7, 7)
    np.save(tmp_path / "float.npy", np.full((3, 6, 8, 3), 0.5, dtype=np.float32))
    assert red(load_video(tmp_path / "float.npy", 2)[0]) == 128


def test_npy_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=r"flat.npy: expected frames as \[T, H, W\]"):
        load_video(tmp_path / "flat.npy", 2)
    np.save(tmp_path / "none.npy", np.zeros((0, 6, 8, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="none.npy: the video has zero frames"):
        load_video(tmp_path / "none.npy", 2)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npy: not a readable .npy"):
        load_video(tmp_path / "junk.npy", 2)
    (tmp_path / "clip.xyz").write_bytes(b"\x00")
    with pytest.raises(DataError, match=r"clip.xyz: unsupported format '.xyz'; give a folder.*\.mp4"):
        load_video(tmp_path / "clip.xyz", 2)
    with pytest.raises(DataError, match="video not found"):
        load_video(tmp_path / "missing.npy", 2)


def test_frames_to_tensor_uses_the_encoder_transform():
    frames = [Image.new("RGB", (20, 12), (255, 0, 0)) for _ in range(3)]
    out = frames_to_tensor(frames, TRANSFORM)
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(out[:, 0], torch.ones(3, 16, 16))  # (1 - 0.5) / 0.5
    with pytest.raises(DataError, match="frame 0 is 20x12 but frame 2 is 9x9"):
        frames_to_tensor(frames[:2] + [Image.new("RGB", (9, 9))], TRANSFORM)
    with pytest.raises(DataError, match="zero frames"):
        frames_to_tensor([], TRANSFORM)
