"""Tokenize once: the cached index (deco.data.index_cache) is reused exactly and never when stale; loading stays linear."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deco.data import ConversationDataset
from deco.data.records import load_records
from deco.errors import DataError
from deco.model.processor import ImageTransform, Processor
from deco.model.tokenizer import build_byte_tokenizer

M, SIZE = 4, 8


def processor(tokens=M):
    return Processor(build_byte_tokenizer("llama"), ImageTransform(SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), tokens)


def write_data(folder: Path, n: int = 12, indent: int | None = None) -> Path:
    """n records (a third text-only; s5 too long for max_length 300: skipped) as one
    JSON list, and their images."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for k in range(3):
        Image.new("RGB", (SIZE, SIZE), (80 * k, 0, 0)).save(folder / "img" / f"{k}.png")
    items = []
    for i in range(n):
        question = f"question {i}?" + (" word" * 60 if i == 5 else "")
        item = {"id": f"s{i}", "conversations": [{"from": "human", "value": question},
                                                  {"from": "gpt", "value": "word " * 3}]}
        if i % 3:
            item["image"] = f"img/{i % 3}.png"
            item["conversations"][0]["value"] = question + "\n<image>" if i == 5 else "<image>\n" + question
        items.append(item)
    path = folder / "train.json"
    path.write_text(json.dumps(items, indent=indent), encoding="utf-8")
    return path


def build(path, cache, proc=None, max_length=300, **kw):
    return ConversationDataset(path, path.parent, proc or processor(), "vicuna_v1", max_length,
                               on_bad_sample="skip", check_images="exists", cache_dir=cache, **kw)


def same_samples(a, b):
    assert len(a) == len(b) and list(a.sample_ids) == list(b.sample_ids)
    assert a.lengths.tolist() == b.lengths.tolist() and a.modality_lengths == b.modality_lengths
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
        assert (x["pixel_values"] is None) == (y["pixel_values"] is None)
        if x["pixel_values"] is not None:
            assert torch.equal(x["pixel_values"], y["pixel_values"])


def test_a_second_build_maps_the_cached_index_and_gives_identical_samples(tmp_path, monkeypatch):
    path = write_data(tmp_path / "d")
    first = build(path, tmp_path / "cache")
    assert not first.cache_hit and first.index_dir is not None and first.num_skipped == 1
    uncached = build(path, None)
    same_samples(first, uncached)

    def no_parsing(*args, **kwargs):
        raise AssertionError("the data file was parsed although its index is cached")

    monkeypatch.setattr("deco.data.dataset.load_records", no_parsing)
    monkeypatch.setattr("deco.data.index_cache.load_records", no_parsing)
    second = build(path, tmp_path / "cache")
    assert second.cache_hit and second.index_dir == first.index_dir
    same_samples(second, uncached)
    assert isinstance(second._ids, np.memmap)  # mapped from disk: ranks share the pages
    assert second.skipped == uncached.skipped and second.bad_samples == uncached.bad_samples


@pytest.mark.parametrize("change", ["data", "image", "max_length", "tokens", "template"])
def test_any_input_of_the_index_changes_its_folder(tmp_path, change):
    path = write_data(tmp_path / "d")
    before = build(path, tmp_path / "cache")
    kw: dict = {}
    if change == "data":
        path.write_text(path.read_text().replace("question 3?", "question three?"), encoding="utf-8")
    elif change == "image":  # same size, a later modification time: the manifest changes
        image = path.parent / "img" / "1.png"
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    elif change == "max_length":
        kw["max_length"] = 600
    elif change == "tokens":
        kw["proc"] = processor(tokens=9)
    after = (ConversationDataset(path, path.parent, processor(), "plain", 300, on_bad_sample="skip",
                                 cache_dir=tmp_path / "cache") if change == "template" else
             build(path, tmp_path / "cache", **kw))
    assert not after.cache_hit and after.index_dir != before.index_dir
    if change == "max_length":
        assert after.num_skipped == 0 and len(after) == len(before) + 1


def test_a_killed_build_leaves_nothing_that_is_read_and_an_unwritable_cache_only_warns(tmp_path, caplog):
    path = write_data(tmp_path / "d")
    cache = tmp_path / "cache"
    first = build(path, cache)
    index = first.index_dir
    (index / "index.json").unlink()  # as if killed before the folder was complete (and renamed)
    assert not build(path, cache).cache_hit
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="deco.data.dataset"):
        ds = build(path, blocked)
    assert ds.index_dir is None and len(ds) == len(first)
    assert "could not cache the tokenized index" in caplog.text


def test_a_bad_file_is_still_reported_with_its_line_and_column_when_caching(tmp_path):
    path = write_data(tmp_path / "d", indent=1)
    text = path.read_text().replace('question 7?"', 'question 7?" oops')
    path.write_text(text, encoding="utf-8")
    line = text[: text.index("oops")].count("\n") + 1
    with pytest.raises(DataError, match=rf"train\.json:{line}:\d+: malformed JSON"):
        build(path, tmp_path / "cache")


def _one_line_file(folder: Path, n: int) -> Path:
    convs = [{"from": "human", "value": "<image>\nwhat is on the left of the red car?"},
             {"from": "gpt", "value": "a small dog sitting near the street sign " * 4}]
    items = [{"id": str(i), "image": "x.jpg", "conversations": convs} for i in range(n)]
    path = folder / f"one-line-{n}.json"
    path.write_text(json.dumps(items), encoding="utf-8")  # json.dump's default: no newline at all
    return path


class CountingText(str):
    """A str that counts the characters its count/find/rfind calls cover: the work of locating records."""

    scanned = 0

    def _span(self, start, end):
        start = 0 if start is None else start
        end = len(self) if end is None else end
        CountingText.scanned += max(0, end - start)

    def count(self, sub, start=None, end=None):
        self._span(start, end)
        return super().count(sub, start, end)

    def find(self, sub, start=None, end=None):
        self._span(start, end)
        return super().find(sub, start, end)

    def rfind(self, sub, start=None, end=None):
        self._span(start, end)
        return super().rfind(sub, start, end)


def test_loading_a_one_line_json_list_does_linear_work(tmp_path):
    """Each record's line:column used to be found by scanning back to the previous newline: on a file
    without newlines that is the whole file per record (20,000 records took 31 s). Now the characters the
    loader scans to locate records stay within twice the file, however many records there are."""
    from deco.data.records import _parse_json_list

    for n in (2000, 8000):
        path = _one_line_file(tmp_path, n)
        text = CountingText(path.read_text(encoding="utf-8"))
        CountingText.scanned = 0
        located = _parse_json_list(path, text)
        assert len(located) == n and CountingText.scanned <= 2 * len(text), (n, CountingText.scanned, len(text))
    column = text.rindex('{"id": "7999"') + 1
    assert located[-1][1] == f"{path}:1:{column}"
    assert load_records(path)[-1].source == f"{path}:1:{column}"


def test_positions_stay_exact_in_a_file_with_newlines(tmp_path):
    from deco.data.records import read_located

    path = tmp_path / "multi.json"
    path.write_text('[\n  {"id": "a", "conversations": []},\n\n    {"id": "b"}\n]', encoding="utf-8")
    assert [source for _, source in read_located(path)] == [f"{path}:2:3", f"{path}:4:5"]


def test_a_second_run_and_its_resume_neither_parse_nor_tokenize_the_data_again(tmp_path, monkeypatch, llava_data,
                                                                               torch_one_thread):
    from deco.config import load_config
    from deco.train import run_training

    train_file, images = llava_data

    def config(out, steps):
        return load_config("configs/tiny.yaml", [
            f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
            f"train.max_steps={steps}", "train.save_every=1", "train.quiet=true", f"data.cache_dir={tmp_path / 'c'}"])

    run_training(config(tmp_path / "first", 1))
    assert len(list((tmp_path / "c").glob("index-*"))) == 1 and len(list((tmp_path / "c").glob("summary-*"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("the data file was parsed again")

    monkeypatch.setattr("deco.data.dataset.load_records", no_parsing)
    monkeypatch.setattr("deco.data.index_cache.load_records", no_parsing)
    monkeypatch.setattr("deco.data.dataset.ConversationDataset._build", no_parsing)
    run_training(config(tmp_path / "second", 1))
    summary = run_training(config(tmp_path / "second", 2), resume=True, allow_change="train.max_steps")
    assert summary["steps"] == 2


def test_a_missing_data_file_is_named_as_such_and_a_log_gets_a_line_per_step(tmp_path, llava_data, capsys,
                                                                             torch_one_thread):
    from deco.config import load_config
    from deco.train import run_training

    train_file, images = llava_data
    base = [f"data.image_folder={images}", f"train.output_dir={tmp_path / 'r'}", "train.max_steps=2",
            "train.log_every=1", f"data.cache_dir={tmp_path / 'c'}"]
    with pytest.raises(DataError, match="data file not found: .*nowhere.json"):
        run_training(load_config("configs/tiny.yaml", [f"data.train_file={tmp_path / 'nowhere.json'}", *base]))
    run_training(load_config("configs/tiny.yaml", [f"data.train_file={train_file}", *base]))  # not quiet
    err = capsys.readouterr().err
    assert "step 1/2 loss" in err and "step 2/2 loss" in err  # stderr is not a terminal here: lines, no bar
