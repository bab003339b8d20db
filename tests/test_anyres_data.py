"""AnyRes from config to batch: the `vision.anyres` section, the dataset's blocks, the collator."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from deco.config import load_config
from deco.data import IGNORE_INDEX, ConversationDataset, DataCollator, records_from_dicts
from deco.errors import ConfigError, DataError
from deco.model import build_model, load_model, save_model

# Image sizes that pick every default layout (48 px tiles): wide, tall, big square, small.
SIZES = {"wide": ((150, 50), (1, 3)), "tall": ((50, 150), (3, 1)), "big": ((100, 100), (2, 2)),
         "small": ((40, 30), (1, 2))}
ANYRES_ON = ["vision.anyres.enabled=true", "projector.options={grid: 3x3}"]


def tiny_anyres(*extra):
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", [*ANYRES_ON, *extra])).eval()


def write_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (size, _)) in enumerate(SIZES.items()):
        Image.new("RGB", size, (40 * i, 200 - 40 * i, 90)).save(folder / f"{name}.png")
    return folder


def rec(i, image=None, answer="a red thing"):
    question = "<image>\nWhat is it?" if image else "Say it."
    out = {"id": i, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if image:
        out["image"] = image
    return out


# ---- config ---------------------------------------------------------------------------------------

def test_config_section_defaults_to_llava_next_and_normalises_layouts():
    off = load_config("configs/tiny.yaml").vision.anyres
    assert not off.enabled and off.layouts == ["1x2", "2x1", "2x2", "1x3", "3x1"] and off.max_tiles == 4
    on = load_config("configs/tiny.yaml", ["vision.anyres.layouts=[2X2, [1, 3]]"]).vision.anyres
    assert on.layouts == ["2x2", "1x3"]
    recipe = load_config("configs/llava-next-deco-anyres.yaml")
    assert recipe.vision.anyres.enabled and recipe.train.stage == 2 and recipe.projector.name == "deco"
    assert recipe.train.stage1_checkpoint and recipe.data.template == "vicuna_v1"


@pytest.mark.parametrize("overrides,message", [
    (["vision.anyres.layouts=[1x2, 3x3]"],
     r"'vision.anyres.layouts\[1\]' = 3x3 has 9 tiles, more than 'vision.anyres.max_tiles' = 4"),
    (["vision.anyres.max_tiles=2"], r"'vision.anyres.layouts\[2\]' = 2x2 has 4 tiles"),
    (["vision.anyres.max_tiles=0"], "'vision.anyres.max_tiles' must be a positive int"),
    (["vision.anyres.layouts=[2by2]"], r"'vision.anyres.layouts\[0\]': a tile layout looks like '2x2'"),
    (["vision.anyres.layouts=[]"], "'vision.anyres.layouts' is empty"),
    (["vision.anyres.layouts=[2x2, 2x2]"], "listed twice"),
    (["vision.anyres.layout_tokens=comma"], "'vision.anyres.layout_tokens' must be one of"),
    (["vision.anyres.tiles=3"], "unknown key 'vision.anyres.tiles'"),
    (["vision.anyres.enabled=true", "projector.name=deco3d",
      "projector.options={target: 2x3x3, num_frames: 4}"],
     "'vision.anyres.enabled'.*takes videos"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/tiny.yaml", overrides)


def test_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "hires.yaml"
    bad.write_text("vision:\n  anyres: {enabled: true, layouts: [4x1], max_tiles: 3}\n")
    with pytest.raises(ConfigError, match=r"hires.yaml.*'vision.anyres.layouts\[0\]' = 4x1"):
        load_config(bad)


def test_newline_layout_tokens_with_a_gridless_projector_names_the_key():
    cfg = load_config("configs/tiny.yaml", [
        "vision.anyres.enabled=true", "projector.name=qformer",
        "projector.options={num_queries: 5, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32}"])
    with pytest.raises(ConfigError, match="'vision.anyres.layout_tokens'.*use layout_tokens='separator'"):
        build_model(cfg)


# ---- model save / load ----------------------------------------------------------------------------

def test_saved_model_reloads_with_anyres_on_and_the_same_layouts(tmp_path):
    model = tiny_anyres("vision.anyres.layouts=[3x1, 1x2]", "vision.anyres.max_tiles=3",
                        "vision.anyres.layout_tokens=separator")
    loaded = load_model(save_model(model, tmp_path / "m"))
    a, b = model.anyres, loaded.anyres
    assert b is not None and b.layouts == a.layouts == ((3, 1), (1, 2))
    assert (b.max_tiles, b.layout_tokens, b.tile_tokens) == (3, "separator", 9)
    image = Image.new("RGB", (60, 150), (10, 120, 200))
    x, y = model.processor()("<image> hi", images=[image]), loaded.processor()("<image> hi", images=[image])
    assert torch.equal(x["input_ids"], y["input_ids"])
    assert x["image_layouts"] == y["image_layouts"] == [(3, 1)]
    torch.testing.assert_close(loaded(**y).logits, model(**x).logits, rtol=0, atol=0)
    # enable_anyres() called by hand is saved too
    plain = build_model(load_config("configs/tiny.yaml", ["projector.options={grid: 3x3}"]))
    plain.enable_anyres(["2x2"], max_tiles=4)
    again = load_model(save_model(plain, tmp_path / "hand"))
    assert again.anyres is not None and again.anyres.layouts == ((2, 2),)
    off = build_model(load_config("configs/tiny.yaml"))
    assert load_model(save_model(off, tmp_path / "off")).anyres is None


# ---- dataset --------------------------------------------------------------------------------------

def anyres_dataset(model, folder, items, max_length=512, template="vicuna_v1", **kw):
    return ConversationDataset(records_from_dicts(items, allow_multi_image=True), folder, model.processor(),
                               template, max_length, **kw)


def test_dataset_blocks_have_the_models_token_count_and_no_loss(tmp_path):
    model = tiny_anyres()
    anyres, proc = model.anyres, model.processor()
    folder = write_images(tmp_path / "images")
    items = [rec(name, f"{name}.png") for name in SIZES] + [rec("text")]
    items.append({"id": "two", "image": ["wide.png", "tall.png"], "conversations": [
        {"from": "human", "value": "<image> and <image>: which is wide?"},
        {"from": "gpt", "value": "first"}]})
    ds = anyres_dataset(model, folder, items)
    layouts_of = {name: [layout] for name, (_, layout) in SIZES.items()}
    layouts_of |= {"text": [], "two": [(1, 3), (3, 1)]}
    for i, sample_id in enumerate(ds.sample_ids):
        sample = ds[i]
        ids, labels = sample["input_ids"], sample["labels"]
        want = layouts_of[sample_id]
        assert sample["image_layouts"] == want, sample_id
        assert len(ids) == len(labels) == ds.lengths[i]  # the sampler's length is the real one
        assert ds.modality_lengths[i] == (ds.lengths[i] if want else -ds.lengths[i])
        is_image = ids == proc.image_token_id
        assert int(is_image.sum()) == sum(anyres.num_placeholders(lay) for lay in want)
        n_views = sum(anyres.num_views(lay) for lay in want)
        pixels = sample["pixel_values"]
        assert pixels is None if not want else pixels.shape == (n_views, 3, 48, 48)
        # each block is the model's own block for that layout, and carries no loss
        start = 0
        for lay in want:
            block = anyres.block(lay, proc.image_token_id, proc.layout_token_id)
            start = ids.tolist().index(proc.image_token_id, start)
            assert ids[start : start + len(block)].tolist() == block
            assert len(block) == anyres.num_tokens(lay)
            assert (labels[start : start + len(block)] == IGNORE_INDEX).all()
            start += len(block)
        assert (labels != IGNORE_INDEX).any()
    # the same views the inference processor makes of the same file
    for name in SIZES:
        at_inference = proc("<image>", images=[Image.open(folder / f"{name}.png")])["pixel_values"]
        from_dataset = ds[list(ds.sample_ids).index(name)]["pixel_values"]
        torch.testing.assert_close(from_dataset, at_inference, rtol=0, atol=0)


def test_dataset_uses_the_exif_rotated_size(tmp_path):
    model = tiny_anyres()
    folder = tmp_path / "images"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: the stored 150x50 image shows as 50x150
    Image.new("RGB", (150, 50), (200, 0, 0)).save(folder / "rot.jpg", exif=exif)
    sample = anyres_dataset(model, folder, [rec("rot", "rot.jpg")])[0]
    assert sample["image_layouts"] == [(3, 1)]


def test_truncation_never_cuts_an_anyres_block(tmp_path):
    model = tiny_anyres()
    folder = write_images(tmp_path / "images")
    items = [rec("wide", "wide.png"), rec("big", "big.png")]
    # "plain": BOS, the block, the caption. The big (2x2) block ends at 1 + 51, the wide (1x3) one at 1 + 39.
    ds = anyres_dataset(model, folder, items, max_length=48, template="plain", on_bad_sample="skip")
    assert list(ds.sample_ids) == ["wide"] and ds.skipped_ids["image_truncated"] == ["big"]
    assert ds.lengths.tolist() == [48] and len(ds[0]["input_ids"]) == 48  # the caption is cut, the block is whole
    with pytest.raises(DataError, match=r"sample 'big': max_length 48 would cut the image placeholder block"):
        anyres_dataset(model, folder, items, max_length=48, template="plain")


def test_bad_images_name_the_sample_and_the_file(tmp_path):
    model = tiny_anyres()
    folder = write_images(tmp_path / "images")
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"sample 'b'.*cannot read the image header of .*broken.png"):
        anyres_dataset(model, folder, [rec("a", "wide.png"), rec("b", "broken.png")])
    with pytest.raises(DataError, match=r"sample 'gone'.*image file not found: .*gone.png"):
        anyres_dataset(model, folder, [rec("gone", "gone.png")])
    items = [rec("a", "wide.png"), rec("b", "broken.png"), rec("gone", "gone.png")]
    ds = anyres_dataset(model, folder, items, on_bad_sample="skip")
    assert list(ds.sample_ids) == ["a"] and ds.skipped["unreadable_image"] == ds.skipped["missing_image"] == 1
    (folder / "wide.png").write_bytes(b"changed after the build")
    with pytest.raises(DataError, match=r"sample 'a'.*wide.png"):
        ds[0]


# ---- collator -------------------------------------------------------------------------------------

def test_collator_mixes_layouts_in_one_batch_in_placeholder_order(tmp_path):
    model = tiny_anyres()
    folder = write_images(tmp_path / "images")
    ds = anyres_dataset(model, folder, [rec("wide", "wide.png"), rec("text"), rec("big", "big.png"),
                                        rec("tall", "tall.png")])
    samples = [ds[i] for i in range(len(ds))]
    collate = DataCollator.from_processor(model.processor())
    batch = collate(samples)
    assert batch["image_layouts"] == [(1, 3), (2, 2), (3, 1)]  # batch order, the text row has none
    assert batch["pixel_values"].shape == (4 + 5 + 4, 3, 48, 48)
    torch.testing.assert_close(batch["pixel_values"][4:9], samples[2]["pixel_values"])
    assert batch["sample_ids"] == ["wide", "text", "big", "tall"]
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_layouts")})
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert collate([samples[1]])["image_layouts"] is None  # text only: nothing to tile
    # a sample whose layout does not match its placeholders or views is named
    wrong = dict(samples[0], image_layouts=[(2, 2)])
    with pytest.raises(DataError, match=r"'wide': image layouts \[\(2, 2\)\] need 5 views but pixel_values "
                                        r"holds 4"):
        collate([wrong])
    ids = samples[0]["input_ids"]
    first = ids.tolist().index(model.processor().image_token_id)
    labels = samples[0]["labels"]
    short = dict(samples[0], input_ids=torch.cat([ids[:first], ids[first + 1 :]]),  # one placeholder gone
                 labels=torch.cat([labels[:first], labels[first + 1 :]]))
    with pytest.raises(DataError, match="'wide': 35 image placeholders, but its AnyRes layouts 1x3 need 36"):
        collate([short])
    with pytest.raises(DataError, match=r"sample 'wide': image 0: tile layout 3x3 .*not among"):
        collate([dict(samples[0], image_layouts=[(3, 3)])])
    missing = {k: v for k, v in samples[0].items() if k != "image_layouts"}
    with pytest.raises(DataError, match="sample 'wide': an AnyRes batch needs the sample's image_layouts"):
        collate([missing])


def test_records_file_path_works_end_to_end(tmp_path):
    model = tiny_anyres()
    folder = write_images(tmp_path / "images")
    (tmp_path / "train.json").write_text(json.dumps([rec("big", "big.png")]))
    ds = ConversationDataset(tmp_path / "train.json", folder, model.processor(), "plain", 512)
    assert ds[0]["image_layouts"] == [(2, 2)]
