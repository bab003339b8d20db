"""ConversationDataset and DataCollator: placeholders, truncation, bad samples, batch layout."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from deco.data import IGNORE_INDEX, ConversationDataset, DataCollator, records_from_dicts
from deco.errors import ConfigError, DataError
from deco.model.processor import ImageTransform, Processor
from deco.model.tokenizer import build_byte_tokenizer

M = 4  # placeholders per image
SIZE = 8


def make_processor(style="llama"):
    return Processor(build_byte_tokenizer(style), ImageTransform(SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), M)


def img_rec(i, image, question="What colour?", answer="Red.", turns=None):
    convs = turns or [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]
    return {"id": i, "image": image, "conversations": convs}


def txt_rec(i, answer="Hello there."):
    return {"id": i, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": answer}]}


@pytest.fixture
def folder(tmp_path):
    for name, colour in [("red.png", (255, 0, 0)), ("green.png", (0, 255, 0)), ("blue.png", (0, 0, 255))]:
        Image.new("RGB", (SIZE, SIZE), colour).save(tmp_path / name)
    return tmp_path


def dataset(folder, items, template="vicuna_v1", max_length=512, processor=None, **kw):
    return ConversationDataset(
        records_from_dicts(items, allow_multi_image=kw.pop("allow_multi_image", False)),
        folder,
        processor or make_processor(),
        template,
        max_length,
        **kw,
    )


def image_runs(ids: torch.Tensor, image_id: int) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive image ids."""
    runs, start = [], None
    for i, token in enumerate(ids.tolist() + [None]):
        if token == image_id and start is None:
            start = i
        elif token != image_id and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@pytest.mark.parametrize("style", ["llama", "qwen"])
def test_image_becomes_m_placeholders_without_loss(folder, style):
    proc = make_processor(style)
    ds = dataset(folder, [img_rec("a", "red.png"), txt_rec("b")], template="chatml", processor=proc)
    sample = ds[0]
    ids, labels = sample["input_ids"], sample["labels"]
    ((start, length),) = image_runs(ids, proc.image_token_id)
    assert length == M and (labels[start : start + M] == IGNORE_INDEX).all()
    assert sample["pixel_values"].shape == (1, 3, SIZE, SIZE)
    assert torch.allclose(sample["pixel_values"][0, 0], torch.ones(SIZE, SIZE))  # red channel of red.png
    assert proc.tokenizer.decode(labels[labels != IGNORE_INDEX]) == "Red.<|im_end|>"
    assert ds[1]["pixel_values"] is None and ds[1]["sample_id"] == "b"
    assert ds.lengths.tolist() == [len(ids), len(ds[1]["input_ids"])]
    assert ds.modality_lengths == [len(ids), -len(ds[1]["input_ids"])]


def test_loads_from_a_json_file(folder):
    path = folder / "train.json"
    path.write_text(json.dumps([img_rec("a", "red.png"), txt_rec("b")]))
    ds = ConversationDataset(path, folder, make_processor(), "plain", 64, on_bad_sample="skip")
    assert len(ds) == 2 and ds.num_skipped == 0
    text_only = ds[1]  # plain on a text-only sample: the caption alone, all of it with loss
    assert text_only["labels"].tolist() == [IGNORE_INDEX] + text_only["input_ids"].tolist()[1:]
    ds = ConversationDataset(path, folder, make_processor(), "vicuna_v1", 512)
    assert list(ds.sample_ids) == ["a", "b"]


def test_truncation_keeps_the_image_block_and_cuts_text(folder):
    proc = make_processor()
    full = dataset(folder, [img_rec("a", "red.png", answer="A long answer about the red square.")])
    n = int(full.lengths[0])
    cut = dataset(
        folder, [img_rec("a", "red.png", answer="A long answer about the red square.")], max_length=n - 10
    )
    sample = cut[0]
    assert len(sample["input_ids"]) == n - 10 == cut.lengths[0]
    assert torch.equal(sample["input_ids"], full[0]["input_ids"][: n - 10])
    assert image_runs(sample["input_ids"], proc.image_token_id)[0][1] == M
    assert (sample["labels"] != IGNORE_INDEX).any()


def test_truncation_through_the_image_block_is_a_bad_sample(folder, caplog):
    # plain: [<s>, M placeholders, caption..., "\n"]; max_length 3 ends inside the block.
    items = [img_rec("cut-me", "red.png"), txt_rec("fine", answer="ok")]
    with pytest.raises(
        DataError, match="sample 'cut-me': max_length 3 would cut the image placeholder block"
    ):
        dataset(folder, items, template="plain", max_length=3)
    with caplog.at_level(logging.WARNING, logger="deco.data.dataset"):
        ds = dataset(folder, items, template="plain", max_length=3, on_bad_sample="skip")
    assert list(ds.sample_ids) == ["fine"] and ds[0]["input_ids"].tolist() == [1] + ds[0]["labels"].tolist()[1:]
    assert ds.skipped["image_truncated"] == 1 and ds.skipped_ids["image_truncated"] == ["cut-me"]
    assert "cut-me" in caplog.text and "image_truncated" in caplog.text


# Tokens before "USER: " ends in the vicuna prompt: <s> + system + " USER: " (byte tokenizer: one per byte).
VICUNA_PREFIX_LEN = 1 + len(
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. USER: "
)


def test_empty_loss_after_truncation_errors_or_is_counted(folder, caplog):
    # The question is long enough that max_length ends before the answer starts.
    items = [img_rec("no-answer", "red.png", question="x" * 100), img_rec("ok", "green.png")]
    limit = VICUNA_PREFIX_LEN + M + 60
    with pytest.raises(
        DataError, match="sample 'no-answer': no token carries loss after truncation to max_length"
    ):
        dataset(folder, items, max_length=limit)
    with caplog.at_level(logging.WARNING):
        ds = dataset(folder, items, max_length=limit, on_bad_sample="skip")
    assert list(ds.sample_ids) == ["ok"] and ds.skipped["empty_loss"] == 1 and ds.num_skipped == 1
    assert "no-answer" in caplog.text


def test_every_sample_skipped_is_an_empty_dataset_error(folder):
    with pytest.raises(DataError, match="empty dataset: all 1 samples were skipped \\(empty_loss: 1\\)"):
        dataset(
            folder,
            [img_rec("x", "red.png", question="y" * 100)],
            max_length=VICUNA_PREFIX_LEN + 10,
            on_bad_sample="skip",
        )


def test_template_rejection_is_a_bad_sample(folder):
    two_rounds = [
        {"from": "human", "value": "<image>\nA?"},
        {"from": "gpt", "value": "a"},
        {"from": "human", "value": "B?"},
        {"from": "gpt", "value": "b"},
    ]
    items = [img_rec("multi", "red.png", turns=two_rounds), img_rec("single", "red.png")]
    with pytest.raises(DataError, match="sample 'multi': template 'plain'"):
        dataset(folder, items, template="plain")
    ds = dataset(folder, items, template="plain", on_bad_sample="skip")
    assert list(ds.sample_ids) == ["single"] and ds.skipped["bad_for_template"] == 1


def test_tokenization_mismatch_errors_or_is_counted(folder):
    from test_data_templates import _metaspace_tokenizer  # a tokenizer with a token across the loss boundary

    proc = Processor(_metaspace_tokenizer(merges=True), ImageTransform(SIZE, (0, 0, 0), (1, 1, 1)), M)
    items = [txt_rec("t1"), txt_rec("t2")]
    with pytest.raises(DataError, match="sample 't1': tokenization mismatch"):
        dataset(folder, items + [txt_rec("t3")], processor=proc)
    plain = dataset(folder, items, template="plain", processor=proc)  # no ":" before the answer: fine
    assert len(plain) == 2
    with pytest.raises(DataError, match="all 2 samples were skipped \\(tokenization_mismatch: 2\\)"):
        dataset(folder, items, processor=proc, on_bad_sample="skip")


def test_missing_image_lazily_or_upfront(folder):
    items = [img_rec("gone", "missing.png"), img_rec("here", "red.png")]
    ds = dataset(folder, items)
    with pytest.raises(DataError, match=f"sample 'gone': image file not found: {folder / 'missing.png'}"):
        ds[0]
    with pytest.raises(DataError, match="sample 'gone': image file not found"):
        dataset(folder, items, check_images=True)
    ds = dataset(folder, items, check_images=True, on_bad_sample="skip")
    assert list(ds.sample_ids) == ["here"] and ds.skipped["missing_image"] == 1


def test_corrupt_image_names_file_and_sample(folder):
    (folder / "bad.png").write_bytes(b"garbage" * 20)
    ds = dataset(folder, [img_rec("broken", "bad.png")])
    with pytest.raises(DataError, match="sample 'broken': not an image.*bad.png"):
        ds[0]


def test_bad_configuration(folder):
    proc = make_processor()
    proc.tokenizer.pad_token = None
    assert proc.tokenizer.pad_token_id is None
    with pytest.raises(ConfigError, match="no pad token"):
        dataset(folder, [txt_rec("a")], processor=proc)
    with pytest.raises(ConfigError, match="no pad token"):
        DataCollator.from_processor(proc)
    with pytest.raises(ConfigError, match="on_bad_sample"):
        dataset(folder, [txt_rec("a")], on_bad_sample="ignore")
    with pytest.raises(ConfigError, match="max_length"):
        dataset(folder, [txt_rec("a")], max_length=0)
    with pytest.raises(ConfigError, match="unknown conversation template 'llava'"):
        dataset(folder, [txt_rec("a")], template="llava")


# ---- collator -------------------------------------------------------------------------------


def test_collator_pads_right_and_stacks_images_in_placeholder_order(folder):
    proc = make_processor()
    turns = [{"from": "human", "value": "<image> then <image>?"}, {"from": "gpt", "value": "Both."}]
    items = [
        img_rec("r", "red.png"),
        txt_rec("t", answer="A much longer text answer than the others."),
        img_rec("gb", ["green.png", "blue.png"], turns=turns),
    ]
    ds = dataset(folder, items, allow_multi_image=True)
    collate = DataCollator.from_processor(proc)
    batch = collate([ds[0], ds[1], ds[2]])
    lengths = ds.lengths
    width = max(lengths)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, width)
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][row, n:] == proc.tokenizer.pad_token_id).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert torch.equal(batch["input_ids"][row, :n], ds[row]["input_ids"])
    # Placeholder blocks read row by row: red (row 0), then green, blue (row 2, in text order).
    assert batch["pixel_values"].shape == (3, 3, SIZE, SIZE)
    colours = batch["pixel_values"].mean(dim=(2, 3)).argmax(dim=1).tolist()
    assert colours == [0, 1, 2]
    assert (batch["input_ids"] == proc.image_token_id).sum() == 3 * M
    assert batch["sample_ids"] == ["r", "t", "gb"]
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long


def test_collator_without_images_and_with_padding_multiple(folder):
    proc = make_processor()
    ds = dataset(folder, [txt_rec("a"), txt_rec("b", answer="yes")])
    batch = DataCollator.from_processor(proc, pad_to_multiple_of=64)([ds[0], ds[1]])
    assert batch["pixel_values"] is None and batch["input_ids"].shape[1] % 64 == 0


def test_collator_checks_placeholder_count_and_pad_id(folder):
    proc = make_processor()
    sample = dataset(folder, [img_rec("a", "red.png")])[0]
    sample["pixel_values"] = torch.cat([sample["pixel_values"]] * 2)  # two images, one block
    with pytest.raises(DataError, match=f"sample 'a': {M} image placeholders for 2 image"):
        DataCollator.from_processor(proc)([sample])
    with pytest.raises(ConfigError, match="pad token id .* is the image token id"):
        DataCollator(proc.image_token_id, proc.image_token_id, M)


def test_dataloader_with_workers_round_trip(folder):
    proc = make_processor()
    ds = dataset(
        folder, [img_rec(str(i), ["red.png", "green.png"][i % 2]) for i in range(6)] + [txt_rec("t")]
    )
    loader = DataLoader(ds, batch_size=3, collate_fn=DataCollator.from_processor(proc), num_workers=1)
    batches = list(loader)
    assert [b["sample_ids"] for b in batches] == [["0", "1", "2"], ["3", "4", "5"], ["t"]]
    assert batches[0]["pixel_values"].shape == (3, 3, SIZE, SIZE) and batches[2]["pixel_values"] is None
