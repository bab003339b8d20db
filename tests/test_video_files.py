"""Video files (.mp4, .mkv, ...) through PyAV and animated GIFs: same sampling rule as folders, clear errors."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deco.config import load_config
from deco.data import DataCollator, records_from_dicts
from deco.data.video_dataset import VideoConversationDataset
from deco.errors import DataError
from deco.model import build_model
from deco.model.video import _decode_file, load_video, sample_indices

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV not installed (extra 'video')")
STEP = 20  # frame i is a solid colour with red = 20 * i: the index survives lossy codecs


def colour(i: int) -> tuple[int, int, int]:
    return (STEP * i, 255 - STEP * i, 60)


def write_video(path, n=12, codec="libx264", options=None, pix_fmt="yuv444p", size=32, line=True):
    """A real n-frame clip of solid colours, written with PyAV (lossless where the codec allows)."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        stream.options = options or {}
        container.start_encoding()  # writes the header even for a clip without frames
        for i in range(n):
            frame = np.zeros((size, size, 3), dtype=np.uint8)
            frame[:] = colour(i)
            if line:
                frame[i % size, :, :] = 255  # a moving line, so frames also differ in shape
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def index_of(frame: Image.Image) -> int:
    """Which frame this is, from its colour away from the moving line (checked against a tolerance)."""
    r, g, b = frame.getpixel((frame.width - 1, frame.height // 2 + 3))
    i = round(r / STEP)
    assert max(abs(r - colour(i)[0]), abs(g - colour(i)[1]), abs(b - colour(i)[2])) <= 6, (r, g, b)
    return i


FORMATS = [  # (file, encoder, options, pixel format)
    ("clip.mp4", "libx264", {"crf": "0"}, "yuv444p"),  # the container stores the frame count
    ("clip.mkv", "ffv1", {}, "yuv444p"),  # no stored frame count: counted by decoding
    ("clip.webm", "libvpx-vp9", {"lossless": "1"}, "yuv444p"),
    ("clip.avi", "mpeg4", {"qscale": "1"}, "yuv420p"),
    ("clip.mov", "libx264", {"crf": "0"}, "yuv444p"),
]


@needs_av
@pytest.mark.parametrize(("name", "codec", "options", "pix_fmt"), FORMATS)
def test_video_files_are_sampled_like_frame_folders(tmp_path, name, codec, options, pix_fmt):
    path = write_video(tmp_path / name, 12, codec, options, pix_fmt)
    for f in (4, 5, 12, 16):
        frames = load_video(path, f)
        assert [index_of(x) for x in frames] == sample_indices(12, f)  # the folder/array rule
        assert all(x.mode == "RGB" and x.size == (32, 32) for x in frames)


@needs_av
def test_the_stream_without_a_frame_count_is_counted_by_decoding(tmp_path):
    import av

    path = write_video(tmp_path / "clip.mkv", 7, "ffv1")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores none
    assert [index_of(x) for x in load_video(path, 3)] == [1, 3, 5]  # from 7 frames, not from 0 or a guess


@needs_av
def test_decoding_converts_only_the_picked_frames_and_stops_after_the_last(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 12)
    frames, decoded = _decode_file(path, {1, 4}, None)
    assert sorted(frames) == [1, 4] and decoded == 5
    assert [index_of(frames[1]), index_of(frames[4])] == [1, 4]
    frames, decoded = _decode_file(path, set(), None)  # the counting pass: no conversions at all
    assert frames == {} and decoded == 12


@needs_av
def test_a_header_that_overcounts_frames_falls_back_to_the_decoded_count(tmp_path, monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    import deco.model.video as video

    path = write_video(tmp_path / "clip.mp4", 6)
    real = video._video_stream
    calls = []

    @contextmanager
    def lying_header(p):
        with real(p) as (container, stream):
            calls.append(p)
            # The first open only reads the count: claim 20 frames where the file holds 6.
            yield container, (SimpleNamespace(frames=20) if len(calls) == 1 else stream)

    monkeypatch.setattr(video, "_video_stream", lying_header)
    assert [index_of(x) for x in load_video(path, 3)] == sample_indices(6, 3) == [1, 3, 5]
    assert len(calls) == 3  # header, a decode that ran out of frames, the decode with the real count


@needs_av
def test_file_errors_name_the_file_and_the_problem(tmp_path):
    short = write_video(tmp_path / "short.mp4", 3)
    with pytest.raises(DataError, match=r"short.mp4: the video has 3 frame\(s\), fewer than the temporal target of 4"):
        load_video(short, 8, min_frames=4)
    assert len(load_video(short, 8)) == 8  # fewer than F but no target: frames repeat
    none = write_video(tmp_path / "none.mkv", 0, "ffv1")
    with pytest.raises(DataError, match="none.mkv: the video has zero frames"):
        load_video(none, 4)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.mp4: the file is empty \(0 bytes\)"):
        load_video(tmp_path / "empty.mp4", 4)
    (tmp_path / "junk.webm").write_bytes(b"this is not a video" * 50)
    with pytest.raises(DataError, match="video file .*junk.webm: corrupt or unreadable video file"):
        load_video(tmp_path / "junk.webm", 4)
    whole = write_video(tmp_path / "whole.mp4", 12).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) is at the end
    with pytest.raises(DataError, match="cut.mp4: corrupt or unreadable"):
        load_video(tmp_path / "cut.mp4", 4)
    with pytest.raises(DataError, match="video not found: .*gone.mp4"):
        load_video(tmp_path / "gone.mp4", 4)


@needs_av
def test_frames_above_the_pixel_limit_are_refused(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 4)
    with pytest.raises(DataError, match=r"clip.mp4: frames of 32x32 are above the limit of 1,000 pixels"):
        load_video(path, 2, max_pixels=1000)


def test_animated_gifs_need_no_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # GIFs are read by PIL alone
    frames = [Image.new("RGB", (24, 16), colour(i)) for i in range(6)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    out = load_video(tmp_path / "anim.gif", 3)
    assert [index_of(x) for x in out] == sample_indices(6, 3) == [1, 3, 5]
    assert all(x.mode == "RGB" and x.size == (24, 16) for x in out)
    with pytest.raises(DataError, match=r"anim.gif: the video has 6 frame\(s\), fewer than the temporal target of 8"):
        load_video(tmp_path / "anim.gif", 8, min_frames=8)
    (tmp_path / "bad.gif").write_bytes(b"GIF89a broken")
    with pytest.raises(DataError, match="bad.gif"):
        load_video(tmp_path / "bad.gif", 2)


def test_without_pyav_a_video_file_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(DataError, match=r"clip.mp4: reading '.mp4' files needs PyAV.*pip install 'deco-vlm\[video\]'"):
        load_video(tmp_path / "clip.mp4", 4)
    model = tiny_video_model()
    rec = record("needs-av", "clip.mp4")
    # The dataset fails when it is built, naming the sample, not at some later training step.
    with pytest.raises(DataError, match=r"sample 'needs-av': video file .*clip.mp4: .*deco-vlm\[video\]"):
        VideoConversationDataset(records_from_dicts([rec]), tmp_path, model.processor(), "vicuna_v1", 512)


def tiny_video_model():
    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml", ["projector.name=deco3d", "projector.options={target: 2x2x2, num_frames: 4}"])
    return build_model(cfg).eval()


def record(rec_id, video):
    return {"id": rec_id, "image": video, "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "It changes."}]}


@needs_av
def test_the_video_dataset_reads_mp4_records_end_to_end(tmp_path):
    model = tiny_video_model()
    proc = model.processor()
    write_video(tmp_path / "a.mp4", 12, line=False)
    write_video(tmp_path / "b.mkv", 9, "ffv1")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    records = records_from_dicts([record("a", "a.mp4"), record("b", "b.mkv"), record("bad", "broken.mp4")])
    data = VideoConversationDataset(records, tmp_path, proc, "vicuna_v1", 512)
    sample = data[0]
    assert sample["pixel_values"].shape == (1, 4, 3, 48, 48)  # one video of F=4 frames
    expected = proc.preprocess_video([Image.new("RGB", (32, 32), colour(i)) for i in sample_indices(12, 4)])
    # The decoded frames are the sampled ones, up to the codec's colour rounding (a frame step is ~0.3).
    assert (sample["pixel_values"][0] - expected).abs().max() < 0.1
    batch = DataCollator.from_processor(proc)([data[0], data[1]])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], labels=batch["labels"])
    assert batch["pixel_values"].shape == (2, 4, 3, 48, 48) and torch.isfinite(out.loss)
    with pytest.raises(DataError, match="sample 'bad': video file .*broken.mp4: corrupt or unreadable"):
        data[2]
