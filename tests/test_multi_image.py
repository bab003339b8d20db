"""Several images (or videos) per sample: each `<image>` marker gets its own block, filled in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deco.config import load_config
from deco.data import ConversationDataset, DataCollator, records_from_dicts
from deco.data.video_dataset import VideoConversationDataset
from deco.errors import ConfigError, DataError, ShapeError
from deco.model import build_model


def tiny(projector="deco", options="{grid: 3x3}"):
    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml", [f"projector.name={projector}", f"projector.options={options}"])
    return build_model(cfg).eval()


def runs(ids, image_id):
    """Start of each run of consecutive placeholder ids."""
    mask = (ids == image_id).tolist()
    return [i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1])]


def two_image_record(rec_id, first, second):
    return {"id": rec_id, "image": [first, second], "conversations": [
        {"from": "human", "value": "<image>\nand\n<image>\nWhich is red?"}, {"from": "gpt", "value": "The first."},
        {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]}


def test_each_marker_gets_its_own_block_filled_by_its_image(tmp_path):
    model = tiny()
    Image.new("RGB", (48, 48), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (60, 40), (0, 0, 255)).save(tmp_path / "blue.png")
    records = records_from_dicts([two_image_record("a", "red.png", "blue.png"),
                                  two_image_record("b", "blue.png", "red.png")], allow_multi_image=True)
    proc = model.processor()
    data = ConversationDataset(records, tmp_path, proc, "vicuna_v1", 512, allow_multi_image=True)
    batch = DataCollator.from_processor(proc)([data[0], data[1]])
    assert batch["pixel_values"].shape == (4, 3, 48, 48)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    tokens = model.encode_images(batch["pixel_values"])  # [4, 9, Dl] in placeholder order
    m = model.num_image_tokens
    for row in range(2):
        starts = runs(batch["input_ids"][row], proc.image_token_id)
        assert len(starts) == 2 and starts[1] > starts[0] + m  # two separate blocks, text between
        for k, start in enumerate(starts):
            torch.testing.assert_close(embeds[row, start : start + m], tokens[2 * row + k])
    # sample a has red first, sample b blue first: the blocks really follow the record's image order
    torch.testing.assert_close(tokens[0], tokens[3])
    torch.testing.assert_close(tokens[1], tokens[2])
    assert model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}, labels=batch["labels"]).loss > 0


def test_marker_and_image_counts_must_agree():
    with pytest.raises(DataError, match="sample 'x': has 2 <image> marker.*but 1 image path"):
        records_from_dicts([{"id": "x", "image": ["a.png"], "conversations": [
            {"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "ok"}]}], allow_multi_image=True)
    model = tiny()
    proc = model.processor()
    with pytest.raises(DataError, match="3 <image> marker.*2 image"):
        proc("<image><image><image>", images=[Image.new("RGB", (48, 48))] * 2)
    batch = proc("<image> <image>", images=[Image.new("RGB", (48, 48))] * 2)
    with pytest.raises(ShapeError, match="18 image placeholder tokens but the 1 image.* give 9"):
        model.embed(batch["input_ids"], batch["pixel_values"][:1])


def test_several_videos_per_sample_through_the_video_dataset(tmp_path):
    model = tiny("deco_spatial", "{grid: 2x2, num_frames: 3}")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(0, 255, (5, 40, 40, 3), dtype=np.uint8))
    frames = tmp_path / "b"
    frames.mkdir()
    for i in range(4):
        Image.new("RGB", (30, 30), (i * 60, 0, 0)).save(frames / f"{i}.png")
    records = records_from_dicts([two_image_record("v", "a.npy", "b"), two_image_record("w", "b", "a.npy")],
                                 allow_multi_image=True)
    proc = model.processor()
    data = VideoConversationDataset(records, tmp_path, proc, "vicuna_v1", 512, allow_multi_image=True)
    sample = data[0]
    assert sample["pixel_values"].shape == (2, 3, 3, 48, 48)  # 2 videos x 3 frames
    batch = DataCollator.from_processor(proc)([data[0], data[1]])
    assert batch["pixel_values"].shape == (4, 3, 3, 48, 48)
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == 4 * model.num_image_tokens == 4 * 12
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], labels=batch["labels"])
    assert torch.isfinite(out.loss)


def test_video_dataset_errors_name_the_sample(tmp_path):
    model = tiny("deco3d", "{target: 2x2x2, num_frames: 3}")
    np.save(tmp_path / "one.npy", np.zeros((1, 8, 8, 3), dtype=np.uint8))
    rec = {"id": "short", "image": "one.npy", "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "Nothing."}]}
    data = VideoConversationDataset(records_from_dicts([rec]), tmp_path, model.processor(), "vicuna_v1", 512)
    with pytest.raises(DataError, match="sample 'short': video array .*one.npy: the video has 1 frame.*target of 2"):
        data[0]
    missing = {**rec, "id": "gone", "image": "nowhere"}
    with pytest.raises(DataError, match="sample 'gone': video not found"):
        VideoConversationDataset(records_from_dicts([missing]), tmp_path, model.processor(), "vicuna_v1", 512)


def video_record(rec_id, video, question="<image>\nWhat?"):
    return {"id": rec_id, "image": video, "conversations": [
        {"from": "human", "value": question}, {"from": "gpt", "value": "Nothing."}]}


def test_every_bad_video_input_names_the_sample_through_the_dataset(tmp_path):
    model = tiny("deco3d", "{target: 2x2x2, num_frames: 3}")
    proc = model.processor()
    (tmp_path / "empty").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, size in enumerate([(30, 30), (30, 30), (40, 30)]):
        Image.new("RGB", size).save(mixed / f"{i}.png")
    np.save(tmp_path / "none.npy", np.zeros((0, 8, 8, 3), dtype=np.uint8))
    records = records_from_dicts([video_record("empty", "empty"), video_record("mixed", "mixed"),
                                  video_record("none", "none.npy")])
    data = VideoConversationDataset(records, tmp_path, proc, "vicuna_v1", 512)
    with pytest.raises(DataError, match="sample 'empty': video folder .*empty: the video has zero frames"):
        data[0]
    with pytest.raises(DataError, match="sample 'mixed': video folder .*mixed: frames have different sizes: "
                                        "0.png is 30x30 but 2.png is 40x30"):
        data[1]
    with pytest.raises(DataError, match="sample 'none': video array .*none.npy: the video has zero frames"):
        data[2]
    # Problems visible without decoding fail when the dataset is built, naming the sample.
    (tmp_path / "clip.txt").write_text("not a video")
    with pytest.raises(DataError, match="sample 'txt': video .*clip.txt: unsupported format '.txt'"):
        VideoConversationDataset(records_from_dicts([video_record("txt", "clip.txt")]), tmp_path, proc, "vicuna_v1", 512)
    with pytest.raises(DataError, match=r"sample 'two': has 2 <image> marker\(s\) but 1 image path"):
        records_from_dicts([video_record("two", ["none.npy"], "<image> then <image>")], allow_multi_image=True)
    # Straight to the model: too few frames for the temporal target is a ShapeError saying so.
    batch = proc("<image>\nHi", videos=[[Image.new("RGB", (30, 30))] * 3])
    with pytest.raises(ShapeError, match="1 frame.*temporal target is 2"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:, :1])


def test_anyres_prompts_with_several_images_check_markers_and_layout_limits():
    model = tiny()
    with pytest.raises(ConfigError, match="3x3 has 9 tiles, more than max_tiles=4"):
        model.enable_anyres(layouts=["1x2", "3x3"], max_tiles=4)
    model.enable_anyres(layouts=["1x2", "2x1"], max_tiles=2)
    proc = model.processor()
    wide, tall = Image.new("RGB", (96, 40)), Image.new("RGB", (40, 96))
    with pytest.raises(DataError, match="3 <image> marker.*2 image"):
        proc("<image> <image> <image>", images=[wide, tall])
    batch = proc("<image> and <image>", images=[wide, tall])
    assert batch["image_layouts"] == [(1, 2), (2, 1)]  # each image tiled by its own shape, within the limits
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]
    with pytest.raises(ShapeError, match=r"image 1: tile layout 2x2 \(4 tiles, max_tiles=2\) is not among"):
        model(**{**batch, "image_layouts": [(1, 2), (2, 2)]})
